"""`memevolve bench search|eval|scale`: the measurements behind the README's Results section."""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import typer

from benchmarks.errors import MemevolveError
from evolve.console import (BenchmarkOptionOpt, EmbedderOpt, console, embedder_spec, table,
                            user_errors)

bench_app = typer.Typer(help="Benchmarks of memevolve itself: search efficiency against other "
                        "strategies, evaluation throughput, scale on LongMemEval.",
                        no_args_is_help=True)

DbOpt = typer.Option(Path("runs/bench.duckdb"), "--db", help="The DuckDB run store for the "
                     "bench tables (a store made before them needs a new file).")
OutOpt = typer.Option(Path("runs/bench"), "--out", help="Folder for the PNG and the markdown "
                      "tables (with the command that produced them).")
SmokeOpt = typer.Option(False, "--smoke", help="Tiny sizes that run in seconds (what the tests "
                        "and CI run); the numbers mean nothing.")
#: The tiny synthetic benchmark of `bench search --smoke`.
SMOKE_SYNTHETIC = {"conversations": 5, "sessions": 3, "turns": 8, "questions": 6}


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MemevolveError(f"{option} '{text}' is not a comma-separated list of whole "
                             f"numbers. Fix: e.g. {option} 30,60.") from None
    if not values:
        raise MemevolveError(f"{option} is empty. Fix: e.g. {option} 30,60.")
    return values


def _workers(text: str) -> list[int]:
    cores = os.cpu_count() or 1
    out = []
    for value in text.split(","):
        value = value.strip()
        if value == "all":
            out.append(cores)
        elif value.isdigit():
            out.append(int(value))
        else:
            raise MemevolveError(f"--workers '{text}': '{value}' is neither a count nor 'all'. "
                                 "Fix: e.g. --workers 1,all (0 = in this process).")
    return out


def _open_store(db: Path):
    from evolve.store import RunStore

    store = RunStore(db)
    found = {r["table_name"] for r in store.query(
        "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, 'bench_')")}
    if not {"bench_search", "bench_summary", "bench_throughput", "bench_scale"} <= found:
        store.close()
        raise MemevolveError(f"{db}: a run store made before the bench tables existed. Fix: "
                             "pass --db with a new file (the default is runs/bench.duckdb).")
    return store


def _field_values(items: list[str]) -> dict[str, object]:
    """``FIELD=VALUE`` texts as config values, each VALUE read as YAML (7, 0.5, true, user),
    as a config file would give it."""
    import yaml

    values: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise MemevolveError(f"--set '{item}' is not FIELD=VALUE. Fix: e.g. --set "
                                 "index_roles=user.")
        values[name.strip()] = yaml.safe_load(text)
    return values


def _bench_id(kind: str) -> str:
    return f"bench-{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _write_markdown(out: Path, name: str, command: str, body: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    path.write_text(f"```bash\n{command}\n```\n\n{body}\n")
    return path


def _quote(value: object) -> str:
    text = str(value)
    return f"'{text}'" if any(c in text for c in " \t'\"") else text


def _chosen_folds(text: str | None, folds: int | None) -> list[int] | None:
    """``--only-folds``: the fold numbers to run, each one of the ``--folds`` K."""
    if text is None:
        return None
    if folds is None:
        raise MemevolveError(f"--only-folds {text} picks among folds, but no --folds K was "
                             "given. Fix: pass --folds K as well (e.g. --folds 5 --only-folds "
                             "2,3,4).")
    chosen = sorted(set(_ints(text, "--only-folds")))
    wrong = [f for f in chosen if not 0 <= f < folds]
    if wrong:
        raise MemevolveError(f"--only-folds {text}: fold {wrong[0]} is not one of the "
                             f"{folds} folds, which are counted from 0. Fix: pick among "
                             f"0-{folds - 1}.")
    return chosen


