"""The `memevolve` command line: data, eval, run, runs, compare, export, report, router."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from benchmarks.errors import MemevolveError
from evolve.bench.cli import bench_app
from evolve.cli_options import build_settings, option_for, settings_options
from evolve.console import (BenchmarkOptionOpt, EmbedderOpt, console, embedder_spec, fail, table,
                            user_errors)
from evolve.router.cli import routed_eval, router_app
from evolve.settings import EvolveSettings

app = typer.Typer(help="memevolve: self-tuning retrieval for LLM agent memory.",
                  no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Benchmark files: fetch (sha256-checked), verify, stats.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(router_app, name="router")


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Let Ray's start-up notices, "
                                 "core_worker warnings and worker output through (otherwise "
                                 "kept in ~/.cache/memevolve/logs/ray-native.log)."),
) -> None:
    if verbose:
        from evolve.ray_actors import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: str = typer.Argument(..., help="locomo, longmemeval-oracle, longmemeval-s or "
                               "longmemeval-m."),
    dest: Optional[Path] = typer.Option(None, help="Where to write the file (default: the "
                                        "data dir, $MEMEVOLVE_DATA_DIR or ~/.cache/memevolve/data)."),
    sha256: Optional[str] = typer.Option(None, help="Expected sha256 (overrides the pinned one)."),
) -> None:
    """Download a benchmark from its official URL and keep it only if its sha256 checks out."""
    from benchmarks.data import fetch

    path, digest = fetch(name, dest=dest, expected_sha256=sha256)
    console.print(f"saved {path}\nsha256 {digest}")


@data_app.command("verify")
@user_errors
def data_verify(path: Path = typer.Argument(..., help="A benchmark file (or MemBench folder).")) -> None:
    """Detect which benchmark and variant a file is, check its hash, print its counts."""
    from benchmarks.data import stats, verify

    result = verify(path)
    console.print(f"{result.path}: {result.benchmark} ({result.variant})")
    if result.sha256:
        console.print(f"sha256 {result.sha256}: {result.hash_status}")
    _print_stats(stats(result.loaded))


@data_app.command("stats")
@user_errors
def data_stats(
    benchmark: str = typer.Option("synthetic", help="Benchmark name."),
    data: Optional[Path] = typer.Option(None, help="Benchmark file (default: fetched copy)."),
    benchmark_option: Optional[list[str]] = BenchmarkOptionOpt,
) -> None:
    """Print sizes, categories, evidence and load-warning counts of a benchmark."""
    from benchmarks import load_benchmark, parse_options
    from benchmarks.data import stats

    _print_stats(stats(load_benchmark(benchmark, data, **parse_options(benchmark_option))))


def _print_stats(values: dict[str, object]) -> None:
    rows = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows.extend((f"{key}: {k}", v) for k, v in value.items())
        else:
            rows.append((key, value))
    console.print(table("counts", ["what", "n"], rows))


# Shared options -----------------------------------------------------------------------------
BenchmarkOpt = option_for(EvolveSettings, "benchmark")
DataOpt = typer.Option(None, "--data", help="Benchmark file or folder (default: the fetched copy; "
                       "synthetic needs none).")
VariantOpt = option_for(EvolveSettings, "variant")
SplitOpt = option_for(EvolveSettings, "split")
SplitSeedOpt = option_for(EvolveSettings, "split_seed")
DbOpt = typer.Option(Path("runs/memevolve.duckdb"), "--db", help="The DuckDB run store.")
WorkersOpt = option_for(EvolveSettings, "workers")
RayAddressOpt = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                             help="Address of an existing Ray cluster (default: start locally).")
AnswerModelOpt = typer.Option(None, "--answer-model", help="litellm model of the LLM answerer, "
                              "e.g. openai/gpt-4o-mini or ollama/llama3.")
ApiBaseOpt = typer.Option(None, "--api-base", help="API base URL for the LLM models.")
JudgeModelOpt = typer.Option(None, "--judge-model", help="litellm model of the LLM judge.")
LocalLLMOpt = typer.Option(False, "--local-llm", help="Serve SmolLM2-135M locally (llama-cpp-python,"
                           " 'make llm') and use it as answer/judge/diagnoser model.")
ObjectiveOpt = option_for(EvolveSettings, "objective")
LLMTimeoutOpt = typer.Option(None, "--llm-timeout", help="Seconds per LLM request attempt "
                             "(default 60).")
LLMRetriesOpt = typer.Option(None, "--llm-retries", help="Retries of a failed LLM request on "
                             "timeouts, rate limits and server errors (default 3).")
LLMConcurrencyOpt = typer.Option(None, "--llm-concurrency", help="LLM calls in flight at once "
                                 "per evaluation worker (default 4).")
OracleOpt = option_for(EvolveSettings, "oracle_gold_categories")
SystemOpt = option_for(EvolveSettings, "system")


def _system(spec: str | None):
    """(class, config class) of --system; a bad value is refused before anything starts."""
    from evolve.systems import resolve_system, space_of

    cls = resolve_system(spec)
    return cls, space_of(cls)


def _llm_dict(model: str | None, api_base: str | None, local: Any,
              tuning: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """LLM settings fields for a model; ``tuning`` holds the --llm-* options given."""
    if local is not None:
        out = local.settings.model_dump(mode="json") | {"api_key": "sk-local"}
    elif model is None:
        return None
    else:
        out = {"model": model}
        if api_base:
            out["api_base"] = api_base
    return out | {k: v for k, v in (tuning or {}).items() if v is not None}


def _llm_tuning(timeout: float | None, retries: int | None,
                concurrency: int | None) -> dict[str, Any]:
    return {"timeout_s": timeout, "max_retries": retries, "concurrency": concurrency}


class _MaybeLocalLLM:
    """Starts the local SmolLM2 server for the command when --local-llm is given."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.server = None

    def __enter__(self):
        if self.enabled:
            from evolve.local_llm import LocalLLMServer

            # The LLM diagnoser's prompt is ~2.6k tokens: the default 2k context would refuse it.
            self.server = LocalLLMServer(n_ctx=8192).__enter__()
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.__exit__(*exc)


