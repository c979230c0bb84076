"""Evaluation throughput: questions and configs per second, cold and warm, in-process or on Ray,
with outcome-store reuse, embedding-cache hits and peak memory; each measurement in its own
process so that cold means cold."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from benchmarks.errors import MemevolveError

if TYPE_CHECKING:
    from benchmarks.model import Benchmark
    from search_space.config import RetrievalConfig

#: Synthetic sizes: 10 sessions of 20 turns and 10 questions per conversation.
SYNTHETIC_SIZES = {
    "synthetic-10k": {"conversations": 50, "sessions": 10, "turns": 20, "questions": 10},
    "synthetic-100k": {"conversations": 500, "sessions": 10, "turns": 20, "questions": 10},
    "synthetic-smoke": {"conversations": 3, "sessions": 2, "turns": 6, "questions": 4},
}
#: Above this many turns the base config is BM25 + structured only: embedding 100k turns on
#: a 2-core CPU takes longer than the whole benchmark is worth (the output says so).
DENSE_MAX_TURNS = 20_000
#: The 8 configs evaluated at once: the base and seven one-knob variants, as a search proposes.
VARIANTS: tuple[dict[str, Any], ...] = (
    {}, {"top_k": 5}, {"top_k": 20}, {"bm25_k1": 1.2}, {"bm25_b": 0.5},
    {"neighbor_expansion": 1}, {"fusion": "weighted"}, {"packing_order": "chronological"})
PHASES = ("cold", "warm-store", "warm-indexes", "new-process-store", "new-process-compute")


@dataclass
class Dataset:
    """A benchmark to measure on: LoCoMo (or another file) or a synthetic size."""

    name: str
    benchmark: str
    data: str | None = None
    options: dict[str, int] = field(default_factory=dict)

    def load(self) -> Benchmark:
        from benchmarks import load_benchmark

        return load_benchmark(self.benchmark, self.data, **self.options)


def dataset(name: str, locomo_data: str | None) -> Dataset:
    if name == "locomo":
        return Dataset("locomo", "locomo", locomo_data)
    if name in SYNTHETIC_SIZES:
        return Dataset(name, "synthetic", None, SYNTHETIC_SIZES[name])
    raise MemevolveError(f"unknown dataset '{name}'. Fix: use locomo or one of "
                         f"{', '.join(SYNTHETIC_SIZES)}.")


def base_config(n_turns: int, chosen: RetrievalConfig | None = None
                ) -> tuple[RetrievalConfig, str]:
    """The config the user chose, as it is; else the strong preset (hybrid BM25 + dense +
    structured), BM25 + structured above DENSE_MAX_TURNS. Returns the config and the note the
    table carries."""
    from search_space.config import load_preset

    if chosen is not None:
        return chosen, ""
    strong = load_preset("strong")
    if n_turns <= DENSE_MAX_TURNS:
        return strong, ""
    return strong.with_values({"retrievers": "bm25+structured", "mmr_lambda": 1.0}), \
        f"dense off above {DENSE_MAX_TURNS} turns (embedding would dominate on 2 cores)"


def measure_throughput(datasets: list[Dataset], workers: list[int], *,
                       config: RetrievalConfig | None = None,
                       report: Callable[[str], None] = lambda line: None,
                       ) -> list[dict[str, Any]]:
    """For each dataset and worker count: one process measures cold, warm-store and
    warm-indexes; a second process, on the same store and embedding cache, the new-process
    phases. Both start from a fresh cache folder and store, removed afterwards. ``config`` is
    the base of the 8 configs (default: see base_config)."""
    rows: list[dict[str, Any]] = []
    for data in datasets:
        for count in workers:
            with tempfile.TemporaryDirectory(prefix="memevolve-throughput-") as scratch:
                for part in ("first", "second"):
                    part_rows = _in_subprocess(data, count, part, Path(scratch), config)
                    for row in part_rows:
                        report(f"{data.name} workers={count} {row['phase']}: "
                               f"{row['questions_per_s']:.0f} questions/s, "
                               f"{row['wall_s']:.1f}s")
                    rows.extend(part_rows)
    return rows


def throughput_markdown(rows: list[dict[str, Any]]) -> str:
    """The table: questions/s and configs/s leave out the start of Ray ("start s") and the
    training of learned rerankers ("train s"), which the wall time includes."""
    lines = ["| dataset | turns | questions | workers | phase | questions/s | configs/s | "
             "store reuse | embedding hits / misses | peak MiB (driver / tree) | start s | "
             "train s | wall s |", "|---|---:|---:|---:|---|" + "---:|" * 8]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['n_turns']} | {r['n_questions']} | {r['workers']} "
                     f"| {r['phase']} | {r['questions_per_s']:.0f} | {r['configs_per_s']:.3f} | "
                     f"{r['store_reuse']:.0%} | {r['embed_hits']} / {r['embed_misses']} | "
                     f"{r['driver_rss_mb']:.0f} / {r['tree_rss_mb']:.0f} | "
                     f"{r['startup_s']:.1f} | {r['train_s']:.1f} | {r['wall_s']:.1f} |")
    notes = sorted({f"{r['dataset']}: {r['note']}" for r in rows if r["note"]})
    return "\n".join(lines + ([""] + notes if notes else []))


def _in_subprocess(data: Dataset, workers: int, part: str, scratch: Path,
                   config: RetrievalConfig | None) -> list[dict[str, Any]]:
    result = scratch / f"{part}.json"
    spec = {"dataset": asdict(data), "workers": workers, "part": part,
            "scratch": str(scratch), "result": str(result),
            "config": config.model_dump(mode="json") if config is not None else None,
            "artefacts": config.artefacts if config is not None else {}}
    env = {**os.environ, "MEMEVOLVE_CACHE_DIR": str(scratch / "cache")}
    # A file, not an argument: a tuned config carries its artefacts (a reranker's model is
    # ~140 KB), more than the command line holds.
    spec_file = scratch / f"{part}-spec.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "evolve.bench.throughput", str(spec_file)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0 or not result.exists():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise MemevolveError(f"the throughput measurement of {data.name} (workers={workers}, "
                             f"{part} process) failed with exit code {done.returncode}:\n{tail}")
    return json.loads(result.read_text())


def _measure(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The body of a measuring process: its phases in order, one row each."""
    from benchmarks.splits import make_split
    from evolve.bench.memory import TreePeak, driver_peak_mb
    from evolve.evaluation import Evaluator, evaluate_configs
    from evolve.store import RunStore

    data = Dataset(**spec["dataset"])
    bench = data.load()
    n_turns = sum(len(c.turns) for c in bench.conversations)
    chosen = None
    if spec.get("config") is not None:
        from search_space.config import RetrievalConfig

        chosen = RetrievalConfig.model_validate(spec["config"]).model_copy(
            update={"artefacts": spec["artefacts"]})
    base, note = base_config(n_turns, chosen)
    configs = [base.with_values(v) for v in VARIANTS]
    ids = [q.id for q in bench.questions]
    scratch = Path(spec["scratch"])
    evaluator = Evaluator(bench, workers=spec["workers"])
    rows: list[dict[str, Any]] = []
    counted = {"hits": 0, "misses": 0}

    def phase(name: str, store: RunStore | None, start_workers: bool) -> None:
        with TreePeak(0.2) as peak:
            began = time.perf_counter()
            if start_workers:
                evaluator.run([])
            startup = time.perf_counter() - began
            results = evaluate_configs(evaluator, configs, ids, part="all",
                                       objective="recall_in_context", store=store,
                                       run_id=run_id if store else None)
            wall = time.perf_counter() - began
        counters = evaluator.embedding_counters()
        hits, misses = counters["hits"] - counted["hits"], counters["misses"] - counted["misses"]
        counted.update(counters)
        # What evaluating costs, apart from starting Ray and from training learned rerankers
        # (a variant whose reranker features change trains its own model, once).
        train = sum(r.train_s for r in results)
        compute = max(wall - startup - train, 1e-9)
        rows.append({
            "dataset": data.name, "benchmark_key": bench.key, "n_turns": n_turns,
            "n_questions": len(ids), "retrievers": base.retrievers, "workers": spec["workers"],
            "phase": name, "configs": len(configs), "wall_s": wall, "startup_s": startup,
            "train_s": train,
            "questions_per_s": len(configs) * len(ids) / compute,
            "configs_per_s": len(configs) / compute,
            "store_reuse": sum(r.n_reused for r in results) / (len(configs) * len(ids)),
            "embed_hits": hits, "embed_misses": misses, "driver_rss_mb": driver_peak_mb(),
            "tree_rss_mb": peak.peak_mb, "note": note})

    with RunStore(scratch / "store.duckdb") as store:
        run_id = f"throughput-{data.name}-w{spec['workers']}"
        if spec["part"] == "first":
            store.create_run(run_id, "bench", bench, make_split(bench, "all"),
                             {"workers": spec["workers"]})
            phase("cold", store, True)
            phase("warm-store", store, False)
            # Indexes and embeddings warm, rankings not: the kept ones would answer every
            # config of this phase (the 8 configs still share theirs, as a search's do).
            evaluator.on_shards(_forget_rankings)
            phase("warm-indexes", None, False)
        else:
            # Every outcome is in the store: a rerun never starts Ray at all.
            phase("new-process-store", store, False)
            phase("new-process-compute", None, True)
    evaluator.close()
    return rows


def _forget_rankings(system: Any) -> None:
    """On a shard: drop the rankings its memory system keeps, if it keeps any."""
    forget = getattr(system, "forget_rankings", None)
    if forget is not None:
        forget()


if __name__ == "__main__":
    arguments = json.loads(Path(sys.argv[1]).read_text())
    measured = _measure(arguments)
    Path(arguments["result"]).write_text(json.dumps(measured))
