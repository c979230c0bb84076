"""The self-evolution loop: diagnose the incumbent's dev failures, evaluate K candidates in
parallel, let the guarded meta-analyzer decide, explore when stalled, stop on convergence or
budget; every round commits in one transaction and a killed run resumes from the last one."""
from __future__ import annotations

import json
import math
import random
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable


from benchmarks import load_benchmark
from benchmarks.errors import MemevolveError
from benchmarks.model import Benchmark
from benchmarks.splits import Split, make_split
from evolve.diagnosers import DIAGNOSERS
from evolve.diagnosers.base import Attempt, DiagnosisContext, Edit, Proposal, first_admissible
from evolve.evaluation import (Evaluator, EvaluationResult, evaluate_configs, objective_column,
                               record_result)
from evolve.explore import explore
from evolve.memory.system import EmbedderSpec, LLMSpec
from evolve.meta import Guard, judge_candidate, judge_round
from evolve.settings import EvolveSettings
from evolve.store import FINAL_STATUSES, RunStore, StoreError
from evolve.systems import describe_units, resolve_system, space_of
from search_space.config import (ORACLE_GOLD_CATEGORIES, RetrievalConfig, SpaceConfig,
                                 load_config, load_preset)


@dataclass
class RunOutcome:
    run_id: str
    status: str
    start: EvaluationResult
    best: EvaluationResult
    test_start: EvaluationResult | None
    test_best: EvaluationResult | None
    rounds: int
    evaluations: float
    wall_s: float
    #: Rounds the LLM diagnoser was asked in, and those of them it fell back to rules in.
    llm_rounds: int = 0
    llm_fallbacks: list[str] = field(default_factory=list)

    @property
    def llm_always_fell_back(self) -> bool:
        return self.llm_rounds > 0 and len(self.llm_fallbacks) == self.llm_rounds


class RunFinished(MemevolveError):
    """--resume of a run that has ended: it is left exactly as it is."""


@dataclass
class _State:
    round: int
    incumbent: SpaceConfig
    incumbent_result: EvaluationResult
    stagnant: int
    evaluations: float
    tokens: int
    cost: float
    #: Wall time of the run so far, every session included; ``offset`` is the part spent by
    #: earlier sessions (before a resume).
    wall_s: float
    offset: float = 0.0

    def tick(self, began: float) -> None:
        self.wall_s = self.offset + time.perf_counter() - began


#: The decision of a round that ends the run -> the run's final status.
_STOPS = {"converge": "converged", "budget": "budget_spent"}


Reporter = Callable[[str], None]


def start_config(settings: EvolveSettings, question_types: str | None = None,
                 space: type[SpaceConfig] = RetrievalConfig) -> SpaceConfig:
    """The start config, routed by the run's question-type predictor (``question_types``): the
    config file, else the preset (built-in space) or the space's defaults (a --system's)."""
    if settings.config_path:
        config = load_config(settings.config_path, space)
    elif space is RetrievalConfig:
        config = load_preset(settings.preset or "weak")
    else:
        config = space()
    if settings.answer_model and getattr(config, "answerer", None) == "llm":
        config = config.model_copy(update={"answer_model": settings.answer_model["model"]})
    if getattr(config, "context_budget", 0) > settings.max_context_tokens:
        config = config.with_values({"context_budget": settings.max_context_tokens})
    # Every candidate inherits the predictor, so the overrides a diagnoser adds key on the
    # predicted type from the start.
    return space.model_validate({**config.model_dump(), "question_types": question_types})


def routes_per_type(space: type[SpaceConfig]) -> bool:
    """Whether configs of the space can hold per-type overrides (and so need a predictor)."""
    return any(d.scope == "per_category" for d in space.dimensions)


def run_question_types(store: RunStore, settings: EvolveSettings, benchmark: Benchmark,
                       split: Split, space: type[SpaceConfig] = RetrievalConfig) -> str | None:
    """The run's predictor: trained on its dev split (deterministic and independent of the run's
    seed, so a resume or another seed gets the same one), stored by hash; or the gold-category
    oracle when the settings ask for it; none for a space without per-category dimensions."""
    if not routes_per_type(space):
        return None
    if settings.oracle_gold_categories:
        return ORACLE_GOLD_CATEGORIES
    from evolve.question_types import train_on_split

    return store.put_artefact(train_on_split(benchmark, split))


