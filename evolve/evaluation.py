"""Evaluation of configs on a benchmark: in-process or on Ray actors that keep indexes warm; the
driver alone reads and writes the run store, reusing every stored (config, question) outcome."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from benchmarks.errors import MemevolveError
from benchmarks.model import Benchmark
from evolve.memory.system import EmbedderSpec, LLMSpec, MemorySystem, check_routing
from search_space.config import RetrievalConfig

if TYPE_CHECKING:
    from evolve.store import RunStore

OBJECTIVES = {
    "recall_in_context": "evidence recall within the context budget (offline default)",
    "recall_at_k": "evidence recall of the top_k units",
    "answer_f1": "official LoCoMo answer score of the answer",
    "judge": "LLM judge verdict (needs --judge-model)",
}
#: Version of everything that turns a (config, question) into an outcome row besides the config:
#: units, retrieval, packing, answering and the scorers. Part of every stored row's context key;
#: bump it when a change alters any stored column, so older rows are recomputed, not reused.
ENGINE_VERSION = "4"
#: LLM settings that change a reply (the rest, e.g. timeouts and endpoints, do not).
_REPLY_SETTINGS = ("model", "temperature", "max_tokens", "seed")
#: Questions per Ray task: small enough for a live progress bar and for configs to interleave.
CHUNK = 250


def objective_column(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise MemevolveError(f"unknown objective '{objective}'. Fix: use one of "
                             f"{', '.join(OBJECTIVES)}.")
    return "judge_correct" if objective == "judge" else objective


def outcome_context_key(embedder: EmbedderSpec, llm: LLMSpec) -> str:
    """What besides (config, benchmark, question) an outcome depends on: the engine and scorer
    version, the embedder, the answering LLM's and the judge's reply settings."""
    import hashlib
    import json

    def reply(settings: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if not settings else {k: settings.get(k) for k in _REPLY_SETTINGS}

    body = {"engine": ENGINE_VERSION,
            "embedder": [embedder.backend, embedder.model, embedder.options],
            "answer": reply(llm.answer), "judge": reply(llm.judge)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def question_scores(rows: Iterable[dict[str, Any]], objective: str, *,
                    adversarial: bool = False) -> dict[str, float]:
    """Question id -> objective value, for the questions where it is defined (valid, with gold).

    BudgetMem's protocol: the headline (``adversarial=False``) leaves out the adversarial
    questions (LoCoMo category 5, LongMemEval ``_abs``); ``adversarial=True`` scores only them,
    as a column of its own. The two are never mixed."""
    column = objective_column(objective)
    out = {}
    for row in rows:
        value = row.get(column)
        if value is None or row.get("invalid_reason") or bool(row["adversarial"]) != adversarial:
            continue
        out[row["question_id"]] = float(value)
    return out


def mean_score(rows: Iterable[dict[str, Any]], objective: str, *,
               adversarial: bool = False) -> float | None:
    values = list(question_scores(rows, objective, adversarial=adversarial).values())
    return sum(values) / len(values) if values else None


class Evaluator:
    """Runs MemorySystems over shards of conversations; ``workers=0`` runs in this process."""

    def __init__(self, benchmark: Benchmark, *, workers: int | None = None,
                 ray_address: str | None = None, embedder: EmbedderSpec | None = None,
                 llm: LLMSpec | None = None, progress: bool = False,
                 oracle_gold_categories: bool = False) -> None:
        self.benchmark = benchmark
        self.oracle_gold_categories = oracle_gold_categories
        self.artefacts: dict[str, dict[str, Any]] = {}
        self.embedder = embedder or EmbedderSpec()
        self.llm = llm or LLMSpec()
        self.progress = progress
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS")
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._local: MemorySystem | None = None
        self._actors: list[Any] = []
        self._shard_of: dict[str, int] = {}

    # Set-up --------------------------------------------------------------------------------
    def _start(self) -> None:
        if self.workers == 0:
            if self._local is None:
                self._local = MemorySystem(self.benchmark.conversations,
                                           self.benchmark.questions, self.embedder, self.llm,
                                           artefacts=self.artefacts,
                                           oracle_gold_categories=self.oracle_gold_categories)
            return
        if self._actors:
            return
        import ray

        from evolve.ray_actors import ShardActor, start_ray

        if not ray.is_initialized():
            start_ray(self.workers, self.ray_address)
        shards = shard_conversations(self.benchmark, self.workers)
        for index, conv_ids in enumerate(shards):
            wanted = set(conv_ids)
            conversations = [c for c in self.benchmark.conversations if c.id in wanted]
            questions = [q for q in self.benchmark.questions if q.conversation_id in wanted]
            for q in questions:
                self._shard_of[q.id] = index
            self._actors.append(ShardActor.remote(conversations, questions, self.embedder,
                                                  self.llm, self.oracle_gold_categories))
        if self.artefacts:
            ray.get([actor.add_artefacts.remote(self.artefacts) for actor in self._actors])

    def add_artefacts(self, artefacts: dict[str, dict[str, Any]]) -> None:
        """Give every memory system the learned parts (by hash) that configs reference."""
        new = {k: v for k, v in artefacts.items() if k not in self.artefacts}
        if not new:
            return
        self.artefacts.update(new)
        if self._local is not None:
            self._local.add_artefacts(new)
        elif self._actors:
            import ray

            ray.get([actor.add_artefacts.remote(new) for actor in self._actors])

    def embedding_counters(self) -> dict[str, int]:
        """Embedding cache hits and misses summed over this evaluator's memory systems."""
        if self._local is not None:
            return self._local.embedding_counters()
        if not self._actors:
            return {"hits": 0, "misses": 0}
        import ray

        counts = ray.get([actor.embedding_counters.remote() for actor in self._actors])
        return {key: sum(c[key] for c in counts) for key in ("hits", "misses")}

    def close(self) -> None:
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
            self._actors = []

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Work ----------------------------------------------------------------------------------
    def run(self, jobs: Sequence[tuple[RetrievalConfig, Sequence[str]]],
            ) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Evaluate each (config, question ids) job; all jobs run concurrently on the actors.
        Returns (rows, llm call rows) per job, rows in the job's question order."""
        for config, _ in jobs:
            # Checked here too, so a refused config fails before any work is sent out.
            check_routing(config, self.oracle_gold_categories)
            if config.question_types and not config.routes_on_gold \
                    and config.question_types not in self.artefacts:
                raise MemevolveError(f"config {config.config_hash} needs question-type "
                                     f"predictor {config.question_types}, which this evaluator "
                                     "was not given. Fix: evaluate through the run store that "
                                     "holds it, or a config file exported with it.")
        self._start()
        if self._local is not None:
            return [self._local.evaluate(config, ids) for config, ids in jobs]
        import ray

        tasks: dict[Any, int] = {}
        for job_index, (config, ids) in enumerate(jobs):
            payload = config.canonical_json()
            by_shard: dict[int, list[str]] = {}
            for qid in ids:
                by_shard.setdefault(self._shard_of[qid], []).append(qid)
            for shard, shard_ids in by_shard.items():
                for start in range(0, len(shard_ids), CHUNK):
                    ref = self._actors[shard].evaluate.remote(payload,
                                                              shard_ids[start:start + CHUNK])
                    tasks[ref] = job_index
        results: list[dict[str, dict[str, Any]]] = [{} for _ in jobs]
        calls: list[list[dict[str, Any]]] = [[] for _ in jobs]
        pending = list(tasks)
        total = sum(len(ids) for _, ids in jobs)
        with _progress(self.progress, total) as advance:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    rows, call_rows = ray.get(ref)
                    job = tasks[ref]
                    for row in rows:
                        # A retried task returns the same rows: keyed by id, never counted twice.
                        results[job][row["question_id"]] = row
                    calls[job].extend(call_rows)
                    advance(len(rows))
        out = []
        for job_index, (_, ids) in enumerate(jobs):
            missing = [q for q in ids if q not in results[job_index]]
            if missing:
                raise MemevolveError(f"{len(missing)} questions came back without a result "
                                     f"(e.g. {missing[0]}); nothing was stored. Fix: rerun.")
            out.append(([results[job_index][q] for q in ids], calls[job_index]))
        return out