# search -------------------------------------------------------------------------------------
@bench_app.command("search")
@user_errors
def search_command(
    benchmark: str = typer.Option("locomo", "--benchmark", "-b", help="locomo, longmemeval, "
                                  "membench or synthetic."),
    data: Optional[Path] = typer.Option(None, "--data", help="Benchmark file (default: the "
                                        "fetched copy)."),
    benchmark_option: Optional[list[str]] = BenchmarkOptionOpt,
    split: str = typer.Option("default", help="Split (LoCoMo default: conversations 0-7 dev, "
                              "8-9 test); with --folds, the folds replace it."),
    folds: Optional[int] = typer.Option(None, "--folds", help="K dev/test folds, every "
                                        "strategy run on each: k-fold by conversation (LoCoMo "
                                        "5: 2 test conversations each), repeated stratified "
                                        "splits on LongMemEval; mean and spread over folds x "
                                        "seeds (smoke: 2)."),
    only_folds: Optional[str] = typer.Option(None, "--only-folds", help="Run only these of "
                                             "the --folds K folds, comma-separated, counted "
                                             "from 0 (e.g. 2,3,4): a long measurement in "
                                             "parts, each fold the same split as in a full "
                                             "run."),
    preset: str = typer.Option("weak", help="Start config of every strategy."),
    strategies: str = typer.Option("memevolve,optuna-tpe,random,hill-climber",
                                   help="Comma-separated strategies."),
    budgets: Optional[str] = typer.Option(None, help="Dev evaluations per run, comma-separated "
                                          "(default 30,60,120; smoke 6)."),
    seeds: Optional[str] = typer.Option(None, help="Seeds, comma-separated (default 0,1,2; "
                                        "smoke 0,1)."),
    candidates: Optional[int] = typer.Option(None, help="memevolve's candidates per round "
                                             "(default 4; smoke 2)."),
    max_context_tokens: int = typer.Option(1000, "--max-context-tokens",
                                           help="Cap on the context budget, for all."),
    workers: Optional[int] = typer.Option(None, help="Ray workers (default: one per core; "
                                          "0 = in this process)."),
    separate_budgets: bool = typer.Option(False, "--separate-budgets", help="Run every budget "
                                          "from scratch (default: one run at the largest, the "
                                          "smaller budgets read from its prefix)."),
    db: Path = DbOpt, out: Path = OutOpt, smoke: bool = SmokeOpt,
) -> None:
    """memevolve's loop vs Optuna TPE, random search, hill-climber at equal dev evaluations."""
    from benchmarks import load_benchmark, parse_options
    from benchmarks.splits import make_split
    from evolve.bench.search import SearchSetup, fold_splits, paired, run_search, summary
    from evolve.evaluation import Evaluator

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    budget_list = _ints(budgets or ("6" if smoke else "30,60,120"), "--budgets")
    if smoke and folds is None:
        folds = 2
    if folds is not None and split != "default":
        raise MemevolveError(f"--split {split} and --folds {folds} both choose the dev/test "
                             "parts. Fix: pass one of them.")
    seed_list = _ints(seeds or ("0,1" if smoke else "0,1,2"), "--seeds")
    per_round = candidates or (2 if smoke else 4)
    options = parse_options(benchmark_option)
    if smoke:
        benchmark, data, options = "synthetic", None, SMOKE_SYNTHETIC
    bench = load_benchmark(benchmark, data, **options)
    splits = fold_splits(bench, folds) if folds is not None else [make_split(bench, split)]
    chosen = _chosen_folds(only_folds, folds)
    run_id = _bench_id("search")
    # memevolve's own run stores stay beside the table, for 'memevolve report RUN --db FILE'.
    setups = [SearchSetup(bench, one, preset=preset, max_context_tokens=max_context_tokens,
                          candidates=per_round, keep_runs=out / run_id, fold=fold,
                          folds=len(splits))
              for fold, one in enumerate(splits) if chosen is None or fold in chosen]
    command = " ".join(["memevolve bench search", *(["--smoke"] if smoke else
                        ["-b", benchmark] + (["--data", _quote(data)] if data else [])
                        + [f"--benchmark-option {k}={_quote(v)}" for k, v in options.items()]),
                        *(["--folds", str(folds)] if folds is not None and not smoke else
                          ["--split", split] if folds is None else []),
                        *(["--only-folds", ",".join(map(str, chosen))] if chosen else []),
                        "--preset", preset, "--strategies", ",".join(names),
                        "--budgets", ",".join(map(str, budget_list)),
                        "--seeds", ",".join(map(str, seed_list)),
                        "--candidates", str(per_round),
                        "--max-context-tokens", str(max_context_tokens)]
                       + (["--workers", str(workers)] if workers is not None else [])
                       + (["--separate-budgets"] if separate_budgets else []))
    store = _open_store(db)
    try:
        # The run row holds the first fold's split; the others are named in the settings.
        store.create_run(run_id, "bench", bench, setups[0].split, {
            "command": command, "folds": [s.model_dump() for s in splits],
            "only_folds": chosen,
            "strategies": names, "budgets": budget_list,
            "seeds": seed_list, "preset": preset, "candidates": per_round,
            "max_context_tokens": max_context_tokens, "workers": workers,
            "separate_budgets": separate_budgets})
        with Evaluator(bench, workers=workers) as evaluator:
            result = run_search(store, setups, evaluator, strategies=names, budgets=budget_list,
                                seeds=seed_list, run_id=run_id, out=out,
                                separate_budgets=separate_budgets,
                                report=lambda line: console.print(line))
        store.finish_run(run_id, "done")
        rows, pairs = summary(store, run_id), paired(store, run_id)
    finally:
        store.close()
    parts = "; ".join(f"dev {len(s.dev_ids)} / test {len(s.test_ids)}" for s in setups)
    _print_search(f"{bench.name}: {len(setups)} folds x {len(seed_list)} seeds ({parts} "
                  f"questions), objective {setups[0].objective} (run {run_id})",
                  rows, pairs, out, "search", command)
    if result.plot:
        console.print(f"plot {result.plot}")


