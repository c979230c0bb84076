"""The LLM diagnoser's prompt, parsing, validation and fallback, on a real store of a real tiny
evaluation; only the provider's replies are scripted (litellm's mock_response)."""
from __future__ import annotations

import json
import shutil

import litellm
import pytest

from benchmarks import load_benchmark
from benchmarks.errors import MemevolveError
from benchmarks.splits import make_split
from evolve.diagnosers import DIAGNOSERS
from evolve.diagnosers.base import Attempt, DiagnosisContext, Edit
from evolve.diagnosers.llm import (LARGE, SMALL, LLMDiagnoser, diagnosis_messages, prompt_size,
                                   stratified_sample, structured_output)
from evolve.diagnosers.rules import RulesDiagnoser, failure_buckets
from evolve.evaluation import Evaluator, evaluate_configs
from evolve.evolution import EvolveSettings, evolve
from evolve.memory.units import unit_text
from evolve.store import RunStore
from search_space.config import load_preset
from search_space.dimensions import DIMENSIONS_BY_NAME, space_documentation

RUN_ID = "diagnose-test"
SYNTHETIC = {"conversations": 3, "sessions": 3, "turns": 10, "questions": 10}
MODEL = {"model": "openai/smollm2", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-test",
         "max_retries": 1, "backoff_s": 0.001}
HISTORY = [Attempt(1, "rules", json.dumps([{"field": "top_k", "value": 8, "category": None}]),
                   0.0125, "rejected")]



def reply(*proposals: dict, new_dimensions: list[dict] | None = None) -> str:
    return json.dumps({"proposals": list(proposals), "new_dimensions": new_dimensions or []})


def proposal(*edits: tuple, rationale: str = "gold evidence ranked below the cut") -> dict:
    return {"edits": [{"field": f, "value": v, "category": c} for f, v, c in edits],
            "rationale": rationale}


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("synthetic", **SYNTHETIC)


@pytest.fixture(scope="module")
def evaluated_db(benchmark, tmp_path_factory):
    """A store holding a real evaluation of the weak preset (top_k 3) on every question, routed
    by a question-type predictor as in a run."""
    from evolve.question_types import train_on_split

    path = tmp_path_factory.mktemp("store") / "runs.duckdb"
    split = make_split(benchmark, "all")
    with RunStore(path) as store, Evaluator(benchmark, workers=0) as evaluator:
        types = store.put_artefact(train_on_split(benchmark, split))
        config = load_preset("weak").with_values({"top_k": 3}).model_copy(
            update={"question_types": types})
        store.create_run(RUN_ID, "evolve", benchmark, split, {})
        evaluate_configs(evaluator, [config], [q.id for q in benchmark.questions], part="dev",
                         objective="recall_in_context", store=store, run_id=RUN_ID)
    return path, config


@pytest.fixture
def store(evaluated_db, tmp_path):
    copy = tmp_path / "runs.duckdb"
    shutil.copy(evaluated_db[0], copy)
    with RunStore(copy) as opened:
        yield opened


@pytest.fixture
def make_context(store, benchmark, evaluated_db):
    def make(**overrides) -> DiagnosisContext:
        fields = dict(store=store, run_id=RUN_ID, round=2, incumbent=evaluated_db[1],
                      benchmark_key=benchmark.key,
                      question_ids=[q.id for q in benchmark.questions],
                      objective="recall_in_context", max_context_tokens=1000,
                      history=list(HISTORY), seed=0, n_proposals=3,
                      describe_units=lambda conv, ids: [
                          unit_text(benchmark.conversation_by_id[conv], i) for i in ids])
        return DiagnosisContext(**{**fields, **overrides})
    return make


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr("evolve.llm.time.sleep", lambda s: None)


@pytest.fixture
def diagnoser(cache_dir) -> LLMDiagnoser:
    return LLMDiagnoser(MODEL)


def prompt(context: DiagnosisContext) -> str:
    return "\n".join(m["content"] for m in diagnosis_messages(context))


def sampled(context: DiagnosisContext) -> list[str]:
    return [line for line in prompt(context).splitlines() if line.startswith("### ")]


