"""Search efficiency head to head: memevolve's guarded loop, Optuna TPE, random search and an
elitist hill-climber, at equal budgets of dev evaluations, each final choice scored once on test."""
from __future__ import annotations

import json
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import optuna

from benchmarks.errors import MemevolveError
from evolve.evaluation import Evaluator, evaluate_configs
from evolve.progress import format_duration, progress_every_s
from search_space.dimensions import DIMENSIONS_BY_NAME
from search_space.optuna_space import distributions

if TYPE_CHECKING:
    from benchmarks.model import Benchmark
    from benchmarks.splits import Split
    from evolve.store import RunStore
    from search_space.config import RetrievalConfig

STRATEGIES = ("memevolve", "optuna-tpe", "random", "hill-climber")


@dataclass(frozen=True)
class SearchSetup:
    """What every strategy shares: benchmark, split, start preset, objective and token cap."""

    benchmark: Benchmark
    split: Split
    preset: str = "weak"
    objective: str = "recall_in_context"
    max_context_tokens: int = 1000
    #: memevolve's candidates per round (the others evaluate one config at a time).
    candidates: int = 4
    #: Keeps memevolve's own run stores (one per run) for `memevolve report`; None: discarded.
    keep_runs: Path | None = None
    #: Which fold ``split`` is (0 for a single split), of how many (1: a single split).
    fold: int = 0
    folds: int = 1

    @property
    def label(self) -> str:
        """The head of the fold's progress lines, e.g. fold2of5 ('' for a single split)."""
        return f"fold{self.fold}of{self.folds}" if self.folds > 1 else ""

    @cached_property
    def start(self) -> RetrievalConfig:
        """The preset as memevolve's loop starts from it (context budget within the cap, routed
        by the question-type predictor trained on the split's dev part); it carries the
        predictor, so every config derived from it does too."""
        from evolve.evolution import EvolveSettings, start_config
        from evolve.question_types import train_on_split
        from search_space.artefacts import artefact_hash

        body = train_on_split(self.benchmark, self.split)
        config = start_config(EvolveSettings(preset=self.preset,
                                             max_context_tokens=self.max_context_tokens),
                              artefact_hash(body))
        return config.model_copy(update={"artefacts": {artefact_hash(body): body}})

    @cached_property
    def dev_ids(self) -> list[str]:
        return [q.id for q in self.split.questions(self.benchmark, "dev")]

    @cached_property
    def test_ids(self) -> list[str]:
        return [q.id for q in self.split.questions(self.benchmark, "test")]


@dataclass(frozen=True)
class Choice:
    """What a strategy would return from the moment ``after`` evaluations' worth of cost were
    spent: the config and its dev score."""

    after: float
    config: RetrievalConfig
    dev: float