def _print_search(title: str, rows: list[dict], pairs: list[dict], out: Path, name: str,
                  command: str) -> None:
    """A search's table and verdicts, on the console and as OUT/NAME.md under its command."""
    from evolve.bench.search import signed_cell, summary_markdown, verdicts

    console.print(table(
        title, ["strategy", "budget", "evals", "best dev", "test", "dev-test",
                "dev-test size", "excess gap", "AUC", "wall s"],
        [[r["strategy"], r["budget"], round(r["evaluations"], 1),
          f"{r['dev_mean']:.4f} ± {r['dev_sd']:.4f}", f"{r['test_mean']:.4f} ± "
          f"{r['test_sd']:.4f}", f"{r['gap_mean']:+.4f}", f"{r['gap_size_mean']:.4f}",
          signed_cell(r["excess_mean"]), r["auc_mean"], r["wall_mean"]]
         for r in rows]))
    said = verdicts(rows, pairs)
    for line in said:
        console.print(line)
    path = _write_markdown(out, name, command,
                           "\n".join([summary_markdown(rows), ""] + [f"- {v}" for v in said]))
    console.print(f"table {path}")


@bench_app.command("pool")
@user_errors
def pool_command(
    run_ids: list[str] = typer.Argument(..., help="The bench search runs to pool: parts of "
                                        "one measurement made with --only-folds (a run "
                                        "stopped part-way counts with what it finished)."),
    db: Path = DbOpt, out: Path = OutOpt,
) -> None:
    """One table and verdict over bench search runs that each made some of the folds."""
    from evolve.bench.search import paired, pool_runs, summary

    store = _open_store(db)
    try:
        pooled = pool_runs(store, run_ids)
        rows, pairs = summary(store, run_ids), paired(store, run_ids)
    finally:
        store.close()
    missing = sorted(set(range(pooled["folds"])) - set(pooled["covered"]))
    for run_id, folds in pooled["gave"].items():
        console.print(f"{run_id}: folds {', '.join(map(str, folds)) or 'none'}")
    if missing:
        console.print(f"[yellow]folds {', '.join(map(str, missing))} of {pooled['folds']} are "
                      "in none of these runs: the table is over the others.[/yellow]")
    settings = pooled["settings"]
    _print_search(f"{len(pooled['covered'])} of {pooled['folds']} folds x "
                  f"{len(settings['seeds'])} seeds, pooled over {len(run_ids)} runs",
                  rows, pairs, out, "search-pooled",
                  " ".join(["memevolve bench pool", *run_ids, "--db", _quote(db)]))


