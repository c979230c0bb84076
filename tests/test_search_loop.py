"""The loop's search: trust-region exploration around the incumbent, combining significant
edits, and multi-fidelity screening with an evaluation budget counted by questions scored."""
from __future__ import annotations

import json
import math
import random

import optuna
import pytest

from evolve.diagnosers.base import Attempt, DiagnosisContext
from evolve.evolution import (COMBINER, POOLER, EvolveSettings, _affordable, _State, combined,
                              evolve, pooled)
from evolve.explore import (PROPOSER, RADIUS_MIN, RADIUS_START, explore, near, trust_region,
                            usable_dimensions)
from evolve.meta import Guard
from evolve.store import RunStore
from search_space.config import load_preset
from search_space.dimensions import DIMENSIONS_BY_NAME
from search_space.optuna_space import distributions


def _explored(round_: int, decision: str) -> Attempt:
    return Attempt(round_, PROPOSER, json.dumps([{"field": "top_k", "value": 5,
                                                  "category": None}]), 0.0, decision)


def test_the_region_grows_on_success_shrinks_on_failure_and_restarts():
    assert trust_region([]).radius == RADIUS_START
    grown = trust_region([_explored(1, "rejected"), _explored(1, "accepted")])
    assert grown.radius == RADIUS_START * 2 and grown.dims == 3 and grown.successes == 1
    shrunk = trust_region([_explored(1, "rejected"), _explored(2, "reverted")])
    assert shrunk.radius == RADIUS_START / 4 and shrunk.dims == 2 and shrunk.failures == 2
    # Attempts of other proposers do not move the region.
    other = Attempt(3, "rules", "[]", 0.1, "accepted")
    assert trust_region([other]).radius == RADIUS_START
    halvings = int(math.log2(RADIUS_START / RADIUS_MIN)) + 1
    restarted = trust_region([_explored(r, "rejected") for r in range(1, halvings + 1)])
    assert restarted.radius == RADIUS_START


def _context(store, incumbent, history, round_=3, seed=0, n=4) -> DiagnosisContext:
    return DiagnosisContext(store=store, run_id="r", round=round_, incumbent=incumbent,
                            benchmark_key="k", question_ids=[], objective="recall_in_context",
                            max_context_tokens=1000, history=history, seed=seed,
                            n_proposals=n)


def test_exploration_changes_two_or_three_dimensions_near_the_incumbent(tmp_path):
    incumbent = load_preset("weak")
    dists = distributions(usable_dimensions(incumbent.answerer), 1000)
    with RunStore(tmp_path / "m.duckdb") as store:
        narrow = explore(_context(store, incumbent, []))
        wide = explore(_context(store, incumbent, [_explored(1, "accepted")]))
        again = explore(_context(store, incumbent, []))
    assert len(narrow) == 4 and all(p.proposer == PROPOSER for p in narrow)
    assert [p.edits for p in narrow] == [p.edits for p in again]
    assert {len(p.edits) for p in narrow} == {2} and {len(p.edits) for p in wide} == {3}
    for proposal in narrow:
        for edit in proposal.edits:
            dist, current = dists[edit.field], getattr(incumbent, edit.field)
            assert edit.value != current
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                continue
            span = (math.log(dist.high) - math.log(dist.low)) if dist.log else \
                dist.high - dist.low
            moved = abs(math.log(edit.value) - math.log(current)) if dist.log else \
                abs(edit.value - current)
            step = 1 if isinstance(dist, optuna.distributions.IntDistribution) else 0
            assert moved <= RADIUS_START * span + step + 1e-9, edit


def test_exploration_leaves_alone_what_cannot_change_the_incumbents_outcome(tmp_path):
    weak = load_preset("weak")  # BM25 only, turns, feedback, hops and rerankers off
    inactive = {"window_size", "rrf_k", "dense_weight", "prf_terms", "prf_weight", "hop2_terms",
                "rerank_depth", "cross_encoder_depth"}
    assert not any(weak.is_active(name) for name in inactive)
    # An override switching an operator on for one question type activates its knobs.
    hopping = weak.with_values({"hop2_units": 3}, category="1")
    assert hopping.is_active("hop2_terms") and not hopping.is_active("prf_terms")
    drawn: set[str] = set()
    with RunStore(tmp_path / "m.duckdb") as store:
        for seed in range(6):
            for round_ in range(1, 6):
                for proposal in explore(_context(store, weak, [], round_=round_, seed=seed)):
                    drawn |= {edit.field for edit in proposal.edits}
        feedback = weak.with_values({"prf_units": 3})
        with_feedback = {edit.field for seed in range(6)
                         for proposal in explore(_context(store, feedback, [], seed=seed))
                         for edit in proposal.edits}
    assert drawn and not drawn & inactive
    assert {"prf_terms", "prf_weight"} & with_feedback


def test_an_active_when_naming_no_dimension_of_the_space_is_refused():
    from search_space.config import config_class
    from search_space.dimension import dimension

    knob = dimension("depth", "int", 5, "Depth.", low=1, high=9, active_when=("mode", "==", "x"))
    with pytest.raises(ValueError, match="depth.*must name a dimension"):
        config_class((knob,), "tests:NoMode")


