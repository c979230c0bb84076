"""The guarded meta-analyzer: paired, conversation-resampled comparison of a candidate with the
incumbent on the same dev questions, and the accept / reject / revert decision."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evolve.evaluation import question_scores
from evolve.settings import EvolveSettings
from evolve.store import paired_bootstrap


@dataclass(frozen=True)
class Verdict:
    decision: str        # accepted | rejected | reverted
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    reason: str


@dataclass(frozen=True)
class Guard:
    confidence: float = EvolveSettings.model_fields["confidence"].default
    min_effect: float = EvolveSettings.model_fields["min_effect"].default
    n_boot: int = 2000
    seed: int = 0


def judge_candidate(incumbent_rows: list[dict[str, Any]], candidate_rows: list[dict[str, Any]],
                    objective: str, guard: Guard) -> Verdict:
    """Accept only a significant gain above the minimum effect; a significant drop is reverted."""
    a = question_scores(incumbent_rows, objective)
    b = question_scores(candidate_rows, objective)
    shared = [q for q in a if q in b]
    if not shared:
        return Verdict("rejected", 0.0, 0.0, 0.0, 1.0, 0, "no question scored by both")
    conv_of = {r["question_id"]: r["conversation_id"] for r in incumbent_rows}
    delta, low, high, p = paired_bootstrap(
        np.array([a[q] for q in shared]), np.array([b[q] for q in shared]),
        np.array([conv_of[q] for q in shared]), n_boot=guard.n_boot, seed=guard.seed,
        confidence=guard.confidence)
    stats = (f"delta {delta:+.4f}, {guard.confidence:.0%} CI [{low:+.4f}, {high:+.4f}], "
             f"p={p:.3f}, n={len(shared)}")
    if low > 0 and delta >= guard.min_effect:
        return Verdict("accepted", delta, low, high, p, len(shared), f"significant gain: {stats}")
    if high < 0:
        return Verdict("reverted", delta, low, high, p, len(shared),
                       f"significant drop, reverted: {stats}")
    if low > 0:
        reason = f"significant but below the minimum effect {guard.min_effect}: {stats}"
    else:
        reason = f"not significant: {stats}"
    return Verdict("rejected", delta, low, high, p, len(shared), reason)
