"""The one retry policy (tenacity): exponential backoff with jitter, a server's Retry-After
honoured, and a circuit breaker per endpoint so a dead provider fails fast, once."""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable

import tenacity

log = logging.getLogger(__name__)

#: A server may ask for a long pause; longer than this is treated as "down", not waited out.
MAX_RETRY_AFTER_S = 120.0


def retry_after_s(exc: BaseException | None) -> float | None:
    """The delay a failed HTTP response asks for (Retry-After: seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class wait_backoff(tenacity.wait.wait_base):  # noqa: N801 - tenacity's naming of waits
    """``first_s * 2**(n-1)`` capped at ``max_s``, scaled by a random factor in [0.5, 1] so
    parallel workers that failed together do not retry together; a Retry-After from the server
    is honoured instead (plus up to 10% jitter), up to MAX_RETRY_AFTER_S."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s = first_s
        self.max_s = max_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after_s(failure)
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_S) * random.uniform(1.0, 1.1)
        ceiling = min(self.max_s, self.first_s * 2 ** (retry_state.attempt_number - 1))
        return ceiling * random.uniform(0.5, 1.0)


def retrying(*, attempts: int, retry_on: Callable[[BaseException], bool],
             first_s: float = 1.0, max_s: float = 30.0, deadline_s: float | None = None,
             what: str = "call", log_level: int = logging.WARNING) -> tenacity.Retrying:
    """A tenacity policy: at most ``attempts`` tries (and ``deadline_s`` seconds, when given) of
    exceptions ``retry_on`` accepts; the last exception is re-raised as is."""
    stop = tenacity.stop_after_attempt(max(1, attempts))
    if deadline_s is not None:
        stop = stop | tenacity.stop_after_delay(deadline_s)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.log(log_level, "%s attempt %d failed (%s: %s); retrying in %.2fs", what,
                    state.attempt_number, type(failure).__name__,
                    " ".join(str(failure).split())[:200],
                    state.next_action.sleep if state.next_action else 0.0)

    return tenacity.Retrying(
        stop=stop, wait=wait_backoff(first_s, max_s),
        retry=tenacity.retry_if_exception(retry_on), reraise=True,
        # Looked up per call, so tests can record the delays instead of sleeping.
        sleep=lambda seconds: time.sleep(seconds), before_sleep=before_sleep)


@dataclass
class _BreakerState:
    failures: int = 0
    opened_at: float | None = None
    last_error: str = ""


class CircuitBreaker:
    """Per endpoint: after ``threshold`` failed requests in a row, calls are refused without
    being sent for ``cooldown_s``; then one trial call may go, and one more failure reopens it.
    Shared by every client of the endpoint in this process (each Ray actor has its own)."""

    _states: dict[str, _BreakerState] = {}
    _lock = threading.Lock()

    def __init__(self, endpoint: str, threshold: int, cooldown_s: float) -> None:
        self.endpoint = endpoint
        self.threshold = threshold
        self.cooldown_s = cooldown_s

    def refusal(self) -> str | None:
        """Why a call must not be sent now, or None when it may go."""
        with self._lock:
            state = self._states.get(self.endpoint)
            if state is None or state.opened_at is None:
                return None
            if time.monotonic() - state.opened_at >= self.cooldown_s:
                state.opened_at = None
                state.failures = self.threshold - 1
                return None
            return (f"circuit open: {self.endpoint} failed {state.failures} requests in a row "
                    f"(last: {state.last_error})")

    def succeeded(self) -> None:
        with self._lock:
            self._states.pop(self.endpoint, None)

    def failed(self, error: str, *, fatal: bool = False) -> None:
        """Count a failed request; ``fatal`` (a refused key, an unknown model) opens it at
        once."""
        with self._lock:
            state = self._states.setdefault(self.endpoint, _BreakerState())
            state.failures = max(state.failures + 1, self.threshold if fatal else 0)
            state.last_error = error[:300]
            if state.failures >= self.threshold and state.opened_at is None:
                state.opened_at = time.monotonic()
                log.error("LLM endpoint %s failed %d requests in a row (last: %s): no more calls "
                          "to it for %.0fs; what needs it is marked invalid", self.endpoint,
                          state.failures, state.last_error, self.cooldown_s)

    @classmethod
    def reset_all(cls) -> None:
        """Forget every endpoint's failures (a new run in the same process starts clean)."""
        with cls._lock:
            cls._states.clear()


def breaker_key(api_base: str | None, model: str) -> str:
    """The endpoint a breaker guards: the server for an api_base, else the provider."""
    return api_base.rstrip("/") if api_base else f"provider {model.partition('/')[0] or model}"

