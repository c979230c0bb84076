"""The one way memevolve talks to LLMs: litellm with retries, a cache, accounting, JSON replies."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar, get_args
from urllib.parse import urlparse

import litellm
import openai
from pydantic import BaseModel, Field, SecretStr, ValidationError

from benchmarks.errors import MemevolveError
from evolve.retry import CircuitBreaker, breaker_key, retrying
from evolve.sqlite_cache import open_shared

log = logging.getLogger(__name__)

# litellm otherwise appends "Give Feedback / Get Help" banners to every exception message.
litellm.suppress_debug_info = True

Purpose = Literal["answer", "query", "diagnose", "judge"]
PURPOSES: tuple[str, ...] = get_args(Purpose)
Messages = list[dict[str, Any]]
SchemaT = TypeVar("SchemaT", bound=BaseModel)

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Rate limits, request timeouts and gateway/server faults are worth another attempt.
_RETRYABLE_STATUS = {408, 409, 429}


class LLMSettings(BaseModel):
    """Which model to call and how patiently; ``api_key`` is a secret and never printed."""

    model: str = Field(description="litellm model name, e.g. 'openai/smollm2' or "
                       "'anthropic/claude-3-5-haiku-latest'.")
    api_base: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. "
                                 "http://127.0.0.1:8080/v1 for a local server.")
    api_key: SecretStr | None = Field(default=None, description="Provider key; None lets "
                                      "litellm read the provider's usual environment variable.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per-attempt request timeout.")
    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt on "
                             "timeouts, rate limits, connection and server errors.")
    backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles per "
                             "retry, with jitter; a server's Retry-After takes precedence.")
    breaker_after: int = Field(default=3, ge=1, description="Failed requests in a row after which "
                               "the endpoint is not called any more (its circuit opens).")
    breaker_cooldown_s: float = Field(default=300.0, gt=0, description="How long an open "
                                      "circuit refuses calls before one trial call may go.")
    concurrency: int = Field(default=4, ge=1, description="LLM calls in flight at once per "
                             "evaluation worker.")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=256, gt=0)
    seed: int = 0

    @property
    def is_local(self) -> bool:
        """Served on this machine, so it costs nothing per token."""
        return self.api_base is not None and urlparse(self.api_base).hostname in _LOOPBACK_HOSTS


@dataclass(frozen=True)
class LLMCall:
    """One logical completion (all its attempts) as a row of the run store's ``llm_calls``."""

    call_key: str
    model: str
    purpose: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    ok: bool
    error: str | None
    attempts: int
    created_at: datetime

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LLMResult:
    text: str
    call: LLMCall


class LLMError(MemevolveError):
    """An LLM call that produced no usable reply; ``call`` is the recorded, failed LLMCall
    (None when nothing was sent: the endpoint's circuit is open)."""

    def __init__(self, message: str, call: LLMCall | None) -> None:
        super().__init__(message)
        self.call = call


class LLMUnavailable(LLMError):
    """Retries exhausted on an infrastructure failure, or the endpoint's circuit is open: never
    score it, retry or mark invalid."""


class LLMRequestError(LLMError):
    """The provider refused the request (key, model name, parameters): retrying cannot help."""


class LLMReplyError(MemevolveError):
    """The model's reply did not validate against the expected JSON schema, even after a repair."""

    def __init__(self, message: str, *, raw_replies: list[str], validation_error: str,
                 calls: list[LLMCall]) -> None:
        super().__init__(message)
        self.raw_replies = raw_replies
        self.validation_error = validation_error
        self.calls = calls


def cache_dir() -> Path:
    return Path(os.environ.get("MEMEVOLVE_CACHE_DIR", Path.home() / ".cache" / "memevolve"))


