"""Peak memory of a measurement: this process (getrusage) and its whole process tree (sampled)."""
from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def driver_peak_mb() -> float:
    """getrusage's peak resident set of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tree_rss_mb(root: int | None = None) -> float:
    """Resident memory of ``root`` (default: this process) plus every descendant, in MiB.

    Ray's gcs, raylet and worker processes descend from the driver that started Ray, so they
    count here although getrusage(RUSAGE_CHILDREN) never sees them (it reports only reaped
    children, and only the largest one). Pages shared between processes (torch, numpy) count
    once per process: the sum overstates the machine's use. Without /proc: this process only.
    """
    root = os.getpid() if root is None else root
    proc = Path("/proc")
    if not proc.is_dir():
        return driver_peak_mb()
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces and parentheses: split after the last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += int((proc / str(pid) / "statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue  # the process ended between the listing and the read
        stack.extend(children.get(pid, []))
    return total / (1024 * 1024)


class TreePeak:
    """Samples tree_rss_mb every ``interval_s`` in a thread while in use; ``peak_mb`` after."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TreePeak:
        self.peak_mb = tree_rss_mb()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_mb = max(self.peak_mb, tree_rss_mb())

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, tree_rss_mb())
