"""The diagnoser interface: the incumbent's dev failures in, a few validated edits out."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from search_space.config import ConfigError, SpaceConfig

if TYPE_CHECKING:
    from evolve.store import RunStore


@dataclass(frozen=True)
class Edit:
    """Set ``field`` to ``value``, globally or (category set) as a per-category override."""

    field: str
    value: Any
    category: str | None = None

    def label(self) -> str:
        where = f"[{self.category}]" if self.category else ""
        return f"{self.field}{where}={self.value}"


@dataclass
class Proposal:
    edits: tuple[Edit, ...]
    rationale: str
    proposer: str

    def edit_json(self) -> str:
        return json.dumps([e.__dict__ for e in self.edits], sort_keys=True)

    def apply(self, config: SpaceConfig) -> SpaceConfig:
        """The edited config; raises ConfigError when an edit leaves the space."""
        out = config
        for edit in self.edits:
            out = out.with_values({edit.field: edit.value}, edit.category)
        return out


@dataclass
class Attempt:
    """A tried candidate, as the history the diagnosers see."""

    round: int
    proposer: str
    edit_json: str
    delta: float | None
    decision: str
    #: How much the edit changed the mean context tokens (None: not known).
    tokens_delta: float | None = None


@dataclass
class DiagnosisContext:
    """What a diagnoser may read: the store (SQL over failures), the incumbent and history.
    The incumbent's class is the space searched (``space``): the built-in one or a
    --system pipeline's."""

    store: "RunStore"
    run_id: str
    round: int
    incumbent: SpaceConfig
    benchmark_key: str
    question_ids: list[str]
    objective: str
    max_context_tokens: int
    history: list[Attempt]
    seed: int
    n_proposals: int
    tried_hashes: set[str] = field(default_factory=set)
    #: Filled by a diagnoser that failed and fell back (recorded in the round's reason).
    notes: list[str] = field(default_factory=list)
    #: Dimensions an LLM proposed that the space lacks (stored for a person, never executed).
    new_dimensions: list[dict[str, str]] = field(default_factory=list)
    #: (conversation id, unit ids) -> the units' texts, so a prompt can show retrieved context.
    describe_units: Callable[[str, list[str]], list[str]] | None = None
    #: llm_calls rows a diagnoser made: the loop counts them into the budget and stores them
    #: with the round (a round that never commits leaves none).
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    #: Proposals the space rejected (proposer, edit_json, rationale, reason): stored as
    #: invalid candidates.
    invalid: list[dict[str, str]] = field(default_factory=list)
    #: Why an LLM diagnoser fell back to rules this round; None when it did not.
    fallback: str | None = None

    @property
    def space(self) -> type[SpaceConfig]:
        return type(self.incumbent)

    def admissible(self, proposal: Proposal) -> SpaceConfig | None:
        """The proposal's config if it is valid, within the token cap, not tried yet and not
        the incumbent in other words (a per-type override to the value the type has already:
        another hash, the same outcomes)."""
        try:
            config = proposal.apply(self.incumbent)
            if all(self.incumbent.value(e.field, e.category) == e.value
                   for e in proposal.edits):
                return None
        except ConfigError:
            return None
        if max(context_budgets(config)) > self.max_context_tokens:
            return None
        if config.config_hash in self.tried_hashes or config == self.incumbent:
            return None
        return config


def context_budgets(config: SpaceConfig) -> list[int]:
    """The config's context budgets, global and per category, where its space has one (the
    --max-context-tokens cap applies to them)."""
    if "context_budget" not in config.dimensions_by_name:
        return [0]
    return [config.context_budget] + [o.get("context_budget", 0)
                                      for o in config.overrides.values()]


def first_admissible(context: DiagnosisContext, proposals: Iterable[Proposal]) -> list[Proposal]:
    """The first ``context.n_proposals`` of ``proposals`` (read lazily, in order) whose configs
    are admissible and differ from each other's."""
    chosen: list[Proposal] = []
    seen: set[str] = set()
    for proposal in proposals:
        config = context.admissible(proposal)
        if config is None or config.config_hash in seen:
            continue
        seen.add(config.config_hash)
        chosen.append(proposal)
        if len(chosen) == context.n_proposals:
            break
    return chosen


class Diagnoser(Protocol):
    name: str

    def propose(self, context: DiagnosisContext) -> list[Proposal]: ...


DIAGNOSERS: dict[str, Callable[..., Diagnoser]] = {}


def register(cls: type) -> type:
    DIAGNOSERS[cls.name] = cls
    return cls
