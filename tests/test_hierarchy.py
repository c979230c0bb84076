"""The session prior: each session's score relative to the best session's, per retriever."""
from __future__ import annotations

import numpy as np
import pytest

from evolve.memory.hierarchy import session_prior


def test_two_evidence_sessions_keep_how_close_they_score():
    # Min-max would put the second session at 0 (a whole session_weight below the first) though
    # it scores 90% of the first: LongMemEval oracle haystacks are 1-3 evidence sessions.
    prior = session_prior({"bm25": np.array([3.0, 2.7])}, {"bm25": 1.0})
    assert prior == pytest.approx([1.0, 0.9])


def test_retrievers_are_averaged_by_weight_and_negative_scores_count_as_zero():
    prior = session_prior({"bm25": np.array([4.0, 1.0, 0.0]),
                           "dense": np.array([-0.2, 0.5, 0.25])},
                          {"bm25": 0.75, "dense": 0.25})
    assert prior == pytest.approx([0.75, 0.75 * 0.25 + 0.25, 0.25 * 0.5])
    assert prior.max() <= 1.0


def test_a_retriever_that_matches_no_session_adds_nothing():
    prior = session_prior({"bm25": np.zeros(3), "dense": np.array([0.2, 0.4, 0.1])},
                          {"bm25": 0.5, "dense": 0.5})
    assert prior == pytest.approx([0.25, 0.5, 0.125])
    assert session_prior({"bm25": np.array([1.0, 2.0])}, {"bm25": 0.0}).tolist() == [0.0, 0.0]
