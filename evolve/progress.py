"""Progress of long phases (embedding, evaluation): one mechanism for every phase.

On a terminal it is a rich bar; when stderr is a file or a pipe (a log, CI, nohup) it is one
plain line every ``MEMEVOLVE_PROGRESS_EVERY_S`` seconds (default 10) and a last line at the end,
each with the count, the rate and the ETA, so a long run can be followed with ``tail -f``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

#: Seconds between two progress lines in a log (a terminal shows the bar instead).
DEFAULT_EVERY_S = 10.0


def progress_every_s() -> float:
    """Seconds between two progress lines in a log: $MEMEVOLVE_PROGRESS_EVERY_S or the default."""
    return float(os.environ.get("MEMEVOLVE_PROGRESS_EVERY_S", DEFAULT_EVERY_S))


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _rate(per_s: float) -> str:
    return f"{per_s:,.1f}" if per_s >= 10 else f"{per_s:.3g}"


class Progress:
    """Counts ``done`` of ``total`` units of one phase; ``advance`` as work completes.

    ``extra`` counters (e.g. texts embedded) are summed and shown with their own rate; the
    ETA comes from the main count. Disabled, it only counts (no output)."""

    def __init__(self, what: str, total: int, unit: str, *, enabled: bool = True,
                 every_s: float | None = None, write: Callable[[str], None] | None = None,
                 terminal: bool | None = None) -> None:
        from evolve.console import err_console

        self.what = what
        self.total = total
        self.unit = unit
        self.enabled = enabled and total > 0
        self.every_s = every_s if every_s is not None else progress_every_s()
        self._write = write or (lambda line: err_console.print(line, markup=False,
                                                                highlight=False))
        self.terminal = err_console.is_terminal if terminal is None else terminal
        self.done = 0
        self.extra: dict[str, int] = {}
        self._began = time.perf_counter()
        self._last_line = self._began
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        self._began = self._last_line = time.perf_counter()
        if not self.enabled:
            return self
        if self.terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from evolve.console import err_console

            self._bar = Bar("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=err_console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(f"{self.what} ({self.unit})", total=self.total)
        else:
            self._write(f"{self.what}: 0/{self.total:,} {self.unit}")
        return self

    def advance(self, n: int = 1, **extra: int) -> None:
        self.done += n
        for key, value in extra.items():
            self.extra[key] = self.extra.get(key, 0) + value
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.advance(self._task, n)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every_s and self.done < self.total:
            self._last_line = now
            self._write(self.line())

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self._began, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.what}: {self.done:,}/{self.total:,} {self.unit} "
                 f"({self.done / self.total:.0%})", f"{_rate(rate)} {self.unit}/s"]
        parts += [f"{value:,} {key} ({_rate(value / elapsed)}/s)" for key, value in
                  self.extra.items()]
        if self.done < self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            parts.append(f"ETA {format_duration(eta)}" if eta != float("inf") else "ETA ?")
        parts.append(f"elapsed {format_duration(elapsed)}")
        return ", ".join(parts)

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
        if exc[0] is None:
            self._write(self.line())
