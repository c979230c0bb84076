"""Benchmark adapters, registered by name; adding a benchmark touches one file."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from benchmarks.errors import BenchmarkError
from benchmarks.model import Benchmark, Conversation, Question


class Adapter(Protocol):
    """Reads one benchmark's native file(s) into the shared data model."""

    name: str
    #: True when the adapter generates its data and needs no file.
    embedded: bool
    #: The options ``load`` takes (``--benchmark-option KEY=VALUE``), each with a help line.
    options: Mapping[str, str]

    def sniff(self, raw: Any) -> str | None:
        """Return the variant name if ``raw`` (parsed JSON) is this benchmark, else None."""

    def load(self, path: Path | None, *, variant: str | None = None, **options: Any) -> Benchmark:
        """Load and validate; raise BenchmarkError naming the file, record and field.

        An adapter with ``loads_part = True`` also takes ``keep`` (conversation ids): it then
        builds only those conversations (every question still), so a part costs its share of
        memory; load_benchmark filters the others' whole load instead."""


_ADAPTERS: dict[str, Adapter] = {}


def register(factory: Callable[[], Adapter]) -> Callable[[], Adapter]:
    adapter = factory()
    _ADAPTERS[adapter.name] = adapter
    return factory


def adapter_names() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise BenchmarkError(name, f"unknown benchmark '{name}'.",
                             fix=f"use one of: {', '.join(adapter_names())}.") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(path: Path, benchmark: str) -> None:
    if not path.exists():
        raise BenchmarkError(path, "no such file.",
                             fix=f"pass the {benchmark} file with --data PATH, or run "
                                 f"'memevolve data fetch {benchmark}'.")
    if path.is_dir():
        raise BenchmarkError(path, "is a directory, not a benchmark file.",
                             fix="pass the JSON file itself with --data.")


def _starts_a_list(path: Path) -> bool:
    """Whether the file's first non-blank character opens a JSON array (BOM allowed)."""
    with open(path, "rb") as handle:
        while block := handle.read(4096):
            text = block.lstrip(b" \t\r\n\xef\xbb\xbf")
            if text:
                return text[:1] == b"["
    return False


def iter_json_list(path: Path, benchmark: str) -> Iterator[Any]:
    """The items of a JSON file whose top level is a list, parsed one at a time (ijson), so a
    multi-GB file (LongMemEval M) never sits in memory whole. A file whose top level is not a
    list is parsed whole and yielded as one value, for the caller's sniff to name it. Syntax
    and I/O problems become a BenchmarkError, as in read_json."""
    import ijson

    path = Path(path)
    _check_file(path, benchmark)
    with _read_errors(path, benchmark, ijson.JSONError):
        if not _starts_a_list(path):
            yield read_json(path, benchmark)
            return
        with open(path, "rb") as handle:
            # Floats as float (ijson's default is Decimal), like json.load.
            yield from ijson.items(handle, "item", use_float=True)


def peek_json(path: Path, benchmark: str) -> Any:
    """Enough of a JSON file for ``detect``: a list's first item (in a list), else the whole
    value; every adapter sniffs a list by its first item."""
    path = Path(path)
    _check_file(path, benchmark)
    if not _starts_a_list(path):
        return read_json(path, benchmark)
    items = iter_json_list(path, benchmark)
    try:
        first = next(items, None)
    finally:
        items.close()
    return [] if first is None else [first]


