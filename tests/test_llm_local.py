"""The LLM path against a real llama-cpp-python server (SmolLM2-135M): shapes, never correctness."""
from __future__ import annotations

import os
import signal
import urllib.request

import litellm
import pytest
from pydantic import BaseModel

from benchmarks.errors import MemevolveError
from benchmarks.model import Question
from evolve.judge import LLMJudge
from evolve.llm import LLMClient, LLMReplyError, ResponseCache
from evolve.local_llm import LocalLLMServer, smoke_check
from evolve.memory.answer_llm import LLMAnswerer

pytestmark = [pytest.mark.llm, pytest.mark.slow]

CONTEXT = ("[8 May 2023] Caroline: I went to the LGBTQ support group yesterday.\n"
           "[8 May 2023] Melanie: That's great! I painted a sunrise last week.")
QUESTION = Question(id="q1", conversation_id="c1", category="2", answers=("7 May 2023",),
                    text="When did Caroline go to the support group?")


class Verdict(BaseModel):
    answer: str


@pytest.fixture
def client(local_llm_server, tmp_path, monkeypatch) -> LLMClient:
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path))
    # Few tokens keep every test fast; nothing here depends on how much the model says.
    settings = local_llm_server.settings.model_copy(update={"max_tokens": 16})
    return LLMClient(settings, ResponseCache())


@pytest.fixture
def server_requests(monkeypatch) -> list[dict]:
    """Spies on (does not replace) litellm.completion: one entry per request sent to the server."""
    sent: list[dict] = []
    real = litellm.completion

    def spy(**kwargs):
        sent.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", spy)
    return sent


def test_server_lists_its_model_alias(local_llm_server):
    with urllib.request.urlopen(f"{local_llm_server.api_base}/models", timeout=5) as response:
        assert b'"smollm2"' in response.read()


def test_answerer_returns_text_and_a_priced_call(client):
    outcome = LLMAnswerer(client).answer(QUESTION, CONTEXT, "short")
    assert isinstance(outcome.text, str) and outcome.text.strip()
    [call] = outcome.calls
    assert call.ok and not call.cached and call.attempts == 1
    assert call.prompt_tokens > 0 and call.completion_tokens > 0
    assert call.cost_usd == 0.0 and call.latency_s > 0


def test_identical_call_is_served_from_the_cache(client, server_requests):
    answerer = LLMAnswerer(client)
    first = answerer.answer(QUESTION, CONTEXT, "sentence")
    second = answerer.answer(QUESTION, CONTEXT, "sentence")
    assert len(server_requests) == 1
    assert second.text == first.text
    assert second.calls[0].cached and second.calls[0].cost_usd == 0.0


def test_complete_json_parses_or_reports_the_raw_reply(client):
    messages = [{"role": "user", "content": 'Reply with JSON only: {"answer": "<one word>"}. '
                 "What colour is the sky?"}]
    try:
        parsed, raw = client.complete_json(messages, Verdict, purpose="diagnose")
    except LLMReplyError as error:
        assert len(error.raw_replies) == 2 and error.validation_error
        # Both replies came back but were unusable: recorded as failed calls, with the reason.
        assert len(error.calls) == 2
        assert all(not call.ok and call.error for call in error.calls)
    else:
        assert isinstance(parsed, Verdict) and raw


def test_judge_returns_a_verdict_or_none_with_its_call(client):
    outcome = LLMJudge(client).judge(QUESTION, "7 May 2023")
    assert outcome.correct in (True, False, None)
    [call] = outcome.calls
    assert call.purpose == "judge" and call.ok and call.completion_tokens > 0


def test_server_process_ends_with_the_block(llm_packages):
    with LocalLLMServer() as server:
        process = server._process
        assert process.poll() is None
    assert process.poll() is not None and server.port is None


def test_a_server_that_cannot_start_reports_its_output(tmp_path, llm_packages):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(MemevolveError, match="exited with code") as raised:
        with LocalLLMServer(model_path=broken, startup_timeout_s=60):
            pass
    assert "broken.gguf" in str(raised.value)


def test_a_server_that_dies_is_reported_with_its_cause_and_the_fix(llm_packages):
    with LocalLLMServer() as server:
        server.check_alive()
        # What an AVX-512 build does on a CPU without it: SIGILL on the first request.
        os.kill(server._process.pid, signal.SIGILL)
        server._process.wait(timeout=30)
        with pytest.raises(MemevolveError, match="SIGILL") as raised:
            server.check_alive()
    message = str(raised.value)
    assert "Illegal instruction" in message and "make llm" in message


def test_smoke_check_serves_a_chat_completion_and_an_embedding(llm_packages):
    checked = smoke_check()
    assert checked[0].startswith("chat completion: ")
    assert checked[1].startswith("embedding: ") and "dimensions" in checked[1]


@pytest.mark.parametrize("mode", ["rewrite", "decompose", "hyde"])
def test_llm_query_operators_ask_the_model_and_price_the_call(local_llm_server, tmp_path,
                                                              monkeypatch, mode):
    from benchmarks.model import Conversation, Session, Turn
    from evolve.memory.system import LLMSpec, MemorySystem
    from search_space.config import RetrievalConfig

    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path))
    turns = tuple(Turn(id=f"D1:{i}", session_index=1, turn_index=i, speaker=speaker, text=text)
                  for i, (speaker, text) in enumerate(
                      [("Caroline", "I went to the LGBTQ support group yesterday."),
                       ("Melanie", "That's great! I painted a sunrise last week."),
                       ("Caroline", "The garden needs water.")], start=1))
    conversation = Conversation(id="c1", speakers=("Caroline", "Melanie"),
                                sessions=(Session(index=1, date=None, turns=turns),))
    settings = local_llm_server.settings.model_copy(update={"max_tokens": 48})
    system = MemorySystem([conversation], [QUESTION], llm=LLMSpec(answer=settings.model_dump()))
    config = RetrievalConfig(llm_query=mode, answer_model=settings.model)
    (row,), calls = system.evaluate(config)
    [call] = calls
    assert call["purpose"] == "query" and call["ok"] and call["prompt_tokens"] > 0
    assert row["llm_cost_usd"] == 0.0 and row["retrieved_ids"]
    # Asked again, the reply comes from the cache (and is still recorded for the row).
    (_, [again]) = system.evaluate(config)
    assert again["cached"] and again["call_key"] == call["call_key"]