# eval ---------------------------------------------------------------------------------------
@bench_app.command("eval")
@user_errors
def eval_command(
    datasets: Optional[str] = typer.Option(None, help="Comma-separated: locomo, synthetic-10k, "
                                           "synthetic-100k (default all three; smoke "
                                           "synthetic-smoke)."),
    data: Optional[Path] = typer.Option(None, "--data", help="LoCoMo file (default: the "
                                        "fetched copy)."),
    workers: Optional[str] = typer.Option(None, help="Worker counts, comma-separated; 'all' = "
                                          "one per core, 0 = in-process (default 1,all; "
                                          "smoke 0)."),
    preset: Optional[str] = typer.Option(None, help="The base of the 8 configs: weak or strong "
                                         "(default strong, BM25 + structured above 20,000 "
                                         "turns)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="The base of the 8 "
                                               "configs, as a YAML file (e.g. from 'memevolve "
                                               "export')."),
    db: Path = DbOpt, out: Path = OutOpt, smoke: bool = SmokeOpt,
) -> None:
    """Evaluation throughput, cold and warm, 1 and all workers: questions/s, reuse, memory."""
    from evolve.bench.throughput import dataset, measure_throughput, throughput_markdown
    from search_space.config import load_config, load_preset

    if config_file is not None and preset is not None:
        raise MemevolveError("pass either --config or --preset, not both.")
    config = load_config(config_file) if config_file else (load_preset(preset) if preset
                                                           else None)

    names = [d.strip() for d in (datasets or ("synthetic-smoke" if smoke else
                                              "locomo,synthetic-10k,synthetic-100k")).split(",")]
    counts = _workers(workers or ("0" if smoke else "1,all"))
    chosen = [dataset(n, str(data) if data else None) for n in names]
    command = " ".join(["memevolve bench eval", *(["--smoke"] if smoke else []),
                        "--datasets", ",".join(names), "--workers", workers or
                        ("0" if smoke else "1,all")] + (["--data", _quote(data)] if data else [])
                       + (["--config", _quote(config_file)] if config_file else [])
                       + (["--preset", preset] if preset else []))
    run_id = _bench_id("eval")
    # Checked before the long measurement, written after it: the file stays free meanwhile.
    _open_store(db).close()
    rows = measure_throughput(chosen, counts, config=config,
                              report=lambda line: console.print(line))
    with _open_store(db) as store:
        store.insert_rows("bench_throughput", [{"run_id": run_id, **r} for r in rows])
    console.print(table(f"evaluation throughput, 8 configs at once (run {run_id})",
                        ["dataset", "workers", "phase", "q/s", "configs/s", "reuse",
                         "embed hit/miss", "MiB", "train s", "wall s"],
                        [[r["dataset"], r["workers"], r["phase"], round(r["questions_per_s"]),
                          r["configs_per_s"], f"{r['store_reuse']:.0%}",
                          f"{r['embed_hits']}/{r['embed_misses']}", round(r["tree_rss_mb"]),
                          r["train_s"], r["wall_s"]] for r in rows]))
    for note in sorted({f"{r['dataset']}: {r['note']}" for r in rows if r["note"]}):
        console.print(note)
    path = _write_markdown(out, "eval", command, throughput_markdown(rows))
    console.print(f"table {path}")


