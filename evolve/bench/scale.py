"""Scale of one config on a benchmark with one haystack per question (LongMemEval oracle, S, M,
or the LongMemEval-shaped synthetic): wall time and peak memory of every stage, cold (a new
embedding cache) then warm (new Ray actors, the vectors from that cache).

Every stage after the load runs on the evaluator's shards, as `memevolve eval` does: on the Ray
actors (or in this process with ``workers=0``). Each actor reports its own peak resident memory
(getrusage), so the driver's and every actor's peak are shown apart and summed."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from benchmarks.errors import MemevolveError
from evolve.bench.memory import TreePeak, driver_peak_mb

if TYPE_CHECKING:
    from benchmarks import BenchmarkSource
    from benchmarks.model import Benchmark
    from evolve.memory.system import EmbedderSpec, MemorySystem
    from search_space.config import RetrievalConfig

#: Stages in order: the cold pass (a new embedding cache), then the warm pass (the file loaded
#: again, new actors, every vector from the cache the cold pass filled): what a first and a
#: second `memevolve eval` of the config do.
COLD_STAGES = ("load", "start", "units", "bm25-index", "embedding-cold", "evaluation")
WARM_STAGES = ("load-warm", "start-warm", "units-warm", "bm25-index-warm", "embedding-warm",
               "evaluation-warm")
#: The stages timed question by question (the others as a whole: no per-question quantiles).
PER_QUESTION = ("units", "bm25-index", "evaluation", "units-warm", "bm25-index-warm",
                "evaluation-warm")


@dataclass
class Stage:
    """One stage: its wall clock, per-question times where it has them, texts asked of the
    embedding cache, and peak memory (MiB) when it ended: driver, each actor, whole tree."""

    name: str
    wall_s: float
    times: list[float] = field(default_factory=list)
    texts: int = 0
    cache_hits: int = 0
    driver_peak_mb: float = 0.0
    actor_peaks_mb: list[float] = field(default_factory=list)
    tree_peak_mb: float = 0.0

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.times) or [self.wall_s]
        return {"stage": self.name, "n": len(self.times) or 1, "total_s": self.wall_s,
                "mean_ms": 1000 * statistics.fmean(ordered),
                "p50_ms": 1000 * _quantile(ordered, 0.5),
                "p95_ms": 1000 * _quantile(ordered, 0.95), "max_ms": 1000 * ordered[-1],
                "texts": self.texts, "cache_hits": self.cache_hits,
                "driver_peak_mb": self.driver_peak_mb,
                "actors_peak_mb": sum(self.actor_peaks_mb),
                "actor_peaks_mb": list(self.actor_peaks_mb), "tree_peak_mb": self.tree_peak_mb}


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


def process_peak() -> dict[str, Any]:
    """This process's id and peak resident memory so far (MiB)."""
    return {"pid": os.getpid(), "peak_mb": driver_peak_mb()}


def build_units(system: MemorySystem, config_json: str) -> dict[str, Any]:
    """Every question's units under its type's settings, timed per question (on a shard)."""
    return _per_question(system, config_json, lambda memory, question, cfg: memory.units(cfg))


def build_bm25(system: MemorySystem, config_json: str) -> dict[str, Any]:
    """Every question's BM25 index (its first scoring builds it), where its type uses BM25."""
    def one(memory, question, cfg) -> None:
        if "bm25" in cfg.retrievers.split("+"):
            memory.retriever_scores("bm25", memory.units(cfg), memory.query(question, cfg), cfg)

    return _per_question(system, config_json, one)


def _per_question(system: MemorySystem, config_json: str,
                  work: Callable[[Any, Any, Any], Any]) -> dict[str, Any]:
    from search_space.config import RetrievalConfig

    config = RetrievalConfig.model_validate_json(config_json)
    times = []
    for question in system.questions.values():
        cfg = config.for_type(system.question_type(question, config))
        began = time.perf_counter()
        work(system.memories[question.conversation_id], question, cfg)
        times.append(time.perf_counter() - began)
    return {"times": times, **process_peak()}