def _config(config_file: Optional[Path], preset: Optional[str], answer_model: Optional[str],
            space=None):
    """The config to start from: --config (of ``space``'s system), --preset (the built-in
    system's), or a --system pipeline's defaults."""
    from search_space.config import RetrievalConfig, load_config, load_preset

    space = space or RetrievalConfig
    if config_file is not None and preset is not None:
        raise MemevolveError("pass either --config or --preset, not both.")
    if preset is not None and space is not RetrievalConfig:
        raise MemevolveError(f"--preset {preset}: presets are configs of the built-in system, "
                             f"not of --system {space.system_name}. Fix: drop --preset (the "
                             "pipeline starts from its dimensions' defaults) or pass --config.")
    if config_file:
        config = load_config(config_file, space)
    else:
        config = load_preset(preset or "weak") if space is RetrievalConfig else space()
    if getattr(config, "answerer", None) == "llm":
        if answer_model is None and config.answer_model is None:
            raise MemevolveError("the config sets answerer=llm but no answering model is "
                                 "configured. Fix: pass --answer-model MODEL (any litellm model), "
                                 "--local-llm, or set answerer: extractive.")
        if answer_model is not None and config.answer_model not in (None, answer_model):
            raise MemevolveError(f"the config file names answer_model '{config.answer_model}' "
                                 f"but the command line asks for '{answer_model}'. Fix: drop "
                                 "--answer-model (the file's model answers), or edit the file.")
        if answer_model is not None:
            config = config.model_copy(update={"answer_model": answer_model})
    return config


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _route(config, store, bench, split, oracle_gold_categories: bool):
    """The config as it is evaluated: overrides keyed on the type predicted by a predictor
    trained on the split's dev part (unless the config names one), or, asked for by name, on
    the gold categories. A learned reranker trains on that predictor's dev questions, so a
    config with one gets a predictor too."""
    from evolve.memory.rerank import needs_model
    from evolve.question_types import train_on_split
    from search_space.config import ORACLE_GOLD_CATEGORIES

    if oracle_gold_categories:
        question_types = ORACLE_GOLD_CATEGORIES
    elif config.question_types is not None or not (config.overrides or needs_model(config)):
        for body in config.artefacts.values():
            store.put_artefact(body)
        return config
    else:
        question_types = store.put_artefact(train_on_split(bench, split))
        console.print(f"question types: predictor {question_types} trained on the "
                      f"{len(split.questions(bench, 'dev'))} dev questions of split {split.name}")
    return type(config).model_validate({**config.model_dump(), "question_types": question_types})


