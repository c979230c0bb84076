"""Opening the sqlite caches that several processes (Ray actors, parallel runs) share."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Sequence


def open_shared(path: Path, setup: Sequence[str], *, timeout_s: float,
                **connect: Any) -> sqlite3.Connection:
    """A connection to ``path`` after running the ``setup`` statements (pragmas, CREATE TABLE).

    Switching a new file to WAL takes an exclusive lock, and sqlite reports "database is locked"
    at once, without waiting out the busy timeout, when another process sets the same file up at
    that instant. Set-up is therefore retried, with backoff, until ``timeout_s`` has passed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        connection = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False, **connect)
        try:
            for statement in setup:
                connection.execute(statement)
            return connection
        except sqlite3.OperationalError as exc:
            connection.close()
            contended = "locked" in str(exc) or "busy" in str(exc)
            if not contended or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