def evolve(store: RunStore, settings: EvolveSettings | None = None, *, resume: str | None = None,
           report: Reporter = lambda line: None, progress: bool = False,
           evaluator: Evaluator | None = None, split: Split | None = None) -> RunOutcome:
    """Run (or resume) an evolution and evaluate the best config once on the test split.

    An ``evaluator`` given (and left open) runs it on that evaluator's benchmark, indexes warm:
    `memevolve bench search` shares one across strategies and seeds, and gives each fold's
    ``split`` (a new run's split otherwise comes from the settings; a resumed one is stored)."""
    began = time.perf_counter()
    if resume is not None:
        run = store.run(resume)
        if run["kind"] != "evolve":
            raise MemevolveError(f"run '{resume}' is a {run['kind']} run, not an evolution. "
                                 "Fix: pass the id of a 'memevolve run' run.")
        if run["status"] in FINAL_STATUSES:
            raise RunFinished(f"run '{resume}' is already finished ({run['status']} at "
                              f"{str(run['finished_at'])[:19]}): there is nothing to resume and "
                              f"nothing was changed. See: memevolve report {resume}")
        settings = EvolveSettings.model_validate_json(run["settings_json"])
        run_id = resume
    else:
        settings = settings or EvolveSettings()
        run_id = f"evolve-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    objective_column(settings.objective)
    system = resolve_system(settings.system)
    space = space_of(system)
    if settings.diagnoser not in DIAGNOSERS:
        raise MemevolveError(f"unknown diagnoser '{settings.diagnoser}'. Fix: use one of "
                             f"{', '.join(sorted(DIAGNOSERS))}.")
    if evaluator is not None:
        benchmark = evaluator.benchmark
        if benchmark.name != settings.benchmark:
            raise MemevolveError(f"the evaluator holds {benchmark.name} but the settings name "
                                 f"{settings.benchmark}. Fix: pass an evaluator of that benchmark.")
        if evaluator.space is not space:
            theirs = evaluator.space.system_name or "the built-in system"
            raise MemevolveError(f"the evaluator runs {theirs} but the settings name "
                                 f"{settings.system or 'the built-in one'}. Fix: pass an "
                                 "evaluator of that system.")
    else:
        benchmark = load_benchmark(settings.benchmark, settings.data, variant=settings.variant,
                                   **settings.benchmark_options)
    if resume is not None:
        run = store.run(run_id)
        split = Split(name=run["split_name"], seed=run["split_seed"],
                      benchmark_key=run["benchmark_key"], **json.loads(run["split_json"]))
        if split.benchmark_key != benchmark.key:
            raise MemevolveError(f"run '{run_id}' was made on {split.benchmark_key} but the data "
                                 f"now loads as {benchmark.key}. Fix: pass the original --data.")
        store.claim_run(run_id)
    else:
        split = split or make_split(benchmark, settings.split, seed=settings.split_seed)
        store.create_run(run_id, "evolve", benchmark, split, settings.model_dump())
    report(f"run {run_id}: {'resuming' if resume else 'started'} on {benchmark.key} "
           f"(diagnoser {settings.diagnoser}); continue a killed run with "
           f"'memevolve run --resume {run_id}'")
    dev_ids = [q.id for q in split.questions(benchmark, "dev")]
    test_ids = [q.id for q in split.questions(benchmark, "test")]
    if not dev_ids:
        raise MemevolveError(f"split '{split.name}' leaves no dev questions. Fix: choose "
                             "another --split.")
    guard = Guard(settings.confidence, settings.min_effect, seed=settings.seed)
    diagnoser = DIAGNOSERS[settings.diagnoser](**(
        {"model": settings.diagnoser_model} if settings.diagnoser == "llm" else {}))
    llm = LLMSpec(answer=settings.answer_model, judge=settings.judge_model)

    with nullcontext(evaluator) if evaluator is not None else \
            Evaluator(benchmark, workers=settings.workers, embedder=EmbedderSpec(), llm=llm,
                      progress=progress, oracle_gold_categories=settings.oracle_gold_categories,
                      system=system) as evaluator:
        if settings.oracle_gold_categories and not evaluator.oracle_gold_categories:
            raise MemevolveError("the settings ask for gold-category routing but the evaluator "
                                 "given was made without oracle_gold_categories. Fix: pass one "
                                 "made with it.")

        def evaluate(configs: list[SpaceConfig], ids: list[str], part: str):
            # Recorded by the caller, inside the transaction of the round that used them.
            return evaluate_configs(evaluator, configs, ids, part=part,
                                    objective=settings.objective, store=store, run_id=run_id,
                                    record=False)

        def record(result: EvaluationResult) -> None:
            record_result(store, run_id, benchmark.key, result)

        try:
            question_types = run_question_types(store, settings, benchmark, split, space)
            start = evaluate([start_config(settings, question_types, space)], dev_ids, "dev")[0]
            state = _restore(store, run_id, start, evaluate, dev_ids)
            if state is None:
                state = _State(0, start.config, start, 0, 1, 0, 0.0, 0.0)
                state.tick(began)
                with store.transaction():
                    record(start)
                    store.insert_rows("rounds", [_round_row(
                        run_id, state, "baseline", "baseline",
                        f"start config scores {_score(start.score)}", settings.seed)])
            report(f"round 0: start {_describe(start.config)} dev {settings.objective} "
                   f"{_score(start.score)}")
            status = _pending_status(store, run_id)
            while status == "running":
                status = _round(store, run_id, settings, state, diagnoser, guard, evaluate,
                                record, dev_ids, report, began, benchmark, system)
            best = state.incumbent_result
            test_start = test_best = None
            if test_ids:
                test_start, test_best = evaluate([start.config, best.config], test_ids, "test")
            # The status is final only with the test evaluation: a kill before this commit
            # leaves a run that --resume finishes.
            with store.transaction():
                for result in (test_start, test_best):
                    if result is not None:
                        record(result)
                store.finish_run(run_id, status)
        except BaseException:
            _interrupted(store, run_id)
            raise
        if test_start is not None and test_best is not None:
            report(f"test: start {_score(test_start.score)} -> evolved "
                   f"{_score(test_best.score)}")
    state.tick(began)
    llm_rounds, fallbacks = _llm_rounds(store, run_id) if settings.diagnoser == "llm" else (0, [])
    return RunOutcome(run_id, status, start, best, test_start, test_best,
                      _rounds_run(store, run_id), state.evaluations, state.wall_s,
                      llm_rounds, fallbacks)


