"""A short real evolution diagnosed by a real local LLM (SmolLM2-135M): the loop's bookkeeping
and invariants, never the quality of the model's advice."""
from __future__ import annotations


import pytest

from evolve.evolution import EvolveSettings, evolve
from evolve.store import RunStore

# One evolution round of multi-thousand-token prompts on a CPU: minutes on a busy 2-core box.
pytestmark = [pytest.mark.llm, pytest.mark.slow, pytest.mark.timeout(900)]

SYNTHETIC = {"conversations": 3, "sessions": 3, "turns": 10, "questions": 10}
MAX_CONTEXT_TOKENS = 1000


@pytest.fixture(scope="module")
def evolution(local_llm_server, tmp_path_factory):
    """One round of evolution (each prompt is thousands of tokens on a CPU); the tests read its
    store."""
    root = tmp_path_factory.mktemp("evolution")
    # A slow CPU takes minutes over a first prompt: wait rather than retry. A short reply keeps
    # the test quick; a truncated one is a valid outcome (repair, then fallback to rules).
    model = local_llm_server.settings.model_dump(mode="json") | {
        "api_key": "sk-local", "timeout_s": 600.0, "max_retries": 0, "max_tokens": 128}
    settings = EvolveSettings(benchmark="synthetic", benchmark_options=SYNTHETIC,
                              diagnoser="llm", diagnoser_model=model, max_rounds=1, candidates=2,
                              max_context_tokens=MAX_CONTEXT_TOKENS, workers=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMEVOLVE_CACHE_DIR", str(root / "cache"))
        with RunStore(root / "runs.duckdb") as store:
            outcome = evolve(store, settings)
            yield outcome, store


def rounds(store: RunStore, run_id: str) -> list[dict]:
    return store.query("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", [run_id])


def test_the_run_finishes(evolution):
    outcome, store = evolution
    assert outcome.status in ("budget_spent", "converged")
    assert store.run(outcome.run_id)["status"] == outcome.status
    assert outcome.test_best is not None


def test_diagnoser_calls_are_recorded_and_counted(evolution):
    outcome, store = evolution
    [calls] = store.query("SELECT count(*) AS n, sum(prompt_tokens + completion_tokens) AS tokens "
                          "FROM llm_calls WHERE run_id = ? AND purpose = 'diagnose'",
                          [outcome.run_id])
    assert calls["n"] >= 2 and calls["tokens"] > 0
    # The extractive answerer calls no LLM, so the diagnoser's tokens are the run's tokens.
    assert rounds(store, outcome.run_id)[-1]["tokens_used"] == calls["tokens"]


def test_every_reply_became_candidates_or_a_recorded_reason(evolution):
    outcome, store = evolution
    for row in rounds(store, outcome.run_id):
        if row["mode"] not in ("diagnose", "explore"):
            continue
        from_llm = store.query("SELECT count(*) AS n FROM candidates WHERE run_id = ? AND "
                               "round = ? AND proposer = 'llm'", [outcome.run_id, row["round"]])
        assert from_llm[0]["n"] > 0 or "llm " in row["reason"], row


def test_llm_candidates_lie_in_the_space_within_the_cap(evolution):
    outcome, store = evolution
    for row in store.query("SELECT config_hash FROM candidates WHERE run_id = ? AND "
                           "proposer = 'llm'", [outcome.run_id]):
        config = store.config(row["config_hash"])
        budgets = [config.context_budget] + [o.get("context_budget", 0)
                                             for o in config.overrides.values()]
        assert max(budgets) <= MAX_CONTEXT_TOKENS


def test_incumbent_changes_only_on_accept(evolution):
    outcome, store = evolution
    history = rounds(store, outcome.run_id)
    for before, after in zip(history, history[1:]):
        if after["incumbent_hash"] == before["incumbent_hash"]:
            continue
        assert after["decision"] == "accept", after
        accepted = store.query("SELECT config_hash, parent_hash FROM candidates WHERE run_id = ? "
                               "AND round = ? AND decision = 'accepted'",
                               [outcome.run_id, after["round"]])
        assert accepted == [{"config_hash": after["incumbent_hash"],
                             "parent_hash": before["incumbent_hash"]}]
