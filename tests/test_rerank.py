"""The learned reranker: trained on the dev evidence only, when evaluation first needs it, cached by
what its training reads, carried to the Ray actors, into the store and into exported files, and
refused on the questions it was trained on."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from benchmarks import load_benchmark
from benchmarks.errors import MemevolveError
from benchmarks.splits import make_split
from evolve.evaluation import Evaluator, evaluate_configs
from evolve.evolution import EvolveSettings, evolve
from evolve.memory import rerank
from evolve.question_types import train_on_split
from evolve.store import RunStore
from search_space.artefacts import artefact_hash
from search_space.config import RetrievalConfig, load_config

SYNTHETIC = dict(conversations=8, sessions=3, turns=10, questions=6)


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("synthetic", **SYNTHETIC)


@pytest.fixture(scope="module")
def split(benchmark):
    return make_split(benchmark, "random", seed=0, test_fraction=0.25)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def config(benchmark, split) -> RetrievalConfig:
    """BM25 (no embeddings: fast) with the reranker, routed by the split's dev predictor."""
    predictor = train_on_split(benchmark, split)
    key = artefact_hash(predictor)
    return RetrievalConfig(top_k=20, reranker="ltr", rerank_depth=20,
                           question_types=key).model_copy(update={"artefacts": {key: predictor}})


def _ids(benchmark, split, part: str) -> list[str]:
    return [q.id for q in split.questions(benchmark, part)]


def _models(store: RunStore) -> list[dict]:
    return store.artefacts_of_kind(rerank.KIND)


def test_the_model_is_trained_once_per_setting_its_features_read(benchmark, split, config,
                                                                 tmp_path):
    dev = _ids(benchmark, split, "dev")
    with RunStore(tmp_path / "m.duckdb") as store, Evaluator(benchmark, workers=0) as evaluator:
        evaluate_configs(evaluator, [config], dev, part="dev", objective="recall_in_context",
                         store=store)
        (model,) = _models(store)
        assert model["question_ids"] == sorted(dev)
        # top_k and the budget act after reranking: the same model serves them.
        evaluate_configs(evaluator, [config.with_values({"top_k": 10, "context_budget": 500})],
                         dev, part="dev", objective="recall_in_context", store=store)
        assert len(_models(store)) == 1
        # BM25's k1 changes every candidate's features: a model of its own.
        evaluate_configs(evaluator, [config.with_values({"bm25_k1": 0.8})], dev, part="dev",
                         objective="recall_in_context", store=store)
        assert len(_models(store)) == 2


def test_training_is_deterministic_and_cross_fitted_by_conversation(benchmark, split, config):
    dev = _ids(benchmark, split, "dev")
    bodies = []
    for _ in range(2):
        with Evaluator(benchmark, workers=0) as evaluator:
            evaluate_configs(evaluator, [config], dev, part="dev", objective="recall_in_context")
            bodies.append(next(b for b in evaluator.artefacts.values()
                               if b["kind"] == rerank.KIND))
    assert artefact_hash(bodies[0]) == artefact_hash(bodies[1])
    dev_conversations = {q.conversation_id for q in split.questions(benchmark, "dev")}
    folds = [set(f["conversations"]) for f in bodies[0]["folds"]]
    assert len(folds) == rerank.FOLDS and set().union(*folds) == dev_conversations
    assert sum(len(f) for f in folds) == len(dev_conversations)


def test_a_test_evaluation_of_the_dev_questions_is_refused(benchmark, split, config):
    # The reranker learns from its predictor's questions, so the predictor's check fires first.
    with Evaluator(benchmark, workers=0) as evaluator, \
            pytest.raises(MemevolveError, match="was trained on 5 of the questions .* leak"):
        evaluate_configs(evaluator, [config], _ids(benchmark, split, "dev")[:5], part="test",
                         objective="recall_in_context")


def test_without_a_dev_predictor_the_error_names_the_fix(benchmark, split):
    config = RetrievalConfig(reranker="ltr")
    with Evaluator(benchmark, workers=0) as evaluator, \
            pytest.raises(MemevolveError, match="names no question-type predictor"):
        evaluate_configs(evaluator, [config], _ids(benchmark, split, "dev"), part="dev",
                         objective="recall_in_context")


