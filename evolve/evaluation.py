"""Evaluation of configs on a benchmark: in-process or on Ray actors that keep indexes warm; the
driver alone reads and writes the run store, reusing every stored (config, question) outcome."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from benchmarks.errors import MemevolveError
from benchmarks.model import Benchmark
from evolve.memory import rerank
from evolve.memory.system import EmbedderSpec, LLMSpec, check_routing
from evolve.progress import Progress
from evolve.systems import (Resources, SystemRunner, import_root, resolve_system, space_of,
                            system_factory, system_name)
from search_space.artefacts import artefact_hash
from search_space.config import SpaceConfig

if TYPE_CHECKING:
    from benchmarks import BenchmarkSource
    from evolve.store import RunStore

OBJECTIVES = {
    "recall_in_context": "evidence recall within the context budget (offline default)",
    "recall_at_k": "evidence recall of the top_k units",
    "answer_f1": "official LoCoMo answer score of the answer",
    "judge": "LLM judge verdict (needs --judge-model)",
}
#: Objectives that score the retrieved context only: how the answer is asked for, ordered or
#: withheld (answer style, packing order, abstention) cannot move them.
RETRIEVAL_OBJECTIVES = ("recall_in_context", "recall_at_k")
#: Version of everything that turns a (config, question) into an outcome row besides the config:
#: units, retrieval, packing, answering and the scorers. Part of every stored row's context key;
#: bump it when a change alters any stored column, so older rows are recomputed, not reused.
ENGINE_VERSION = "5"
#: LLM settings that change a reply (the rest, e.g. timeouts and endpoints, do not).
_REPLY_SETTINGS = ("model", "temperature", "max_tokens", "seed")
#: Questions per Ray task: small enough for a live progress bar and for configs to interleave.
CHUNK = 250
#: Haystacks (conversations) per embedding task: progress and ETA move every few seconds.
PREPARE_CHUNK = 10
#: Times a call is sent again to a shard actor that died (Ray restarts it, possibly elsewhere).
RESUBMITS = 8


def objective_column(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise MemevolveError(f"unknown objective '{objective}'. Fix: use one of "
                             f"{', '.join(OBJECTIVES)}.")
    return "judge_correct" if objective == "judge" else objective


def outcome_context_key(embedder: EmbedderSpec, llm: LLMSpec,
                        system_version: str | None = None) -> str:
    """What besides (config, benchmark, question) an outcome depends on: the engine and scorer
    version, the embedder, the answering LLM's and the judge's reply settings, and a --system
    pipeline's own ``version`` (class attribute) where it declares one."""
    import hashlib
    import json

    def reply(settings: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if not settings else {k: settings.get(k) for k in _REPLY_SETTINGS}

    body = {"engine": ENGINE_VERSION,
            "embedder": [embedder.backend, embedder.model, embedder.options],
            "answer": reply(llm.answer), "judge": reply(llm.judge)}
    if system_version is not None:
        # Only when declared: the keys of every row already stored stay what they were.
        body["system_version"] = system_version
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
    """Runs a memory system over shards of conversations; ``workers=0`` runs in this process.

    ``system`` is the system's class: the built-in MemorySystem (default) or a
    `evolve.MemoryPipeline`, given as a class or as 'package.module:Class'.

    With ``source`` (how the benchmark was loaded), each Ray actor loads its own shard's
    haystacks: ``benchmark`` then needs only the questions (``source.load(keep=())``), and no
    process holds haystacks beyond its shard, which is what lets LongMemEval M fit."""

    def __init__(self, benchmark: Benchmark, *, workers: int | None = None,
                 ray_address: str | None = None, embedder: EmbedderSpec | None = None,
                 llm: LLMSpec | None = None, progress: bool = False,
                 oracle_gold_categories: bool = False, hold_conversations: bool = True,
                 system: type | str | None = None,
                 source: BenchmarkSource | None = None) -> None:
        self.benchmark = benchmark
        self.source = source
        #: False: once Ray actors hold the shards, ``benchmark`` keeps the questions only, so
        #: the driver holds no second copy of every haystack (the caller drops its own).
        self.hold_conversations = hold_conversations
        self.system = system if isinstance(system, type) else resolve_system(system)
        #: The config class of the system's space: what every job's config must be.
        self.space = space_of(self.system)
        self.oracle_gold_categories = oracle_gold_categories
        self.artefacts: dict[str, dict[str, Any]] = {}
        self.embedder = embedder or EmbedderSpec()
        self.llm = llm or LLMSpec()
        self.progress = progress
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS")
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._local: SystemRunner | None = None
        self._actors: list[Any] = []
        self._shard_of: dict[str, int] = {}
        self._question_by_id = {q.id: q for q in benchmark.questions}
        self._shard_data: list[tuple[Any, Any]] = []

    # Set-up --------------------------------------------------------------------------------
    def _start(self) -> None:
        if self.workers == 0:
            if self._local is None:
                conversations = self.benchmark.conversations
                if not conversations and self.source is not None:
                    conversations = self.source.load(
                        keep=self.benchmark.conversation_ids()).conversations
                resources = Resources(self.benchmark.questions, self.embedder, self.llm,
                                      dict(self.artefacts), self.oracle_gold_categories)
                self._local = SystemRunner(
                    system_factory(self.system)(conversations, resources),
                    conversations, self.benchmark.questions, self.llm)
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
            questions = [q for q in self.benchmark.questions if q.conversation_id in wanted]
            for q in questions:
                self._shard_of[q.id] = index
            if self.source is not None:
                # The actor loads its shard itself, again if Ray restarts it.
                shard_data: tuple[Any, Any] = (self.source.shard(conv_ids), None)
            else:
                conversations = [c for c in self.benchmark.conversations if c.id in wanted]
                # The driver keeps the shard's data referenced: Ray rebuilds an actor whose
                # node died from these, and would have freed them once the first actor started.
                shard_data = (ray.put(conversations), ray.put(questions))
            self._shard_data.append(shard_data)
            # SPREAD: on a cluster, shards go to different nodes (one node alone: no effect).
            self._actors.append(ShardActor.options(scheduling_strategy="SPREAD").remote(
                *shard_data, self.embedder, self.llm, self.oracle_gold_categories,
                system_name(self.system), import_root(self.system)))
        if not self.hold_conversations:
            # The actors hold the haystacks now: the driver keeps the questions only.
            self.benchmark = self.benchmark.without_conversations()

    def add_artefacts(self, artefacts: dict[str, dict[str, Any]]) -> None:
        """Give every memory system the learned parts (by hash) that configs reference. The
        actors get them with each call that needs them (see _artefacts_for), never once: an
        actor that Ray restarts runs only its constructor and would have lost them."""
        new = {k: v for k, v in artefacts.items() if k not in self.artefacts}
        if not new:
            return
        self.artefacts.update(new)
        if self._local is not None:
            self._local.add_artefacts(new)

    def _artefacts_for(self, configs: Iterable[SpaceConfig]) -> Any:
        """The artefacts these configs reference, for calls to the actors: put in Ray's object
        store once per batch of calls, not serialised again with every call."""
        import ray

        needed = {}
        for config in configs:
            if config.question_types and not config.routes_on_gold \
                    and config.question_types in self.artefacts:
                needed[config.question_types] = self.artefacts[config.question_types]
            if rerank.needs_model(config):
                body = rerank.model_for(config, self.embedder, self.artefacts.values())
                if body is not None:
                    needed[artefact_hash(body)] = body
        return ray.put(needed) if needed else {}

    def placement(self) -> list[dict[str, Any]]:
        """Per shard: the node id and process id of its actor (after a restart: the new one)."""
        self._start()
        if self._local is not None:
            return [{"shard": 0, "node": None, "pid": os.getpid()}]
        import ray

        return [{"shard": i, **where} for i, where in
                enumerate(ray.get([actor.where.remote() for actor in self._actors]))]

    def on_shards(self, work: Callable[..., Any], *args: Any) -> list[Any]:
        """``work(memory_system, *args)`` on every shard (in this process with workers=0), one
        result per shard in shard order: what a benchmark of the stages runs on the actors."""
        self._start()
        if self._local is not None:
            return [work(self._local.system, *args)]
        import ray

        # Every artefact: ``work`` may route any config.
        artefacts = ray.put(self.artefacts) if self.artefacts else {}
        results = dict(self._gather([(shard, "apply", (artefacts, work, *args))
                                     for shard in range(len(self._actors))]))
        return [results[shard] for shard in range(len(self._actors))]

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
            self._shard_data = []

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Work ----------------------------------------------------------------------------------
    def prepare(self, jobs: Sequence[tuple[SpaceConfig, Sequence[str]]]) -> dict[str, int]:
        """Build the indexes the jobs' configs need (the built-in system: dense ones),
        haystack by haystack, before any question is evaluated: the embedding phase, with its
        own progress and ETA. A system without a prepare hook, or a config its ``prepares``
        says needs none, costs nothing here. Returns the texts embedded."""
        self._start()
        if not hasattr(self.system, "prepare"):
            return {"embedded": 0}
        prepares = getattr(self.system, "prepares", lambda config: True)
        work: list[tuple[str, list[str], int]] = []
        for config, ids in jobs:
            if not prepares(config):
                continue
            by_shard: dict[int, dict[str, None]] = {}
            for qid in ids:
                by_shard.setdefault(self._shard_of.get(qid, 0), {})[
                    self._question_by_id[qid].conversation_id] = None
            payload = config.canonical_json()
            for shard, conversations in by_shard.items():
                unique = list(conversations)
                for start in range(0, len(unique), PREPARE_CHUNK):
                    work.append((payload, unique[start:start + PREPARE_CHUNK], shard))
        total = sum(len(convs) for _, convs, _ in work)
        embedded = 0
        with Progress("embedding", total, "haystacks", enabled=self.progress) as progress:
            if self._local is not None:
                for payload, convs, _ in work:
                    done = self._local.prepare(self.space.model_validate_json(payload), convs)
                    embedded += done["embedded"]
                    progress.advance(len(convs), texts=done["embedded"])
                return {"embedded": embedded}
            import ray

            artefacts = self._artefacts_for(config for config, _ in jobs)
            calls = [(shard, "prepare", (artefacts, payload, convs))
                     for payload, convs, shard in work]
            for index, done in self._gather(calls):
                embedded += done["embedded"]
                progress.advance(len(work[index][1]), texts=done["embedded"])
        return {"embedded": embedded}

    def _gather(self, calls: list[tuple[int, str, tuple]]) -> Iterator[tuple[int, Any]]:
        """Run (shard, method, args) calls on the shard actors; yield (index, result) as each
        finishes. A call whose actor died (its node lost) is sent again once Ray has restarted
        the actor elsewhere, up to RESUBMITS times: Ray's own task retries can all be spent
        while a dead node is still being detected."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        def submit(call: tuple[int, str, tuple]) -> Any:
            shard, method, args = call
            return getattr(self._actors[shard], method).remote(*args)

        pending = {submit(call): (index, 0) for index, call in enumerate(calls)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index, attempts = pending.pop(ref)
                call = calls[index]
                try:
                    result = ray.get(ref)
                except (RayActorError, ActorUnavailableError) as exc:
                    if attempts >= RESUBMITS:
                        raise MemevolveError(
                            f"shard {call[0]} failed {attempts + 1} times ({type(exc).__name__})"
                            "; nothing was stored. Fix: check the Ray cluster ('ray status') "
                            "and rerun.") from exc
                    time.sleep(min(2.0 ** attempts, 10.0))
                    pending[submit(call)] = (index, attempts + 1)
                    continue
                yield index, result

    def run(self, jobs: Sequence[tuple[SpaceConfig, Sequence[str]]],
            ) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Evaluate each (config, question ids) job; all jobs run concurrently on the actors.
        Returns (rows, llm call rows) per job, rows in the job's question order."""
        for config, _ in jobs:
            if type(config) is not self.space:
                raise MemevolveError(
                    f"config {config.config_hash} is of {config.system or 'the built-in system'}"
                    f" but this evaluator runs {self.space.system_name or 'the built-in one'}. "
                    "Fix: evaluate it with an evaluator of its own system (--system).")
            # Checked here too, so a refused config fails before any work is sent out.
            check_routing(config, self.oracle_gold_categories)
            if config.question_types and not config.routes_on_gold \
                    and config.question_types not in self.artefacts:
                raise MemevolveError(f"config {config.config_hash} needs question-type "
                                     f"predictor {config.question_types}, which this evaluator "
                                     "was not given. Fix: evaluate through the run store that "
                                     "holds it, or a config file exported with it.")
        self._start()
        self.prepare(jobs)
        total = sum(len(ids) for _, ids in jobs)
        if self._local is not None:
            out = []
            with Progress("evaluating", total, "questions", enabled=self.progress) as progress:
                for config, ids in jobs:
                    rows, call_rows = [], []
                    for start in range(0, len(ids), CHUNK):
                        chunk_rows, chunk_calls = self._local.evaluate(config,
                                                                       ids[start:start + CHUNK])
                        rows.extend(chunk_rows)
                        call_rows.extend(chunk_calls)
                        progress.advance(len(chunk_rows))
                    out.append((rows, call_rows))
            return out

        artefacts = self._artefacts_for(config for config, _ in jobs)
        calls: list[tuple[int, str, tuple]] = []
        job_of_call: list[int] = []
        for job_index, (config, ids) in enumerate(jobs):
            payload = config.canonical_json()
            by_shard: dict[int, list[str]] = {}
            for qid in ids:
                by_shard.setdefault(self._shard_of[qid], []).append(qid)
            for shard, shard_ids in by_shard.items():
                for start in range(0, len(shard_ids), CHUNK):
                    calls.append((shard, "evaluate",
                                  (artefacts, payload, shard_ids[start:start + CHUNK])))
                    job_of_call.append(job_index)
        results: list[dict[str, dict[str, Any]]] = [{} for _ in jobs]
        call_rows_of: list[list[dict[str, Any]]] = [[] for _ in jobs]
        with Progress("evaluating", total, "questions", enabled=self.progress) as progress:
            for index, (rows, call_rows) in self._gather(calls):
                job = job_of_call[index]
                for row in rows:
                    # A resent call returns the same rows: keyed by id, never counted twice.
                    results[job][row["question_id"]] = row
                call_rows_of[job].extend(call_rows)
                progress.advance(len(rows))
        out = []
        for job_index, (_, ids) in enumerate(jobs):
            missing = [q for q in ids if q not in results[job_index]]
            if missing:
                raise MemevolveError(f"{len(missing)} questions came back without a result "
                                     f"(e.g. {missing[0]}); nothing was stored. Fix: rerun.")
            out.append(([results[job_index][q] for q in ids], call_rows_of[job_index]))
        return out


def shard_conversations(benchmark: Benchmark, workers: int) -> list[list[str]]:
    """Conversations spread over workers, balancing question counts (largest first)."""
    counts: dict[str, int] = dict.fromkeys(benchmark.conversation_ids(), 0)
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


@dataclass
class EvaluationResult:
    config: SpaceConfig
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
    #: Seconds spent training the config's learned reranker before evaluating (in ``wall_s``
    #: too); 0 when it was known.
    train_s: float = 0.0


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


def evaluate_configs(evaluator: Evaluator, configs: Sequence[SpaceConfig],
                     question_ids: Sequence[str], *, part: str, objective: str,
                     store: "RunStore | None" = None, run_id: str | None = None,
                     record: bool = True) -> list[EvaluationResult]:
    """Evaluate several configs on the same questions at once, reusing stored outcomes; with
    a store and run id, each is recorded at once unless ``record`` is False (the caller then
    records them in its own transaction with record_result)."""
    objective_column(objective)
    start = time.perf_counter()
    key = evaluator.benchmark.key
    train_s = _provide_artefacts(evaluator, configs, question_ids, part, store)
    context = outcome_context_key(evaluator.embedder, evaluator.llm,
                                  getattr(evaluator.system, "version", None))
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
                                  new_rows=new_rows, objective=objective, train_s=train_s[i])
        if store is not None and run_id is not None and record:
            record_result(store, run_id, key, result)
        results.append(result)
    return results


