"""Command-line options generated from a pydantic settings model, so that a setting's flag,
default, help text and range are declared once (on the model), and a bad value gets the
project's one-paragraph error naming the option and its allowed range."""
from __future__ import annotations

import functools
import inspect
import types
from typing import Any, Callable, Optional, Union, get_args, get_origin

import typer
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from benchmarks.errors import MemevolveError


def cli_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields a command offers as options: those declared with a ``cli`` marker."""
    return {name: field for name, field in model.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and "cli" in field.json_schema_extra}


def flags(name: str, field: FieldInfo) -> list[str]:
    declared = field.json_schema_extra["cli"]  # type: ignore[index]
    return list(declared) or ["--" + name.replace("_", "-")]


def value_range(field: FieldInfo) -> str:
    """The field's bounds as text ('1..32', '> 0.5 and < 1', ''), from its constraints."""
    low = high = None
    for bound in field.metadata:
        if isinstance(bound, Ge):
            low = f">= {bound.ge}"
        elif isinstance(bound, Gt):
            low = f"> {bound.gt}"
        elif isinstance(bound, Le):
            high = f"<= {bound.le}"
        elif isinstance(bound, Lt):
            high = f"< {bound.lt}"
    if low and high and low.startswith(">=") and high.startswith("<="):
        return f"{low[3:]}..{high[3:]}"
    return " and ".join(b for b in (low, high) if b)


def option_for(model: type[BaseModel], name: str) -> Any:
    """The typer option of one ``cli`` field, for a command that shares it (``eval``)."""
    field = cli_fields(model)[name]
    return typer.Option(field.default, *flags(name, field), help=_help(field))


def settings_options(model: type[BaseModel]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add an option per ``cli`` field of ``model`` to a typer command. The command declares a
    keyword parameter ``settings`` and receives there the option values by field name."""
    fields = cli_fields(model)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(func).parameters.values() if p.name != "settings"]
        generated = []
        annotations = {}
        for name, field in fields.items():
            annotation = _option_type(field.annotation)
            annotations[name] = annotation
            generated.append(inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                default=typer.Option(field.default, *flags(name, field), help=_help(field))))

        @functools.wraps(func)
        def command(**values: Any) -> Any:
            settings = {name: values.pop(name) for name in fields}
            return func(**values, settings=settings)

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated)
        command.__annotations__ = {**func.__annotations__, **annotations}
        command.__annotations__.pop("settings", None)
        return command

    return decorate


def build_settings(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """The model from option values, or a MemevolveError naming each bad option and its range."""
    try:
        return model(**values)
    except ValidationError as exc:
        fields = cli_fields(model)
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            field = fields.get(name)
            label = flags(name, field)[0] if field else name
            bounds = value_range(field) if field else ""
            problems.append(f"{label} {error.get('input')!r}: {error['msg'].lower()}"
                            + (f" (allowed: {bounds})" if bounds else ""))
        raise MemevolveError("; ".join(problems) + ". Fix: pass a value in the allowed range "
                             "(see --help).") from None


def _help(field: FieldInfo) -> str:
    bounds = value_range(field)
    return (field.description or "") + (f" (range {bounds})" if bounds else "")


def _option_type(annotation: Any) -> Any:
    """``int | None`` as typer reads it (Optional[int])."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return Optional[args[0]]
    return annotation
