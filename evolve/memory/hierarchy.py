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


def mix_session_scores(unit_scores: np.ndarray, units: UnitSet, sessions: UnitSet,
                       session_scores: np.ndarray, session_weight: float,
                       session_top: int) -> np.ndarray:
    """(1 - w) * min-max(unit score) + w * min-max(its session's score); with ``session_top``
    S > 0, units outside the S best sessions rank after every unit inside them."""
    of_session = {unit.session_index: i for i, unit in enumerate(sessions.units)}
    rows = np.array([of_session.get(u.session_index, -1) for u in units.units])
    normalised = minmax(session_scores)
    per_unit = np.where(rows >= 0, normalised[np.maximum(rows, 0)], 0.0)
    mixed = (1.0 - session_weight) * minmax(unit_scores) + session_weight * per_unit
    if session_top > 0:
        best = np.argsort(-session_scores, kind="stable")[:session_top]
        inside = np.isin(rows, best)
        mixed = np.where(inside, mixed, mixed - _OUTSIDE_TOP)
    return mixed
