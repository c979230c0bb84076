"""The guard's statistics: the sign-flip test is exact, Holm holds the round's level, and null
edits on LoCoMo's real dev conversation sizes are accepted no more often than the nominal level."""
from __future__ import annotations

import numpy as np
import pytest

from evolve.meta import Guard, judge_round
from evolve.stats import EXACT_MAX_CLUSTERS, holm, paired_test


def test_identical_sides_have_no_gain_and_no_drop():
    a = np.random.default_rng(0).random(120)
    test = paired_test(a, a, np.repeat(np.arange(8), 15))
    assert test.delta == 0.0 and test.p_gain == 1.0 and test.p_drop == 1.0
    assert test.method == "exact sign-flip" and test.clusters == 8


def test_all_clusters_better_gives_the_smallest_exact_p():
    rng = np.random.default_rng(1)
    a = rng.random(80)
    test = paired_test(a, a + 0.1, np.repeat(np.arange(8), 10))
    assert test.p_gain == pytest.approx(2 ** -8) and test.ci_low > 0


def test_beyond_the_exact_limit_signs_are_drawn_reproducibly():
    rng = np.random.default_rng(2)
    a, b = rng.random(400), rng.random(400)
    clusters = np.arange(400)            # LongMemEval: one question per haystack
    first = paired_test(a, b, clusters, seed=3)
    assert first.method == "Monte Carlo sign-flip" and first.clusters > EXACT_MAX_CLUSTERS
    assert first == paired_test(a, b, clusters, seed=3)


def test_clusters_carry_the_uncertainty_not_questions():
    shift = np.array([0.4, -0.3, 0.5, -0.2])
    clusters = np.repeat(np.arange(4), 100)
    by_cluster = paired_test(np.zeros(400), shift[clusters], clusters)
    by_question = paired_test(np.zeros(400), shift[clusters], np.arange(400))
    assert by_cluster.ci_high - by_cluster.ci_low > 3 * (by_question.ci_high - by_question.ci_low)
    assert by_cluster.p_gain > 0.25 and by_question.p_gain < 0.01


def test_holm_steps_down_and_stops_at_the_first_failure():
    assert holm([0.001, 0.04, 0.012, 0.3], 0.05) == [True, False, True, False]
    assert holm([0.02, 0.02], 0.025) == [False, False]


def _null_round(rng, sizes, k_candidates):
    """Per-question scores of an incumbent and k candidates with no true effect: each
    candidate's delta has a conversation-level part and a question-level part, both symmetric."""
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    base = rng.random(clusters.size)
    candidates = []
    for _ in range(k_candidates):
        effect = rng.normal(0, 0.03, len(sizes))[clusters]
        noise = rng.choice((-0.2, 0.0, 0.0, 0.2), clusters.size)
        candidates.append(base + effect + noise)
    return clusters, base, candidates


def test_null_edits_on_locomo_dev_sizes_are_accepted_at_most_at_the_nominal_level(locomo):
    from benchmarks.splits import make_split

    split = make_split(locomo)
    dev = split.questions(locomo, "dev")
    sizes = [sum(q.conversation_id == c for q in dev) for c in split.dev]
    assert len(sizes) == 8 and sum(sizes) == len(dev)
    guard = Guard()
    rng = np.random.default_rng(0)
    rounds, false_rounds = 3000, 0
    for _ in range(rounds):
        clusters, base, candidates = _null_round(rng, sizes, 4)
        p_gain = [paired_test(base, c, clusters).p_gain for c in candidates]
        false_rounds += any(holm(p_gain, guard.alpha))
    # Family-wise over the round's 4 candidates, one-sided 2.5%: the level the guard promises.
    assert false_rounds / rounds <= guard.alpha


def test_the_guard_itself_accepts_a_real_gain_and_no_null_one():
    rng = np.random.default_rng(4)
    sizes = [150, 190, 200, 180, 210, 220, 230, 206]
    clusters, base, candidates = _null_round(rng, sizes, 3)

    def rows(values):
        return [{"question_id": f"q{i}", "conversation_id": f"c{c}", "adversarial": False,
                 "recall_in_context": float(v), "invalid_reason": None}
                for i, (v, c) in enumerate(zip(values, clusters))]

    verdicts = judge_round(rows(base), [rows(c) for c in candidates] + [rows(base + 0.05)],
                           "recall_in_context", Guard())
    assert [v.decision for v in verdicts[:3]] != ["accepted"] * 3
    assert "accepted" not in [v.decision for v in verdicts[:3]]
    assert verdicts[3].decision == "accepted" and verdicts[3].p_value == pytest.approx(2 ** -8)
