"""Opening the sqlite caches that several processes (Ray actors, parallel runs) share."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from evolve.retry import retrying


def open_shared(path: Path, setup: Sequence[str], *, timeout_s: float,
                **connect: Any) -> sqlite3.Connection:
    """A connection to ``path`` after running the ``setup`` statements (pragmas, CREATE TABLE).

    Switching a new file to WAL takes an exclusive lock, and sqlite reports "database is locked"
    at once, without waiting out the busy timeout, when another process sets the same file up at
    that instant. Set-up is therefore retried, with backoff and jitter, until ``timeout_s`` has
    passed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)

    def attempt() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False, **connect)
        try:
            for statement in setup:
                connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        return connection

    return retrying(attempts=10_000, deadline_s=timeout_s, retry_on=_contended, first_s=0.01,
                    max_s=0.5, what=f"opening {path}", log_level=logging.DEBUG)(attempt)


def _contended(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc))