def diagnose_calls(store: RunStore) -> list[dict]:
    return store.query("SELECT * FROM llm_calls WHERE run_id = ? AND purpose = 'diagnose'",
                       [RUN_ID])


# --- registration and construction -------------------------------------------------------------

def test_registered_under_its_name():
    assert DIAGNOSERS["llm"] is LLMDiagnoser


def test_without_a_model_it_says_how_to_give_one():
    with pytest.raises(MemevolveError, match="Fix: set diagnoser_model"):
        LLMDiagnoser(None)


# --- parsing and validation --------------------------------------------------------------------

def test_valid_reply_becomes_validated_proposals(provider, diagnoser, make_context):
    provider.replies = [reply(proposal(("top_k", 8, None)),
                              proposal(("include_dates", True, "2"), ("temporal_cues", True, "2"),
                                       rationale="temporal questions miss their dates"))]
    context = make_context()
    proposals = diagnoser.propose(context)
    assert [p.edits for p in proposals] == [
        (Edit("top_k", 8),),
        (Edit("include_dates", True, "2"), Edit("temporal_cues", True, "2"))]
    assert [p.proposer for p in proposals] == ["llm", "llm"]
    assert proposals[1].rationale == "temporal questions miss their dates"
    assert all(context.admissible(p) is not None for p in proposals)
    assert context.notes == [] and context.new_dimensions == []


def test_a_json_object_without_proposals_is_sent_back_for_repair(provider, diagnoser,
                                                                 make_context):
    provider.replies = ['{"answer": "raise top_k"}', reply(proposal(("top_k", 8, None)))]
    proposals = diagnoser.propose(make_context())
    assert len(provider.requests) == 2 and [p.edits for p in proposals] == [(Edit("top_k", 8),)]
    assert "proposals" in provider.requests[1]["messages"][-1]["content"]


def test_values_are_normalised_to_the_dimension_type(provider, diagnoser, make_context):
    provider.replies = [reply(proposal(("top_k", 8.0, None), ("bm25_b", 1, None)))]
    [only] = diagnoser.propose(make_context())
    assert only.edits == (Edit("top_k", 8), Edit("bm25_b", 1.0))
    assert isinstance(only.edits[0].value, int) and isinstance(only.edits[1].value, float)


def test_unknown_field_is_rejected_with_a_note(provider, diagnoser, make_context):
    provider.replies = [reply(proposal(("foo", 1, None)), proposal(("top_k", 8, None)))]
    context = make_context()
    proposals = diagnoser.propose(context)
    assert [p.edits for p in proposals] == [(Edit("top_k", 8),)]
    assert context.notes == ["llm proposal 1 rejected: unknown field 'foo'"]


def test_out_of_range_value_is_rejected_with_a_note(provider, diagnoser, make_context):
    provider.replies = [reply(proposal(("top_k", 99, None)))]
    context = make_context()
    assert diagnoser.propose(context) == []
    assert context.notes == ["llm proposal 1 rejected: 'top_k' must be between 1 and 50, got 99"]


@pytest.mark.parametrize("edits, why", [
    ([("context_budget", 4000, None)], "context_budget 4000 exceeds the cap of 1000 tokens"),
    ([("bm25_b", 0.5, "2")], "'bm25_b' is global and cannot be overridden per category"),
    ([("top_k", 4, "9")], "unknown category '9' (known: 1, 2, 3, 4, 5)"),
    ([("top_k", 3, None)], "changes nothing"),
    ([("answerer", "llm", None)], "'answerer' is chosen by the user, not tuned"),
    ([("answer_style", "reasoned", "2")], "answer_style only matters with answerer=llm"),
    ([("top_k", 4, None), ("top_k", 5, "1"), ("top_k", 6, "2"), ("top_k", 7, "3")],
     "4 edits (1 to 3 allowed)"),
    ([], "0 edits (1 to 3 allowed)"),
])
def test_inadmissible_proposal_is_rejected_saying_why(provider, diagnoser, make_context, edits,
                                                       why):
    provider.replies = [reply(proposal(*edits))]
    context = make_context()
    assert diagnoser.propose(context) == []
    assert context.notes == [f"llm proposal 1 rejected: {why}"]