def _interrupted(store: RunStore, run_id: str) -> None:
    """Mark a run this process stops driving, so `runs` says so and --resume continues it."""
    try:
        if store.run(run_id)["status"] == "running":
            store.finish_run(run_id, "interrupted")
    except StoreError:
        pass  # the store itself failed: `runs` still sees that the owning process is gone


def _pending_status(store: RunStore, run_id: str) -> str:
    """'running', or the final status the last committed round decided on (its test
    evaluation may still be missing)."""
    rows = store.query("SELECT decision FROM rounds WHERE run_id = ? ORDER BY round DESC "
                       "LIMIT 1", [run_id])
    return _STOPS.get(rows[0]["decision"], "running") if rows else "running"


def _rounds_run(store: RunStore, run_id: str) -> int:
    """Rounds that evaluated candidates (not the baseline, not the stop)."""
    return store.query("SELECT count(*) AS n FROM rounds WHERE run_id = ? AND mode IN "
                       "('diagnose', 'explore')", [run_id])[0]["n"]


def _llm_rounds(store: RunStore, run_id: str) -> tuple[int, list[str]]:
    """Rounds the LLM diagnoser answered or fell back in, and the fallback reasons."""
    rows = store.query("SELECT diagnoser_fallback FROM rounds WHERE run_id = ? AND "
                       "(mode = 'diagnose' OR diagnoser_fallback IS NOT NULL) ORDER BY round",
                       [run_id])
    return len(rows), [r["diagnoser_fallback"] for r in rows if r["diagnoser_fallback"]]


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _round(store: RunStore, run_id: str, settings: EvolveSettings, state: _State, diagnoser,
           guard: Guard, evaluate, record, dev_ids: list[str], report: Reporter, began: float,
           benchmark: Benchmark, system: type) -> str:
    """One round, committed as a whole (its evaluations, candidates, LLM calls and the round
    row) or not at all; returns the run status after it."""
    number = state.round + 1
    state.tick(began)
    spent = _budget_spent(settings, state, number)
    if spent:
        _finish(store, run_id, state, "budget_spent", spent, settings.seed, began)
        return "budget_spent"
    history = _history(store, run_id)
    context = DiagnosisContext(store=store, run_id=run_id, round=number,
                               incumbent=state.incumbent, benchmark_key=_bench_key(store, run_id),
                               question_ids=dev_ids, objective=settings.objective,
                               max_context_tokens=settings.max_context_tokens, history=history,
                               seed=settings.seed, n_proposals=settings.candidates,
                               tried_hashes=_tried_hashes(store, run_id),
                               describe_units=_unit_describer(benchmark, state.incumbent,
                                                              system))
    mode = "explore" if state.stagnant >= settings.explore_after else "diagnose"
    proposals: list[Proposal] = []
    if mode == "diagnose":
        proposals = diagnoser.propose(context)
        state.tokens += sum(c["prompt_tokens"] + c["completion_tokens"]
                            for c in context.llm_calls)
        state.cost += sum(c["cost_usd"] for c in context.llm_calls)
        if not proposals:
            mode = "explore"
    if mode == "explore":
        proposals = explore(context)
    # The union of last round's significant edits comes first: the guard took only the best;
    # then the union of the edits that gained on this incumbent, each too little to prove.
    proposals = first_admissible(context, [*combined(store, run_id, number - 1, guard),
                                           *pooled(store, run_id, state.incumbent.config_hash,
                                                   guard), *proposals])
    if not proposals:
        _finish(store, run_id, state, "converged", "no untried admissible edit is left",
                settings.seed, began, context=context)
        return "converged"
    screen_ids = _screen_ids(benchmark, dev_ids, settings, number)
    proposals = _affordable(proposals, settings, state, len(screen_ids) / len(dev_ids))
    configs = [p.apply(state.incumbent) for p in proposals]
    screened: dict[int, EvaluationResult] = {}
    promoted = list(range(len(configs)))
    if len(configs) > settings.promote and screen_ids:
        screen = screen_ids
        results = evaluate(configs, screen, "screen")
        screened = dict(enumerate(results))
        order = sorted(screened, key=lambda i: (-_score_or_low(results[i].score), i))
        promoted = sorted(order[:settings.promote])
        state.evaluations += len(configs) * len(screen) / len(dev_ids)
        spent = (len(dev_ids) - len(screen)) / len(dev_ids)
    else:
        spent = 1.0
    full = dict(zip(promoted, evaluate([configs[i] for i in promoted], dev_ids, "dev")))
    state.evaluations += len(promoted) * spent
    every = [*full.values(), *(r for i, r in screened.items() if i not in full)]
    state.tokens += sum(c["prompt_tokens"] + c["completion_tokens"]
                        for r in every for c in r.llm_calls)
    state.cost += sum(c["cost_usd"] for r in every for c in r.llm_calls)
    # One family per round: Holm over the candidates judged on full dev.
    verdicts = dict(zip(full, judge_round(state.incumbent_result.rows,
                                          [r.rows for r in full.values()], settings.objective,
                                          guard)))
    accepted = [i for i, v in verdicts.items() if v.decision == "accepted"]
    winner = max(accepted, key=lambda i: verdicts[i].delta) if accepted else None
    candidate_rows = []
    for i, proposal in enumerate(proposals):
        if i in full:
            result, verdict = full[i], verdicts[i]
            decision, reason = verdict.decision, verdict.reason
            if decision == "accepted" and i != winner:
                decision, reason = "rejected", ("significant, but another candidate gained "
                                                f"more; {reason}")
        else:
            result = screened[i]
            verdict = judge_candidate(state.incumbent_result.rows, result.rows,
                                      settings.objective, guard)
            decision, reason = "screened", (
                f"screened out on {len(result.rows)} of {len(dev_ids)} dev questions (the "
                f"best {settings.promote} went to full dev): {verdict.reason}")
        candidate_rows.append({
            "run_id": run_id, "round": number, "candidate": i,
            "parent_hash": state.incumbent.config_hash, "config_hash": result.config.config_hash,
            "proposer": proposal.proposer, "edit_json": proposal.edit_json(),
            "rationale": proposal.rationale, "dev_score": result.score, "delta": verdict.delta,
            "ci_low": verdict.ci_low, "ci_high": verdict.ci_high, "p_value": verdict.p_value,
            "dev_questions": len(result.rows), "decision": decision, "reason": reason})
    candidate_rows.extend(_invalid_rows(run_id, number, state, context, len(candidate_rows)))
    if winner is not None:
        # full is keyed by candidate index: after screening, not every index is in it.
        state.incumbent, state.incumbent_result = configs[winner], full[winner]
        state.stagnant = 0
        decision, reason = "accept", f"accepted {proposals[winner].edit_json()}: " \
                                     f"{verdicts[winner].reason}"
    else:
        state.stagnant += 1
        decision, reason = "keep", (f"no significant gain among {len(full)} candidates"
                                    f"{f' promoted of {len(proposals)}' if screened else ''}")
    state.round = number
    state.tick(began)
    status = "running"
    if state.stagnant >= settings.converge_after:
        decision, status = "converge", "converged"
        reason += f"; {state.stagnant} rounds without acceptance: converged"
    if context.notes:
        reason += "; " + "; ".join(context.notes)
    with store.transaction():
        # In the order they were evaluated: the screening first, then full dev.
        for result in (*screened.values(), *full.values()):
            record(result)
        _record_diagnosis(store, run_id, number, context)
        store.insert_rows("candidates", candidate_rows)
        store.insert_rows("rounds", [_round_row(run_id, state, mode, decision, reason,
                                                settings.seed, context.fallback)])
    report(f"round {number} ({mode}): {decision}; incumbent dev {state.incumbent_result.score:.4f}"
           f" [{len(proposals)} candidates, best delta "
           f"{max(v.delta for v in verdicts.values()):+.4f}]")
    return status


