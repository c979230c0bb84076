"""The budget-tier router: tiers files, logged outcomes, features, seeded REINFORCE training,
the saved policy's guards, the frontier and the CLI, on a small synthetic benchmark."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchmarks import load_benchmark
from benchmarks.splits import make_split
from evolve.cli import app
from evolve.evaluation import Evaluator
from evolve.memory.system import MemorySystem
from evolve.router.features import FEATURE_NAMES, FeatureSpecError, feature_matrix
from evolve.router.frontier import FrontierPoint, frontier, router_margin, router_quality_at
from evolve.router.model import RouterModel, RouterModelError
from evolve.router.outcomes import NoOutcomesError, load_outcomes
from evolve.router.policy import (TrainSettings, frontier_area, lambda_grid, train_policy,
                                  validation_frontier)
from evolve.router.routed import routed_evaluation
from evolve.router.training import router_data, train_router, validation_split
from evolve.store import RunStore
from search_space.config import load_preset
from search_space.dimensions import DIMENSIONS
from search_space.tiers import DEFAULT_TIERS, MODULE_FIELDS, TiersError, load_tiers

STEPS = 300


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("synthetic", conversations=6, sessions=4, turns=12, questions=15)


@pytest.fixture(scope="module")
def split(bench):
    return make_split(bench, "random", seed=0)


@pytest.fixture(scope="module")
def tiers():
    return load_tiers().select(["retrieval", "expansion"])


@pytest.fixture(scope="module")
def trained(bench, split, tiers, tmp_path_factory):
    """Outcomes logged in a fresh store and two seeds trained; the store stays open."""
    folder = tmp_path_factory.mktemp("router")
    store = RunStore(folder / "runs.duckdb")
    store.create_run("router-test", "router", bench, split, {})
    with Evaluator(bench, workers=0) as evaluator:
        model = train_router(evaluator, split, tiers, store=store, run_id="router-test",
                             objective="recall_in_context", seeds=[0, 1],
                             settings=TrainSettings(steps=STEPS))
    path = model.save(folder / "router.pt")
    yield store, model, path
    store.close()


@pytest.fixture(scope="module")
def parts(bench, split, tiers, trained):
    """Train, validation and test data as the policy sees them."""
    store, model, _ = trained
    train_convs, val_convs = validation_split(split)
    system = MemorySystem(bench.conversations, bench.questions)
    out = {}
    for name, convs in (("train", train_convs), ("val", val_convs), ("test", split.test)):
        ids = [q.id for q in bench.questions if q.conversation_id in set(convs)]
        outcomes = load_outcomes(store, tiers, bench.key, ids, "recall_in_context")
        out[name] = router_data(bench, outcomes, model.feature_spec, system, tiers.cost_weights,
                                model.cost_reference)
    return out


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiers.yaml"
    path.write_text(text)
    return path


# Tiers ------------------------------------------------------------------------------------------
def test_default_tiers_offer_three_modules_and_route_the_offline_ones(tiers):
    full = load_tiers(DEFAULT_TIERS)
    assert full.module_names == ("retrieval", "expansion", "answering")
    assert len(full.combos) == 27
    assert len(tiers.combos) == 9
    assert len({c.config_hash for c in tiers.configs()}) == 9
    assert all(c.answerer == "extractive" for c in tiers.configs())


@pytest.mark.parametrize("body, message", [
    ("modules: {reranking: {low: {}, mid: {}, high: {}}}", "unknown module 'reranking'"),
    ("modules: {retrieval: {low: {depth: 3}, mid: {}, high: {}}}",
     "module 'retrieval', tier 'low': unknown field 'depth'"),
    ("modules: {retrieval: {low: {}, mid: {context_budget: 500}, high: {}}}",
     "tier 'mid': field 'context_budget' belongs to module 'expansion'"),
    ("modules: {expansion: {low: {}, mid: {session_weight: 0.4}, high: {}}}",
     "tier 'mid': field 'session_weight' belongs to module 'retrieval'"),
    ("modules: {retrieval: {low: {}, mid: {}, high: {top_k: 500}}}",
     "tier 'high': 'top_k' must be between 1 and 50"),
    ("modules: {retrieval: {low: {}, high: {}}}", "exactly the tiers low, mid, high"),
    ("base: huge\nmodules: {retrieval: {low: {}, mid: {}, high: {}}}", "base 'huge' is not"),
    ("modules: {retrieval: {low: {}, mid: {}, high: {}}}\ncost: {gpu_hours: 1}",
     "unknown cost measure 'gpu_hours'"),
])
def test_bad_tiers_file_names_file_module_tier_and_field(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(TiersError, match=f"{path}.*{message}.*Fix"):
        load_tiers(path)


def test_every_dimension_is_routable_by_exactly_one_module(tmp_path):
    owners = [m for d in DIMENSIONS for m, fields in MODULE_FIELDS.items() if d.name in fields]
    assert len(owners) == len(DIMENSIONS)
    # An operator of the widened space is a tier patch like any other.
    path = write(tmp_path, "modules: {retrieval: {low: {}, mid: {session_weight: 0.4}, "
                           "high: {session_weight: 0.4, multi_query: both, passage_tokens: 40}}}")
    high = load_tiers(path).config((2,))
    assert (high.session_weight, high.multi_query, high.passage_tokens) == (0.4, "both", 40)


def test_llm_tier_without_answer_model_is_refused():
    full = load_tiers()
    with pytest.raises(TiersError, match="no answering model is given. Fix: pass --answer-model"):
        full.configs()
    routed = full.with_answer_model("openai/gpt-4o-mini")
    assert routed.config((0, 0, 2)).answer_model == "openai/gpt-4o-mini"
    assert routed.config((0, 0, 0)).answer_model is None


# Logged outcomes and features ----------------------------------------------------------------
def test_outcomes_are_logged_for_every_question_and_combination(bench, tiers, trained):
    store = trained[0]
    counts = store.query("""
        SELECT count(*) AS n, count(DISTINCT question_id) AS questions,
               count(DISTINCT combo) AS combos, count(DISTINCT config_hash) AS configs
        FROM router_outcomes WHERE tiers_hash = ?""", [tiers.tiers_hash])[0]
    assert counts == {"n": len(bench.questions) * 9, "questions": len(bench.questions),
                      "combos": 9, "configs": 9}


def test_high_tiers_cost_more_and_find_more_than_low(parts):
    train = parts["train"]
    low, high = train.outcomes.combos.index("LL"), train.outcomes.combos.index("HH")
    assert train.outcomes.context_tokens[:, low].mean() < train.outcomes.context_tokens[:, high].mean()
    assert train.outcomes.quality[:, low].mean() < train.outcomes.quality[:, high].mean()
    assert train.cost[:, high].mean() == pytest.approx(1.0)


def test_missing_outcomes_say_to_train_first(bench, tiers, tmp_path):
    with RunStore(tmp_path / "empty.duckdb") as store:
        with pytest.raises(NoOutcomesError, match="none logged outcomes.*router train"):
            load_outcomes(store, tiers, bench.key, [bench.questions[0].id], "recall_in_context")


def test_features_use_no_label_and_are_deterministic(bench):
    assert not any(word in name for name in FEATURE_NAMES
                   for word in ("category", "adversarial", "evidence", "answer", "gold"))
    system = MemorySystem(bench.conversations, bench.questions)
    questions = bench.questions[:10]
    relabelled = [q.model_copy(update={"category": "5", "adversarial": not q.adversarial,
                                       "answers": ("something else",), "evidence": ()})
                  for q in questions]
    first = feature_matrix(questions, system)
    assert first.shape == (10, len(FEATURE_NAMES))
    assert np.array_equal(first, feature_matrix(questions, system))
    assert np.array_equal(first, feature_matrix(relabelled, system))
    fresh = MemorySystem(bench.conversations, bench.questions)
    assert np.array_equal(first, feature_matrix(questions, fresh))


# Training -------------------------------------------------------------------------------------
def test_training_is_seeded(parts):
    settings = TrainSettings(steps=60, eval_every=30)
    a = train_policy(parts["train"].batch(), parts["val"].batch(), 2, settings)
    b = train_policy(parts["train"].batch(), parts["val"].batch(), 2, settings)
    c = train_policy(parts["train"].batch(), parts["val"].batch(), 2,
                     dataclasses.replace(settings, seed=1))
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not all(torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)


def test_checkpoint_is_selected_on_validation_not_training_reward(parts):
    result = train_policy(parts["train"].batch(), parts["val"].batch(), 2,
                          TrainSettings(steps=STEPS))
    areas = [area for _, _, area in result.history]
    assert result.val_area == max(areas)
    assert result.best_step == result.history[areas.index(max(areas))][0]


def test_choices_get_cheaper_as_lambda_grows(trained, parts):
    model = trained[1]
    val = parts["val"]
    points = validation_frontier(model.policy(), val.batch(), lambda_grid(0.01, 2.0, 9),
                                 model.lambda_min, model.lambda_max)
    costs = [cost for cost, _ in points]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(costs, costs[1:]))
    assert costs[-1] < costs[0]


def test_router_frontier_is_at_least_as_good_as_fixed_tiers(trained, parts):
    model = trained[1]
    val = parts["val"]
    max_cost = float(val.cost.mean(axis=0).max())
    fixed = [(float(val.cost[:, j].mean()), float(val.outcomes.quality[:, j].mean()))
             for j in range(val.cost.shape[1])]
    router = validation_frontier(model.policy(), val.batch(), lambda_grid(0.01, 2.0, 13),
                                 model.lambda_min, model.lambda_max)
    assert frontier_area(router, max_cost) >= 0.9 * frontier_area(fixed, max_cost)


# The saved policy -----------------------------------------------------------------------------
def test_save_load_round_trip_gives_the_same_choices(trained, parts):
    _, model, path = trained
    loaded = RouterModel.load(path)
    assert loaded.tiers_hash == model.tiers_hash and loaded.seeds == [0, 1]
    features = parts["test"].features
    for lam in (0.02, 0.3, 1.0):
        assert np.array_equal(loaded.choose(features, lam), model.choose(features, lam))


def test_policy_from_another_feature_spec_is_refused(trained, tmp_path):
    body = torch.load(trained[2], weights_only=True)
    body["feature_spec"]["names"] = body["feature_spec"]["names"][:-1] + ["question_mood"]
    torch.save(body, tmp_path / "other.pt")
    with pytest.raises(FeatureSpecError, match="another feature spec.*question_mood.*retrain"):
        RouterModel.load(tmp_path / "other.pt")


def test_lambda_outside_trained_range_is_refused(trained, parts):
    with pytest.raises(RouterModelError, match=r"lambda 5 is outside .*\[0.01, 2\]"):
        trained[1].choose(parts["test"].features, 5.0)


def test_budget_turns_into_a_lambda(trained, parts):
    model = trained[1]
    features = parts["test"].features
    assert model.lambda_for_budget(features, 1e9) == pytest.approx(model.lambda_min)
    with pytest.raises(RouterModelError, match="budget of 1 context tokens"):
        model.lambda_for_budget(features, 1)


# Frontier and routed evaluation ------------------------------------------------------------------
def test_frontier_has_router_fixed_and_oracle_points(trained, parts):
    points = frontier(trained[1], parts["test"], (0.05, 0.5))
    methods = [p.method for p in points]
    assert methods.count("router") == 2 and methods.count("fixed") == 9
    assert methods.count("oracle") == 2
    router = [p for p in points if p.method == "router"]
    oracle = [p for p in points if p.method == "oracle"]
    assert all(p.n_seeds == 2 and p.quality_ci is not None for p in router)
    for r, o in zip(router, oracle):
        assert o.quality - r.lam * o.cost >= r.quality - r.lam * r.cost - 1e-9


def test_margin_compares_router_and_fixed_at_no_greater_cost():
    def point(method, label, quality, tokens):
        return FrontierPoint(method, label, None, 1, 10, quality, None, tokens, None, None)

    cheap, dear = point("fixed", "LL", 0.4, 100.0), point("fixed", "HH", 0.8, 900.0)
    router = point("router", "0.1", 0.7, 500.0)
    points = [cheap, dear, router]
    assert router_margin(points, router) == (cheap, pytest.approx(0.3))
    assert router_margin(points, dear) == (router, pytest.approx(-0.1))
    assert router_margin(points, cheap) is None
    assert router_quality_at(points + [point("router", "1", 0.5, 100.0)], 300.0) == \
        pytest.approx(0.6)
    assert router_quality_at(points, 900.0) is None


def test_routed_evaluation_reproduces_the_logged_outcomes(bench, split, trained):
    store, model, _ = trained
    questions = split.questions(bench, "test")
    with Evaluator(bench, workers=0) as evaluator:
        result = routed_evaluation(evaluator, model, questions, lam=0.1, part="test",
                                   objective="recall_in_context")
    logged = {(r["question_id"], r["combo"]): r for r in store.query(
        "SELECT question_id, combo, recall_in_context, context_tokens FROM router_outcomes")}
    assert sum(result.combos.values()) == len(questions)
    for row in result.rows:
        log = logged[(row["question_id"], row["combo"])]
        assert (row["recall_in_context"], row["context_tokens"]) == \
            (log["recall_in_context"], log["context_tokens"])


# CLI --------------------------------------------------------------------------------------------
def test_cli_trains_evaluates_and_routes(tmp_path):
    runner = CliRunner()
    db, model = tmp_path / "runs.duckdb", tmp_path / "router.pt"
    trained = runner.invoke(app, ["router", "train", "--benchmark", "synthetic", "--seeds", "0,1",
                                  "--steps", "100", "--workers", "0", "--db", str(db),
                                  "--out", str(model)])
    assert trained.exit_code == 0, trained.output
    assert "routing retrieval, expansion (9 tier combinations" in trained.output
    evolved = tmp_path / "evolved.yaml"
    evolved.write_text(load_preset("strong").to_yaml())
    evaluated = runner.invoke(app, ["router", "eval", str(model), "--db", str(db), "--workers",
                                    "0", "--evolved", str(evolved),
                                    "--plot", str(tmp_path / "frontier.png")])
    assert evaluated.exit_code == 0, evaluated.output
    assert (tmp_path / "frontier.png").stat().st_size > 0
    routed = runner.invoke(app, ["eval", "--router", str(model), "--lambda", "0.1",
                                 "--workers", "0", "--db", str(db)])
    assert routed.exit_code == 0, routed.output
    assert "tier combinations chosen" in routed.output
    with RunStore(db, read_only=True) as store:
        rows = store.query("SELECT method, count(*) AS n FROM router_frontier GROUP BY method "
                           "ORDER BY method")
        assert rows == [{"method": "evolved", "n": 1}, {"method": "fixed", "n": 9},
                        {"method": "oracle", "n": 5}, {"method": "router", "n": 5}]
        assert store.query("SELECT seeds FROM router_models") == [{"seeds": [0, 1]}]
    out_of_range = runner.invoke(app, ["eval", "--router", str(model), "--lambda", "5",
                                       "--workers", "0", "--db", str(db)])
    assert out_of_range.exit_code == 2 and "outside the range" in out_of_range.output
    no_outcomes = runner.invoke(app, ["router", "eval", str(model), "--db",
                                      str(tmp_path / "empty.duckdb")])
    assert no_outcomes.exit_code == 2 and "router train" in no_outcomes.output


def test_cli_lambda_without_router_is_refused():
    result = CliRunner().invoke(app, ["eval", "--lambda", "0.1", "--workers", "0"])
    assert result.exit_code == 2 and "--router" in result.output


@pytest.mark.slow
def test_locomo_budgetmem_trains_on_0_to_5_validates_on_6_7_and_features_are_finite(locomo):
    split = make_split(locomo, "budgetmem")
    train, val = validation_split(split)
    ids = [c.id for c in locomo.conversations]
    assert (train, val, list(split.test)) == (ids[:6], ids[6:8], ids[8:])
    questions = [q for q in locomo.questions if q.conversation_id == ids[8]]
    system = MemorySystem([locomo.conversations[8]], questions)
    features = feature_matrix(questions, system)
    assert features.shape == (len(questions), len(FEATURE_NAMES))
    assert np.isfinite(features).all()
