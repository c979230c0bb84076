"""The LLM client against a real OpenAI-compatible server that fails on purpose (429 with
Retry-After, 500, HTML, non-JSON, 401, hangs): retries, the circuit breaker, the cache."""
from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from evolve.llm import (LLMClient, LLMReplyError, LLMRequestError, LLMSettings, LLMUnavailable,
                        ResponseCache)
from fault_server import FaultServerProcess

MESSAGES = [{"role": "user", "content": "Where did Anna move?"}]


class Reply(BaseModel):
    city: str


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path))
    return tmp_path


def client(server: FaultServerProcess, cache: ResponseCache | None = None, **overrides) -> LLMClient:
    fields = dict(model="openai/fault", api_base=server.api_base, api_key="sk-fault",
                  timeout_s=5.0, max_retries=2, backoff_s=0.01, breaker_after=2)
    return LLMClient(LLMSettings(**{**fields, **overrides}), cache)


def test_retry_after_is_honoured(fault_server):
    fault_server.retry_after = 1.0
    fault_server.script = ["429"]
    result = client(fault_server).complete(MESSAGES, purpose="answer")
    (_, first), (_, second) = fault_server.requests
    assert result.text == "Paris" and result.call.attempts == 2
    # The backoff alone would have waited about 0.01 s.
    assert 1.0 <= second - first < 2.0


@pytest.mark.parametrize("mode", ["500", "html"])
def test_a_dead_endpoint_is_retried_then_not_called_any_more(fault_server, mode):
    fault_server.mode = mode
    llm = client(fault_server)
    started = time.monotonic()
    errors = []
    for _ in range(5):
        with pytest.raises(LLMUnavailable) as raised:
            llm.complete(MESSAGES, purpose="answer")
        errors.append(raised.value)
    # Two failed requests open the circuit, inside the first call's retries: its third
    # attempt is not sent, and nothing more is.
    assert fault_server.count() == 2
    assert [e.call is not None for e in errors] == [True, False, False, False, False]
    assert all("circuit open" in str(e) for e in errors[1:])
    assert [(c.ok, c.attempts) for c in llm.calls] == [(False, 2)]
    assert time.monotonic() - started < 5


def test_a_refused_key_is_one_request_recorded_and_the_endpoint_closed(fault_server):
    fault_server.mode = "401"
    llm = client(fault_server, breaker_after=5)
    with pytest.raises(LLMRequestError, match="Fix: set a valid api_key") as raised:
        llm.complete(MESSAGES, purpose="answer")
    call = raised.value.call
    assert (call.ok, call.attempts) == (False, 1) and "401" in call.error
    with pytest.raises(LLMUnavailable, match="circuit open"):
        llm.complete(MESSAGES, purpose="answer")
    assert fault_server.count() == 1


def test_a_hung_endpoint_costs_its_timeout_once_per_call_until_the_circuit_opens(fault_server):
    fault_server.mode = "hang"
    llm = client(fault_server, timeout_s=0.5, max_retries=0)
    started = time.monotonic()
    for _ in range(4):
        with pytest.raises(LLMUnavailable):
            llm.complete(MESSAGES, purpose="diagnose")
    assert fault_server.count() == 2
    assert time.monotonic() - started < 3


def test_an_unusable_reply_is_recorded_as_failed_and_never_cached(fault_server):
    fault_server.mode = "nonjson"
    cache = ResponseCache()
    llm = client(fault_server, cache)
    with pytest.raises(LLMReplyError):
        llm.complete_json(MESSAGES, Reply, purpose="diagnose")
    assert [(c.ok, c.cached) for c in llm.calls] == [(False, False), (False, False)]
    assert all(c.error.startswith("unusable reply: the reply contains no JSON")
               for c in llm.calls)
    assert cache.count() == 0
    fault_server.mode = "ok"
    fault_server.reply = '{"city": "Paris"}'
    parsed, _ = client(fault_server, cache).complete_json(MESSAGES, Reply, purpose="diagnose")
    assert parsed.city == "Paris" and fault_server.count() == 3 and cache.count() == 1


def test_the_cache_is_keyed_on_the_endpoint(fault_server):
    cache = ResponseCache()
    first = client(fault_server, cache).complete(MESSAGES, purpose="answer")
    again = client(fault_server, cache).complete(MESSAGES, purpose="answer")
    with FaultServerProcess(lifetime_s=60) as other:
        other.reply = "Lyon"
        elsewhere = client(other, cache).complete(MESSAGES, purpose="answer")
        assert other.count() == 1
    assert (first.text, again.call.cached, elsewhere.text) == ("Paris", True, "Lyon")
    assert fault_server.count() == 1


def test_cache_clear_deletes_the_stored_replies(fault_server, cache_dir):
    from typer.testing import CliRunner

    from evolve.cli import app

    cache = ResponseCache()
    client(fault_server, cache).complete(MESSAGES, purpose="answer")
    result = CliRunner().invoke(app, ["cache", "clear"])
    assert result.exit_code == 0 and "deleted 1 LLM replies" in result.output
    assert cache.count() == 0
    client(fault_server, cache).complete(MESSAGES, purpose="answer")
    assert fault_server.count() == 2