def test_already_tried_config_is_rejected(provider, diagnoser, make_context, evaluated_db):
    tried = evaluated_db[1].with_values({"top_k": 8}).config_hash
    provider.replies = [reply(proposal(("top_k", 8, None)))]
    context = make_context(tried_hashes={tried})
    assert diagnoser.propose(context) == []
    assert context.notes == ["llm proposal 1 rejected: that config was already tried"]


def test_duplicate_proposals_keep_the_first(provider, diagnoser, make_context):
    provider.replies = [reply(proposal(("top_k", 8, None)), proposal(("top_k", 8, None)))]
    context = make_context()
    assert len(diagnoser.propose(context)) == 1
    assert context.notes == ["llm proposal 2 rejected: same config as proposal 1"]


def test_no_more_than_the_proposals_asked_for(provider, diagnoser, make_context):
    provider.replies = [reply(*(proposal(("top_k", k, None)) for k in (6, 7, 8)))]
    context = make_context(n_proposals=2)
    assert len(diagnoser.propose(context)) == 2
    assert context.notes == ["llm proposals 3-3 ignored: only 2 asked for"]


def test_new_dimensions_are_recorded_not_executed(provider, diagnoser, make_context):
    wanted = {"name": "recency_decay", "description": "Down-weight units from older sessions.",
              "rationale": "temporal questions retrieve stale turns"}
    provider.replies = [reply(new_dimensions=[wanted, {"name": "top_k", "description": "dup"}])]
    context = make_context()
    assert diagnoser.propose(context) == []
    assert context.new_dimensions == [wanted]
    assert "recency_decay" not in DIMENSIONS_BY_NAME
    assert context.notes == ["llm new dimension 'top_k' ignored: already in the space",
                             "llm reply held no proposals"]


# --- failures fall back to the rules diagnoser ---------------------------------------------------

def test_invalid_json_twice_falls_back_to_rules(provider, diagnoser, make_context):
    provider.replies = ["I would raise top_k.", "Really, raise top_k."]
    context = make_context()
    proposals = diagnoser.propose(context)
    assert len(provider.requests) == 2
    assert proposals and [p.edits for p in proposals] == \
        [p.edits for p in RulesDiagnoser().propose(make_context())]
    [note] = context.notes
    assert note.startswith("llm diagnoser failed (invalid JSON after one repair: ")
    assert note.endswith("; fell back to rules")


def test_unavailable_provider_falls_back_to_rules(provider, diagnoser, make_context):
    provider.replies = [litellm.Timeout(message="read timed out", model="openai/smollm2",
                                        llm_provider="openai")]
    context = make_context()
    proposals = diagnoser.propose(context)
    assert proposals and {p.proposer for p in proposals} == {"rules"}
    [note] = context.notes
    assert "unavailable after 2 attempts" in note and note.endswith("fell back to rules")


# --- accounting ----------------------------------------------------------------------------------

def test_every_call_is_handed_to_the_loop(provider, diagnoser, make_context, store):
    provider.replies = ["not JSON", reply(proposal(("top_k", 8, None)))]
    context = make_context()
    diagnoser.propose(context)
    # The loop stores them with its round; the diagnoser itself writes nothing.
    assert diagnose_calls(store) == []
    # The unusable first reply is a failed call with its reason; the repaired one is ok.
    assert [c["ok"] for c in context.llm_calls] == [False, True]
    assert context.llm_calls[0]["error"].startswith("unusable reply: the reply contains no JSON")
    assert all(c["prompt_tokens"] > 0 for c in context.llm_calls)


def test_failed_calls_are_handed_over_too(provider, diagnoser, make_context):
    provider.replies = [litellm.Timeout(message="read timed out", model="openai/smollm2",
                                        llm_provider="openai")]
    context = make_context()
    diagnoser.propose(context)
    [row] = context.llm_calls
    assert not row["ok"] and row["attempts"] == 2 and "Timeout" in row["error"]
    assert context.fallback.startswith("LLM openai/smollm2 unavailable")


