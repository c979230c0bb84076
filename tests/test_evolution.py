"""The evolution loop: guarded decisions, budgets, convergence, and exact resume after a kill."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.errors import MemevolveError
from evolve.evolution import EvolveSettings, evolve
from evolve.meta import Guard, judge_candidate
from evolve.store import RunStore

SMALL = dict(benchmark="synthetic", workers=0, candidates=3, max_rounds=4, seed=1)


def _rounds(store, run_id):
    return store.query("SELECT round, mode, decision, incumbent_hash, evaluations_used "
                       "FROM rounds WHERE run_id = ? ORDER BY round", [run_id])


def _candidates(store, run_id):
    return store.query("SELECT round, candidate, config_hash, decision FROM candidates "
                       "WHERE run_id = ? ORDER BY round, candidate", [run_id])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    path = tmp_path_factory.mktemp("evo") / "m.duckdb"
    with RunStore(path) as store:
        outcome = evolve(store, EvolveSettings(**SMALL))
        yield store, outcome


def test_the_loop_improves_dev_and_reports_test_once(finished):
    store, outcome = finished
    assert outcome.best.score > outcome.start.score
    tests = store.query("SELECT config_hash FROM evaluations WHERE run_id = ? AND part = 'test'",
                        [outcome.run_id])
    assert sorted(r["config_hash"] for r in tests) == sorted(
        {outcome.start.config.config_hash, outcome.best.config.config_hash})


def test_incumbent_changes_only_on_an_accepted_candidate(finished):
    store, outcome = finished
    rounds = _rounds(store, outcome.run_id)
    cands = _candidates(store, outcome.run_id)
    for before, after in zip(rounds, rounds[1:]):
        accepted = [c for c in cands if c["round"] == after["round"]
                    and c["decision"] == "accepted"]
        if after["incumbent_hash"] != before["incumbent_hash"]:
            assert [c["config_hash"] for c in accepted] == [after["incumbent_hash"]]
        else:
            assert not accepted


def test_every_decision_has_its_statistics_and_reason(finished):
    store, outcome = finished
    rows = store.query("SELECT * FROM candidates WHERE run_id = ?", [outcome.run_id])
    assert rows and all(r["reason"] and r["delta"] is not None and r["ci_low"] <= r["ci_high"]
                        for r in rows)


def test_budget_of_evaluations_is_respected(tmp_path):
    with RunStore(tmp_path / "m.duckdb") as store:
        outcome = evolve(store, EvolveSettings(**{**SMALL, "max_evaluations": 4}))
    assert outcome.status == "budget_spent"
    assert outcome.evaluations <= 4 + SMALL["candidates"] - 1


def test_resume_of_an_unknown_run_is_a_clear_error(tmp_path):
    with RunStore(tmp_path / "m.duckdb") as store:
        with pytest.raises(MemevolveError, match="no run 'nope'"):
            evolve(store, resume="nope")


def _rows(values, conversations):
    return [{"question_id": f"q{i}", "conversation_id": c, "recall_in_context": v,
             "invalid_reason": None, "adversarial": False} for i, (v, c) in enumerate(zip(values, conversations))]


def test_guard_accepts_only_a_significant_gain():
    rng = np.random.default_rng(0)
    convs = [f"c{i % 10}" for i in range(200)]
    base = rng.uniform(0, 0.6, 200)
    verdict = judge_candidate(_rows(base, convs), _rows(base + 0.2, convs), "recall_in_context",
                              Guard())
    assert verdict.decision == "accepted" and verdict.ci_low > 0
    noise = base + rng.normal(0, 0.05, 200)
    assert judge_candidate(_rows(base, convs), _rows(noise, convs), "recall_in_context",
                           Guard()).decision == "rejected"
    assert judge_candidate(_rows(base, convs), _rows(base - 0.2, convs), "recall_in_context",
                           Guard()).decision == "reverted"


def test_guard_ignores_gains_below_the_minimum_effect():
    convs = [f"c{i % 10}" for i in range(100)]
    base = np.linspace(0, 0.5, 100)
    verdict = judge_candidate(_rows(base, convs), _rows(base + 0.001, convs),
                              "recall_in_context", Guard(min_effect=0.01))
    assert verdict.decision == "rejected" and "minimum effect" in verdict.reason


def test_settings_are_stored_with_the_run(finished):
    store, outcome = finished
    settings = json.loads(store.run(outcome.run_id)["settings_json"])
    assert settings["candidates"] == 3 and settings["seed"] == 1