@dataclass
class Trace:
    """One (strategy, seed, budget) run: every dev evaluation in order, the choice and its test
    score."""

    strategy: str
    seed: int
    budget: int
    fold: int = 0
    config_hashes: list[str] = field(default_factory=list)
    dev_scores: list[float] = field(default_factory=list)
    best_so_far: list[float] = field(default_factory=list)
    #: Each evaluation's share of the budget: the questions it scored over the dev questions
    #: (memevolve's screened candidates cost less than 1).
    costs: list[float] = field(default_factory=list)
    choice: RetrievalConfig | None = None
    choice_dev: float = math.nan
    test_score: float = math.nan
    #: The choice's objective on the adversarial test questions, apart from the headline.
    test_adversarial: float = math.nan
    #: The start config's test score on this fold (every strategy's first evaluation is the
    #: start, so its dev score is dev_scores[0]).
    start_test: float = math.nan
    wall_s: float = 0.0
    #: Every change of the choice, in order (the last is ``choice``): what a shorter budget's
    #: run would have returned (see prefix).
    choices: list[Choice] = field(default_factory=list)
    #: Seconds since the run began when each evaluation's outcome was known.
    elapsed: list[float] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.choice_dev - self.test_score

    @property
    def excess_gap(self) -> float:
        """The gap less the start config's own dev - test on this fold: how much of the dev
        gain over the start did not hold on test. The fold's dev and test parts differ in
        difficulty by the same amount for every strategy; the raw gap counts that difference
        as overfitting (or hides overfitting behind it), this one does not."""
        if not self.dev_scores:
            return math.nan
        return self.gap - (self.dev_scores[0] - self.start_test)

    @property
    def spent(self) -> float:
        return sum(self.costs)

    @property
    def auc(self) -> float:
        """Area under the best-so-far curve over the budget (each point as wide as its
        evaluation's cost), divided by the budget; a run that stopped early keeps its last value
        to the end."""
        if not self.best_so_far:
            return math.nan
        area = sum(b * c for b, c in zip(self.best_so_far, self.costs))
        return (area + self.best_so_far[-1] * max(0.0, self.budget - self.spent)) / self.budget

    def curve(self) -> list[float]:
        """The best-so-far value after 1, 2, ... ``budget`` evaluations' worth of cost."""
        out, spent, i = [], 0.0, 0
        for x in range(1, self.budget + 1):
            while i < len(self.costs) and spent + self.costs[i] <= x + 1e-9:
                spent += self.costs[i]
                i += 1
            out.append(self.best_so_far[max(0, i - 1)])
        return out

    def add(self, config_hash: str, dev_score: float, best_so_far: float,
            cost: float = 1.0, elapsed: float = 0.0) -> None:
        self.config_hashes.append(config_hash)
        self.dev_scores.append(dev_score)
        self.best_so_far.append(best_so_far)
        self.costs.append(cost)
        self.elapsed.append(elapsed)

    def choose(self, config: RetrievalConfig, dev: float) -> None:
        """The strategy's choice from now on (after the evaluations added so far)."""
        if self.choices and self.choices[-1].config.config_hash == config.config_hash:
            return
        self.choices.append(Choice(self.spent, config, dev))
        self.choice, self.choice_dev = config, dev

    def prefix(self, budget: int) -> Trace:
        """This run as one with the smaller ``budget`` would have gone: the evaluations that fit
        into it and the choice made by then, not yet scored on test. Exact for a strategy whose
        steps do not depend on the budget (the hill-climber, TPE, random); memevolve's rounds
        do not either, except that a run of ``budget`` would have shrunk the round that crosses
        it to fit, where the prefix stops before that round's decision (at most one round's
        gain is missed, never one gained)."""
        if budget > self.budget:
            raise ValueError(f"a prefix of budget {budget} of a run of {self.budget}")
        out = Trace(self.strategy, self.seed, budget, self.fold, start_test=self.start_test)
        spent = 0.0
        for i, cost in enumerate(self.costs):
            if spent + cost > budget + 1e-9:
                break
            spent += cost
            out.add(self.config_hashes[i], self.dev_scores[i], self.best_so_far[i], cost,
                    self.elapsed[i])
        made = [c for c in self.choices if c.after <= spent + 1e-9]
        out.choices = made
        out.choice, out.choice_dev = made[-1].config, made[-1].dev
        out.wall_s = out.elapsed[-1] if out.elapsed else 0.0
        return out


def search_dimensions() -> list[str]:
    """The space every strategy searches: what memevolve's exploration may change with the
    extractive answerer (the answerer fixed, no LLM-only dimension, no one-value choice)."""
    from evolve.explore import usable_dimensions

    return usable_dimensions("extractive")


class DevBudget:
    """Dev evaluations against a fixed budget, the start config being the first. A config seen
    before in this run is served from the run's own memo (no wall time) but still counts, as it
    would for a user paying per evaluation."""

    def __init__(self, setup: SearchSetup, evaluator: Evaluator, trace: Trace,
                 report: Callable[[str], None] = lambda line: None) -> None:
        self.setup = setup
        self.evaluator = evaluator
        self.trace = trace
        self._dev_ids = setup.dev_ids
        self._memo: dict[str, float] = {}
        self._began = time.perf_counter()
        self._report = report
        self._reported = self._began
        self._every_s = progress_every_s()

    @property
    def remaining(self) -> int:
        return self.trace.budget - len(self.trace.dev_scores)

    def evaluate(self, config: RetrievalConfig, *, incumbent_after: Callable[[float], float]
                 ) -> float:
        """Score one config on dev; ``incumbent_after`` maps its score to the dev score of what
        the strategy would return after seeing it (its best-so-far point)."""
        if self.remaining <= 0:
            raise MemevolveError(f"{self.trace.strategy} asked for evaluation "
                                 f"{self.trace.budget + 1} of a budget of {self.trace.budget}.")
        key = config.config_hash
        if key not in self._memo:
            result = evaluate_configs(self.evaluator, [config], self._dev_ids, part="dev",
                                      objective=self.setup.objective)[0]
            self._memo[key] = _score(result.score)
        score = self._memo[key]
        now = time.perf_counter()
        best = incumbent_after(score)
        improved = not self.trace.best_so_far or best > self.trace.best_so_far[-1]
        self.trace.add(key, score, best, elapsed=now - self._began)
        # A line when the best moves, at the end, and otherwise at most one per progress
        # interval: a long run can be followed in its log without a line per evaluation.
        if improved or not self.remaining or now - self._reported >= self._every_s:
            self._reported = now
            self._report(f"evaluation {len(self.trace.dev_scores)}/{self.trace.budget}: dev "
                         f"{score:.4f}, best {best:.4f}, {format_duration(now - self._began)}")
        return score


#: (setup, evaluator, budget, seed, report): ``report`` takes the run's progress lines.
Strategy = Callable[[SearchSetup, Evaluator, int, int, Callable[[str], None]], Trace]
_STRATEGY_FUNCTIONS: dict[str, Strategy] = {}