# scale --------------------------------------------------------------------------------------
@bench_app.command("scale")
@user_errors
def scale_command(
    benchmark: str = typer.Option("longmemeval", "--benchmark", "-b", help="longmemeval (a "
                                  "file), or synthetic with --benchmark-option "
                                  "shape=longmemeval (S size by default, M with sessions=500)."),
    data: Optional[Path] = typer.Option(None, "--data", help="LongMemEval file, oracle, S or M "
                                        "(default: the fetched oracle)."),
    benchmark_option: Optional[list[str]] = BenchmarkOptionOpt,
    variant: Optional[str] = typer.Option(None, help="LongMemEval: oracle, s or m (inferred)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N questions."),
    preset: Optional[str] = typer.Option(None, help="The config measured: weak or strong "
                                         "(default strong, a hybrid)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="The config measured, "
                                               "as a YAML file (e.g. index_roles: user)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", metavar="FIELD=VALUE",
                                                   help="Change a field of the config, "
                                                   "repeatable: e.g. --set index_roles=user "
                                                   "(LongMemEval's official setting)."),
    embedder: Optional[str] = EmbedderOpt,
    workers: Optional[int] = typer.Option(None, help="Ray workers (default: one per core; "
                                          "0 = in this process)."),
    db: Path = DbOpt, out: Path = OutOpt, smoke: bool = SmokeOpt,
) -> None:
    """Wall time and peak memory (driver, each actor) of every stage: load, units, BM25 index,
    embedding cold and warm, evaluation."""
    from benchmarks import BenchmarkSource, parse_options
    from evolve.bench.scale import (first_questions, measure_scale, quantiles_shown,
                                    scale_markdown)
    from search_space.config import load_config, load_preset

    if config_file is not None and preset is not None:
        raise MemevolveError("pass either --config or --preset, not both.")
    config = load_config(config_file) if config_file else load_preset(preset or "strong")
    changes = _field_values(set_values or [])
    if changes:
        config = config.with_values(changes)
    spec = embedder_spec(embedder)
    limit = limit if limit is not None else (5 if smoke else None)
    workers = workers if workers is not None else (0 if smoke else None)
    options = parse_options(benchmark_option)
    command = " ".join(["memevolve bench scale", *(["--smoke"] if smoke else []),
                        "-b", benchmark]
                       + (["--data", _quote(data)] if data else [])
                       + [f"--benchmark-option {k}={_quote(v)}" for k, v in options.items()]
                       + (["--variant", variant] if variant else [])
                       + (["--limit", str(limit)] if limit is not None and not smoke else [])
                       + (["--config", _quote(config_file)] if config_file else
                          ["--preset", preset or "strong"])
                       + [f"--set {k}={_quote(v)}" for k, v in changes.items()]
                       + (["--embedder", embedder] if embedder else [])
                       + (["--workers", str(workers)] if workers is not None and not smoke
                          else []))
    run_id = _bench_id("scale")
    # Checked before the long measurement, written after it: the file stays free meanwhile.
    _open_store(db).close()

    # Each Ray actor loads its own haystacks from this; the driver loads the questions only.
    source = BenchmarkSource(benchmark, str(data) if data else None, variant,
                             tuple(options.items()))

    def load():
        return first_questions(source.load(keep=()), limit)

    with tempfile.TemporaryDirectory(prefix="memevolve-scale-") as cache_dir:
        measured = measure_scale(load, config, spec, Path(cache_dir), workers=workers,
                                 source=source, report=lambda line: console.print(line))
    bench, rows, counts = measured.benchmark, measured.rows, measured.counts
    with _open_store(db) as store:
        store.create_run(run_id, "bench", bench, measured.split,
                         {"command": command, "limit": limit, "workers": workers,
                          "config": config.canonical_json(), "embedder": spec.backend})
        with store.transaction():
            store.insert_rows("bench_scale", [{"run_id": run_id,
                                               "benchmark_key": bench.key, **r} for r in rows])
        store.finish_run(run_id, "done")
    console.print(table(f"{bench.name} {bench.variant}: {counts['questions']} questions, "
                        f"{counts['turns']} turns (run {run_id})",
                        ["stage", "wall s", "p50 ms", "p95 ms", "texts", "cache hits",
                         "driver MiB", "actors MiB", "sum MiB", "tree MiB"],
                        [[r["stage"], round(r["total_s"], 1), *quantiles_shown(r),
                          r["texts"], r["cache_hits"],
                          round(r["driver_peak_mb"]),
                          " + ".join(f"{p:.0f}" for p in r["actor_peaks_mb"]) or "-",
                          round(r["driver_peak_mb"] + r["actors_peak_mb"]),
                          round(r["tree_peak_mb"])] for r in rows]))
    path = _write_markdown(out, "scale", command, scale_markdown(measured))
    console.print(f"table {path}")
