"""LLM plumbing without a server: retries, cache, accounting, JSON repair, reply parsing."""
from __future__ import annotations

import logging
import multiprocessing
import pickle
from datetime import datetime
from pathlib import Path

import duckdb
import litellm
import pytest
from pydantic import BaseModel, RootModel

from benchmarks.model import Question
from evolve.judge import LLMJudge, judge_messages, parse_verdict
from benchmarks.errors import MemevolveError
from evolve.llm import (CachedReply, LLMClient, LLMReplyError, LLMRequestError, LLMSettings,
                        LLMUnavailable, ResponseCache, parse_json_reply)
from evolve.local_llm import find_smollm2_gguf
from evolve.memory.answer_llm import LLMAnswerer, answer_messages, final_answer

SECRET = "sk-test-never-printed"
MESSAGES = [{"role": "user", "content": "Where did Anna move?"}]


class Edit(BaseModel):
    field: str
    value: float


class Edits(RootModel[list[Edit]]):
    pass


def _timeout() -> Exception:
    return litellm.Timeout(message="read timed out", model="openai/smollm2", llm_provider="openai")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr("evolve.retry.time.sleep", delays.append)
    return delays


def make_client(cache: ResponseCache | None = None, **overrides) -> LLMClient:
    fields = dict(model="openai/smollm2", api_base="http://127.0.0.1:9/v1", api_key=SECRET,
                  backoff_s=0.001, max_retries=2)
    settings = LLMSettings(**{**fields, **overrides})
    return LLMClient(settings, cache)


def question(**overrides) -> Question:
    fields = dict(id="q1", conversation_id="c1", text="Where did Anna move?", category="4",
                  answers=("Paris",))
    return Question(**{**fields, **overrides})


# --- complete: accounting, cache --------------------------------------------------------------

def test_reply_is_returned_with_its_call_recorded(provider):
    provider.replies = ["Paris"]
    client = make_client()
    result = client.complete(MESSAGES, purpose="answer")
    assert result.text == "Paris"
    call = result.call
    assert (call.ok, call.cached, call.attempts, call.error) == (True, False, 1, None)
    assert call.prompt_tokens > 0 and call.completion_tokens > 0
    assert call.cost_usd == 0.0 and call.purpose == "answer" and call.model == "openai/smollm2"
    assert client.calls == [call]


def test_no_retries_inside_litellm(provider):
    provider.replies = ["Paris"]
    make_client(timeout_s=7).complete(MESSAGES, purpose="answer")
    sent = provider.requests[0]
    assert (sent["num_retries"], sent["max_retries"], sent["timeout"]) == (0, 0, 7)


def test_second_identical_call_is_a_cache_hit(provider):
    provider.replies = ["Paris"]
    client = make_client(ResponseCache())
    first = client.complete(MESSAGES, purpose="answer")
    second = client.complete(MESSAGES, purpose="answer")
    assert len(provider.requests) == 1
    assert second.text == first.text
    assert second.call.cached and second.call.cost_usd == 0.0
    assert second.call.call_key == first.call.call_key
    assert second.call.prompt_tokens == first.call.prompt_tokens


def test_cache_persists_on_disk_for_another_client(provider, cache_dir):
    provider.replies = ["Paris"]
    make_client(ResponseCache()).complete(MESSAGES, purpose="answer")
    again = make_client(ResponseCache()).complete(MESSAGES, purpose="answer")
    assert again.call.cached and len(provider.requests) == 1
    assert (cache_dir / "llm_cache.sqlite").exists()


def _fill_cache(worker: int) -> None:
    cache = ResponseCache()
    for i in range(50):
        cache.put(f"{worker}-{i}", "m", CachedReply(f"reply {worker}-{i}", 1, 1))


def test_cache_takes_concurrent_writers_from_several_processes():
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_fill_cache, range(4))
    cache = ResponseCache()
    assert all(cache.get(f"{w}-{i}").text == f"reply {w}-{i}" for w in range(4) for i in range(50))


def test_cache_travels_to_another_process_by_path():
    cache = ResponseCache()
    cache.put("k", "m", CachedReply("Paris", 3, 1))
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.path == cache.path and copy.get("k") == CachedReply("Paris", 3, 1)


def test_changed_params_miss_the_cache(provider):
    provider.replies = ["Paris"]
    client = make_client(ResponseCache())
    client.complete(MESSAGES, purpose="answer")
    client.complete(MESSAGES, purpose="answer", max_tokens=5)
    assert len(provider.requests) == 2


def test_drain_calls_returns_and_clears(provider):
    provider.replies = ["Paris"]
    client = make_client()
    client.complete(MESSAGES, purpose="answer")
    client.complete(MESSAGES, purpose="judge")
    assert [c.purpose for c in client.drain_calls()] == ["answer", "judge"]
    assert client.calls == [] and client.drain_calls() == []