def _budget_spent(settings: EvolveSettings, state: _State, number: int) -> str | None:
    if number > settings.max_rounds:
        return f"max rounds {settings.max_rounds} reached"
    if settings.max_evaluations is not None and \
            state.evaluations > settings.max_evaluations - 1 + _EPSILON:
        # Less than one full evaluation left: no round fits into it.
        return f"evaluation budget {settings.max_evaluations} spent"
    if settings.max_tokens is not None and state.tokens >= settings.max_tokens:
        return f"token budget {settings.max_tokens} spent"
    if settings.max_dollars is not None and state.cost >= settings.max_dollars:
        return f"dollar budget {settings.max_dollars} spent"
    if settings.max_wall_s is not None and state.wall_s >= settings.max_wall_s:
        return f"wall-time budget {settings.max_wall_s}s spent"
    return None


#: Evaluations are sums of question shares: a budget is spent up to rounding.
_EPSILON = 1e-9


def _screen_ids(benchmark: Benchmark, dev_ids: list[str], settings: EvolveSettings,
                number: int) -> list[str]:
    """The dev questions of a seeded share of the dev conversations, new every round (so that no
    subsample is tuned to); empty when screening is off or would leave under 2 conversations."""
    if not 0.0 < settings.screen_fraction < 1.0:
        return []
    conversation_of = {q.id: q.conversation_id for q in benchmark.questions}
    conversations = sorted({conversation_of[q] for q in dev_ids})
    size = round(len(conversations) * settings.screen_fraction)
    if size < 2 or size >= len(conversations):
        return []
    chosen = set(random.Random(settings.seed * 7919 + number).sample(conversations, size))
    return [q for q in dev_ids if conversation_of[q] in chosen]