def test_a_value_outside_the_space_is_an_invalid_candidate(provider, diagnoser, make_context):
    provider.replies = [reply(proposal(("top_k", 999, None)), proposal(("top_k", 8, None)))]
    context = make_context()
    proposals = diagnoser.propose(context)
    assert [p.edits[0].value for p in proposals] == [8]
    [invalid] = context.invalid
    assert invalid["reason"] == "'top_k' must be between 1 and 50, got 999"
    assert '"value": 999' in invalid["edit_json"] and invalid["proposer"] == "llm"


def test_round_budget_counts_the_diagnoser_tokens(provider, tmp_path):
    provider.replies = [reply(proposal(("top_k", 8, None)),
                              proposal(("bm25_stemming", True, None)))]
    settings = EvolveSettings(benchmark="synthetic", benchmark_options=SYNTHETIC, split="all",
                              diagnoser="llm", diagnoser_model=MODEL, max_rounds=1, candidates=2,
                              workers=0)
    with RunStore(tmp_path / "evolve.duckdb") as store:
        outcome = evolve(store, settings)
        [diagnosed] = store.query("SELECT sum(prompt_tokens + completion_tokens) AS tokens "
                                  "FROM llm_calls WHERE run_id = ? AND purpose = 'diagnose'",
                                  [outcome.run_id])
        [round_1] = store.query("SELECT tokens_used FROM rounds WHERE run_id = ? AND round = 1",
                                [outcome.run_id])
        proposers = store.query("SELECT DISTINCT proposer FROM candidates WHERE run_id = ?",
                                [outcome.run_id])
    assert diagnosed["tokens"] > 0 and round_1["tokens_used"] == diagnosed["tokens"]
    assert proposers == [{"proposer": "llm"}]


# --- the prompt ----------------------------------------------------------------------------------

def test_prompt_shows_buckets_space_config_and_history(make_context):
    context = make_context()
    text = prompt(context)
    for row in failure_buckets(context):
        assert f"{row['category']} | {row['bucket']} | {row['n']} |" in text
    assert space_documentation() in text
    assert "- top_k = 3" in text
    assert "- round 1, rules: top_k=8 -> delta +0.0125, rejected" in text
    assert "<= 1000 tokens" in text and "at most 3 proposals" in text


def test_prompt_shows_sampled_failures_with_their_text(make_context, benchmark):
    context = make_context()
    shown = [line.split()[1] for line in sampled(context)]
    assert len(shown) == SMALL.failures
    first = next(q for q in benchmark.questions if q.id == shown[0])
    evidence = first.evidence[0]
    text = unit_text(benchmark.conversation_by_id[first.conversation_id], evidence)
    assert f"- {evidence}: {text}" in prompt(context)


def test_history_abbreviates_an_attempt_of_many_edits(make_context):
    names = ("bm25_b", "bm25_k1", "dense_weight", "mmr_lambda", "structured_weight")
    explored = [{"field": name, "value": 0.123456, "category": None} for name in names]
    context = make_context(history=[Attempt(1, "optuna", json.dumps(explored), None, "rejected")])
    assert ("- round 1, optuna: bm25_b=0.123, bm25_k1=0.123, dense_weight=0.123, "
            "mmr_lambda=0.123 (+1 more) -> delta n/a, rejected") in prompt(context)


def test_prompt_is_identical_for_the_same_seed_and_round(make_context):
    assert diagnosis_messages(make_context()) == diagnosis_messages(make_context())


def test_another_seed_or_round_samples_other_failures(make_context):
    assert sampled(make_context(seed=1)) != sampled(make_context())
    assert sampled(make_context(round=3)) != sampled(make_context())


def test_what_every_round_shares_comes_first(make_context):
    first, later = make_context(), make_context(round=3, history=[])
    assert diagnosis_messages(first)[0] == diagnosis_messages(later)[0]
    assert space_documentation() in diagnosis_messages(first)[0]["content"]