@dataclass
class Measured:
    """What a scale measurement found: the benchmark's identity and questions (its
    conversations were left to the actors), its sizes and split, a row per stage, the score of
    each pass."""

    benchmark: Benchmark
    counts: dict[str, int]
    split: Any
    rows: list[dict[str, Any]]
    scores: dict[str, float | None]


def measure_scale(bench_loader: Callable[[], Benchmark], config: RetrievalConfig,
                  embedder: EmbedderSpec, cache_dir: Path, *, workers: int | None,
                  source: BenchmarkSource | None = None,
                  report: Callable[[str], None] = lambda line: None) -> Measured:
    """Evaluate ``config`` on all of the benchmark twice, cold and warm, each pass from the
    load on. ``cache_dir`` must hold no embedding cache (else the cold pass would not be cold).
    With ``source``, ``bench_loader`` loads the questions only and each actor its own
    haystacks (Evaluator's ``source``): the load stage is then the driver's part, and the
    actors' loading is in the start stage."""
    from dataclasses import replace

    from evolve.embeddings import EmbeddingCache

    if (cache_dir / "embeddings.sqlite").exists():
        raise MemevolveError(f"{cache_dir}: already holds an embedding cache, so the cold stage "
                             "would not be cold. Fix: pass a new folder.")
    spec = replace(embedder, options={**embedder.options,
                                      "cache": EmbeddingCache(cache_dir / "embeddings.sqlite")})
    rows: list[dict[str, Any]] = []
    scores: dict[str, float | None] = {}
    for names in (COLD_STAGES, WARM_STAGES):
        measured = _one_pass(bench_loader, config, spec, names, workers, source, report)
        rows.extend(measured.rows)
        scores.update(measured.scores)
    return replace(measured, rows=rows, scores=scores)


def _one_pass(bench_loader: Callable[[], Benchmark], config: RetrievalConfig,
              embedder: EmbedderSpec, names: tuple[str, ...], workers: int | None,
              source: BenchmarkSource | None, report: Callable[[str], None]) -> Measured:
    from benchmarks.splits import make_split
    from evolve.evaluation import Evaluator, mean_score

    load, start, units, bm25, embedding, evaluation = names
    payload = config.canonical_json()
    stages: list[Stage] = []
    with TreePeak(interval_s=0.5) as peak:
        began = time.perf_counter()
        bench = bench_loader()
        stage = Stage(load, time.perf_counter() - began)
    _finish(stage, None, peak, report)
    stages.append(stage)
    counts, split = bench.counts(), make_split(bench, "all")
    ids = [q.id for q in bench.questions]
    # Once the actors hold their shards, the evaluator keeps the questions only; this
    # function's own reference goes too, so the driver holds no copy of the haystacks.
    evaluator = Evaluator(bench, workers=workers, embedder=embedder, progress=True,
                          hold_conversations=False, source=source)
    del bench
    with evaluator:
        with TreePeak(interval_s=0.5) as peak:
            began = time.perf_counter()
            evaluator.placement()
            stage = Stage(start, time.perf_counter() - began)
        _finish(stage, evaluator, peak, report)
        stages.append(stage)
        if source is not None:
            # The driver never saw the haystacks: the shards count them.
            shard_counts = evaluator.on_shards(_counts)
            counts = {key: (counts[key] if key == "questions" else
                            sum(part[key] for part in shard_counts)) for key in counts}
        for name, work in ((units, build_units), (bm25, build_bm25)):
            with TreePeak(interval_s=0.5) as peak:
                began = time.perf_counter()
                results = evaluator.on_shards(work, payload)
                stage = Stage(name, time.perf_counter() - began,
                              times=[t for r in results for t in r["times"]])
            _finish(stage, evaluator, peak, report, results)
            stages.append(stage)
        with TreePeak(interval_s=0.5) as peak:
            began = time.perf_counter()
            evaluator.prepare([(config, ids)])
            stage = Stage(embedding, time.perf_counter() - began)
        counters = evaluator.embedding_counters()
        stage.texts, stage.cache_hits = counters["hits"] + counters["misses"], counters["hits"]
        _finish(stage, evaluator, peak, report)
        stages.append(stage)
        with TreePeak(interval_s=0.5) as peak:
            began = time.perf_counter()
            (rows, _), = evaluator.run([(config, ids)])
            # Per-question latency as measured on the shard; the total is the wall clock.
            stage = Stage(evaluation, time.perf_counter() - began,
                          times=[r["latency_ms"] / 1000 for r in rows])
        _finish(stage, evaluator, peak, report)
        stages.append(stage)
        lean = evaluator.benchmark
    return Measured(lean, counts, split, [s.row() for s in stages],
                    {evaluation: mean_score(rows, "recall_in_context")})