def test_unknown_purpose_is_refused(provider):
    with pytest.raises(ValueError, match="purpose"):
        make_client().complete(MESSAGES, purpose="chat")


def test_call_row_fits_the_run_store_table(provider):
    provider.replies = ["Paris"]
    row = make_client().complete(MESSAGES, purpose="answer").call.as_row()
    schema = (Path(__file__).resolve().parents[1] / "evolve" / "schema.sql").read_text()
    con = duckdb.connect()
    con.execute(schema)
    columns = ", ".join(row)
    con.execute(f"INSERT INTO llm_calls ({columns}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()))
    assert con.execute("SELECT purpose, ok, cached FROM llm_calls").fetchall() == [
        ("answer", True, False)]
    assert isinstance(row["created_at"], datetime)


# --- complete: retries and failures -----------------------------------------------------------

@pytest.mark.parametrize("failure", [
    _timeout(),
    "litellm.RateLimitError",
    litellm.APIConnectionError(message="connection refused", llm_provider="openai",
                               model="openai/smollm2"),
    "litellm.InternalServerError",
], ids=["timeout", "rate-limit", "connection", "server-500"])
def test_transient_failures_are_retried(provider, sleeps, failure):
    provider.replies = [failure, "Paris"]
    result = make_client().complete(MESSAGES, purpose="answer")
    assert result.text == "Paris" and result.call.attempts == 2 and result.call.ok
    assert len(sleeps) == 1


def test_backoff_doubles_per_retry_with_jitter(provider, sleeps):
    provider.replies = [_timeout(), _timeout(), "Paris"]
    make_client(backoff_s=0.5).complete(MESSAGES, purpose="answer")
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_unavailable_after_max_retries_with_the_failed_call_recorded(provider, sleeps):
    provider.replies = [_timeout()]
    client = make_client(ResponseCache())
    with pytest.raises(LLMUnavailable, match="openai/smollm2.*3 attempts") as raised:
        client.complete(MESSAGES, purpose="answer")
    call = raised.value.call
    assert (call.ok, call.attempts, call.cost_usd) == (False, 3, 0.0)
    assert "Timeout" in call.error
    assert client.calls == [call] and len(provider.requests) == 3


def test_a_failure_is_never_cached(provider, sleeps):
    provider.replies = [_timeout(), _timeout(), _timeout(), "Paris"]
    client = make_client(ResponseCache(), breaker_after=10)
    with pytest.raises(LLMUnavailable):
        client.complete(MESSAGES, purpose="answer")
    assert client.complete(MESSAGES, purpose="answer").call.cached is False


def test_auth_error_raises_at_once_naming_model_and_fix(provider, sleeps):
    provider.replies = [litellm.AuthenticationError(message="invalid api key",
                                                    llm_provider="openai", model="openai/smollm2")]
    client = make_client()
    with pytest.raises(LLMRequestError, match=r"openai/smollm2.*Fix: set a valid api_key"):
        client.complete(MESSAGES, purpose="answer")
    assert len(provider.requests) == 1 and sleeps == []
    assert client.calls[0].ok is False and client.calls[0].attempts == 1


def test_bad_request_is_not_retried(provider, sleeps):
    provider.replies = [litellm.BadRequestError(message="unknown parameter",
                                                llm_provider="openai", model="openai/smollm2")]
    with pytest.raises(LLMRequestError, match="refused the request"):
        make_client().complete(MESSAGES, purpose="answer")
    assert len(provider.requests) == 1


def test_api_key_is_never_printed_or_logged(provider, sleeps, caplog):
    provider.replies = [_timeout()]
    client = make_client()
    with caplog.at_level(logging.DEBUG), pytest.raises(LLMUnavailable) as raised:
        client.complete(MESSAGES, purpose="answer")
    shown = [repr(client.settings), client.settings.model_dump_json(), caplog.text,
             str(raised.value), str(raised.value.call.as_row())]
    assert not any(SECRET in text for text in shown)


def test_a_key_quoted_by_the_provider_is_redacted(provider):
    provider.replies = [litellm.AuthenticationError(message=f"Incorrect API key provided: {SECRET}",
                                                    llm_provider="openai", model="openai/smollm2")]
    with pytest.raises(LLMRequestError) as raised:
        make_client().complete(MESSAGES, purpose="answer")
    assert SECRET not in str(raised.value) and "***" in raised.value.call.error


# --- complete_json ------------------------------------------------------------------------------

def test_fenced_json_is_extracted(provider):
    provider.replies = ['Here you go:\n```json\n{"field": "top_k", "value": 8}\n```\nDone.']
    parsed, raw = make_client().complete_json(MESSAGES, Edit, purpose="diagnose")
    assert parsed == Edit(field="top_k", value=8) and raw == provider.replies[0]


def test_invalid_reply_gets_one_repair_round_trip(provider):
    provider.replies = ["I would raise top_k.", '[{"field": "top_k", "value": 8}]']
    client = make_client()
    parsed, raw = client.complete_json(MESSAGES, Edits, purpose="diagnose")
    assert parsed.root == [Edit(field="top_k", value=8)]
    repair = provider.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "I would raise top_k."}
    assert "no JSON" in repair[-1]["content"] and "corrected JSON only" in repair[-1]["content"]
    assert [c.purpose for c in client.calls] == ["diagnose", "diagnose"]