# Evaluation -----------------------------------------------------------------------------------
@app.command("eval")
@user_errors
def eval_command(
    benchmark: str = BenchmarkOpt, data: Optional[Path] = DataOpt,
    variant: Optional[str] = VariantOpt,
    benchmark_option: Optional[list[str]] = BenchmarkOptionOpt,
    split: str = SplitOpt, split_seed: int = SplitSeedOpt,
    part: str = typer.Option("all", help="Which part of the split: dev, test or all."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Config YAML (e.g. from "
                                               "'memevolve export')."),
    preset: Optional[str] = typer.Option(None, help="weak or strong (default weak)."),
    db: Path = DbOpt, workers: Optional[int] = WorkersOpt,
    ray_address: Optional[str] = RayAddressOpt, answer_model: Optional[str] = AnswerModelOpt,
    api_base: Optional[str] = ApiBaseOpt, judge_model: Optional[str] = JudgeModelOpt,
    local_llm: bool = LocalLLMOpt, objective: str = ObjectiveOpt,
    router: Optional[Path] = typer.Option(None, "--router", help="Route each question to the "
                                          "tier combination a 'router train' policy picks."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="Router cost weight, within its "
                                        "trained range (higher: cheaper tiers)."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Router: mean context tokens "
                                           "per question to stay within (picks the lambda)."),
    llm_timeout: Optional[float] = LLMTimeoutOpt, llm_retries: Optional[int] = LLMRetriesOpt,
    llm_concurrency: Optional[int] = LLMConcurrencyOpt,
    oracle_gold_categories: bool = OracleOpt, embedder: Optional[str] = EmbedderOpt,
    system: Optional[str] = SystemOpt,
) -> None:
    """Evaluate one config (or a router) on a benchmark in parallel; store every outcome."""
    import time
    import uuid

    from benchmarks import BenchmarkSource, parse_options
    from benchmarks.splits import make_split
    from evolve.evaluation import Evaluator, evaluate_configs, objective_column
    from evolve.memory.system import LLMSpec
    from evolve.reporting import (category_table, invalid_reasons, official_retrieval_table,
                                  print_invalid, question_type_table)
    from evolve.store import RunStore

    objective_column(objective)
    system_cls, space = _system(system)
    tuning = _llm_tuning(llm_timeout, llm_retries, llm_concurrency)
    with _MaybeLocalLLM(local_llm) as server:
        answer = _llm_dict(answer_model, api_base, server, tuning)
        config = _config(config_file, preset, answer["model"] if answer else None, space)
        if answer is None and getattr(config, "answerer", None) == "llm" and config.answer_model:
            answer = _llm_dict(config.answer_model, api_base, None, tuning)
        judge = _llm_dict(judge_model, api_base, server if judge_model or local_llm else None,
                          tuning)
        if objective == "judge" and judge is None:
            raise MemevolveError("objective 'judge' needs a judge model. Fix: pass --judge-model.")
        source = BenchmarkSource(benchmark, str(data) if data else None, variant,
                                 tuple(parse_options(benchmark_option).items()))
        routed = router is not None or lam is not None or budget is not None
        # Where the adapter loads parts, the driver loads the questions alone and each actor
        # its own haystacks (LongMemEval M would not fit twice); the router reads the
        # haystacks in the driver.
        own_shards = source.loads_part and not routed
        bench = source.load(keep=() if own_shards else None)
        the_split = make_split(bench, split, seed=split_seed)
        if routed:
            if space.system_name is not None:
                raise MemevolveError("--router routes the built-in system's tiers. Fix: drop "
                                     "--system, or --router.")
            if router is None or config_file is not None or preset is not None:
                raise MemevolveError("--lambda and --budget go with --router, which replaces "
                                     "--config and --preset. Fix: pass --router MODEL alone.")
            return routed_eval(bench=bench, split=the_split, part=part, router=router, lam=lam,
                               budget=budget, db=db, workers=workers, ray_address=ray_address,
                               answer=answer, judge=judge, objective=objective)
        ids = [q.id for q in the_split.questions(bench, part)]
        run_id = f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        with RunStore(db) as store:
            config = _route(config, store, bench, the_split, oracle_gold_categories)
            store.create_run(run_id, "eval", bench, the_split,
                             {"part": part, "objective": objective, "config": config.config_hash,
                              "oracle_gold_categories": oracle_gold_categories,
                              "system": space.system_name})
            console.print(f"run {run_id}: evaluating {config.config_hash} on {len(ids)} "
                          f"{bench.name} {part} questions")
            # Once the actors hold the haystacks the driver keeps only the questions (and drops
            # its own reference here): a second copy of LongMemEval S/M would not fit.
            evaluator = Evaluator(bench, workers=workers, ray_address=ray_address,
                                  embedder=embedder_spec(embedder),
                                  llm=LLMSpec(answer=answer, judge=judge), progress=True,
                                  oracle_gold_categories=oracle_gold_categories,
                                  hold_conversations=False, system=system_cls,
                                  source=source if own_shards else None)
            name = bench.name
            del bench
            try:
                with evaluator:
                    result = evaluate_configs(evaluator, [config], ids, part=part,
                                              objective=objective, store=store,
                                              run_id=run_id)[0]
            except BaseException:
                store.finish_run(run_id, "failed")
                raise
            invalid = invalid_reasons(result.rows)
            all_invalid = bool(ids) and sum(invalid.values()) == len(ids)
            store.finish_run(run_id, "failed" if all_invalid else "done")
    if not all_invalid:
        oracle = " ORACLE: overrides by GOLD category" if config.routes_on_gold else ""
        console.print(category_table(f"{name} {part} ({len(ids)} questions), config "
                                     f"{config.config_hash}{oracle}", result.rows))
        types = question_type_table(f"question-type predictor {config.question_types} "
                                    "(trained on dev) on these questions", result.rows)
        if types is not None and not config.routes_on_gold:
            console.print(types)
        official = official_retrieval_table("official LongMemEval retrieval metrics",
                                            result.rows)
        if official is not None:
            console.print(official)
    console.print(f"run {run_id}: {objective} {_fmt(result.score)} (non-adversarial), "
                  f"{_fmt(result.adversarial_score)} (adversarial, apart); {result.n_reused} of "
                  f"{len(ids)} outcomes reused from {db}; {result.wall_s:.2f}s")
    if invalid:
        print_invalid(invalid, len(ids))
    if all_invalid:
        fail(f"run {run_id} failed: every one of its {len(ids)} questions is invalid (not "
             "scored), see above. Fix: repair what the reasons name, then rerun.", code=1)


# Evolution ------------------------------------------------------------------------------------
@app.command("run")
@user_errors
@settings_options(EvolveSettings)
def run_command(
    data: Optional[Path] = DataOpt,
    benchmark_option: Optional[list[str]] = BenchmarkOptionOpt,
    config_file: Optional[Path] = typer.Option(None, "--config", help="Start config YAML."),
    preset: Optional[str] = typer.Option(None, help="Start preset: weak (default) or strong."),
    diagnoser_model: Optional[str] = typer.Option(None, "--diagnoser-model",
                                                  help="litellm model of the LLM diagnoser."),
    resume: Optional[str] = typer.Option(None, help="Resume a killed run by its id."),
    db: Path = DbOpt,
    ray_address: Optional[str] = RayAddressOpt, answer_model: Optional[str] = AnswerModelOpt,
    api_base: Optional[str] = ApiBaseOpt, judge_model: Optional[str] = JudgeModelOpt,
    local_llm: bool = LocalLLMOpt,
    plots: bool = typer.Option(True, help="Write the report's PNG plots at the end."),
    llm_timeout: Optional[float] = LLMTimeoutOpt, llm_retries: Optional[int] = LLMRetriesOpt,
    llm_concurrency: Optional[int] = LLMConcurrencyOpt,
    *, settings: dict[str, Any],
) -> None:
    """Evolve a retrieval config on the dev split, guarded; report the best once on test."""
    import os

    from benchmarks import parse_options
    from evolve.evolution import RunFinished, evolve
    from evolve.reporting import print_outcome, write_plots
    from evolve.store import RunStore

    if ray_address:
        os.environ["RAY_ADDRESS"] = ray_address
    # Checked before anything starts: a bad value costs no model load or Ray start.
    build_settings(EvolveSettings, settings)
    _, space = _system(settings["system"])
    if resume is not None and settings["system"] is not None:
        stored = _stored_settings(db, resume).system
        if stored != space.system_name:
            raise MemevolveError(f"--system {settings['system']}: run '{resume}' tuned "
                                 f"{stored or 'the built-in system'}, and a run never mixes "
                                 "systems. Fix: drop --system (--resume takes the run's own).")
    # The store records the canonical name, which is what a resume and a Ray worker import.
    settings = {**settings, "system": space.system_name}
    diagnoser = settings["diagnoser"]
    with _MaybeLocalLLM(local_llm) as server:
        run_settings = None
        if resume is None:
            tuning = _llm_tuning(llm_timeout, llm_retries, llm_concurrency)
            answer = _llm_dict(answer_model, api_base, server, tuning)
            start = _config(config_file, preset, answer["model"] if answer else None, space)
            llm_answerer = getattr(start, "answerer", None) == "llm"
            if answer is None and llm_answerer and start.answer_model:
                answer = _llm_dict(start.answer_model, api_base, None)
            diag = _llm_dict(diagnoser_model, api_base,
                             server if (diagnoser == "llm" and diagnoser_model is None) else None,
                             tuning)
            if diagnoser == "llm" and diag is None:
                raise MemevolveError("--diagnoser llm needs a model. Fix: pass --diagnoser-model "
                                     "(any litellm model) or --local-llm.")
            run_settings = build_settings(EvolveSettings, {
                **settings, "data": str(data) if data else None,
                "benchmark_options": parse_options(benchmark_option),
                "preset": None if config_file or space.system_name else preset or "weak",
                "config_path": str(config_file) if config_file else None,
                "diagnoser_model": diag,
                "answer_model": answer if llm_answerer else None,
                "judge_model": _llm_dict(judge_model, api_base, None, tuning)})
        with RunStore(db) as store:
            try:
                outcome = evolve(store, run_settings, resume=resume,
                                 report=lambda line: console.print(line), progress=True)
            except RunFinished as done:
                console.print(str(done), soft_wrap=True)
                return
            print_outcome(store, outcome)
            if plots:
                for path in write_plots(store, outcome.run_id, db.parent / outcome.run_id):
                    console.print(f"plot {path}")
    strict = run_settings.strict_llm if run_settings is not None else \
        _stored_settings(db, outcome.run_id).strict_llm
    if strict and outcome.llm_always_fell_back:
        fail(f"run {outcome.run_id}: --strict-llm, and the LLM diagnoser fell back to rules in "
             f"every one of its {outcome.llm_rounds} rounds (first reason: "
             f"{outcome.llm_fallbacks[0]}).", code=1)


def _stored_settings(db: Path, run_id: str):
    from evolve.store import RunStore

    with RunStore(db, read_only=True) as store:
        return EvolveSettings.model_validate_json(store.run(run_id)["settings_json"])


# Run store ------------------------------------------------------------------------------------
@app.command("runs")
@user_errors
def runs_command(db: Path = DbOpt) -> None:
    """List the runs in the store."""
    from evolve.store import RunStore
    from evolve.systems import BUILTIN

    with RunStore(db, read_only=True) as store:
        rows = store.list_runs()
    console.print(table(f"runs in {db}", ["run", "kind", "system", "benchmark", "split",
                                          "status", "evaluations", "best dev", "started"],
                        [[r["run_id"], r["kind"], r["system"] or BUILTIN, r["benchmark_key"],
                          r["split_name"],
                          r["state"], r["n_evaluations"], r.get("best_dev_score"),
                          str(r["started_at"])[:19]] for r in rows]))
    for r in rows:
        if r["state"] == "interrupted" or (r["kind"] == "evolve" and r["state"] == "failed"):
            console.print(f"{r['run_id']} was interrupted; continue it with: memevolve run "
                          f"--resume {r['run_id']} --db {db}", soft_wrap=True)


@app.command("compare")
@user_errors
def compare_command(
    a: str = typer.Argument(..., help="Run id, evaluation id or config hash (prefix)."),
    b: str = typer.Argument(..., help="Run id, evaluation id or config hash (prefix)."),
    metric: str = typer.Option("recall_in_context", help="Metric compared."),
    confidence: float = typer.Option(0.95, help="Confidence of the intervals and tests."),
    flips: int = typer.Option(15, help="How many flipped questions to list."),
    db: Path = DbOpt,
) -> None:
    """Per-category deltas B - A: paired sign-flip tests and t-intervals by conversation (by
    question, said so, when there are too few conversations), and flips."""
    from evolve.store import RunStore

    with RunStore(db, read_only=True) as store:
        result = store.compare(a, b, metric=metric, confidence=confidence)
    groups = result.categories + [d for d in (result.overall, result.adversarial) if d]
    rows = [[d.category if d.category != "all" else "all (non-adversarial)", d.n,
             d.n_conversations, d.mean_a, d.mean_b, d.delta,
             f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]", d.p_value, d.method] for d in groups]
    console.print(table(f"{metric}: B ({result.b_hash}) - A ({result.a_hash}), "
                        f"{confidence:.0%} t-interval and two-sided sign-flip p",
                        ["category", "n", "conversations", "A", "B", "delta", "CI", "p", "test"],
                        rows))
    for note in sorted({d.note for d in groups if d.note}):
        console.print(f"note: {note}")
    if result.flipped:
        console.print(table(f"{len(result.flipped)} questions flipped (first {flips})",
                            ["question", "category", "A", "B"],
                            [[f.question_id, f.category, f.a, f.b]
                             for f in result.flipped[:flips]]))


@app.command("export")
@user_errors
def export_command(
    ref: str = typer.Argument(..., help="Run id (its best config), evaluation id or config hash."),
    out: Path = typer.Option(Path("tuned.yaml"), "-o", "--out", help="Where to write the YAML."),
    db: Path = DbOpt,
) -> None:
    """Write a config (with provenance) that 'eval --config' reads back."""
    from evolve.store import RunStore

    with RunStore(db, read_only=True) as store:
        path = store.export_config(ref, out)
    console.print(f"wrote {path}")


@app.command("report")
@user_errors
def report_command(
    run_id: str = typer.Argument(..., help="An evolution run id."),
    out: Optional[Path] = typer.Option(None, help="Folder for the PNG plots "
                                       "(default: next to the store, named by the run)."),
    db: Path = DbOpt,
) -> None:
    """The trajectory of an evolution (round, proposer, edit, dev score with CI, decision)."""
    from evolve.reporting import print_trajectory, write_plots
    from evolve.store import RunStore

    with RunStore(db, read_only=True) as store:
        print_trajectory(store, run_id)
        for path in write_plots(store, run_id, out or db.parent / run_id):
            console.print(f"plot {path}")


cache_app = typer.Typer(help="The shared disk caches of LLM replies and embeddings.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
@user_errors
def cache_clear(
    llm: bool = typer.Option(True, help="Delete the stored LLM replies."),
    embeddings: bool = typer.Option(False, help="Delete the stored embeddings too (recomputing "
                                    "them takes minutes on a large benchmark)."),
) -> None:
    """Delete cached LLM replies (and, asked for, embeddings) under $MEMEVOLVE_CACHE_DIR."""
    from evolve.embeddings import EmbeddingCache
    from evolve.llm import ResponseCache

    if llm:
        replies = ResponseCache()
        console.print(f"deleted {replies.clear()} LLM replies from {replies.path}")
        replies.close()
    if embeddings:
        vectors = EmbeddingCache()
        console.print(f"deleted {vectors.clear()} embeddings from {vectors.path}")
        vectors.close()


@app.command("space")
@user_errors
def space_command(markdown: bool = typer.Option(False, help="Print the README's table."),
                  system: Optional[str] = SystemOpt) -> None:
    """The search space: every dimension, its domain, default and scope."""
    from search_space.dimensions import space_markdown

    _, space = _system(system)
    if markdown:
        print(space_markdown(space.dimensions))
        return
    console.print(table(f"search space of {space.system_name or 'the built-in system'}",
                        ["dimension", "type", "domain", "default", "scope", "description"],
                        [[d.name, d.kind, d.domain(), d.default, d.scope, d.description]
                         for d in space.dimensions]))


def main() -> None:
    app()