def _affordable(proposals: list[Proposal], settings: EvolveSettings, state: _State,
                share: float) -> list[Proposal]:
    """The most proposals whose round fits into what the evaluation budget has left (screened
    ones cost ``share``, promoted ones 1): the budget is never overshot."""
    if settings.max_evaluations is None:
        return proposals
    left = settings.max_evaluations - state.evaluations + _EPSILON
    for k in range(len(proposals), 0, -1):
        cost = k * share + min(k, settings.promote) * (1 - share) \
            if share and k > settings.promote else float(k)
        if cost <= left:
            return proposals[:k]
    return proposals[:1]


def _score_or_low(score: float | None) -> float:
    return -math.inf if score is None or math.isnan(score) else score


def combined(store: RunStore, run_id: str, number: int, guard: Guard) -> list[Proposal]:
    """After round ``number`` accepted one candidate, the others it found significant that edit
    other fields or question types than the winner: their union first, then each alone, to be
    applied on top of the new incumbent (edits for different question types or operators add
    up, while the guard keeps only the best of a round)."""
    rows = store.query("SELECT edit_json, decision, delta, ci_low FROM candidates WHERE "
                       "run_id = ? AND round = ? ORDER BY candidate", [run_id, number])
    won = [r for r in rows if r["decision"] == "accepted"]
    if not won:
        return []
    taken = {(e["field"], e.get("category")) for e in json.loads(won[0]["edit_json"])}
    groups: list[tuple[Edit, ...]] = []
    for row in rows:
        if row["decision"] != "rejected" or row["ci_low"] is None or row["ci_low"] <= 0 or \
                row["delta"] < guard.min_effect:
            continue
        edits = tuple(Edit(**e) for e in json.loads(row["edit_json"]))
        if any((e.field, e.category) in taken for e in edits):
            continue
        groups.append(edits)
    union, _ = _disjoint_union(groups)
    out = [Proposal(tuple(union), "union of the edits last round also found significant",
                    COMBINER)] if len(groups) > 1 else []
    return out + [Proposal(edits, "an edit last round also found significant, on top of "
                           "its winner", COMBINER) for edits in groups]