def _strategy(name: str) -> Callable[[Strategy], Strategy]:
    def register(function: Strategy) -> Strategy:
        _STRATEGY_FUNCTIONS[name] = function
        return function

    return register


def run_strategy(name: str, setup: SearchSetup, evaluator: Evaluator, budget: int,
                 seed: int, report: Callable[[str], None] = lambda line: None) -> Trace:
    """One run of a strategy: at most ``budget`` dev evaluations, then its choice once on test;
    ``report`` takes its progress lines while it runs (memevolve's rounds, the others' best)."""
    if name not in _STRATEGY_FUNCTIONS:
        raise MemevolveError(f"unknown strategy '{name}'. Fix: use one of {', '.join(STRATEGIES)}.")
    if budget < 1:
        raise MemevolveError(f"budget {budget} is below 1. Fix: pass budgets of at least 1 "
                             "evaluation (the start config is the first).")
    began = time.perf_counter()
    trace = _STRATEGY_FUNCTIONS[name](setup, evaluator, budget, seed, report)
    trace.fold = setup.fold
    if math.isnan(trace.test_score):
        score_on_test(trace, setup, evaluator)
    trace.wall_s = time.perf_counter() - began
    return trace


def score_on_test(trace: Trace, setup: SearchSetup, evaluator: Evaluator,
                  known: dict[str, tuple[float, float]] | None = None) -> None:
    """The choice's headline and adversarial test scores (from ``known``, by config hash, when
    it holds them; what is scored goes into it)."""
    if not setup.test_ids:
        return
    assert trace.choice is not None
    key = trace.choice.config_hash
    if known is None or key not in known:
        result = evaluate_configs(evaluator, [trace.choice], setup.test_ids, part="test",
                                  objective=setup.objective)[0]
        scores = (_score(result.score), _score(result.adversarial_score))
        if known is not None:
            known[key] = scores
    else:
        scores = known[key]
    trace.test_score, trace.test_adversarial = scores


@_strategy("memevolve")
def _memevolve(setup: SearchSetup, evaluator: Evaluator, budget: int, seed: int,
               report: Callable[[str], None]) -> Trace:
    """evolve() itself (rules diagnoser, bootstrap guard, Optuna exploration) in a store of its
    own, so that no strategy reuses another run's outcomes; convergence is set beyond reach so
    that it, like the others, spends the whole budget."""
    import tempfile

    from evolve.evolution import EvolveSettings, evolve
    from evolve.store import RunStore

    settings = EvolveSettings(
        benchmark=setup.benchmark.name, split=setup.split.name, split_seed=setup.split.seed,
        preset=setup.preset, objective=setup.objective, max_context_tokens=setup.max_context_tokens,
        candidates=setup.candidates, max_rounds=budget, converge_after=budget,
        max_evaluations=budget, seed=seed, workers=evaluator.workers)
    with tempfile.TemporaryDirectory(prefix="memevolve-bench-") as scratch:
        folder = setup.keep_runs or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        # The split's seed as well as its name: LongMemEval's folds are all "stratified".
        path = folder / (f"memevolve-{setup.split.name}-{setup.split.seed}-b{budget}-s{seed}"
                         ".duckdb")
        path.unlink(missing_ok=True)
        with RunStore(path) as store:
            # Its rounds only: the run's resume hint and test line do not apply to a bench run
            # (it is not resumed, and the bench scores the choice on test itself).
            outcome = evolve(store, settings, evaluator=evaluator, split=setup.split,
                             report=lambda line: report(line) if line.startswith("round ")
                             else None)
            trace = _memevolve_trace(store, outcome.run_id, budget, seed,
                                     setup.start.artefacts)
    assert trace.choice is not None and \
        trace.choice.config_hash == outcome.best.config.config_hash
    trace.choice = outcome.best.config
    trace.test_score = _score(outcome.test_best.score if outcome.test_best else None)
    trace.test_adversarial = _score(outcome.test_best.adversarial_score
                                    if outcome.test_best else None)
    return trace