def test_near_stays_in_range_and_steps_an_integer_when_the_region_is_narrow():
    rng = random.Random(0)
    dim = DIMENSIONS_BY_NAME["top_k"]
    dist = distributions(["top_k"], 1000)["top_k"]
    values = [near(dist, int(dim.low), 1e-6, rng) for _ in range(20)]
    assert set(values) == {int(dim.low) + 1}
    wide = [near(dist, 10, 1.0, rng) for _ in range(200)]
    assert all(dist.low <= v <= dist.high and v != 10 for v in wide)
    choice = optuna.distributions.CategoricalDistribution(("a", "b"))
    assert near(choice, "a", 0.1, rng) == "b"


def _candidate(round_, i, edits, decision, delta, ci_low):
    return {"run_id": "r", "round": round_, "candidate": i, "parent_hash": "p",
            "config_hash": f"h{round_}{i}", "proposer": "rules", "edit_json": json.dumps(edits),
            "rationale": "x", "dev_score": 0.5, "delta": delta, "ci_low": ci_low,
            "ci_high": delta + 0.1, "p_value": 0.01, "dev_questions": 10,
            "decision": decision, "reason": "x"}


def test_significant_runners_up_are_combined_on_top_of_the_winner(tmp_path, locomo):
    from benchmarks.splits import make_split

    e = lambda field, value, category=None: {"field": field, "value": value,
                                              "category": category}
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("r", "evolve", locomo, make_split(locomo), {})
        store.insert_rows("candidates", [
            _candidate(1, 0, [e("top_k", 8)], "accepted", 0.05, 0.02),
            _candidate(1, 1, [e("top_k", 8, "2")], "rejected", 0.04, 0.01),
            _candidate(1, 2, [e("bm25_k1", 1.5)], "rejected", 0.03, 0.01),
            _candidate(1, 3, [e("top_k", 12)], "rejected", 0.03, 0.01),   # same field as winner
            _candidate(1, 4, [e("mmr_lambda", 0.5)], "rejected", 0.01, -0.01),  # not significant
            _candidate(2, 0, [e("top_k", 9)], "rejected", 0.0, -0.1)])
        proposals = combined(store, "r", 1, Guard())
        assert combined(store, "r", 2, Guard()) == []
    assert all(p.proposer == COMBINER for p in proposals)
    assert [[edit.label() for edit in p.edits] for p in proposals] == [
        ["top_k[2]=8", "bm25_k1=1.5"], ["top_k[2]=8"], ["bm25_k1=1.5"]]


def test_gains_too_small_to_prove_on_the_incumbent_are_pooled_into_one_union(tmp_path, locomo):
    from benchmarks.splits import make_split

    e = lambda field, value, category=None: {"field": field, "value": value,
                                              "category": category}
    row = lambda i, edits, delta, parent="p", decision="rejected", proposer="rules": {
        **_candidate(1, i, edits, decision, delta, -0.01), "parent_hash": parent,
        "proposer": proposer}
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("r", "evolve", locomo, make_split(locomo), {})
        store.insert_rows("candidates", [
            row(0, [e("bm25_stopwords", True)], 0.006),
            row(1, [e("reranker", "ltr")], 0.011),
            row(2, [e("reranker", "none"), e("top_k", 9)], 0.008),   # reranker taken already
            row(3, [e("top_k", 12)], 0.004),                          # below the minimum effect
            row(4, [e("mmr_lambda", 0.5)], 0.02, parent="old"),       # another incumbent's
            row(5, [e("fusion", "rrf")], 0.03, decision="screened"),  # never faced the guard
            row(6, [e("session_weight", 0.4)], 0.05, proposer=POOLER)])  # a union itself
        proposals = pooled(store, "r", "p", Guard())
        assert pooled(store, "r", "old", Guard()) == []   # one gain alone is no pool
    assert [(p.proposer, [edit.label() for edit in p.edits]) for p in proposals] == [
        (POOLER, ["reranker=ltr", "bm25_stopwords=True"])]


def test_a_round_fits_the_budget_counting_screened_candidates_by_share():
    settings = EvolveSettings(max_evaluations=10, promote=2)
    proposals = list(range(6))
    state = lambda used: _State(0, None, None, 0, used, 0, 0.0, 0.0)  # type: ignore[arg-type]
    # 6 screened at 0.5 and 2 promoted at 0.5 more: 4 evaluations.
    assert _affordable(proposals, settings, state(6.0), 0.5) == proposals
    assert _affordable(proposals, settings, state(7.0), 0.5) == proposals[:4]
    assert _affordable(proposals, settings, state(8.5), 0.5) == proposals[:1]
    assert _affordable(proposals, settings, state(8.0), 0.0) == proposals[:2]