#: The proposer name of combined candidates in the run store.
COMBINER = "combine"


def pooled(store: RunStore, run_id: str, incumbent_hash: str, guard: Guard) -> list[Proposal]:
    """The union of the edits that gained at least the minimum effect on the incumbent, each
    rejected as not significant (largest gain first, one edit per field and question type):
    a test over a few hundred questions cannot tell a +0.01 gain from noise, while several such
    gains together can be told. The union faces the same guard, and the pool empties whenever
    the incumbent moves (gains measured on another incumbent say little about this one)."""
    rows = store.query("SELECT edit_json FROM candidates WHERE run_id = ? AND parent_hash = ? "
                       "AND decision = 'rejected' AND delta >= ? AND proposer <> ? "
                       "ORDER BY delta DESC, round, candidate",
                       [run_id, incumbent_hash, guard.min_effect, POOLER])
    union, parts = _disjoint_union(
        [tuple(Edit(**e) for e in json.loads(row["edit_json"])) for row in rows])
    if parts < 2:
        return []
    return [Proposal(tuple(union), f"union of {parts} edits that each gained on this "
                     "incumbent, too little to be significant alone", POOLER)]


#: The proposer name of pooled candidates in the run store.
POOLER = "pool"


def _disjoint_union(groups: list[tuple[Edit, ...]]) -> tuple[list[Edit], int]:
    """The groups' edits, in order, skipping a group that sets a (field, question type) an
    earlier one set; and how many groups went in."""
    union: list[Edit] = []
    taken: set[tuple[str, str | None]] = set()
    parts = 0
    for edits in groups:
        keys = {(e.field, e.category) for e in edits}
        if keys & taken:
            continue
        union.extend(edits)
        taken |= keys
        parts += 1
    return union, parts


def _finish(store: RunStore, run_id: str, state: _State, status: str, reason: str, seed: int,
            began: float, context: DiagnosisContext | None = None) -> None:
    """The stop row (its number follows the last round's); the run's status is set once its
    test evaluation is stored."""
    state.round += 1
    state.tick(began)
    decision = "budget" if status == "budget_spent" else "converge"
    if context is not None and context.notes:
        reason += "; " + "; ".join(context.notes)
    with store.transaction():
        if context is not None:
            _record_diagnosis(store, run_id, state.round, context)
            store.insert_rows("candidates", _invalid_rows(run_id, state.round, state, context, 0))
        store.insert_rows("rounds", [_round_row(run_id, state, "stop", decision, reason, seed,
                                                context.fallback if context else None)])


def _record_diagnosis(store: RunStore, run_id: str, number: int,
                      context: DiagnosisContext) -> None:
    if context.llm_calls:
        store.record_llm_calls(run_id, context.llm_calls)
    if context.new_dimensions:
        store.insert_rows("dimension_proposals", [
            {"run_id": run_id, "round": number, **d} for d in context.new_dimensions])


