"""One tunable knob of the search space (the class only: operators declare their own knobs with it,
so this module imports nothing of the project)."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Callable, Literal

Kind = Literal["int", "float", "bool", "choice", "set"]
#: How the members of a set value are written: "bm25+dense".
SET_SEPARATOR = "+"
Scope = Literal["global", "per_category"]
#: The operators of ``Dimension.active_when``; "has" reads a set value's members.
CONDITIONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda value, operand: value == operand,
    "!=": lambda value, operand: value != operand,
    ">": lambda value, operand: value > operand,
    "has": lambda value, operand: operand in str(value).split(SET_SEPARATOR),
}


@dataclass(frozen=True)
class Dimension:
    """One tunable knob: its type, range or choices, default, scope and a one-line description.

    A ``set`` dimension takes any non-empty subset of its ``choices``, written as the members
    joined by '+' in the order of ``choices`` (so that one subset has one spelling and hash)."""

    name: str
    kind: Kind
    default: Any
    description: str
    scope: Scope = "global"
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False
    #: Group used by diagnosers and the router ("units", "bm25", "fusion", ...).
    group: str = ""
    #: Only meaningful when an answering LLM is configured.
    needs_llm: bool = False
    #: How to widen the domain, said when a value is outside it (a model list to extend).
    widen_hint: str = ""
    #: Where the dimension matters only through another one: (that dimension, operator, value),
    #: the operator one of ``CONDITIONS``. Exploration leaves it alone while the condition fails
    #: (a draw of prf_terms with feedback off changes no outcome).
    active_when: tuple[str, str, Any] | None = None

    def holds_for(self, value: Any) -> bool:
        """Whether ``active_when`` holds when its dimension has ``value`` (always without one)."""
        if self.active_when is None:
            return True
        _, op, operand = self.active_when
        return CONDITIONS[op](value, operand)

    def validate(self, value: Any) -> Any:
        """Return the value coerced to the dimension's type, or raise ValueError saying why."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError(f"must be true or false, got {value!r}")
        if self.kind == "choice":
            if value in self.choices:
                return value
            hint = f" ({self.widen_hint})" if self.widen_hint else ""
            raise ValueError(f"must be one of {', '.join(map(str, self.choices))}, got "
                             f"{value!r}{hint}")
        if self.kind == "set":
            return self._validate_set(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        if self.kind == "int":
            if float(value) != int(value):
                raise ValueError(f"must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            raise ValueError(f"must be between {self.low:g} and {self.high:g}, got {value!r}")
        return value

    def _validate_set(self, value: Any) -> str:
        if isinstance(value, str):
            members = [m.strip() for m in value.split(SET_SEPARATOR)]
        elif isinstance(value, (list, tuple, set, frozenset)):
            members = [str(m) for m in value]
        else:
            raise ValueError(f"must be members of {{{', '.join(self.choices)}}} joined by "
                             f"'{SET_SEPARATOR}' or a list of them, got {value!r}")
        unknown = [m for m in members if m not in self.choices]
        if unknown or not members:
            raise ValueError(f"must be a non-empty set of {', '.join(self.choices)} (joined by "
                             f"'{SET_SEPARATOR}'), got {value!r}")
        return SET_SEPARATOR.join(c for c in self.choices if c in members)

    def subsets(self) -> tuple[str, ...]:
        """Every value of a set dimension, smallest subsets first."""
        return tuple(SET_SEPARATOR.join(combo) for size in range(1, len(self.choices) + 1)
                     for combo in combinations(self.choices, size))

    def domain(self) -> str:
        if self.kind == "bool":
            return "true|false"
        if self.kind == "choice":
            return "|".join(map(str, self.choices))
        if self.kind == "set":
            return "{" + ",".join(map(str, self.choices)) + "}"
        return f"{self.low:g}..{self.high:g}"

    def doc_line(self) -> str:
        scope = ", per-category" if self.scope == "per_category" else ""
        when = ""
        if self.active_when is not None:
            other, op, operand = self.active_when
            when = f" Matters only when {other} {op} {operand!r}."
        return (f"{self.name} ({self.kind}: {self.domain()}; default {self.default!r}{scope}): "
                f"{self.description}{when}")


def dimension(name: str, kind: Kind, default: Any, description: str, **kw: Any) -> Dimension:
    return Dimension(name=name, kind=kind, default=default, description=description, **kw)