def _memevolve_trace(store: RunStore, run_id: str, budget: int, seed: int,
                     artefacts: dict[str, dict[str, Any]]) -> Trace:
    """Rebuild the per-evaluation curve from the run's rounds: a round's candidates are judged
    together, so the incumbent moves only with the last evaluation of its round."""
    trace = Trace("memevolve", seed, budget)
    rounds = store.query("SELECT round, incumbent_hash, incumbent_score, wall_s FROM rounds "
                         "WHERE run_id = ? ORDER BY round", [run_id])
    candidates = store.query("SELECT round, config_hash, dev_score, dev_questions FROM "
                             "candidates WHERE run_id = ? ORDER BY round, candidate", [run_id])
    n_dev = store.query("SELECT n_questions FROM evaluations WHERE run_id = ? AND part = 'dev' "
                        "ORDER BY created_at LIMIT 1", [run_id])[0]["n_questions"]

    def choose(row: dict[str, Any]) -> None:
        # Stored configs leave out the learned parts; the run's all carry the start's.
        config = store.config(row["incumbent_hash"]).model_copy(update={"artefacts": artefacts})
        trace.choose(config, row["incumbent_score"])

    incumbent = rounds[0]["incumbent_score"]
    trace.add(rounds[0]["incumbent_hash"], incumbent, incumbent, elapsed=rounds[0]["wall_s"])
    choose(rounds[0])
    after = {r["round"]: r for r in rounds}
    for i, cand in enumerate(candidates):
        last_of_round = i + 1 == len(candidates) or candidates[i + 1]["round"] != cand["round"]
        row = after[cand["round"]]
        if last_of_round:
            incumbent = row["incumbent_score"]
        # A screened-out candidate cost its share of dev; a promoted one all of it.
        trace.add(cand["config_hash"], _score(cand["dev_score"]), incumbent,
                  (cand["dev_questions"] or n_dev) / n_dev, row["wall_s"])
        if last_of_round:
            choose(row)
    return trace


def _optuna_search(sampler: optuna.samplers.BaseSampler, name: str, setup: SearchSetup,
                   evaluator: Evaluator, budget: int, seed: int,
                   report: Callable[[str], None]) -> Trace:
    """Ask/tell over every searchable dimension; the start config is the enqueued first trial."""
    names = search_dimensions()
    dists = distributions(names, setup.max_context_tokens)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({n: getattr(setup.start, n) for n in names})
    trace = Trace(name, seed, budget)
    dev = DevBudget(setup, evaluator, trace, report)
    best: tuple[float, RetrievalConfig] | None = None
    while dev.remaining:
        trial = study.ask(dists)
        config = setup.start.with_values(trial.params)
        score = dev.evaluate(config, incumbent_after=lambda s: max(s, best[0] if best else s))
        study.tell(trial, score)
        if best is None or score > best[0]:
            best = (score, config)
            trace.choose(config, score)
    return trace


@_strategy("optuna-tpe")
def _tpe(setup: SearchSetup, evaluator: Evaluator, budget: int, seed: int,
         report: Callable[[str], None]) -> Trace:
    return _optuna_search(optuna.samplers.TPESampler(seed=seed), "optuna-tpe", setup, evaluator,
                          budget, seed, report)


@_strategy("random")
def _random(setup: SearchSetup, evaluator: Evaluator, budget: int, seed: int,
            report: Callable[[str], None]) -> Trace:
    return _optuna_search(optuna.samplers.RandomSampler(seed=seed), "random", setup, evaluator,
                          budget, seed, report)


@_strategy("hill-climber")
def _hill_climber(setup: SearchSetup, evaluator: Evaluator, budget: int, seed: int,
                  report: Callable[[str], None]) -> Trace:
    """EvolveMem's default: mutate 1-2 random dimensions of the incumbent, keep the mutant if
    its dev mean is higher at all; no significance test, no held-out check."""
    rng = random.Random(seed)
    names = search_dimensions()
    dists = distributions(names, setup.max_context_tokens)
    trace = Trace("hill-climber", seed, budget)
    dev = DevBudget(setup, evaluator, trace, report)
    incumbent = setup.start
    best = dev.evaluate(incumbent, incumbent_after=lambda s: s)
    trace.choose(incumbent, best)
    while dev.remaining:
        mutated = rng.sample(names, rng.choice((1, 2)))
        candidate = incumbent.with_values(
            {n: mutate(dists[n], getattr(incumbent, n), rng) for n in mutated})
        score = dev.evaluate(candidate, incumbent_after=lambda s: max(s, best))
        if score > best:
            incumbent, best = candidate, score
            trace.choose(incumbent, best)
    return trace


def mutate(dist: optuna.distributions.BaseDistribution, current: Any, rng: random.Random) -> Any:
    """A value drawn uniformly (log-uniformly for log dimensions) from ``dist``, other than
    ``current`` whenever the distribution allows another."""
    for _ in range(20):
        value = sample(dist, rng)
        if value != current:
            return value
    return value


def sample(dist: optuna.distributions.BaseDistribution, rng: random.Random) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return rng.choice(dist.choices)
    low, high = dist.low, dist.high  # type: ignore[attr-defined]
    draw = math.exp(rng.uniform(math.log(low), math.log(high))) if dist.log else \
        rng.uniform(low, high)  # type: ignore[attr-defined]
    if isinstance(dist, optuna.distributions.IntDistribution):
        return min(high, max(low, int(round(draw))))
    return draw


def _score(value: float | None) -> float:
    return math.nan if value is None else float(value)


# The head-to-head run ----------------------------------------------------------------------
@dataclass
class SearchReport:
    run_id: str
    traces: list[Trace]
    plot: Path | None


