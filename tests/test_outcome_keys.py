"""Stored outcomes are reused only in the context they were computed in, a judge failure makes a
question invalid instead of killing its shard, and the answering model has one source."""
from __future__ import annotations

import pytest

from benchmarks import load_benchmark
from benchmarks.errors import MemevolveError
from evolve.evaluation import ENGINE_VERSION, outcome_context_key
from evolve.memory.system import EmbedderSpec, LLMSpec, MemorySystem
from search_space.config import load_preset

SYNTHETIC = dict(conversations=2, sessions=3, turns=10, questions=4)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path / "cache"))


def test_the_context_key_holds_engine_judge_and_reply_settings(monkeypatch):
    base = outcome_context_key(EmbedderSpec(), LLMSpec())
    judged = outcome_context_key(EmbedderSpec(), LLMSpec(judge={"model": "openai/a"}))
    other_judge = outcome_context_key(EmbedderSpec(), LLMSpec(judge={"model": "openai/b"}))
    warmer = outcome_context_key(EmbedderSpec(), LLMSpec(judge={"model": "openai/a",
                                                                "temperature": 0.7}))
    assert len({base, judged, other_judge, warmer}) == 4
    # Where a server listens changes no reply: the key ignores it.
    assert judged == outcome_context_key(EmbedderSpec(), LLMSpec(
        judge={"model": "openai/a", "api_base": "http://127.0.0.1:1234/v1"}))
    monkeypatch.setattr("evolve.evaluation.ENGINE_VERSION", ENGINE_VERSION + "x")
    assert outcome_context_key(EmbedderSpec(), LLMSpec()) != base


def test_a_judge_that_cannot_be_reached_makes_the_question_invalid():
    benchmark = load_benchmark("synthetic", **SYNTHETIC)
    judge = {"model": "openai/nothing-listens", "api_base": "http://127.0.0.1:9/v1",
             "api_key": "sk-none", "max_retries": 0, "timeout_s": 2.0}
    system = MemorySystem(benchmark.conversations, benchmark.questions,
                          llm=LLMSpec(judge=judge))
    rows, calls = system.evaluate(load_preset("weak"), [benchmark.questions[0].id])
    assert rows[0]["invalid_reason"].startswith("judge unavailable")
    assert rows[0]["judge_correct"] is None and rows[0]["answer_f1"] is None
    assert calls and not calls[0]["ok"]


def test_a_config_files_answer_model_is_not_overridden_silently(tmp_path):
    from evolve.cli import _config

    path = tmp_path / "tuned.yaml"
    path.write_text("answerer: llm\nanswer_model: openai/file-model\n")
    assert _config(path, None, None).answer_model == "openai/file-model"
    assert _config(path, None, "openai/file-model").answer_model == "openai/file-model"
    with pytest.raises(MemevolveError, match="names answer_model 'openai/file-model'"):
        _config(path, None, "openai/other")
