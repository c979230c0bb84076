"""Hierarchical retrieval: each session scored as a whole (the active retrievers over its turns
joined), mixed into the scores of its units, and optionally a two-stage ranking that puts the
units of the best sessions first."""
from __future__ import annotations

import numpy as np

from evolve.memory.retrievers import minmax
from evolve.memory.units import UnitSet

#: Subtracted from the units outside the top sessions: their mixed scores lie in [0, 1].
_OUTSIDE_TOP = 2.0


def uses_sessions(session_weight: float, session_top: int) -> bool:
    return session_weight > 0.0 or session_top > 0


def session_prior(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Each session's score in [0, 1]: the weighted mean, over the retrievers, of its score
    relative to the best session's (a negative score counts as 0).

    Relative to the best, not min-max: min-max puts the worst session at 0 whatever its score,
    so in a haystack of two or three sessions that all hold evidence (LongMemEval oracle) the
    prior buried one evidence session (official turn recall_all@5 of the LoCoMo-evolved config
    0.622 with min-max, 0.817 relative to the best; LoCoMo test 0.832 and 0.843). Whichever the
    units' fusion, since reciprocal ranks of a few sessions say nothing of how close they are."""
    total = sum(weights.values())
    prior = np.zeros(len(next(iter(scores.values()))))
    if total <= 0.0:
        return prior
    for name, values in scores.items():
        values = np.clip(np.asarray(values, dtype=float), 0.0, None)
        best = float(values.max()) if len(values) else 0.0
        if best > 0.0:
            prior += weights[name] * values / best
    return prior / total


def mix_session_scores(unit_scores: np.ndarray, units: UnitSet, sessions: UnitSet,
                       session_scores: np.ndarray, session_weight: float,
                       session_top: int) -> np.ndarray:
    """(1 - w) * min-max(unit score) + w * its session's prior (``session_prior``); with
    ``session_top`` S > 0, units outside the S best sessions rank after every unit inside them."""
    # Each unit's row in ``sessions`` (-1: its session has none).
    of_session = np.full(int(max(units.session_indexes.max(initial=-1),
                                 sessions.session_indexes.max(initial=-1))) + 1, -1)
    of_session[sessions.session_indexes] = np.arange(len(sessions.units))
    rows = of_session[units.session_indexes]
    per_unit = np.where(rows >= 0, session_scores[np.maximum(rows, 0)], 0.0)
    mixed = (1.0 - session_weight) * minmax(unit_scores) + session_weight * per_unit
    if session_top > 0:
        best = np.argsort(-session_scores, kind="stable")[:session_top]
        inside = np.isin(rows, best)
        mixed = np.where(inside, mixed, mixed - _OUTSIDE_TOP)
    return mixed
