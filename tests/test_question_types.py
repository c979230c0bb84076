"""The question-type predictor: trained on dev only, a content-addressed artefact of the config,
and the only thing that may choose per-type overrides (gold routing is an explicit oracle)."""
from __future__ import annotations

import pytest

from benchmarks import load_benchmark
from benchmarks.errors import MemevolveError
from benchmarks.model import Question
from benchmarks.splits import make_split
from evolve.evaluation import Evaluator, evaluate_configs, mean_score
from evolve.evolution import EvolveSettings, evolve
from evolve.memory.system import MemorySystem
from evolve.question_types import (QuestionTypePredictor, accuracy_by_category, train_body,
                                   train_on_split)
from evolve.store import RunStore
from search_space.artefacts import artefact_hash
from search_space.config import (ORACLE_GOLD_CATEGORIES, ConfigError, RetrievalConfig,
                                 load_config, load_preset)

SYNTHETIC = dict(conversations=4, sessions=3, turns=10, questions=12)


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("synthetic", **SYNTHETIC)


@pytest.fixture(scope="module")
def split(benchmark):
    return make_split(benchmark, "random", seed=0, test_fraction=0.25)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path / "cache"))


def _question(qid: str, text: str, category: str) -> Question:
    return Question(id=qid, conversation_id="c", text=text, category=category)


def test_the_predictor_learns_types_from_the_text_alone():
    train = [_question(f"w{i}", f"When did {name} go to the {place}?", "2")
             for i, (name, place) in enumerate([("Ann", "park"), ("Bo", "gym"), ("Cy", "zoo")])]
    train += [_question(f"h{i}", f"What does {name} like about {thing}?", "4")
              for i, (name, thing) in enumerate([("Ann", "jazz"), ("Bo", "tea"), ("Cy", "art")])]
    predictor = QuestionTypePredictor(train_body(train))
    assert predictor.predict(["When did Dee go to the museum?",
                              "What does Dee like about cats?"]) == ["2", "4"]


def test_training_is_deterministic_and_only_reads_the_dev_part(benchmark, split):
    body = train_on_split(benchmark, split)
    assert artefact_hash(body) == artefact_hash(train_on_split(benchmark, split))
    dev = {q.id for q in split.questions(benchmark, "dev")}
    assert set(body["question_ids"]) == dev
    assert not dev & {q.id for q in split.questions(benchmark, "test")}


def test_accuracy_is_reported_per_gold_category():
    rows = [{"category": "1", "question_type": "1"}, {"category": "1", "question_type": "4"},
            {"category": "5", "question_type": "5"}, {"category": "5", "question_type": None}]
    assert accuracy_by_category(rows) == [("1", 2, 0.5), ("5", 1, 1.0), ("all", 3, 2 / 3)]


def test_overrides_follow_the_predicted_type_not_the_gold_category(benchmark):
    adversarial = next(q for q in benchmark.questions if q.category == "5")
    # A predictor that has only ever seen type "4" predicts it for every question.
    body = train_body([_question("t", "anything", "4")])
    config = load_preset("weak").with_values({"top_k": 1}, category="5").model_copy(
        update={"question_types": artefact_hash(body)})
    system = MemorySystem(benchmark.conversations, benchmark.questions,
                          artefacts={artefact_hash(body): body})
    (row,), _ = system.evaluate(config, [adversarial.id])
    assert row["question_type"] == "4" and len(row["retrieved_ids"]) > 0
    assert len(row["context_ids"]) > 1          # top_k 5, not the category-5 override's 1


