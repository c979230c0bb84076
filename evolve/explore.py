"""Exploration when the diagnoser stalls: a trust region around the incumbent. Each draw changes
2-3 dimensions, numeric ones within a radius of the incumbent's value; the radius doubles after
an exploring round that was accepted and halves after one that was not (restarting once it gets
too small), as trust-region methods do. The region is replayed from the run's attempt history
and every draw is seeded by (seed, round), so a resumed run samples exactly as an uninterrupted
one."""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna

from evolve.diagnosers.base import (Attempt, DiagnosisContext, Edit, Proposal,
                                    first_admissible)
from search_space.config import RetrievalConfig, SpaceConfig
from search_space.optuna_space import distributions

#: The proposer name of exploring candidates in the run store.
PROPOSER = "explore"
#: The radius is a share of a numeric dimension's range (of its log range for log dimensions).
RADIUS_START = 0.25
RADIUS_MIN = 1 / 16
RADIUS_MAX = 1.0
#: Dimensions changed per draw: the narrow region changes 2, a region grown to this radius 3.
DIMS_NARROW, DIMS_WIDE = 2, 3
RADIUS_WIDE = 0.5


@dataclass(frozen=True)
class Region:
    radius: float
    dims: int
    successes: int
    failures: int

    def describe(self) -> str:
        return (f"trust region radius {self.radius:.3g} of each range, {self.dims} dimensions "
                f"per draw ({self.successes} exploring rounds accepted, {self.failures} not)")


def usable_dimensions(answerer: str | None, space: type[SpaceConfig] = RetrievalConfig,
                      ) -> list[str]:
    """The dimensions exploration may change: not the answerer (the user's choice), not a
    choice with one value (a model dimension when no model is listed), and those that only
    matter with an LLM answerer only when there is one."""
    return [d.name for d in space.dimensions
            if d.name != "answerer" and (answerer == "llm" or not d.needs_llm)
            and not (d.kind == "choice" and len(d.choices) < 2)]


def trust_region(history: list[Attempt]) -> Region:
    """The region after the exploring rounds of ``history``: doubled by each accepted round,
    halved by each other one, back to the start when it falls below the minimum."""
    rounds: dict[int, bool] = {}
    for attempt in history:
        if attempt.proposer == PROPOSER:
            rounds[attempt.round] = rounds.get(attempt.round, False) or \
                attempt.decision == "accepted"
    radius, successes = RADIUS_START, 0
    for number in sorted(rounds):
        if rounds[number]:
            successes += 1
            radius = min(RADIUS_MAX, radius * 2)
        else:
            radius /= 2
            if radius < RADIUS_MIN:
                radius = RADIUS_START
    dims = DIMS_WIDE if radius >= RADIUS_WIDE else DIMS_NARROW
    return Region(radius, dims, successes, len(rounds) - successes)


def explore(context: DiagnosisContext) -> list[Proposal]:
    """K proposals drawn from the trust region around the incumbent."""
    # Only what can change an outcome of the incumbent: with feedback off a draw of prf_terms
    # scored exactly its incumbent, a wasted evaluation (LoCoMo: 1-2 of a round's 4 draws).
    names = [name for name in usable_dimensions(getattr(context.incumbent, "answerer", None),
                                                context.space)
             if context.incumbent.is_active(name)]
    dists = distributions(names, context.max_context_tokens, context.space.dimensions_by_name)
    region = trust_region(context.history)
    rng = random.Random(context.seed * 1009 + context.round)

    def sampled() -> Iterator[Proposal]:
        # Read lazily: draws stop as soon as K admissible ones are found.
        for _ in range(context.n_proposals * 8):
            chosen = sorted(rng.sample(names, min(region.dims, len(names))))
            edits = tuple(Edit(n, near(dists[n], getattr(context.incumbent, n), region.radius,
                                       rng)) for n in chosen)
            yield Proposal(edits, f"{region.describe()}: around the incumbent's "
                                  f"{', '.join(chosen)}", PROPOSER)

    return first_admissible(context, sampled())


def near(dist: optuna.distributions.BaseDistribution, current: Any, radius: float,
         rng: random.Random) -> Any:
    """A value of ``dist`` other than ``current`` where it allows one: a categorical one drawn
    among the other choices, a numeric one uniformly within ``radius`` of the range (log range
    for log distributions) around ``current``."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        others = [c for c in dist.choices if c != current]
        return rng.choice(others) if others else current
    low, high = dist.low, dist.high  # type: ignore[attr-defined]
    log = dist.log  # type: ignore[attr-defined]
    to = (lambda v: math.log(v)) if log else (lambda v: float(v))
    back = (lambda v: math.exp(v)) if log else (lambda v: v)
    centre = min(max(to(current), to(low)), to(high))
    width = radius * (to(high) - to(low))
    lo, hi = max(to(low), centre - width), min(to(high), centre + width)
    is_int = isinstance(dist, optuna.distributions.IntDistribution)
    value: Any = current
    for _ in range(20):
        value = back(rng.uniform(lo, hi))
        if is_int:
            value = min(int(high), max(int(low), int(round(value))))
        if value != current:
            return value
    if is_int:
        # A region narrower than one step: the neighbouring integer, where the range has one.
        step = [v for v in (current + 1, current - 1) if low <= v <= high]
        return rng.choice(step) if step else current
    return value