def fold_splits(benchmark: Benchmark, folds: int) -> list[Split]:
    """The ``folds`` dev/test splits of a head-to-head. LongMemEval: repeated stratified splits
    (seeds 0..folds-1, a fifth of each question type to test). Every other benchmark: k-fold by
    conversation, fold i testing the i-th of ``folds`` contiguous blocks of conversations and
    tuning on the rest (LoCoMo, 5 folds: 2 test conversations each)."""
    from benchmarks.splits import Split, make_split

    if folds < 2:
        raise MemevolveError(f"--folds {folds}: folds need at least 2. Fix: pass --folds 2 or "
                             "more, or leave it out for a single split.")
    if benchmark.name == "longmemeval":
        return [make_split(benchmark, "stratified", seed=fold) for fold in range(folds)]
    ids = [c.id for c in benchmark.conversations]
    if folds > len(ids):
        raise MemevolveError(f"--folds {folds}: {benchmark.name} has only {len(ids)} "
                             f"conversations to fold by. Fix: pass --folds {len(ids)} or fewer.")
    out = []
    for fold in range(folds):
        test = ids[fold * len(ids) // folds:(fold + 1) * len(ids) // folds]
        out.append(Split(name=f"fold{fold}of{folds}", seed=fold, benchmark_key=benchmark.key,
                         dev=tuple(i for i in ids if i not in test), test=tuple(test)))
    return out


def run_search(store: RunStore, setups: Sequence[SearchSetup], evaluator: Evaluator, *,
               strategies: Sequence[str], budgets: Sequence[int], seeds: Sequence[int],
               run_id: str, out: Path | None, separate_budgets: bool = False,
               report: Callable[[str], None] = lambda line: None) -> SearchReport:
    """Every fold x strategy x budget x seed on one warm evaluator; rows to DuckDB, curves to a
    PNG. ``setups`` holds one setup per fold (one for a single split).

    Each (fold, seed, strategy) runs once, at the largest budget, and every smaller budget is
    read from that run's prefix (Trace.prefix: what the strategy had chosen by then, scored on
    test on its own), so that budgets 30, 60 and 120 cost 120 evaluations, not 210;
    ``separate_budgets`` runs each budget from scratch instead.

    Wall times exclude a warm-up that builds what any strategy may need (see warm_up), and the
    order of the strategies rotates with the seed: the in-memory retrieval caches outlive a
    run, so no strategy should always be the one that fills them. Stored outcomes are never
    shared between runs.
    """
    for name in strategies:
        if name not in STRATEGIES:
            raise MemevolveError(f"unknown strategy '{name}'. Fix: use one of "
                                 f"{', '.join(STRATEGIES)}.")
    ordered = sorted(set(budgets))
    warm_up(setups[0], evaluator)
    traces: list[Trace] = []
    for setup in setups:
        where = f"{setup.label} " if setup.label else ""
        # Test scores by config hash: evaluation is deterministic, so a config chosen twice (by
        # two budgets, two strategies) is scored once; the start's is every excess gap's base.
        known: dict[str, tuple[float, float]] = {}
        start = Trace("start", 0, 1, setup.fold, choice=setup.start)
        score_on_test(start, setup, evaluator, known)
        for seed in seeds:
            shift = seed % len(strategies)
            for name in list(strategies[shift:]) + list(strategies[:shift]):
                run: Trace | None = None
                for budget in ordered:
                    if run is None or separate_budgets:
                        size = budget if separate_budgets else ordered[-1]
                        run = run_strategy(
                            name, setup, evaluator, size, seed,
                            lambda line, head=f"{where}{name} budget {size} seed {seed}":
                            report(f"{head}: {line}"))
                        assert run.choice is not None
                        run.start_test = start.test_score
                        known.setdefault(run.choice.config_hash,
                                         (run.test_score, run.test_adversarial))
                    trace = run if run.budget == budget else run.prefix(budget)
                    if trace is not run:
                        began = time.perf_counter()
                        score_on_test(trace, setup, evaluator, known)
                        trace.wall_s += time.perf_counter() - began
                    _store_trace(store, run_id, trace)
                    traces.append(trace)
                    read = f" (the first {trace.spent:g} of {run.budget})" \
                        if trace is not run else ""
                    report(f"{where}{name} budget {budget} seed {seed}: {trace.spent:g} "
                           f"evaluations{read}, best dev {trace.choice_dev:.4f}, test "
                           f"{trace.test_score:.4f}, {trace.wall_s:.1f}s")
    plot = write_curves(traces, out / "search_curves.png", setups[0]) if out else None
    return SearchReport(run_id, traces, plot)


def warm_up(setup: SearchSetup, evaluator: Evaluator) -> None:
    """Evaluate the start config, and the strong preset with every kind of memory unit, on dev
    and test: every unit set and dense index a strategy may ask for exists afterwards, and its
    texts are in the embedding cache (on disk: a rerun skips the embedding)."""
    from search_space.config import load_preset

    window = DIMENSIONS_BY_NAME["window_size"]
    units = [{"unit": u} for u in DIMENSIONS_BY_NAME["unit"].choices if u != "window"] + [
        {"unit": "window", "window_size": w}
        for w in range(int(window.low or 1), int(window.high or 1) + 1)]
    strong = load_preset("strong")
    strong = strong.with_values(
        {"context_budget": min(strong.context_budget, setup.max_context_tokens)})
    # Every fold's dev and test together are the benchmark's questions: one warm-up serves all.
    evaluate_configs(evaluator, [setup.start] + [strong.with_values(u) for u in units],
                     [q.id for q in setup.benchmark.questions], part="all",
                     objective=setup.objective)


def _store_trace(store: RunStore, run_id: str, trace: Trace) -> None:
    assert trace.choice is not None
    with store.transaction():
        store.register_config(trace.choice)
        store.insert_rows("bench_search", [
            {"run_id": run_id, "fold": trace.fold, "strategy": trace.strategy,
             "seed": trace.seed, "budget": trace.budget, "eval_index": i + 1, "config_hash": h,
             "dev_score": _sql(d), "best_so_far": _sql(b)}
            for i, (h, d, b) in enumerate(zip(trace.config_hashes, trace.dev_scores,
                                              trace.best_so_far))])
        store.insert_rows("bench_summary", [{
            "run_id": run_id, "fold": trace.fold, "strategy": trace.strategy,
            "seed": trace.seed, "budget": trace.budget, "evaluations": trace.spent,
            "distinct_configs": len(set(trace.config_hashes)),
            "choice_hash": trace.choice.config_hash, "best_dev": _sql(trace.choice_dev),
            "test_score": _sql(trace.test_score), "test_adversarial": _sql(trace.test_adversarial),
            "gap": _sql(trace.gap), "start_test": _sql(trace.start_test),
            "excess_gap": _sql(trace.excess_gap),
            "auc": _sql(trace.auc), "wall_s": trace.wall_s}])


def _sql(value: float) -> float | None:
    return None if math.isnan(value) else value


SUMMARY_SQL = """
SELECT strategy, budget, count(DISTINCT fold) AS folds, count(*) AS runs,
       avg(evaluations) AS evaluations,
       avg(best_dev) AS dev_mean, coalesce(stddev_samp(best_dev), 0) AS dev_sd,
       avg(test_score) AS test_mean, coalesce(stddev_samp(test_score), 0) AS test_sd,
       min(test_score) AS test_min, max(test_score) AS test_max,
       avg(test_adversarial) AS adversarial_mean,
       -- the signed mean shows a strategy's optimism, the mean size how far one run's dev score
       -- is from its test score (folds whose gaps have opposite signs cancel in the first)
       avg(gap) AS gap_mean, avg(abs(gap)) AS gap_size_mean, avg(excess_gap) AS excess_mean,
       avg(auc) AS auc_mean, avg(wall_s) AS wall_mean,
       -- (fold, seed) pairs where no strategy scored higher on test (a tie counts for each)
       count_if(test_score >= top_test) AS best_runs
FROM (SELECT *, max(test_score) OVER (PARTITION BY budget, fold, seed) AS top_test
      FROM bench_summary WHERE list_contains(?, run_id))
GROUP BY strategy, budget
ORDER BY budget, test_mean DESC
"""


def summary(store: RunStore, run_ids: str | Sequence[str]) -> list[dict[str, Any]]:
    """Per (strategy, budget): mean and sd over folds x seeds of best dev and test, gap (and
    its mean size), excess gap, AUC, wall, and on how many of the folds x seeds it had the best
    test score; over one run, or pooled over runs that made different folds of one measurement
    (see pool_runs)."""
    return store.query(SUMMARY_SQL, [_ids(run_ids)])


def _ids(run_ids: str | Sequence[str]) -> list[str]:
    return [run_ids] if isinstance(run_ids, str) else list(run_ids)


#: Per budget and ordered pair of strategies, their differences over the same (fold, seed) runs:
#: a fold's dev and test parts are shared by every strategy, so the paired difference leaves out
#: how hard the fold is, which the spread over folds counts in full.
PAIRED_SQL = """
SELECT a.budget, a.strategy AS strategy, b.strategy AS other, count(*) AS pairs,
       avg(a.test_score - b.test_score) AS test_diff,
       coalesce(stddev_samp(a.test_score - b.test_score), 0) AS test_diff_sd,
       avg(a.gap - b.gap) AS gap_diff,
       coalesce(stddev_samp(a.gap - b.gap), 0) AS gap_diff_sd
FROM bench_summary a JOIN bench_summary b USING (run_id, budget, fold, seed)
WHERE list_contains(?, run_id) AND a.strategy <> b.strategy
  AND a.test_score IS NOT NULL AND b.test_score IS NOT NULL
GROUP BY a.budget, a.strategy, b.strategy
ORDER BY a.budget, a.strategy, b.strategy
"""


def paired(store: RunStore, run_ids: str | Sequence[str]) -> list[dict[str, Any]]:
    """Per budget and ordered pair of strategies: the mean and sd of their test-score and
    dev-test-gap differences over the (fold, seed) runs both made."""
    return store.query(PAIRED_SQL, [_ids(run_ids)])


def _paired_clause(pair: dict[str, Any] | None) -> str:
    """The paired differences of a verdict's two strategies, each as mean ± standard error."""
    if pair is None or pair["pairs"] < 2:
        return ""
    root = math.sqrt(pair["pairs"])
    return (f"; paired over the same {pair['pairs']} folds x seeds, {pair['strategy']} - "
            f"{pair['other']}: test {pair['test_diff']:+.4f} ± "
            f"{pair['test_diff_sd'] / root:.4f} (se), dev-test gap {pair['gap_diff']:+.4f} ± "
            f"{pair['gap_diff_sd'] / root:.4f}")


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| strategy | budget | folds x seeds | evals | best dev (mean ± sd) | "
             "test (mean ± sd) | test min..max | adversarial test (apart) | dev − test | "
             "dev − test size | excess gap | AUC | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['budget']} | {r['folds']} x "
                     f"{r['runs'] // max(1, r['folds'])} | {r['evaluations']:.1f} | "
                     f"{r['dev_mean']:.4f} ± {r['dev_sd']:.4f} | "
                     f"{r['test_mean']:.4f} ± {r['test_sd']:.4f} | "
                     f"{r['test_min']:.4f}..{r['test_max']:.4f} | "
                     f"{_cell(r['adversarial_mean'])} | {r['gap_mean']:+.4f} | "
                     f"{_cell(r.get('gap_size_mean'))} | {signed_cell(r.get('excess_mean'))} | "
                     f"{r['auc_mean']:.4f} | {r['wall_mean']:.1f} |")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def signed_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def verdicts(rows: list[dict[str, Any]], pairs: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Per budget, in words: a winner on mean test score only when its lead over the runner-up
    is outside the spread (larger than either one's sd over folds x seeds), otherwise no
    winner; with ``pairs`` (see paired), the two's test and gap differences over the same runs;
    the smallest mean dev-test gap, the smallest mean size of it (over several runs: gaps of
    opposite signs cancel in the mean), and the smallest excess gap (where measured); the largest
    area under the best-so-far curve."""
    by_pair = {(p["budget"], p["strategy"], p["other"]): p for p in pairs}
    lines = []
    for budget in sorted({r["budget"] for r in rows}):
        group = [r for r in rows if r["budget"] == budget and r["test_mean"] is not None]
        if not group:
            continue
        by_test = sorted(group, key=lambda r: r["test_mean"], reverse=True)
        best = by_test[0]
        if len(by_test) == 1:
            line = f"budget {budget}: {best['strategy']} alone, mean test {best['test_mean']:.4f}"
        else:
            second = by_test[1]
            lead = best["test_mean"] - second["test_mean"]
            spread = max(best["test_sd"], second["test_sd"])
            if lead > spread:
                line = (f"budget {budget}: winner {best['strategy']} on mean test "
                        f"{best['test_mean']:.4f}, ahead of {second['strategy']} by "
                        f"{lead:.4f} (outside the spread, sd {spread:.4f})")
            else:
                line = (f"budget {budget}: no winner; best mean test {best['strategy']} "
                        f"{best['test_mean']:.4f} leads {second['strategy']} by {lead:.4f}, "
                        f"inside the spread (sd {spread:.4f})")
            if best.get("best_runs") is not None:
                line += (f", best on test in {best['best_runs']} of {best['runs']} folds x "
                         "seeds")
            line += _paired_clause(by_pair.get((budget, best["strategy"], second["strategy"])))
        gap = min(group, key=lambda r: abs(r["gap_mean"]))
        line += f"; smallest dev-test gap {gap['strategy']} {gap['gap_mean']:+.4f}"
        sized = [r for r in group if r.get("gap_size_mean") is not None]
        if sized and max(r["runs"] for r in sized) > 1:
            size = min(sized, key=lambda r: r["gap_size_mean"])
            line += (f"; smallest mean size of the dev-test gap over its folds x seeds "
                     f"{size['strategy']} {size['gap_size_mean']:.4f}")
        measured = [r for r in group if r.get("excess_mean") is not None]
        if measured:
            excess = min(measured, key=lambda r: abs(r["excess_mean"]))
            line += (f"; smallest excess gap (the start's dev-test taken off) "
                     f"{excess['strategy']} {excess['excess_mean']:+.4f}")
        auc = max(group, key=lambda r: r["auc_mean"] if r["auc_mean"] is not None else -1)
        line += f"; largest AUC {auc['strategy']} {auc['auc_mean']:.4f}"
        lines.append(line)
    return lines


def write_curves(traces: list[Trace], path: Path, setup: SearchSetup) -> Path:
    """Mean best-so-far dev score per evaluation index, one line per strategy, one panel per
    budget; the band is the min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({t.budget for t in traces})
    fig, axes = plt.subplots(1, len(budgets), figsize=(6 * len(budgets), 4), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for name in STRATEGIES:
            runs = [t for t in traces if t.budget == budget and t.strategy == name]
            if not runs:
                continue
            curves = [t.curve() for t in runs]
            xs = list(range(1, budget + 1))
            mean = [statistics.fmean(c[i] for c in curves) for i in range(budget)]
            line, = ax.plot(xs, mean, label=name)
            ax.fill_between(xs, [min(c[i] for c in curves) for i in range(budget)],
                            [max(c[i] for c in curves) for i in range(budget)],
                            color=line.get_color(), alpha=0.15)
        ax.set_title(f"budget {budget} ({len({t.fold for t in traces})} folds x "
                     f"{len({t.seed for t in traces})} seeds)")
        ax.set_xlabel("dev evaluations")
        ax.set_ylabel(f"best-so-far dev {setup.objective}")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{setup.benchmark.name}: search efficiency at equal evaluations")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: The settings of a bench search that may differ between runs pooled into one measurement:
#: how it was launched and which of the folds it ran, not what was measured.
POOLABLE_SETTINGS = ("command", "only_folds", "workers")


def pool_runs(store: RunStore, run_ids: Sequence[str]) -> dict[str, Any]:
    """Check that ``run_ids`` are parts of one measurement, and say what they cover: bench
    searches of one benchmark with the same folds, strategies, budgets, seeds and start (only
    POOLABLE_SETTINGS may differ), none holding a (fold, strategy, seed, budget) run another
    holds. A run stopped part-way counts with the runs it finished. Returns the shared
    settings, the folds covered and, per run, the folds it gave."""
    if len(set(run_ids)) != len(run_ids) or not run_ids:
        raise MemevolveError("bench pool needs one or more different run ids. Fix: list each "
                             "run once (`memevolve runs --db FILE` lists them).")
    runs = {r["run_id"]: r for r in store.query(
        "SELECT run_id, kind, benchmark_key, settings_json FROM runs "
        "WHERE list_contains(?, run_id)", [list(run_ids)])}
    settings: dict[str, Any] | None = None
    first = run_ids[0]
    for run_id in run_ids:
        run = runs.get(run_id)
        if run is None or run["kind"] != "bench" or "strategies" not in json.loads(
                run["settings_json"]):
            raise MemevolveError(f"{run_id}: no bench search run of that id in the store. "
                                 "Fix: pass the ids `memevolve bench search` printed, with "
                                 "the --db it wrote to.")
        mine = {k: v for k, v in json.loads(run["settings_json"]).items()
                if k not in POOLABLE_SETTINGS}
        if settings is None:
            settings = mine
            continue
        if run["benchmark_key"] != runs[first]["benchmark_key"]:
            raise MemevolveError(f"{run_id} measured another benchmark (or another file of "
                                 f"it) than {first}. Fix: pool only the parts of one "
                                 "measurement.")
        differ = sorted(k for k in set(settings) | set(mine) if settings.get(k) != mine.get(k))
        if differ:
            raise MemevolveError(
                f"{run_id} differs from {first} in {', '.join(differ)} (e.g. {differ[0]} "
                f"{_short(mine.get(differ[0]))} against {_short(settings.get(differ[0]))}), "
                "so the two "
                "are not parts of one measurement. Fix: pool runs made with the same options "
                "but --only-folds.")
    twice = store.query("""
        SELECT fold, strategy, seed, budget, list(run_id ORDER BY run_id) AS runs
        FROM bench_summary WHERE list_contains(?, run_id)
        GROUP BY fold, strategy, seed, budget HAVING count(*) > 1
        ORDER BY fold, strategy, seed, budget LIMIT 1""", [list(run_ids)])
    if twice:
        t = twice[0]
        raise MemevolveError(f"fold {t['fold']} {t['strategy']} seed {t['seed']} budget "
                             f"{t['budget']} was run by both {' and '.join(t['runs'])}. Fix: "
                             "pool runs of different folds (--only-folds).")
    gave: dict[str, list[int]] = {run_id: [] for run_id in run_ids}
    for r in store.query("SELECT DISTINCT run_id, fold FROM bench_summary "
                         "WHERE list_contains(?, run_id) ORDER BY fold", [list(run_ids)]):
        gave[r["run_id"]].append(r["fold"])
    assert settings is not None
    return {"settings": settings, "gave": gave,
            "covered": sorted({f for folds in gave.values() for f in folds}),
            "folds": len(settings.get("folds") or [None])}


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
