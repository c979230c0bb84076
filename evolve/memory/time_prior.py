"""Time operators: a recency prior (later memories first, when the question is about the current
state) and a date window around the date a question's temporal cue points to, relative to the
question's own date (LongMemEval's question_date; LoCoMo questions have none, so only explicit
months and years count there)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np

from evolve.memory.retrievers import minmax
from evolve.memory.text import temporal_target
from evolve.memory.units import UnitSet

#: Subtracted from the units outside the window: the mixed scores lie in [0, 1].
_OUTSIDE_WINDOW = 2.0
_COUNT = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "a few": 3,
          "few": 3, "a couple of": 2, "couple of": 2}
_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_AGO = re.compile(r"\b(\d+|a couple of|couple of|a few|few|a|one|two|three|four|five|six) "
                  r"(day|week|month|year)s? ago\b", re.IGNORECASE)
_LAST = re.compile(r"\b(yesterday|last (week|weekend|month|year))\b", re.IGNORECASE)


def cue_date(question: str, question_date: datetime | None) -> datetime | None:
    """The date a question's temporal cue points to: an explicit month or year, or a relative
    cue ('three weeks ago', 'last month', 'yesterday') counted back from the question's date."""
    explicit = temporal_target(question)
    if explicit is not None or question_date is None:
        return explicit
    ago = _AGO.search(question)
    if ago:
        count = ago.group(1).lower()
        n = int(count) if count.isdigit() else _COUNT[count]
        return question_date - timedelta(days=n * _DAYS[ago.group(2).lower()])
    last = _LAST.search(question)
    if last:
        unit = (last.group(2) or "day").lower().replace("weekend", "week")
        return question_date - timedelta(days=_DAYS[unit])
    return None


def apply_time(scores: np.ndarray, units: UnitSet, question: str,
               question_date: datetime | None, recency_weight: float,
               window_days: int) -> np.ndarray:
    """(1 - w) * min-max(score) + w * recency (the unit's chronological position, 0..1); with
    ``window_days`` > 0 and a cue date, units dated farther than that from it rank last."""
    out = scores
    if recency_weight > 0.0:
        positions = units.positions.astype(float)
        out = (1.0 - recency_weight) * minmax(out) + recency_weight * minmax(positions)
    if window_days > 0:
        target = cue_date(question, question_date)
        if target is not None:
            out = minmax(out)
            far = np.array([u.date is not None and abs((u.date - target).days) > window_days
                            for u in units.units])
            out = np.where(far, out - _OUTSIDE_WINDOW, out)
    return out