def _invalid_rows(run_id: str, number: int, state: _State, context: DiagnosisContext,
                  first: int) -> list[dict[str, Any]]:
    """Candidates the space rejected: recorded with the reason, never evaluated."""
    return [{"run_id": run_id, "round": number, "candidate": first + i,
             "parent_hash": state.incumbent.config_hash, "config_hash": None,
             "proposer": bad["proposer"], "edit_json": bad["edit_json"],
             "rationale": bad["rationale"], "dev_score": None, "delta": None, "ci_low": None,
             "ci_high": None, "p_value": None, "decision": "invalid", "reason": bad["reason"]}
            for i, bad in enumerate(context.invalid)]


def _round_row(run_id: str, state: _State, mode: str, decision: str, reason: str,
               seed: int, fallback: str | None = None) -> dict[str, Any]:
    return {"run_id": run_id, "round": state.round,
            "incumbent_hash": state.incumbent.config_hash,
            "incumbent_score": state.incumbent_result.score or 0.0, "mode": mode,
            "decision": decision, "reason": reason,
            "rng_state": json.dumps({"seed": seed, "round": state.round,
                                     "stagnant": state.stagnant}),
            "evaluations_used": state.evaluations, "tokens_used": state.tokens,
            "cost_used": state.cost, "wall_s": state.wall_s, "diagnoser_fallback": fallback}


def _restore(store: RunStore, run_id: str, start: EvaluationResult, evaluate,
             dev_ids: list[str]) -> _State | None:
    """The state after the last committed round, or None for a fresh run."""
    rows = store.query("SELECT * FROM rounds WHERE run_id = ? ORDER BY round DESC LIMIT 1",
                       [run_id])
    if not rows:
        return None
    last = rows[0]
    incumbent = store.config(last["incumbent_hash"], type(start.config))
    result = start if incumbent == start.config else evaluate([incumbent], dev_ids, "dev")[0]
    stagnant = json.loads(last["rng_state"])["stagnant"]
    return _State(last["round"], incumbent, result, stagnant, last["evaluations_used"],
                  last["tokens_used"], last["cost_used"], last["wall_s"], offset=last["wall_s"])


#: Each candidate with the change of the mean context cost its edit made, over the questions
#: it and its parent both scored (from the stored rows, so a resume reads the same).
HISTORY_SQL = """
SELECT c.round, c.proposer, c.edit_json, c.delta, c.decision,
       (SELECT avg(b.context_tokens - a.context_tokens)
        FROM question_results a JOIN question_results b
          ON a.question_id = b.question_id AND a.benchmark_key = b.benchmark_key
         AND a.context_key = b.context_key
        WHERE a.config_hash = c.parent_hash AND b.config_hash = c.config_hash
          AND a.benchmark_key = r.benchmark_key) AS tokens_delta
FROM candidates c JOIN runs r ON r.run_id = c.run_id
WHERE c.run_id = ?
ORDER BY c.round, c.candidate
"""


def _history(store: RunStore, run_id: str) -> list[Attempt]:
    rows = store.query(HISTORY_SQL, [run_id])
    return [Attempt(r["round"], r["proposer"], r["edit_json"], r["delta"], r["decision"],
                    r["tokens_delta"]) for r in rows]


def _tried_hashes(store: RunStore, run_id: str) -> set[str]:
    rows = store.query("SELECT config_hash FROM candidates WHERE run_id = ? UNION "
                       "SELECT incumbent_hash FROM rounds WHERE run_id = ?", [run_id, run_id])
    return {r["config_hash"] for r in rows}


def _unit_describer(benchmark: Benchmark, incumbent: SpaceConfig, system: type
                    ) -> Callable[[str, list[str]], list[str]]:
    # The rows a diagnoser reads are the incumbent's, so its units are the ones retrieved.
    return lambda conversation_id, unit_ids: describe_units(
        system, benchmark.conversation_by_id[conversation_id], unit_ids, incumbent)


def _bench_key(store: RunStore, run_id: str) -> str:
    return store.run(run_id)["benchmark_key"]


def _describe(config: SpaceConfig) -> str:
    """The hash and the first knobs that differ from the space's defaults."""
    changed = [f"{d.name}={getattr(config, d.name)}" for d in config.dimensions
               if getattr(config, d.name) != d.default]
    return f"{config.config_hash} ({', '.join(changed[:4]) or 'all defaults'})"
