"""Benchmark files: where they live, official download with sha256 verification, verify, stats."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks._registry import detect, get_adapter, peek_json, sha256_of
from benchmarks.errors import BenchmarkError
from benchmarks.model import Benchmark


@dataclass(frozen=True)
class KnownFile:
    benchmark: str
    variant: str
    filename: str
    url: str
    #: None where no hash of the official release could be pinned; fetch then checks the schema
    #: and the counts, prints the hash and asks the user to pin it with --sha256.
    sha256: str | None
    counts: dict[str, int]


KNOWN_FILES: dict[str, KnownFile] = {
    "locomo": KnownFile(
        "locomo", "locomo10", "locomo10.json",
        "https://raw.githubusercontent.com/snap-research/locomo/main/data/locomo10.json",
        "79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4",
        {"conversations": 10, "sessions": 272, "turns": 5882, "questions": 1986}),
    "longmemeval-oracle": KnownFile(
        "longmemeval", "oracle", "longmemeval_oracle.json",
        "https://huggingface.co/datasets/xiaowu0162/longmemeval-cleaned/resolve/main/"
        "longmemeval_oracle.json", None, {"questions": 500}),
    "longmemeval-s": KnownFile(
        "longmemeval", "s", "longmemeval_s_cleaned.json",
        "https://huggingface.co/datasets/xiaowu0162/longmemeval-cleaned/resolve/main/"
        "longmemeval_s_cleaned.json", None, {"questions": 500}),
    "longmemeval-m": KnownFile(
        "longmemeval", "m", "longmemeval_m_cleaned.json",
        "https://huggingface.co/datasets/xiaowu0162/longmemeval-cleaned/resolve/main/"
        "longmemeval_m_cleaned.json", None, {"questions": 500}),
}

#: Hashes of files known to hold the official content (also re-serialised copies).
KNOWN_HASHES: dict[str, tuple[str, str, str]] = {
    "79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4":
        ("locomo", "locomo10", "official release"),
    "d3249e4c4ef8837dbe629c9e25042a752f2e74660d63036d7cecc7e0ff0085b4":
        ("longmemeval", "oracle", "official fields and values, re-serialised JSON"),
}


def data_dir() -> Path:
    """Where fetched benchmark files go: $MEMEVOLVE_DATA_DIR or ~/.cache/memevolve/data."""
    return Path(os.environ.get("MEMEVOLVE_DATA_DIR",
                               Path.home() / ".cache" / "memevolve" / "data"))


def default_path(benchmark: str) -> Path:
    """The fetched file of ``benchmark`` (LongMemEval: the oracle variant)."""
    key = {"longmemeval": "longmemeval-oracle"}.get(benchmark, benchmark)
    if key not in KNOWN_FILES:
        raise BenchmarkError(benchmark, f"benchmark '{benchmark}' has no default file.",
                             fix="pass its data with --data PATH.")
    known = KNOWN_FILES[key]
    return data_dir() / known.benchmark / known.filename


def fetch(name: str, *, dest: Path | None = None, expected_sha256: str | None = None,
          timeout: float = 60.0) -> tuple[Path, str]:
    """Download ``name`` from its official URL; keep it only when its sha256 checks out."""
    if name not in KNOWN_FILES:
        raise BenchmarkError(name, f"no download is known for '{name}'.",
                             fix=f"use one of: {', '.join(sorted(KNOWN_FILES))}. MemBench has no "
                                 "public single-file release: pass its MemData folder with --data.")
    known = KNOWN_FILES[name]
    target = dest or (data_dir() / known.benchmark / known.filename)
    expected = expected_sha256 or known.sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(known.url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise BenchmarkError(known.url, f"could not be downloaded ({reason}); this machine "
                                     "seems to have no network access to it.",
                                     fix="download the file elsewhere and pass it with --data, or "
                                         "check it with 'memevolve data verify PATH'.") from None
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise BenchmarkError(known.url, f"downloaded, but its sha256 is {actual}, not the "
                                 f"expected {expected}; the file was not kept.",
                                 fix="retry; if it persists the release changed: verify it by hand.")
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target, actual


@dataclass
class Verification:
    path: Path
    benchmark: str
    variant: str
    sha256: str
    hash_status: str
    loaded: Benchmark


def verify(path: Path) -> Verification:
    """Detect which benchmark a file is, check its hash and load it fully."""
    path = Path(path)
    if path.is_dir():
        found = ("membench", "")
    else:
        # The head of the file is enough to tell which benchmark it is (M is several GB).
        found = detect(peek_json(path, "benchmark"))
    if found is None:
        raise BenchmarkError(path, "is not a file of any known benchmark (LoCoMo, LongMemEval, "
                             "MemBench).", fix="check that you passed the right file.")
    benchmark = found[0]
    digest = sha256_of(path) if path.is_file() else ""
    loaded = get_adapter(benchmark).load(path)
    if digest in KNOWN_HASHES:
        status = f"matches the known {KNOWN_HASHES[digest][2]}"
    elif any(k.benchmark == benchmark and k.sha256 for k in KNOWN_FILES.values()):
        status = "UNKNOWN hash: not the official release (edited, truncated or another version)"
    else:
        status = "no pinned hash for this release; counts checked instead"
    return Verification(path, benchmark, loaded.variant, digest, status, loaded)


def stats(benchmark: Benchmark) -> dict[str, object]:
    """Counts that DATA.md quotes: sizes, categories, evidence, image turns, load warnings."""
    by_conv = {c.id: {t.id: t for t in c.turns} for c in benchmark.conversations}
    evidence = [(q.conversation_id, e) for q in benchmark.questions for e in q.evidence]
    image_evidence = sum(1 for conv, e in evidence if by_conv[conv][e].caption)
    return {
        **benchmark.counts(),
        "categories": benchmark.category_counts(),
        "adversarial": sum(q.adversarial for q in benchmark.questions),
        "evidence ids": len(evidence),
        "evidence on image turns": image_evidence,
        "image turns": sum(1 for turns in by_conv.values() for t in turns.values() if t.caption),
        "questions without evidence": sum(1 for q in benchmark.questions if not q.evidence),
        "warnings": dict(benchmark.warnings),
    }
