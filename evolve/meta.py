"""The guarded meta-analyzer: paired comparison of each candidate with the incumbent on the same
dev questions (sign-flip permutation test over conversations, evolve.stats), Holm-corrected
across the round's candidates, and the accept / reject / revert decision."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evolve.evaluation import question_scores
from evolve.settings import EvolveSettings
from evolve.stats import holm, paired_test


@dataclass(frozen=True)
class Verdict:
    decision: str        # accepted | rejected | reverted
    delta: float
    ci_low: float
    ci_high: float
    p_value: float       # one-sided p of a gain, before the Holm correction
    n: int
    reason: str


@dataclass(frozen=True)
class Guard:
    confidence: float = EvolveSettings.model_fields["confidence"].default
    min_effect: float = EvolveSettings.model_fields["min_effect"].default
    seed: int = 0

    @property
    def alpha(self) -> float:
        """One-sided level of a gain (and of a drop): half of 1 - confidence."""
        return (1.0 - self.confidence) / 2.0


def judge_candidate(incumbent_rows: list[dict[str, Any]], candidate_rows: list[dict[str, Any]],
                    objective: str, guard: Guard) -> Verdict:
    """One candidate alone (a round of one)."""
    return judge_round(incumbent_rows, [candidate_rows], objective, guard)[0]


def judge_round(incumbent_rows: list[dict[str, Any]],
                candidates_rows: list[list[dict[str, Any]]], objective: str,
                guard: Guard) -> list[Verdict]:
    """Accept only gains significant after Holm's correction over the round's candidates (so the
    round as a whole accepts a null edit at most ``guard.alpha`` of the time) and above the
    minimum effect; a significant drop is recorded as reverted."""
    a = question_scores(incumbent_rows, objective)
    conv_of = {r["question_id"]: r["conversation_id"] for r in incumbent_rows}
    tests = []
    for rows in candidates_rows:
        b = question_scores(rows, objective)
        shared = [q for q in a if q in b]
        tests.append(paired_test(np.array([a[q] for q in shared]), np.array([b[q] for q in shared]),
                                 np.array([conv_of[q] for q in shared]),
                                 confidence=guard.confidence, seed=guard.seed)
                     if shared else None)
    gains = holm([t.p_gain if t else 1.0 for t in tests], guard.alpha)
    m = len(tests)
    verdicts = []
    for test, significant in zip(tests, gains):
        if test is None:
            verdicts.append(Verdict("rejected", 0.0, 0.0, 0.0, 1.0, 0,
                                    "no question scored by both"))
            continue
        stats = (f"delta {test.delta:+.4f}, {guard.confidence:.0%} cluster t-CI "
                 f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}], {test.method} p(gain)="
                 f"{test.p_gain:.4f} vs Holm level {guard.alpha:.4f}/{m}.., "
                 f"{test.clusters} clusters, n={test.n}")
        if significant and test.delta >= guard.min_effect:
            decision, reason = "accepted", f"significant gain: {stats}"
        elif test.p_drop <= guard.alpha:
            decision, reason = "reverted", f"significant drop, reverted: {stats}"
        elif significant:
            decision = "rejected"
            reason = f"significant but below the minimum effect {guard.min_effect}: {stats}"
        else:
            decision, reason = "rejected", f"not significant: {stats}"
            if test.min_one_sided_p() > guard.alpha / m:
                reason += (f"; {test.clusters} clusters cannot reach that level at all (best "
                           f"possible p {test.min_one_sided_p():.4f})")
        verdicts.append(Verdict(decision, test.delta, test.ci_low, test.ci_high, test.p_gain,
                                test.n, reason))
    return verdicts