def call_key(model: str, messages: Messages, params: dict[str, Any],
             api_base: str | None = None) -> str:
    """Identity of a completion request: same key, same (cacheable) reply. The endpoint is part
    of it: two servers may serve different weights under one model name."""
    canonical = json.dumps({"model": model, "api_base": api_base.rstrip("/") if api_base else None,
                            "messages": messages, "params": params},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """Replies on disk in SQLite (WAL), shared safely by several processes, e.g. Ray actors."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "llm_cache.sqlite"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._connection().execute(
                "SELECT text, prompt_tokens, completion_tokens FROM replies WHERE call_key = ?",
                (key,)).fetchone()
        return CachedReply(*row) if row else None

    def put(self, key: str, model: str, reply: CachedReply) -> None:
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, reply.text, reply.prompt_tokens, reply.completion_tokens,
                 datetime.now(timezone.utc).isoformat()))

    def clear(self) -> int:
        """Delete every stored reply; returns how many there were."""
        with self._lock:
            cursor = self._connection().execute("DELETE FROM replies")
        return cursor.rowcount

    def count(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT count(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Autocommit plus a long busy timeout: writers from other processes wait, never fail.
            self._conn = open_shared(self.path, (
                "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                "CREATE TABLE IF NOT EXISTS replies (call_key TEXT PRIMARY KEY, "
                "model TEXT NOT NULL, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
                "completion_tokens INTEGER NOT NULL, created_at TEXT NOT NULL)"),
                timeout_s=30.0, isolation_level=None)
        return self._conn

    # A cache travels to Ray actors by path; each process opens its own connection.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class LLMClient:
    """Completions through litellm for one model: one retry policy, a circuit breaker per
    endpoint, a cache of usable replies only, and call accounting (failures included)."""

    def __init__(self, settings: LLMSettings, cache: ResponseCache | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.calls: list[LLMCall] = []
        self.breaker = CircuitBreaker(breaker_key(settings.api_base, settings.model),
                                      settings.breaker_after, settings.breaker_cooldown_s)
        self._unpriced_warned = False
        if settings.is_local:
            register_zero_price(settings.model)

    def drain_calls(self) -> list[LLMCall]:
        """The calls recorded since the last drain (failed ones included), clearing the list."""
        out, self.calls = self.calls, []
        return out

    def complete(self, messages: Messages, *, purpose: Purpose,
                 validate: Callable[[str], object] | None = None, **params: Any) -> LLMResult:
        """One reply text; ``params`` (e.g. max_tokens, stop) override the settings' defaults.

        ``validate`` raises ValueError on a reply that is of no use (no JSON, no verdict): such
        a reply is returned, but recorded as a failed call with the reason and never cached."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown LLM call purpose {purpose!r}; expected one of {PURPOSES}")
        request = {"temperature": self.settings.temperature,
                   "max_tokens": self.settings.max_tokens,
                   "seed": self.settings.seed, **params}
        key = call_key(self.settings.model, messages, request, self.settings.api_base)
        started = time.perf_counter()
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            call = self._record(key, purpose, started, cached=True, attempts=0,
                                prompt_tokens=hit.prompt_tokens,
                                completion_tokens=hit.completion_tokens)
            return LLMResult(hit.text, call)

        response, attempts = self._send(messages, request, key, purpose, started)
        text = response.choices[0].message.content or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        problem = None
        if validate is not None:
            try:
                validate(text)
            except ValueError as exc:
                problem = f"unusable reply: {exc}"
        call = self._record(key, purpose, started, cached=False, attempts=attempts,
                            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                            cost_usd=self._cost(response), error=problem)
        if self.cache is not None and problem is None:
            self.cache.put(key, self.settings.model,
                           CachedReply(text, prompt_tokens, completion_tokens))
        return LLMResult(text, call)

    def complete_json(self, messages: Messages, schema: type[SchemaT], *, purpose: Purpose,
                      **params: Any) -> tuple[SchemaT, str]:
        """The reply parsed into ``schema``, after at most one repair round trip."""
        def validate(text: str) -> SchemaT:
            return parse_json_reply(text, schema)

        first = self.complete(messages, purpose=purpose, validate=validate, **params)
        calls = [first.call]
        try:
            return validate(first.text), first.text
        except ValueError as exc:
            error = str(exc)
        repair = [*messages,
                  {"role": "assistant", "content": first.text},
                  {"role": "user", "content":
                   f"That reply is not valid: {error}\nReply with the corrected JSON only, "
                   f"matching this JSON schema: {json.dumps(schema.model_json_schema())}"}]
        second = self.complete(repair, purpose=purpose, validate=validate, **params)
        calls.append(second.call)
        try:
            return validate(second.text), second.text
        except ValueError as exc:
            raise LLMReplyError(
                f"LLM {self.settings.model} did not return valid {schema.__name__} JSON "
                f"after one repair: {exc}", raw_replies=[first.text, second.text],
                validation_error=str(exc), calls=calls) from exc

    def _send(self, messages: Messages, request: dict[str, Any], key: str, purpose: str,
              started: float) -> tuple[Any, int]:
        """The provider's response and the attempts it took; failures are recorded, then raised.
        An endpoint whose circuit is open is not called at all."""
        refusal = self.breaker.refusal()
        if refusal is not None:
            raise LLMUnavailable(f"LLM {self.settings.model} not called: {refusal}. Fix: check "
                                 f"the server at {self.settings.api_base or 'the provider'}, "
                                 "then resume or rerun.", None)
        # No retry once the breaker has opened: a hung endpoint costs `breaker_after`
        # timeouts in all, not that many calls times their retries.
        policy = retrying(attempts=self.settings.max_retries + 1,
                          retry_on=lambda exc: _is_retryable(exc)
                          and self.breaker.refusal() is None,
                          first_s=self.settings.backoff_s, what=f"LLM {self.settings.model}")
        attempts = 0
        try:
            for attempt in policy:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    try:
                        response = litellm.completion(
                            model=self.settings.model, messages=messages,
                            api_base=self.settings.api_base, api_key=self._api_key(),
                            timeout=self.settings.timeout_s,
                            # Retries are ours (one policy, counted, logged): none in litellm.
                            num_retries=0, max_retries=0, **request)
                    except Exception as exc:
                        # Each failed request counts, except a rate limit: it says the
                        # endpoint lives and when to come back, so only a call that gives
                        # up on it counts (below).
                        if not isinstance(exc, openai.RateLimitError):
                            self.breaker.failed(self._redact(_describe(exc)),
                                                fatal=_endpoint_refuses(exc))
                        raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded before it is raised
            retryable = _is_retryable(exc)
            problem = self._redact(_describe(exc))
            call = self._record(key, purpose, started, cached=False, attempts=attempts,
                                error=problem)
            if isinstance(exc, openai.RateLimitError):
                self.breaker.failed(problem)
            if retryable:
                raise LLMUnavailable(
                    f"LLM {self.settings.model} unavailable after {attempts} attempts: "
                    f"{problem}. Fix: check that the server at "
                    f"{self.settings.api_base or 'the provider'} is up, or raise "
                    "--llm-timeout / --llm-retries.", call) from exc
            raise LLMRequestError(
                f"LLM {self.settings.model} refused the request: {problem}. "
                f"Fix: {_fix_for(exc)}", call) from exc
        self.breaker.succeeded()
        return response, attempts

    def _api_key(self) -> str | None:
        return self.settings.api_key.get_secret_value() if self.settings.api_key else None

    def _redact(self, text: str) -> str:
        """Provider error messages may quote the key; it must not reach logs or the run store."""
        secret = self._api_key()
        return text.replace(secret, "***") if secret else text

    def _cost(self, response: Any) -> float:
        try:
            return float(litellm.completion_cost(completion_response=response,
                                                 model=self.settings.model))
        except Exception as exc:  # noqa: BLE001 - litellm raises several types for unknown prices
            if not self._unpriced_warned:
                self._unpriced_warned = True
                log.warning("no price known for %s (%s): its calls are recorded at cost 0. Fix: "
                            "register its price with litellm.register_model.",
                            self.settings.model, exc)
            return 0.0

    def _record(self, key: str, purpose: str, started: float, *, cached: bool, attempts: int,
                prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0,
                error: str | None = None) -> LLMCall:
        call = LLMCall(call_key=key, model=self.settings.model, purpose=purpose,
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                       cost_usd=cost_usd, latency_s=time.perf_counter() - started, cached=cached,
                       ok=error is None, error=error, attempts=attempts,
                       created_at=datetime.now(timezone.utc))
        self.calls.append(call)
        return call