@contextmanager
def _read_errors(path: Path, benchmark: str,
                 syntax_error: type[Exception] = json.JSONDecodeError) -> Iterator[None]:
    """Every syntax and I/O problem of reading a benchmark file, as a BenchmarkError that
    names the file and the fix."""
    try:
        yield
    except syntax_error as exc:
        where = (f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
                 if isinstance(exc, json.JSONDecodeError)
                 else (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise BenchmarkError(path, f"is not valid JSON ({where}); the file is truncated or "
                             "corrupted.",
                             fix=f"download it again ('memevolve data fetch {benchmark}') and "
                                 "check it with 'memevolve data verify'.") from None
    except UnicodeDecodeError as exc:
        raise BenchmarkError(path, f"is not UTF-8 text ({exc.reason}).",
                             fix="pass the benchmark's JSON file.") from None
    except OSError as exc:
        raise BenchmarkError(path, f"cannot be read ({exc.strerror}).",
                             fix="check the path and its permissions.") from None


def read_json(path: Path, benchmark: str) -> Any:
    """Parse a benchmark JSON file, turning every I/O and syntax problem into a BenchmarkError."""
    path = Path(path)
    _check_file(path, benchmark)
    with _read_errors(path, benchmark), open(path, "rb") as handle:
        return json.load(handle)


def detect(raw: Any) -> tuple[str, str] | None:
    """Which registered benchmark (and variant) parsed JSON is, or None."""
    for adapter in _ADAPTERS.values():
        if adapter.embedded:
            continue
        variant = adapter.sniff(raw)
        if variant is not None:
            return adapter.name, variant
    return None


#: The command-line form of adapter options, named in every error about one.
OPTION_FLAG = "--benchmark-option"


def parse_options(items: Sequence[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` texts (the repeatable --benchmark-option) as a dict; values stay text and
    each adapter converts and checks its own."""
    options: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BenchmarkError(OPTION_FLAG, f"'{item}' is not KEY=VALUE.",
                                 fix=f"write e.g. {OPTION_FLAG} questions=50 (one option per "
                                     "flag; repeat the flag for more).")
        if key in options:
            raise BenchmarkError(OPTION_FLAG, f"'{key}' is given twice ({key}={options[key]} "
                                 f"and {key}={value.strip()}).", field=key,
                                 fix="keep one of them.")
        options[key] = value.strip()
    return options


def check_options(adapter: Adapter, options: Mapping[str, Any]) -> None:
    """Every option is one the adapter declares; the error lists those it takes."""
    unknown = sorted(set(options) - set(adapter.options))
    if not unknown:
        return
    if adapter.options:
        takes = "; ".join(f"{key} ({help})" for key, help in adapter.options.items())
        fix = f"{adapter.name} takes {takes}."
    else:
        fix = f"{adapter.name} takes no {OPTION_FLAG}: drop it (its data come from --data)."
    raise BenchmarkError(adapter.name, f"unknown {OPTION_FLAG} '{unknown[0]}'.",
                         field=unknown[0], fix=fix)


def load_benchmark(name: str, path: str | Path | None = None, *, variant: str | None = None,
                   keep: Collection[str] | None = None, **options: Any) -> Benchmark:
    """Load benchmark ``name`` from ``path`` (or its default location) into the data model;
    with ``keep``, every question but only those conversations (see Benchmark.keeping)."""
    adapter = get_adapter(name)
    if not adapter.embedded and path is None:
        from benchmarks.data import default_path

        path = default_path(name)
    location = None if adapter.embedded else Path(path)  # type: ignore[arg-type]
    if keep is not None and getattr(adapter, "loads_part", False):
        return adapter.load(location, variant=variant, keep=keep, **options)
    loaded = adapter.load(location, variant=variant, **options)
    return loaded if keep is None else loaded.keeping(keep)


@dataclass(frozen=True)
class BenchmarkSource:
    """What load_benchmark is given, so that another process loads the same benchmark: a Ray
    actor given its shard this way loads its own haystacks, and neither the driver nor Ray's
    object store holds a copy of them."""

    name: str
    path: str | None = None
    variant: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def load(self, keep: Collection[str] | None = None) -> Benchmark:
        return load_benchmark(self.name, self.path, variant=self.variant, keep=keep,
                              **dict(self.options))

    def shard(self, conversation_ids: Sequence[str]) -> ShardLoad:
        return ShardLoad(self, tuple(conversation_ids))

    @property
    def loads_part(self) -> bool:
        """Whether its adapter builds only the conversations kept: then a driver that loads
        the questions alone (``load(keep=())``) never parses a haystack, and each actor only
        its own; otherwise every such load parses the whole file."""
        return bool(getattr(get_adapter(self.name), "loads_part", False))


@dataclass(frozen=True)
class ShardLoad:
    """One shard of a benchmark, to be loaded where it is used."""

    source: BenchmarkSource
    conversation_ids: tuple[str, ...]

    def load(self) -> tuple[list[Conversation], list[Question]]:
        """The shard's conversations and their questions."""
        part = self.source.load(keep=self.conversation_ids)
        wanted = set(self.conversation_ids)
        return list(part.conversations), [q for q in part.questions if q.conversation_id in wanted]