def test_a_run_with_the_reranker_exports_it_and_the_file_reranks_without_training(
        benchmark, split, tmp_path, monkeypatch):
    start = tmp_path / "start.yaml"
    start.write_text(yaml.safe_dump({"top_k": 20, "reranker": "ltr", "rerank_depth": 20}))
    with RunStore(tmp_path / "m.duckdb") as store:
        outcome = evolve(store, EvolveSettings(benchmark="synthetic", benchmark_options=SYNTHETIC,
                                               split="random", workers=0, max_rounds=1,
                                               config_path=str(start)))
        path = store.export_config(outcome.run_id, tmp_path / "tuned.yaml")
    loaded = load_config(path)
    assert [b["kind"] for b in loaded.artefacts.values()].count(rerank.KIND) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the exported model was retrained")

    monkeypatch.setattr(rerank, "train_body", no_training)
    with Evaluator(benchmark, workers=0) as evaluator:
        result = evaluate_configs(evaluator, [loaded], _ids(benchmark, split, "test"),
                                  part="test", objective="recall_in_context")[0]
    assert [r["retrieved_ids"] for r in result.rows] == \
        [r["retrieved_ids"] for r in outcome.test_best.rows]


@pytest.mark.slow
def test_ray_actors_train_and_rerank_as_the_driver_does(benchmark, split, config):
    dev = _ids(benchmark, split, "dev")
    plain = config.with_values({"reranker": "none"})
    with Evaluator(benchmark, workers=0) as local:
        expected, fused = (r.rows for r in evaluate_configs(
            local, [config, plain], dev, part="dev", objective="recall_in_context"))
    with Evaluator(benchmark, workers=2) as actors:
        got = evaluate_configs(actors, [config], dev, part="dev",
                               objective="recall_in_context")[0].rows
    assert [r["retrieved_ids"] for r in got] == [r["retrieved_ids"] for r in expected]
    assert [r["retrieved_ids"] for r in got] != [r["retrieved_ids"] for r in fused]


def test_the_fits_run_side_by_side_give_the_models_each_gives_alone(benchmark, split, config):
    dev, groups, body = _trained(benchmark, split, config)
    groups = sorted(groups, key=lambda g: g[0])
    assert body["model"] is None and len(body["folds"]) == rerank.FOLDS
    for fold in body["folds"]:
        kept = [g for g in groups if g[1] not in fold["conversations"]]
        assert fold["model"] == rerank._fit(kept)


def test_an_entity_counts_once_per_unit_that_holds_it_and_never_across_two():
    texts = ["anna met anna in paris", "to paris", "ann", "a", "paris, anna"]
    entities = ["anna", "paris", "anna in", "na", "ann a"]
    expected = [sum(e in t for e in entities) for t in texts]
    assert rerank._entity_counts(texts, entities).tolist() == expected == [4, 1, 0, 0, 3]


def test_batched_scoring_ranks_as_one_question_at_a_time_and_charges_each_its_own_time(
        benchmark, split, config, monkeypatch):
    import time

    from evolve.memory import system as memory_system
    from evolve.memory.system import MemorySystem

    with Evaluator(benchmark, workers=0) as evaluator:
        evaluate_configs(evaluator, [config], _ids(benchmark, split, "dev"), part="dev",
                         objective="recall_in_context")
        artefacts = dict(evaluator.artefacts)
    system = MemorySystem(benchmark.conversations, benchmark.questions, artefacts=artefacts)
    test = _ids(benchmark, split, "test")
    # Every conversation's questions interleaved: each batch holds several conversations,
    # scored by different models (a dev conversation's by the fold that never saw it).
    by_conversation: dict[str, list] = {}
    for qid in _ids(benchmark, split, "dev") + test:
        question = system.questions[qid]
        by_conversation.setdefault(question.conversation_id, []).append(question)
    questions = [q for rank in zip(*by_conversation.values()) for q in rank]
    alone = [system.context(q, config) for q in questions]
    monkeypatch.setattr(memory_system, "RERANK_BATCH", 5)
    batched = [context for context, _ in system._contexts(questions, config)]
    assert [c.ranked_ids for c in batched] == [c.ranked_ids for c in alone]
    assert [c.ids for c in batched] == [c.ids for c in alone]
    fused = [system.context(q, config.with_values({"reranker": "none"})) for q in questions]
    assert [c.ranked_ids for c in batched] != [c.ranked_ids for c in fused]
    # Each question's latency is its own work, not the shard's up to its answer.
    began = time.perf_counter()
    rows, _ = system.evaluate(config, test)
    wall = time.perf_counter() - began
    latencies = [r["latency_ms"] / 1000.0 for r in rows]
    assert all(s > 0 for s in latencies) and sum(latencies) <= wall


