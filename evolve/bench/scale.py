"""Scale on LongMemEval (one haystack per question): per-question index build, embedding with a
cold and with a warm cache, and evaluation time, oracle or S variant."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from benchmarks.errors import MemevolveError

if TYPE_CHECKING:
    from benchmarks.model import Benchmark


@dataclass
class Stage:
    """Per-question times (seconds) of one stage, plus the embedding texts it asked for."""

    name: str
    times: list[float]
    texts: int = 0
    cache_hits: int = 0
    #: Wall clock of a stage whose questions ran in parallel (else the sum of the times).
    wall_s: float | None = None

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.times)
        total = sum(ordered) if self.wall_s is None else self.wall_s
        return {"stage": self.name, "n": len(ordered), "total_s": total,
                "mean_ms": 1000 * statistics.fmean(ordered),
                "p50_ms": 1000 * _quantile(ordered, 0.5),
                "p95_ms": 1000 * _quantile(ordered, 0.95), "max_ms": 1000 * ordered[-1],
                "texts": self.texts, "cache_hits": self.cache_hits}


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_questions(bench: Benchmark, limit: int | None) -> Benchmark:
    """The benchmark cut to its first ``limit`` questions and their conversations."""
    if limit is None or limit >= len(bench.questions):
        return bench
    if limit < 1:
        raise MemevolveError(f"--limit {limit} keeps no question. Fix: pass at least 1.")
    questions = bench.questions[:limit]
    wanted = {q.conversation_id for q in questions}
    return bench.model_copy(update={
        "questions": questions,
        "conversations": tuple(c for c in bench.conversations if c.id in wanted)})


def measure_scale(bench: Benchmark, cache_dir: Path, *, workers: int | None,
                  report: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """Stages in order, each over every question: units, BM25 index, dense index with the
    embedding cache in ``cache_dir`` cold (it must be new) then warm, the start of the
    evaluator (Ray), and the evaluation of the weak (BM25) and strong (hybrid) presets on the
    warm cache.

    Index stages time the first retrieval of a question's haystack, which is what builds the
    index lazily in the memory system (the query it scores costs a small part of it). The
    embedding model is loaded before any timing.
    """
    from evolve.embeddings import EmbeddingCache, make_embedder
    from evolve.evaluation import Evaluator, evaluate_configs
    from evolve.memory.system import EmbedderSpec
    from evolve.memory.query import process_query
    from evolve.memory.retrievers import BM25Retriever, DenseRetriever
    from evolve.memory.units import build_units
    from search_space.config import load_preset

    if (cache_dir / "embeddings.sqlite").exists():
        raise MemevolveError(f"{cache_dir}: already holds an embedding cache, so the cold stage "
                             "would not be cold. Fix: pass a new folder.")
    hybrid = load_preset("strong")
    conversation = bench.conversation_by_id
    items = []
    units_stage = Stage("units", [])
    for question in bench.questions:
        conv = conversation[question.conversation_id]
        began = time.perf_counter()
        units = build_units(conv, hybrid.unit, hybrid.window_size)
        units_stage.times.append(time.perf_counter() - began)
        query = process_query(question.text, conv.speakers, use_keywords=hybrid.query_keywords,
                              speaker_swap=hybrid.speaker_swap)
        items.append((units, query))
    stages = [units_stage, _timed("bm25-index", BM25Retriever(), items, hybrid)]
    report(f"bm25 index: {stages[-1].row()['mean_ms']:.1f} ms per question")

    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    cold = make_embedder(cache=cache)
    cold.embedder.embed(["load the model before timing"])
    for name, embedder in (("dense-index-cold", cold),
                           ("dense-index-cached", type(cold)(cold.embedder, cache))):
        dense = DenseRetriever()
        dense.embedder = embedder
        stage = _timed(name, dense, items, hybrid)
        stage.texts, stage.cache_hits = embedder.hits + embedder.misses, embedder.hits
        stages.append(stage)
        report(f"{name}: {stage.row()['mean_ms']:.1f} ms per question, "
               f"{stage.cache_hits} of {stage.texts} texts from the cache")

    ids = [q.id for q in bench.questions]
    with Evaluator(bench, workers=workers,
                   embedder=EmbedderSpec(options={"cache": cache})) as evaluator:
        # Ray's start is paid once per process, not per evaluation: timed as a stage of its own.
        began = time.perf_counter()
        evaluator.run([])
        stages.append(Stage("evaluator-start", [time.perf_counter() - began]))
        for label, config in (("bm25", load_preset("weak")), ("hybrid", hybrid)):
            result = evaluate_configs(evaluator, [config], ids, part="all",
                                      objective="recall_in_context")[0]
            # Per-question latency as measured inside the worker; the total is the wall clock.
            stages.append(Stage(f"evaluate-{label}", [r["latency_ms"] / 1000
                                                      for r in result.rows],
                                wall_s=result.wall_s))
            report(f"evaluate {label}: {len(ids) / result.wall_s:.1f} questions/s")
    return [s.row() for s in stages]


def scale_markdown(rows: list[dict[str, Any]], bench: Benchmark) -> str:
    turns = sum(len(c.turns) for c in bench.conversations)
    lines = [f"LongMemEval {bench.variant}: {len(bench.questions)} questions, {turns} turns.",
             "", "| stage | questions | total s | mean ms | p50 ms | p95 ms | max ms | "
             "texts | cache hits |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['n']} | {r['total_s']:.2f} | {r['mean_ms']:.2f} | "
                     f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.2f} | "
                     f"{r['texts']} | {r['cache_hits']} |")
    return "\n".join(lines)


def _timed(name: str, retriever: Any, items: list, config: Any) -> Stage:
    stage = Stage(name, [])
    for units, query in items:
        began = time.perf_counter()
        retriever.scores(units, query, config)
        stage.times.append(time.perf_counter() - began)
    return stage
