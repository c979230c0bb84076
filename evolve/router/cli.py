"""`memevolve router train|eval` and the routed `memevolve eval --router` (imports stay light)."""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from benchmarks.errors import MemevolveError
from evolve.console import BenchmarkOptionOpt, console, table, user_errors
from evolve.router import frontier as _frontier

if TYPE_CHECKING:
    from evolve.router.frontier import FrontierPoint

router_app = typer.Typer(help="Budget-tier router: per-query low/mid/high memory work, learned "
                         "with reinforcement learning.", no_args_is_help=True)

DEFAULT_LAMBDAS = ",".join(f"{lam:g}" for lam in _frontier.DEFAULT_LAMBDAS)


@router_app.command("train")
@user_errors
def train_command(
    benchmark: str = typer.Option("synthetic", "--benchmark", "-b",
                                  help="locomo, longmemeval, membench or synthetic."),
    data: Optional[Path] = typer.Option(None, "--data", help="Benchmark file or folder."),
    variant: Optional[str] = typer.Option(None, help="Benchmark variant."),
    benchmark_option: Optional[list[str]] = BenchmarkOptionOpt,
    split: str = typer.Option("default", help="default (LoCoMo: budgetmem), random, stratified; "
                              "train on dev minus its last quarter of conversations, validate "
                              "on that quarter, test on test."),
    split_seed: int = typer.Option(0, help="Seed of the split."),
    tiers: Optional[Path] = typer.Option(None, "--tiers", help="Tiers YAML (default: "
                                         "search_space/tiers/default.yaml)."),
    modules: Optional[str] = typer.Option(None, help="Comma-separated modules to route (default: "
                                          "every module, less those with LLM tiers unless "
                                          "--answer-model is given); the rest stay low."),
    objective: str = typer.Option("recall_in_context", help="Quality: recall_in_context, "
                                  "recall_at_k or answer_f1."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated training seeds (one policy each; "
                              "CIs in 'router eval' are over them)."),
    steps: int = typer.Option(1500, help="Policy-gradient steps per seed."),
    lambda_min: float = typer.Option(0.01, "--lambda-min", help="Smallest cost weight trained."),
    lambda_max: float = typer.Option(2.0, "--lambda-max", help="Largest cost weight trained."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Router file (default: "
                                       "runs/router-<benchmark>.pt next to --db)."),
    db: Path = typer.Option(Path("runs/memevolve.duckdb"), "--db", help="The DuckDB run store."),
    workers: Optional[int] = typer.Option(None, help="Ray workers (0 = in this process)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS"),
    answer_model: Optional[str] = typer.Option(None, "--answer-model", help="litellm model of "
                                               "the LLM answering tiers."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="API base of that model."),
) -> None:
    """Log every tier combination on the split, then train one policy per seed (REINFORCE)."""
    from benchmarks import load_benchmark, parse_options
    from benchmarks.splits import make_split
    from evolve.evaluation import Evaluator
    from evolve.memory.system import EmbedderSpec, LLMSpec
    from evolve.router.policy import TrainSettings
    from evolve.router.training import train_router
    from evolve.store import RunStore

    seed_list = _numbers(seeds, int, "--seeds")
    try:
        settings = TrainSettings(steps=steps, lambda_min=lambda_min, lambda_max=lambda_max)
    except ValueError as exc:
        raise MemevolveError(f"{exc}. Fix: pass 0 < --lambda-min < --lambda-max.") from None
    answer = _answer_llm(answer_model, api_base)
    space = _tier_space(tiers, modules, answer_model)
    options = parse_options(benchmark_option)
    bench = load_benchmark(benchmark, data, variant=variant, **options)
    the_split = make_split(bench, split, seed=split_seed)
    run_id = f"router-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    out = out or db.parent / f"router-{bench.name}.pt"
    console.print(f"routing {', '.join(space.module_names)} ({len(space.combos)} tier "
                  f"combinations, tiers {space.tiers_hash}) on {bench.name}")
    with RunStore(db) as store:
        store.create_run(run_id, "router", bench, the_split,
                         {"tiers": space.tiers_hash, "objective": objective, "seeds": seed_list,
                          "steps": steps, "lambda": [lambda_min, lambda_max]})
        with Evaluator(bench, workers=workers, ray_address=ray_address, embedder=EmbedderSpec(),
                       llm=LLMSpec(answer=answer), progress=True) as evaluator:
            model = train_router(evaluator, the_split, space, store=store, run_id=run_id,
                                 objective=objective, seeds=seed_list, settings=settings,
                                 report=console.print)
        model.benchmark["data"] = str(data) if data else None
        model.benchmark["options"] = options
        path = model.save(out)
        store.insert_rows("router_models", [{
            "model_id": run_id, "path": str(path), "tiers_hash": model.tiers_hash,
            "benchmark_key": bench.key, "feature_fingerprint": model.feature_spec.fingerprint,
            "objective": objective, "lambda_min": lambda_min, "lambda_max": lambda_max,
            "seeds": model.seeds, "val_area": model.val_area, "selected_seed": model.selected_seed,
            "train_wall_s": model.metrics["train_wall_s"]}])
        store.finish_run(run_id, "done")
    console.print(f"router {run_id}: {len(seed_list)} seeds trained in "
                  f"{model.metrics['train_wall_s']:.1f}s on {model.metrics['n_train']} questions "
                  f"(validation {model.metrics['n_val']}); selected seed {model.selected_seed}; "
                  f"saved {path}\nnext: memevolve router eval {path} --db {db}")


@router_app.command("eval")
@user_errors
def eval_command(
    model_path: Path = typer.Argument(..., help="A router file from 'memevolve router train'."),
    lambdas: str = typer.Option(DEFAULT_LAMBDAS, help="Comma-separated cost weights."),
    evolved: Optional[str] = typer.Option(None, help="Also place the best config of an evolution "
                                          "run: its run id, an evaluation id or config hash in "
                                          "--db, or a YAML file from 'memevolve export'."),
    data: Optional[Path] = typer.Option(None, "--data", help="Benchmark file (default: the one "
                                        "the router was trained on)."),
    plot: Optional[Path] = typer.Option(None, help="PNG of the frontier (default: "
                                        "<db folder>/<run id>/frontier.png)."),
    db: Path = typer.Option(Path("runs/memevolve.duckdb"), "--db", help="The DuckDB run store."),
    workers: Optional[int] = typer.Option(None, help="Ray workers for --evolved (0 = here)."),
) -> None:
    """The test frontier: router per lambda (CIs over seeds) vs every fixed combination, the
    per-query oracle and an evolved config; table, PNG and rows in router_frontier."""
    from benchmarks.splits import make_split
    from evolve.memory.system import MemorySystem
    from evolve.router.frontier import frontier, plot_frontier, store_frontier
    from evolve.router.model import RouterModel
    from evolve.router.outcomes import load_outcomes
    from evolve.router.training import router_data
    from evolve.store import RunStore

    model = RouterModel.load(model_path)
    lambda_list = _numbers(lambdas, float, "--lambdas")
    for lam in lambda_list:
        model.check_lambda(lam)
    bench = _benchmark(model, data)
    the_split = make_split(bench, model.benchmark["split"], seed=model.benchmark["split_seed"])
    questions = the_split.questions(bench, "test")
    space = model.tier_space
    run_id = f"router-eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with RunStore(db) as store:
        outcomes = load_outcomes(store, space, bench.key, [q.id for q in questions],
                                 model.objective)
        system = MemorySystem([c for c in bench.conversations if c.id in set(the_split.test)],
                              questions)
        test = router_data(bench, outcomes, model.feature_spec, system, space.cost_weights,
                           model.cost_reference)
        points = frontier(model, test, lambda_list)
        store.create_run(run_id, "router", bench, the_split,
                         {"model": str(model_path), "lambdas": lambda_list, "evolved": evolved})
        if evolved is not None:
            points.append(_evolved_point(store, evolved, bench, test, model, run_id, workers))
        model_id = model.metrics.get("run_id", str(model_path))
        store_frontier(store, run_id, model_id, points)
        store.finish_run(run_id, "done")
    _print_frontier(points, f"{bench.name} test ({len(test.features)} questions), "
                    f"{model.objective}; modules {', '.join(space.module_names)}")
    path = plot_frontier(points, plot or db.parent / run_id / "frontier.png",
                         f"{bench.name} test: router vs fixed tiers ({model.objective})")
    console.print(f"run {run_id}: frontier stored in {db} (router_frontier); plot {path}")


def routed_eval(*, bench: Any, split: Any, part: str, router: Path, lam: Optional[float],
                budget: Optional[float], db: Path, workers: Optional[int],
                ray_address: Optional[str], answer: dict[str, Any] | None,
                judge: dict[str, Any] | None, objective: str) -> None:
    """`memevolve eval --router MODEL --lambda X | --budget TOKENS`: route, evaluate, store."""
    from evolve.evaluation import Evaluator
    from evolve.memory.system import EmbedderSpec, LLMSpec
    from evolve.reporting import category_table
    from evolve.router.model import RouterModel
    from evolve.router.routed import routed_evaluation
    from evolve.store import RunStore

    model = RouterModel.load(router)
    space = model.tier_space
    if space.needs_llm and answer is None:
        answer = {"model": space.answer_model}
    if space.needs_llm and answer["model"] != space.answer_model:
        raise MemevolveError(f"{router} routes to LLM tiers of {space.answer_model}, not "
                             f"{answer['model']}. Fix: pass --answer-model {space.answer_model}, "
                             "or retrain the router with the other model.")
    questions = split.questions(bench, part)
    run_id = f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with RunStore(db) as store:
        store.create_run(run_id, "eval", bench, split,
                         {"part": part, "objective": objective, "router": str(router),
                          "lambda": lam, "budget": budget, "tiers": model.tiers_hash})
        with Evaluator(bench, workers=workers, ray_address=ray_address, embedder=EmbedderSpec(),
                       llm=LLMSpec(answer=answer, judge=judge), progress=True) as evaluator:
            result = routed_evaluation(evaluator, model, questions, lam=lam, budget=budget,
                                       part=part, objective=objective, store=store,
                                       run_id=run_id)
        store.finish_run(run_id, "done")
    console.print(category_table(f"{bench.name} {part} ({len(questions)} questions), routed by "
                                 f"{router} at lambda {result.lam:.4g}", result.rows))
    console.print(table("tier combinations chosen", ["combination (" + ", ".join(
        space.module_names) + ")", "questions"], sorted(result.combos.items())))
    score = "-" if result.score is None else f"{result.score:.4f}"
    console.print(f"run {run_id}: {objective} {score}; {result.n_reused} of {len(questions)} "
                  f"outcomes reused from {db}")


# Helpers ------------------------------------------------------------------------------------
def _numbers(text: str, kind: type, option: str) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MemevolveError(f"{option} '{text}' is not a comma-separated list of "
                             f"{kind.__name__} values. Fix: e.g. {option} "
                             f"{'0,1,2' if kind is int else DEFAULT_LAMBDAS}.") from None
    if not values:
        raise MemevolveError(f"{option} is empty. Fix: give at least one value.")
    return values


def _answer_llm(answer_model: Optional[str], api_base: Optional[str]) -> dict[str, Any] | None:
    if answer_model is None:
        return None
    from evolve.llm import LLMSettings, register_zero_price

    answer: dict[str, Any] = {"model": answer_model, **({"api_base": api_base} if api_base else {})}
    if LLMSettings(**answer).is_local:
        register_zero_price(answer_model)
    return answer


def _tier_space(path: Optional[Path], modules: Optional[str], answer_model: Optional[str]):
    from search_space.tiers import DEFAULT_TIERS, load_tiers

    space = load_tiers(path or DEFAULT_TIERS)
    if modules is not None:
        names = [m.strip() for m in modules.split(",") if m.strip()]
    else:
        names = [m.name for m in space.modules if answer_model is not None or not m.needs_llm]
    space = space.select(names)
    return space.with_answer_model(answer_model if space.needs_llm else None)


def _benchmark(model: Any, data: Optional[Path]):
    from benchmarks import load_benchmark

    info = model.benchmark
    # The key (name, variant, content hash) is checked below; the variant is inferred again.
    bench = load_benchmark(info["name"], data or info.get("data"), **info.get("options", {}))
    if bench.key != info["key"]:
        raise MemevolveError(f"{model.source} was trained on {info['key']}, but the benchmark "
                             f"loaded is {bench.key}. Fix: pass --data with the file it was "
                             "trained on.")
    return bench


def _evolved_point(store: Any, ref: str, bench: Any, test: Any, model: Any, run_id: str,
                   workers: Optional[int]) -> "FrontierPoint":
    """The evolved config on the same test questions, through the evaluation cache."""
    import numpy as np

    from evolve.evaluation import Evaluator, evaluate_configs, objective_column
    from evolve.router.frontier import FrontierPoint
    from evolve.router.outcomes import Outcomes, list_price, normalised_cost

    if Path(ref).suffix in (".yaml", ".yml"):
        from search_space.config import load_config

        config = load_config(ref)
        config_hash = config.config_hash
    else:
        config_hash, _ = store.resolve(ref)
        config = store.config(config_hash)
    ids = list(test.outcomes.question_ids)
    with Evaluator(bench, workers=workers) as evaluator:
        rows = evaluate_configs(evaluator, [config], ids, part="test", objective=model.objective,
                                store=store, run_id=run_id)[0].rows
    column = objective_column(model.objective)
    single = Outcomes(tuple(ids), test.outcomes.conversation_ids, ("evolved",),
                      np.array([[float(r[column])] for r in rows]),
                      np.array([[r["context_tokens"]] for r in rows], dtype=float),
                      np.array([[list_price(config.answer_model, r["llm_prompt_tokens"],
                                            r["llm_completion_tokens"])] for r in rows]),
                      np.array([[r["latency_ms"]] for r in rows], dtype=float))
    cost = normalised_cost(single, model.tier_space.cost_weights, model.cost_reference)
    return FrontierPoint("evolved", config_hash, None, 0, len(ids), float(single.quality.mean()),
                         None, float(single.context_tokens.mean()), None, float(cost.mean()))


def _print_frontier(points: list["FrontierPoint"], title: str) -> None:
    from evolve.router.frontier import router_margin, router_quality_at

    rows = []
    for p in points:
        margin = router_margin(points, p)
        other = None if margin is None else (
            f"λ={margin[0].label}" if margin[0].method == "router" else margin[0].label)
        mixed = router_quality_at(points, p.context_tokens) if p.method != "router" else None
        rows.append([p.method, p.label, _with_ci(p.quality, p.quality_ci, 3),
                     _with_ci(p.context_tokens, p.context_tokens_ci, 1), p.cost, other,
                     None if margin is None else margin[1],
                     None if mixed is None or p.method == "oracle" else mixed - p.quality])
    console.print(table(title, ["method", "lambda / tiers", "quality", "context tokens",
                                "norm. cost", "vs (costing <=)", "router - other",
                                "router mix at same tokens - other"], rows))
    console.print("vs: a router point against the best fixed combination costing no more; a "
                  "fixed or evolved config against the best router point costing no more. "
                  "Router mix: two adjacent lambdas mixed at random to spend exactly as much.")


def _with_ci(mean: float, ci: tuple[float, float] | None, digits: int) -> str:
    if ci is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(ci[1] - ci[0]) / 2:.{digits}f}"