def test_a_config_that_changes_only_what_follows_ranking_reuses_the_kept_rankings(
        benchmark, split, config, monkeypatch):
    from evolve.memory.system import MemorySystem

    after = config.with_values({"top_k": 3, "context_budget": 300, "span_packing": True,
                                "neighbor_expansion": 1})
    other_bm25 = config.with_values({"bm25_k1": 0.6})
    with Evaluator(benchmark, workers=0) as evaluator:
        # Trains the two models (BM25's k1 changes the reranker's features).
        evaluate_configs(evaluator, [config, other_bm25], _ids(benchmark, split, "dev"),
                         part="dev", objective="recall_in_context")
        artefacts = dict(evaluator.artefacts)
    test = _ids(benchmark, split, "test")

    def fresh(cfg):
        system = MemorySystem(benchmark.conversations, benchmark.questions,
                              artefacts=artefacts)
        return [{k: v for k, v in r.items() if k != "latency_ms"}
                for r in system.evaluate(cfg, test)[0]]

    expected_after, expected_bm25 = fresh(after), fresh(other_bm25)
    system = MemorySystem(benchmark.conversations, benchmark.questions, artefacts=artefacts)
    system.evaluate(config, test)
    ranked = []
    real = MemorySystem._fused_ranking
    monkeypatch.setattr(MemorySystem, "_fused_ranking",
                        lambda self, q, cfg: ranked.append(q.id) or real(self, q, cfg))

    def rows(cfg):
        return [{k: v for k, v in r.items() if k != "latency_ms"}
                for r in system.evaluate(cfg, test)[0]]

    assert rows(after) == expected_after and ranked == []
    # BM25's k1 changes the ranking: every question is ranked again.
    assert rows(other_bm25) == expected_bm25 and sorted(ranked) == sorted(test)
    # A conversation that grows has other units: its old rankings are gone.
    ranked.clear()
    system.add_conversation(benchmark.conversations[0])
    rows(config)
    assert sorted(ranked) == sorted(test)


def test_a_conversation_outside_every_fold_is_ranked_by_the_folds_mean(benchmark, split, config):
    dev, groups, body = _trained(benchmark, split, config)
    model = rerank.RerankModel(body)
    features, conversation = groups[0][2], groups[0][1]
    import lightgbm

    each = [lightgbm.Booster(model_str=f["model"]).predict(features, num_threads=1)
            for f in body["folds"]]
    (own,) = [p for p, f in zip(each, body["folds"]) if conversation in f["conversations"]]
    assert model.predict(features, conversation).tolist() == own.tolist()
    assert np.allclose(model.predict(features, "a conversation of no fold"), np.mean(each, axis=0))
    # Fewer conversations than folds: one model of them all ranks every question.
    few = [g for g in groups if g[1] == conversation]
    alone = rerank.train_body(few, key="k", fields_key="f", trained_on=None, question_ids=dev)
    assert alone["folds"] == [] and alone["model"] == rerank._fit(sorted(few, key=lambda g: g[0]))


def _trained(benchmark, split, config):
    """(dev ids, the training groups of the dev questions, the body trained on them)."""
    dev = _ids(benchmark, split, "dev")
    with Evaluator(benchmark, workers=0) as evaluator:
        evaluator.add_artefacts(config.artefacts)
        [groups] = evaluator.on_shards(rerank.collect_training_rows, config.canonical_json(), dev)
    return dev, groups, rerank.train_body(groups, key="k", fields_key="f", trained_on=None,
                                          question_ids=dev)