def register_zero_price(model: str) -> None:
    """Price a locally served model at zero, in this process (Ray actors register their own)."""
    provider, _, name = model.partition("/")
    entry = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
             "cache_creation_input_token_cost": 0.0, "cache_read_input_token_cost": 0.0,
             "litellm_provider": provider if name else "openai", "mode": "chat"}
    litellm.register_model({model: entry, **({name: entry} if name else {})})


def parse_json_reply(text: str, schema: type[SchemaT]) -> SchemaT:
    """The first JSON object/array in ``text`` (fences stripped) that validates into ``schema``.

    Raises ValueError naming what was wrong, in words fit to send back to the model.
    """
    candidates = _json_candidates(_strip_fences(text))
    if not candidates:
        raise ValueError("the reply contains no JSON object or array")
    first_error = ""
    for value in candidates:
        try:
            return schema.model_validate(value)
        except ValidationError as exc:
            first_error = first_error or _validation_summary(exc)
    raise ValueError(f"the JSON does not match the schema: {first_error}")


def _strip_fences(text: str) -> str:
    """The body of the first ``` fenced block if there is one (models wrap JSON in them)."""
    start = text.find("```")
    if start < 0:
        return text
    body_start = text.find("\n", start)
    end = text.find("```", start + 3)
    if body_start < 0 or end < 0 or end < body_start:
        return text.replace("```", "")
    return text[body_start + 1:end]


def _json_candidates(text: str) -> list[Any]:
    """Every top-level, balanced JSON object or array in ``text``, in order."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            found.append(value)
            i = end
        else:
            i += 1
    return found


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                     for err in exc.errors())


def _endpoint_refuses(exc: BaseException) -> bool:
    """A refusal that every further call to the endpoint would meet too."""
    return isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError,
                            openai.NotFoundError))


def _is_retryable(exc: BaseException) -> bool:
    # litellm.Timeout and litellm.APIConnectionError both derive from openai.APIConnectionError.
    if isinstance(exc, (openai.APIConnectionError, openai.RateLimitError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status in _RETRYABLE_STATUS)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {message[:500]}"


def _fix_for(exc: Exception) -> str:
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "set a valid api_key in the LLM settings or the provider's API key variable."
    if isinstance(exc, openai.NotFoundError):
        return "check the model name and api_base in the LLM settings."
    if isinstance(exc, litellm.ContextWindowExceededError):
        return "lower the context token budget or max_tokens."
    return "check the model name, api_base and call parameters in the LLM settings."