def test_still_invalid_after_repair_raises_with_the_raw_replies(provider):
    provider.replies = ['{"field": "top_k"}', '{"value": "many"}']
    with pytest.raises(LLMReplyError) as raised:
        make_client().complete_json(MESSAGES, Edit, purpose="diagnose")
    error = raised.value
    assert error.raw_replies == ['{"field": "top_k"}', '{"value": "many"}']
    assert "field" in error.validation_error and len(error.calls) == 2


def test_json_extraction_skips_braces_that_are_not_json():
    text = 'Plan {not json}. Example {"field": "x"} then {"field": "top_k", "value": 3, "n": "}"}'
    assert parse_json_reply(text, Edit) == Edit(field="top_k", value=3)


def test_json_extraction_reports_a_reply_without_json():
    with pytest.raises(ValueError, match="no JSON"):
        parse_json_reply("no braces here", Edit)


def test_missing_model_package_names_make_llm(monkeypatch):
    monkeypatch.setattr("evolve.local_llm.importlib.util.find_spec", lambda name: None)
    with pytest.raises(MemevolveError, match="make llm"):
        find_smollm2_gguf()


# --- answerer and judge: prompt and parsing ---------------------------------------------------

def test_answer_prompt_never_sees_labels():
    plain = question()
    labelled = question(adversarial=True, category="5", answers=("Berlin",),
                        adversarial_answer="Rome", evidence=("D1:3",))
    assert answer_messages(plain, "Anna: I moved.", "short") == \
        answer_messages(labelled, "Anna: I moved.", "short")


def test_answer_prompt_has_date_and_not_mentioned_instruction():
    prompt = answer_messages(question(question_date=datetime(2023, 5, 8)), "ctx", "sentence")
    text = prompt[-1]["content"]
    assert "8 May 2023" in text and '"Not mentioned in the conversation"' in text


def test_unknown_answer_style_is_refused():
    with pytest.raises(ValueError, match="style"):
        answer_messages(question(), "ctx", "verbose")


def test_reasoned_answer_returns_the_answer_line(provider):
    provider.replies = ["Anna said she moved in May.\nAnswer: Paris\n"]
    outcome = LLMAnswerer(make_client()).answer(question(), "Anna: I moved to Paris.", "reasoned")
    assert outcome.text == "Paris" and len(outcome.calls) == 1


@pytest.mark.parametrize("reply, expected", [
    ("Step one.\n**Answer:** Paris", "Paris"),
    ("Answer: Rome\nAnswer: Paris", "Paris"),
    ("Step one.\nParis", "Paris"),
    ("", ""),
])
def test_final_answer_line(reply, expected):
    assert final_answer(reply) == expected


@pytest.mark.parametrize("reply, verdict", [
    ("yes", True), ("Yes.", True), ("  NO", False), ("Correct", True),
    ("The response is right, so yes", True), ("I think no", False),
    ("maybe", None), ("It could be yes or no", None), ("", None),
])
def test_verdict_is_parsed_leniently(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_adversarial_question_is_judged_on_unavailability():
    prompt = judge_messages(question(adversarial=True, answers=(), adversarial_answer="Rome"),
                            "Not mentioned in the conversation")[0]["content"]
    assert "unanswerable" in prompt and "Rome" in prompt


def test_unreadable_verdict_is_none_with_the_call_recorded(provider):
    provider.replies = ["Perhaps."]
    outcome = LLMJudge(make_client()).judge(question(), "Paris")
    assert outcome.correct is None and outcome.reply == "Perhaps."
    assert outcome.calls[0].purpose == "judge"


def test_llm_query_replies_are_parsed_into_search_texts():
    from evolve.memory.llm_query import MAX_SUB_QUESTIONS, parse

    question = "Where did Bob travel and what did Alice cook?"
    assert parse('Query: "Bob travel trip destination"\n', "rewrite", question) == (
        "Bob travel trip destination",)
    listed = "1. Where did Bob travel?\n2) What did Alice cook?\n- What curry?\n* Where?\n4. x y"
    assert parse(listed, "decompose", question) == (
        "Where did Bob travel?", "What did Alice cook?", "What curry?")[:MAX_SUB_QUESTIONS]
    # One sub-question, or the question itself, is no decomposition.
    assert parse("Where did Bob travel and what did Alice cook?", "decompose", question) == ()
    assert parse("Message: I flew to Rome.\nIt was sunny there.", "hyde", question) == (
        "I flew to Rome. It was sunny there.",)
    assert parse("ok", "rewrite", question) == ()
