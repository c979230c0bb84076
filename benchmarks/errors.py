"""User-facing errors and counted warnings raised while reading benchmark files."""
from __future__ import annotations

from dataclasses import dataclass, field


class MemevolveError(Exception):
    """An error a user can cause and fix; the CLI prints it as one paragraph, never a traceback."""


class BenchmarkError(MemevolveError):
    """A benchmark file that cannot be read: names the file, the record, the field and the fix."""

    def __init__(self, path: object, problem: str, *, record: str | None = None,
                 field: str | None = None, fix: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.record = record
        self.field = field
        self.fix = fix
        where = f"{self.path}"
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field '{field}'"
        message = f"{where}: {problem}"
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)


@dataclass
class LoadWarnings:
    """Counted, kept-record problems found while loading (never silently dropped)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        bucket = self.examples.setdefault(kind, [])
        if len(bucket) < 5:
            bucket.append(example)

    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        return [f"{kind}: {n} (e.g. {', '.join(self.examples[kind][:3])})"
                for kind, n in sorted(self.counts.items())]