def shard_conversations(benchmark: Benchmark, workers: int) -> list[list[str]]:
    """Conversations spread over workers, balancing question counts (largest first)."""
    counts: dict[str, int] = {c.id: 0 for c in benchmark.conversations}
    for q in benchmark.questions:
        counts[q.conversation_id] += 1
    n = max(1, min(workers, len(counts)))
    shards: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for conv_id in sorted(counts, key=lambda c: -counts[c]):
        target = loads.index(min(loads))
        shards[target].append(conv_id)
        loads[target] += counts[conv_id] + 1
    return shards


class _progress:
    """A rich progress bar over questions when enabled, else a no-op."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total > 0
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
        self._bar.start()
        task = self._bar.add_task("evaluating", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()


@dataclass
class EvaluationResult:
    config: RetrievalConfig
    part: str
    rows: list[dict[str, Any]]
    score: float | None
    n_reused: int
    wall_s: float
    evaluation_id: str | None = None
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    #: The objective on the adversarial questions alone (never part of ``score``).
    adversarial_score: float | None = None
    #: The rows computed now (the others came from the store): what recording it writes.
    new_rows: list[dict[str, Any]] = field(default_factory=list)
    objective: str = "recall_in_context"


def record_result(store: "RunStore", run_id: str, benchmark_key: str,
                  result: EvaluationResult) -> None:
    """Write an evaluation, its new question rows and its LLM calls (one transaction, or the
    caller's)."""
    with store.transaction():
        result.evaluation_id = store.record_evaluation(
            run_id, result.config, benchmark_key, result.part,
            [r["question_id"] for r in result.rows], result.new_rows, result.n_reused,
            result.objective, _finite(result.score), result.wall_s,
            adversarial_score=_finite(result.adversarial_score))
        if result.llm_calls:
            store.record_llm_calls(run_id, result.llm_calls)


def evaluate_configs(evaluator: Evaluator, configs: Sequence[RetrievalConfig],
                     question_ids: Sequence[str], *, part: str, objective: str,
                     store: "RunStore | None" = None, run_id: str | None = None,
                     record: bool = True) -> list[EvaluationResult]:
    """Evaluate several configs on the same questions at once, reusing stored outcomes; with
    a store and run id, each is recorded at once unless ``record`` is False (the caller then
    records them in its own transaction with record_result)."""
    objective_column(objective)
    start = time.perf_counter()
    key = evaluator.benchmark.key
    _provide_artefacts(evaluator, configs, question_ids, part, store)
    context = outcome_context_key(evaluator.embedder, evaluator.llm)
    cached = [store.cached_results(c.config_hash, key, question_ids, context_key=context,
                                   require=objective_column(objective)) if store else {}
              for c in configs]
    jobs, job_of = [], {}
    for i, config in enumerate(configs):
        missing = [q for q in question_ids if q not in cached[i]]
        if missing:
            job_of[i] = len(jobs)
            jobs.append((config, missing))
    fresh = evaluator.run(jobs) if jobs else []
    wall = time.perf_counter() - start
    results = []
    for i, config in enumerate(configs):
        new_rows, calls = fresh[job_of[i]] if i in job_of else ([], [])
        new_rows = [{**row, "context_key": context} for row in new_rows]
        by_id = {**cached[i], **{r["question_id"]: r for r in new_rows}}
        rows = [by_id[q] for q in question_ids]
        score = mean_score(rows, objective)
        adversarial = mean_score(rows, objective, adversarial=True)
        result = EvaluationResult(config, part, rows, score, len(cached[i]), wall,
                                  llm_calls=calls, adversarial_score=adversarial,
                                  new_rows=new_rows, objective=objective)
        if store is not None and run_id is not None and record:
            record_result(store, run_id, key, result)
        results.append(result)
    return results


def _finite(value: float | None) -> float | None:
    return value if value is not None and not math.isnan(value) else None


def _provide_artefacts(evaluator: Evaluator, configs: Sequence[RetrievalConfig],
                       question_ids: Sequence[str], part: str, store: "RunStore | None") -> None:
    """Hand the evaluator the predictors the configs reference (from a config file or the
    store), and refuse a test evaluation by a predictor that was trained on test questions."""
    from evolve.question_types import QuestionTypePredictor

    for config in configs:
        ref = config.question_types
        if ref is None or config.routes_on_gold:
            continue
        body = config.artefacts.get(ref) or evaluator.artefacts.get(ref)
        if body is None and store is not None:
            body = store.artefact(ref)
        if body is None:
            raise MemevolveError(f"config {config.config_hash} references question-type "
                                 f"predictor {ref}, which neither the config file nor the run "
                                 "store holds. Fix: export the config again with 'memevolve "
                                 "export', which embeds it.")
        if store is not None:
            store.put_artefact(body)
        if part == "test":
            leaked = set(body.get("question_ids", ())) & set(question_ids)
            if leaked:
                raise MemevolveError(f"question-type predictor {ref} was trained on {len(leaked)} "
                                     f"of the questions evaluated here as '{part}' (e.g. "
                                     f"{sorted(leaked)[0]}): its types would leak their labels. "
                                     "Fix: evaluate on questions outside its dev split.")
        QuestionTypePredictor.check_body(body)
        evaluator.add_artefacts({ref: body})