def test_sample_covers_every_category_before_repeating_one(store):
    rows = store.query("SELECT question_id, category, recall_in_context FROM question_results "
                       "WHERE recall_in_context < 1 ORDER BY question_id")
    categories = {r["category"] for r in rows}
    sample = stratified_sample(rows, len(categories), seed=0)
    assert {r["category"] for r in sample} == categories


def test_sample_alternates_zero_and_partial_recall_within_a_category(store):
    rows = store.query("SELECT question_id, category, recall_in_context FROM question_results "
                       "WHERE recall_in_context < 1 ORDER BY question_id")
    mixed = {r["category"] for r in rows if r["recall_in_context"] > 0}
    assert mixed, "the fixture should hold partially retrieved failures"
    categories = {r["category"] for r in rows}
    sample = stratified_sample(rows, 2 * len(categories), seed=0)
    for category in mixed:
        kinds = {r["recall_in_context"] == 0 for r in sample if r["category"] == category}
        assert kinds == {True, False}, category


def test_sample_of_everything_is_a_permutation(store):
    rows = store.query("SELECT question_id, category, recall_in_context FROM question_results "
                       "WHERE recall_in_context < 1 ORDER BY question_id")
    sample = stratified_sample(rows, len(rows) + 5, seed=3)
    assert sorted(r["question_id"] for r in sample) == [r["question_id"] for r in rows]


# The prompt sized to the model ----------------------------------------------------------------
LARGE_MODEL = {"model": "gpt-4o-mini", "api_key": "sk-test", "max_retries": 1,
               "backoff_s": 0.001}


def test_the_prompt_size_comes_from_litellms_model_information():
    from evolve.llm import LLMSettings

    assert litellm.get_model_info("gpt-4o-mini")["max_input_tokens"] >= 32_000
    assert prompt_size(LLMSettings(**LARGE_MODEL)) == LARGE
    # The local SmolLM2 server and a model litellm does not know keep the small prompt.
    assert prompt_size(LLMSettings(**MODEL)) == SMALL
    assert prompt_size(LLMSettings(model="openai/no-such-model-xyz")) == SMALL
    assert structured_output(LLMSettings(**MODEL)) == {}
    schema = structured_output(LLMSettings(**LARGE_MODEL))["response_format"]
    assert schema["type"] == "json_schema" and "proposals" in json.dumps(schema)


def test_a_large_model_sees_per_type_statistics_many_failures_and_the_whole_history(
        make_context, benchmark):
    history = [Attempt(r, "rules", json.dumps([{"field": "top_k", "value": 4 + r,
                                                 "category": None}]), 0.0, "rejected")
               for r in range(1, 15)]
    context = make_context(history=history)
    small = "\n".join(m["content"] for m in diagnosis_messages(context, SMALL))
    large = "\n".join(m["content"] for m in diagnosis_messages(context, LARGE))
    failures = context.store.query(
        "SELECT count(*) AS n FROM question_results WHERE config_hash = ? AND "
        "recall_in_context < 1", [context.incumbent.config_hash])[0]["n"]
    shown = [line for line in large.splitlines() if line.startswith("### ")]
    assert len(shown) == min(LARGE.failures, failures) > SMALL.failures
    assert "## Per predicted question type" in large and "## Per predicted question type" not in small
    categories = {q.category for q in benchmark.questions}
    assert all(f"\n{c} | " in large for c in categories)
    assert "(last 14 of 14)" in large and "(last 10 of 14)" in small
    assert "- round 1, rules: top_k=5" in large and "- round 1, rules:" not in small


def test_a_structured_output_model_is_asked_for_the_schema_and_still_repaired(
        provider, make_context):
    diagnoser = LLMDiagnoser(LARGE_MODEL)
    provider.replies = ["not json", reply(proposal(("top_k", 8, None)))]
    proposals = diagnoser.propose(make_context())
    assert [p.edits for p in proposals] == [(Edit("top_k", 8),)]
    assert len(provider.requests) == 2
    for request in provider.requests:
        assert request["response_format"]["json_schema"]["name"] == "diagnosis"
    assert len([m for m in provider.requests[0]["messages"][1]["content"].splitlines()
                if m.startswith("### ")]) > SMALL.failures