def _finite(value: float | None) -> float | None:
    return value if value is not None and not math.isnan(value) else None


def _provide_artefacts(evaluator: Evaluator, configs: Sequence[SpaceConfig],
                       question_ids: Sequence[str], part: str, store: "RunStore | None"
                       ) -> list[float]:
    """Hand the evaluator the learned parts the configs reference (from a config file or the
    store; a reranker missing everywhere is trained), and refuse a test evaluation by one that
    was trained on test questions. Returns each config's seconds of reranker training."""
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
            _refuse_leak(f"question-type predictor {ref}", body, question_ids, part)
        QuestionTypePredictor.check_body(body)
        evaluator.add_artefacts({ref: body})
    train_s = [0.0] * len(configs)
    for i, config in enumerate(configs):
        if rerank.needs_model(config):
            body, train_s[i] = _reranker(evaluator, config, store)
            if part == "test":
                _refuse_leak(f"reranker {body['key']}", body, question_ids, part)
    return train_s


def _reranker(evaluator: Evaluator, config: SpaceConfig, store: "RunStore | None"
              ) -> tuple[dict[str, Any], float]:
    """The config's learned reranker and the seconds spent training it (0: it was known): the
    one it carries, this evaluator's or the store's with the same key, or trained now on the
    dev questions of the config's question-type predictor (their features computed by the
    shards, the model fitted here)."""
    key = rerank.model_key(config, evaluator.embedder)
    known = [*config.artefacts.values(), *evaluator.artefacts.values()]
    body = rerank.model_for(config, evaluator.embedder, known)
    if body is None and store is not None:
        body = rerank.model_for(config, evaluator.embedder, store.artefacts_of_kind(rerank.KIND))
    train_s = 0.0
    if body is None:
        ids = rerank.training_question_ids(config, evaluator.artefacts)
        # The embeddings the training rows read are built first, with their own progress bar:
        # the evaluation would build them anyway, and the seconds counted are the training's.
        evaluator.prepare([(config, ids)])
        began = time.perf_counter()
        shards = evaluator.on_shards(rerank.collect_training_rows, config.canonical_json(), ids)
        body = rerank.train_body([group for shard in shards for group in shard], key=key,
                                 fields_key=rerank.model_key(config, None),
                                 trained_on=config.question_types, question_ids=ids)
        train_s = time.perf_counter() - began
    if store is not None:
        store.put_artefact(body)
    evaluator.add_artefacts({artefact_hash(body): body})
    return body, train_s


def _refuse_leak(what: str, body: dict[str, Any], question_ids: Sequence[str], part: str) -> None:
    leaked = set(body.get("question_ids", ())) & set(question_ids)
    if leaked:
        raise MemevolveError(f"{what} was trained on {len(leaked)} of the questions evaluated "
                             f"here as '{part}' (e.g. {sorted(leaked)[0]}): it would leak their "
                             "labels. Fix: evaluate on questions outside its dev split.")