@pytest.fixture(scope="module")
def screened_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "m.duckdb"
    settings = EvolveSettings(benchmark="synthetic", workers=0, candidates=4, promote=2,
                              max_rounds=3, max_evaluations=9, seed=2)
    with RunStore(path) as store:
        outcome = evolve(store, settings)
        yield store, outcome


def test_screening_promotes_the_best_and_counts_questions(screened_run):
    store, outcome = screened_run
    dev = store.query("SELECT n_questions FROM evaluations WHERE run_id = ? AND part = 'dev' "
                      "LIMIT 1", [outcome.run_id])[0]["n_questions"]
    rows = store.query("SELECT round, candidate, decision, dev_score, dev_questions FROM "
                       "candidates WHERE run_id = ? ORDER BY round, candidate", [outcome.run_id])
    screened = [r for r in rows if r["decision"] == "screened"]
    assert screened and all(0 < r["dev_questions"] < dev for r in screened)
    for number in {r["round"] for r in rows}:
        group = [r for r in rows if r["round"] == number]
        full = [r for r in group if r["dev_questions"] == dev]
        assert len(full) == min(2, len(group))
    rounds = store.query("SELECT evaluations_used FROM rounds WHERE run_id = ? ORDER BY round",
                         [outcome.run_id])
    used = [r["evaluations_used"] for r in rounds]
    assert used == sorted(used) and used[-1] <= 9 + 1e-9
    assert outcome.evaluations == used[-1]
    # What a screened round cost: its candidates' question shares, the promoted at full weight.
    first = [r for r in rows if r["round"] == 1]
    promoted = [r for r in first if r["decision"] != "screened"]
    # The incumbent after an accepting round is the accepted candidate, with its full-dev score.
    incumbents = store.query("SELECT round, incumbent_hash, incumbent_score FROM rounds WHERE "
                             "run_id = ?", [outcome.run_id])
    after = {r["round"]: r for r in incumbents}
    accepted = store.query("SELECT round, config_hash, dev_score FROM candidates WHERE "
                           "run_id = ? AND decision = 'accepted'", [outcome.run_id])
    assert accepted
    for row in accepted:
        assert after[row["round"]]["incumbent_hash"] == row["config_hash"]
        assert after[row["round"]]["incumbent_score"] == pytest.approx(row["dev_score"])
    screen_questions = {r["dev_questions"] for r in first if r["decision"] == "screened"}
    (n_screen,) = screen_questions
    assert math.isclose(used[1] - used[0], (len(first) * n_screen + len(promoted) *
                                            (dev - n_screen)) / dev)


def test_the_area_under_the_curve_weighs_each_evaluation_by_its_cost():
    from evolve.bench.search import Trace

    trace = Trace("memevolve", 0, 4)
    trace.add("a", 0.5, 0.5)
    trace.add("b", 0.2, 0.5, 0.5)   # screened out on half of dev
    trace.add("c", 0.8, 0.8, 0.5)
    trace.add("d", 0.9, 0.9)
    assert trace.spent == 3.0
    # 0.5 x 1 + 0.5 x 0.5 + 0.8 x 0.5 + 0.9 x 1, then 0.9 for the last unspent evaluation.
    assert trace.auc == pytest.approx((0.5 + 0.25 + 0.4 + 0.9 + 0.9) / 4)
    assert trace.curve() == [0.5, 0.8, 0.9, 0.9]


def test_the_winner_may_be_any_promoted_candidate(tmp_path, monkeypatch):
    """The guard here accepts the last of the promoted candidates of every round (index 2 or more
    once screening skipped some): the incumbent must be that candidate."""
    import dataclasses

    import evolve.evolution as evolution

    real = evolution.judge_round

    def second_promoted(incumbent_rows, candidate_rows, objective, guard):
        # The round's family, judged on full dev: accept only the last promoted candidate.
        verdicts = real(incumbent_rows, candidate_rows, objective, guard)
        last = len(verdicts) - 1
        return [dataclasses.replace(v, decision="accepted" if i == last and last > 0
                                    else "rejected") for i, v in enumerate(verdicts)]

    monkeypatch.setattr(evolution, "judge_round", second_promoted)
    with RunStore(tmp_path / "m.duckdb") as store:
        outcome = evolve(store, EvolveSettings(benchmark="synthetic", workers=0, candidates=4,
                                               promote=2, max_rounds=2, seed=2))
        rows = store.query("SELECT round, candidate, config_hash, dev_score, decision FROM "
                           "candidates WHERE run_id = ? ORDER BY round, candidate",
                           [outcome.run_id])
        rounds = {r["round"]: r for r in store.query(
            "SELECT round, incumbent_hash, incumbent_score FROM rounds WHERE run_id = ?",
            [outcome.run_id])}
    accepted = [r for r in rows if r["decision"] == "accepted"]
    assert len(accepted) == 2 and any(r["candidate"] >= 2 for r in accepted)
    for row in accepted:
        assert rounds[row["round"]]["incumbent_hash"] == row["config_hash"]
        assert rounds[row["round"]]["incumbent_score"] == pytest.approx(row["dev_score"])