def _finish(stage: Stage, evaluator: Any, peak: TreePeak, report: Callable[[str], None],
            results: list[dict[str, Any]] | None = None) -> None:
    stage.driver_peak_mb = driver_peak_mb()
    stage.tree_peak_mb = peak.peak_mb
    if evaluator is not None and evaluator.workers:
        results = results or evaluator.on_shards(_peak)
        stage.actor_peaks_mb = [r["peak_mb"] for r in results]
    row = stage.row()
    report(f"{stage.name}: {stage.wall_s:.1f} s; peak MiB driver {row['driver_peak_mb']:.0f}, "
           f"actors {' + '.join(f'{p:.0f}' for p in stage.actor_peaks_mb) or '-'}, "
           f"tree {row['tree_peak_mb']:.0f}")


def _peak(system: MemorySystem) -> dict[str, Any]:
    return process_peak()


def _counts(system: MemorySystem) -> dict[str, int]:
    conversations = [memory.conversation for memory in system.memories.values()]
    return {"conversations": len(conversations),
            "sessions": sum(len(c.sessions) for c in conversations),
            "turns": sum(len(s.turns) for c in conversations for s in c.sessions)}


def quantiles_shown(row: dict[str, Any]) -> tuple[str, str]:
    """p50 and p95 ms as shown: '-' for a stage timed as a whole."""
    if row["stage"] not in PER_QUESTION:
        return "-", "-"
    return f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}"


def scale_markdown(measured: Measured) -> str:
    rows, bench, counts, scores = (measured.rows, measured.benchmark, measured.counts,
                                   measured.scores)
    cold = sum(r["total_s"] for r in rows if r["stage"] in COLD_STAGES)
    warm = sum(r["total_s"] for r in rows if r["stage"] in WARM_STAGES)
    top = max(r["driver_peak_mb"] + r["actors_peak_mb"] for r in rows)
    lines = [f"{bench.name} {bench.variant}: {counts['questions']} questions, "
             f"{counts['sessions']} sessions, {counts['turns']} turns.", "",
             "| stage | wall s | p50 ms | p95 ms | texts | cache hits | driver peak MiB | "
             "actor peaks MiB | driver + actors MiB | process tree MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        actors = " + ".join(f"{p:.0f}" for p in r["actor_peaks_mb"]) or "-"
        p50, p95 = quantiles_shown(r)
        lines.append(f"| {r['stage']} | {r['total_s']:.1f} | {p50} | {p95} | {r['texts']} | "
                     f"{r['cache_hits']} | "
                     f"{r['driver_peak_mb']:.0f} | {actors} | "
                     f"{r['driver_peak_mb'] + r['actors_peak_mb']:.0f} | "
                     f"{r['tree_peak_mb']:.0f} |")
    lines += ["", f"Cold (load to the end of the first evaluation): {cold:.1f} s; warm (loaded "
              f"again, new actors, vectors from the cache): {warm:.1f} s; highest driver + "
              f"actors peak: {top:.0f} MiB.",
              "recall_in_context: " + ", ".join(
                  f"{name} {'-' if value is None else f'{value:.4f}'}"
                  for name, value in scores.items()) + ".",
              "", "Peaks are each process's getrusage maximum up to the end of the stage (the "
              "warm pass runs on new actors). The process tree is sampled every 0.5 s and "
              "counts Ray's own processes and shared pages once per process. An evaluation's "
              "per-question time is its row's latency_ms, which runs from the start of the "
              "question's retrieval to its answer, and a chunk's retrievals all run before "
              "its answers."]
    return "\n".join(lines)