def test_gold_routing_is_refused_unless_asked_for_by_name(benchmark):
    config = load_preset("weak").with_values({"top_k": 1}, category="5").model_copy(
        update={"question_types": ORACLE_GOLD_CATEGORIES})
    adversarial = next(q for q in benchmark.questions if q.category == "5")
    with pytest.raises(MemevolveError, match="--oracle-gold-categories"):
        MemorySystem(benchmark.conversations, benchmark.questions).evaluate(config,
                                                                            [adversarial.id])
    oracle = MemorySystem(benchmark.conversations, benchmark.questions,
                          oracle_gold_categories=True)
    (row,), _ = oracle.evaluate(config, [adversarial.id])
    assert row["question_type"] == "5" and len(row["context_ids"]) == 1


def test_overrides_without_a_predictor_are_refused(benchmark):
    config = load_preset("weak").with_values({"top_k": 1}, category="5")
    with Evaluator(benchmark, workers=0) as evaluator, \
            pytest.raises(MemevolveError, match="no question-type predictor"):
        evaluate_configs(evaluator, [config], [benchmark.questions[0].id], part="dev",
                         objective="recall_in_context")


def test_a_predictor_trained_on_test_questions_is_refused_on_test(benchmark, split):
    test = split.questions(benchmark, "test")
    body = train_body(test)
    config = load_preset("weak").model_copy(update={"question_types": artefact_hash(body),
                                                    "artefacts": {artefact_hash(body): body}})
    with Evaluator(benchmark, workers=0) as evaluator, \
            pytest.raises(MemevolveError, match="would leak their labels"):
        evaluate_configs(evaluator, [config], [q.id for q in test], part="test",
                         objective="recall_in_context")


def test_export_embeds_the_predictor_and_a_tampered_one_is_refused(benchmark, split, tmp_path):
    with RunStore(tmp_path / "m.duckdb") as store:
        outcome = evolve(store, EvolveSettings(benchmark="synthetic", benchmark_options=SYNTHETIC,
                                               split="random", workers=0, max_rounds=1))
        path = store.export_config(outcome.run_id, tmp_path / "tuned.yaml")
        types = outcome.start.config.question_types
        assert store.artefact(types) == train_on_split(benchmark, split)
    loaded = load_config(path)
    assert loaded.question_types == types and set(loaded.artefacts) == {types}
    # The file evaluates in a fresh store: it carries its predictor.
    with RunStore(tmp_path / "other.duckdb") as other, Evaluator(benchmark, workers=0) as ev:
        result = evaluate_configs(ev, [loaded], [q.id for q in split.questions(benchmark,
                                                                              "test")],
                                  part="test", objective="recall_in_context")[0]
        assert all(r["question_type"] is not None for r in result.rows)
        assert other.artefact(types) is None
    path.write_text(path.read_text().replace("labels:", "labels:\n    - '9'", 1))
    with pytest.raises(ConfigError, match="does not match its content hash"):
        load_config(path)


def test_a_run_routes_every_candidate_by_its_dev_predictor(benchmark, tmp_path):
    with RunStore(tmp_path / "m.duckdb") as store:
        outcome = evolve(store, EvolveSettings(benchmark="synthetic", benchmark_options=SYNTHETIC,
                                               split="random", workers=0, max_rounds=2))
        hashes = {r["config_hash"] for r in store.query(
            "SELECT config_hash FROM candidates WHERE run_id = ?", [outcome.run_id])}
        types = {store.config(h).question_types for h in hashes}
    assert types == {outcome.start.config.question_types} and None not in types
    assert all(r["question_type"] is not None for r in outcome.test_best.rows)


def test_the_headline_leaves_adversarial_questions_out():
    rows = [{"question_id": "a", "adversarial": False, "recall_in_context": 0.5,
             "invalid_reason": None},
            {"question_id": "b", "adversarial": True, "recall_in_context": 1.0,
             "invalid_reason": None}]
    assert mean_score(rows, "recall_in_context") == 0.5
    assert mean_score(rows, "recall_in_context", adversarial=True) == 1.0


def test_a_config_names_its_predictor_by_a_string():
    with pytest.raises(ConfigError, match="question_types"):
        RetrievalConfig.model_validate({"question_types": 3})
