"""Memory systems the loop tunes: the built-in one, or your own pipeline behind `MemoryPipeline`.

A pipeline declares its knobs as `Dimension`s; the loop builds the config class of that space
(`search_space.config.config_class`), and everything downstream (evaluation in-process or on Ray,
the run store, the rules and LLM diagnosers, the guard, exploration, report and export) reads the
space from the config, not from the built-in one. `SystemRunner` turns what a pipeline retrieved
into the outcome rows the store keeps, scored the same way for every system."""
from __future__ import annotations

import importlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Protocol, Sequence,
                    runtime_checkable)

from benchmarks.errors import MemevolveError
from benchmarks.model import Conversation, Question
from benchmarks.scoring import (LONGMEMEVAL_STORED_KS, locomo_answer_score,
                                longmemeval_official_turn_metrics, session_recall_at_k,
                                turn_recall_at_k)
from search_space.config import META_FIELDS, SpaceConfig, config_class
from search_space.dimension import Dimension

if TYPE_CHECKING:
    from evolve.memory.system import EmbedderSpec, LLMSpec

#: How `--system` names the built-in memory system.
BUILTIN = "builtin"
#: How many ranked units a result row keeps (recall@k for k up to this).
KEPT_RANKS = 50
#: The official LongMemEval corpus: user turns only (assistant turns are indexed but not ranked).
OFFICIAL_CORPUS_ROLE = "user"
#: Result-row column -> official metric key, for every stored official metric.
OFFICIAL_COLUMNS = {f"lme_{level}_{metric}_at_{k}": f"{level}_{metric}@{k}"
                    for level in ("session", "turn") for metric in ("recall_any", "recall_all",
                                                                   "ndcg")
                    for k in LONGMEMEVAL_STORED_KS}


class UnitLike(Protocol):
    """What recall is measured on: a unit's id, the turns it holds, its session."""

    id: str
    turn_ids: tuple[str, ...]
    session_index: int


@dataclass(frozen=True)
class Unit:
    """One retrievable piece of a pipeline's memory (a turn, a chunk of turns, a summary)."""

    id: str
    #: The conversation turns whose content (and so whose evidence) it holds.
    turn_ids: tuple[str, ...]
    session_index: int
    text: str = ""


@dataclass(frozen=True)
class Retrieval:
    """What a pipeline did for one question: its ranking and the context it packed.

    ``ranked`` is best first (the first KEPT_RANKS are kept); ``packed`` are the units the
    context holds (recall_in_context is measured on them); ``selected`` the top-k before packing
    (recall_at_k; default: ``packed``); ``context_ids`` the context's units in context order
    (default: the ids of ``packed``). ``answer`` is None for a pipeline that only retrieves:
    the answer metrics are then left unscored (NULL), never counted as wrong."""

    question_id: str
    ranked: Sequence[UnitLike]
    packed: Sequence[UnitLike]
    context_text: str
    context_tokens: int
    selected: Sequence[UnitLike] | None = None
    context_ids: Sequence[str] | None = None
    answer: str | None = None
    abstained: bool = False
    #: Why the question could not be answered (an LLM refused, ...): the row is not scored.
    invalid_reason: str | None = None
    #: The predicted question type whose overrides applied, if the pipeline routes on one.
    question_type: str | None = None
    llm_calls: Sequence[dict[str, Any]] = ()
    latency_ms: float | None = None


@dataclass
class Resources:
    """What the evaluation hands a system besides its conversations."""

    #: The questions the system will be asked (their gold fields are for scoring only: a
    #: pipeline must not read category, evidence or answers).
    questions: Sequence[Question]
    embedder: "EmbedderSpec"
    llm: "LLMSpec"
    #: Learned parts by content hash (question-type predictors) that configs reference.
    artefacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    oracle_gold_categories: bool = False


@runtime_checkable
class MemoryPipeline(Protocol):
    """A memory system the loop can tune: bring your own.

    - ``dimensions``: the pipeline's knobs (`evolve.Dimension`: int, float, bool, choice or set,
      with range or choices, default, description, optional ``group``). They are its whole
      search space: the config class, the LLM diagnoser's prompt, exploration, the store and
      exports all come from them. Dimensions in group "selection" or "context" (how much is
      kept: top-k, a budget) are widened by the rules diagnoser when evidence is ranked below
      the cut; one named ``context_budget`` is capped by --max-context-tokens. A space with
      per-category dimensions gets a question-type predictor trained on dev, and overrides keyed
      by the type it predicts: the pipeline receives the predictor through ``add_artefacts``
      (its hash is ``config.question_types``; evolve.question_types.QuestionTypePredictor reads
      it) and applies ``config.for_type(type)``. A space without any never gets overrides.
    - ``Class(conversations, resources)`` builds it for one shard of conversations (a class
      whose constructor takes other arguments defines ``from_resources(conversations,
      resources)`` instead); it may keep its indexes between configs.
    - ``retrieve(config, questions)``: a `Retrieval` per question, in order. ``config`` is an
      instance of the space's config class: read a knob as ``config.top_k``.

    Optional hooks: ``prepare(config, conversation_ids) -> {"embedded": n}`` (build indexes
    before the questions, e.g. embed) with ``prepares(config) -> bool`` to skip configs that
    need none; ``embedding_counters() -> {"hits", "misses"}``; ``add_artefacts(artefacts)``;
    and the classmethod ``describe_units(conversation, unit_ids, config) -> texts`` that shows
    units to the LLM diagnoser (default: a turn id's text, else the id). A ``version`` class
    attribute (a string) is part of every stored outcome's key: change it when a code change
    alters what the pipeline retrieves, and stored outcomes are recomputed, not reused."""

    dimensions: ClassVar[Sequence[Dimension]]

    def retrieve(self, config: Any, questions: Sequence[Question]) -> list[Retrieval]: ...


SystemFactory = Callable[[Sequence[Conversation], Resources], Any]


def resolve_system(spec: str | None, option: str = "--system") -> type:
    """The class ``spec`` ('package.module:Class') names, checked against the Protocol; None or
    'builtin': the built-in MemorySystem. Errors name the option, what is wrong and the fix."""
    from evolve.memory.system import MemorySystem

    if spec is None or spec.strip() in ("", BUILTIN):
        return MemorySystem
    spec = spec.strip()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise MemevolveError(f"{option} {spec}: not of the form package.module:Class. Fix: name "
                             f"the module and the class, e.g. {option} byo_pipeline:TfidfPipeline "
                             f"(or {BUILTIN} for the built-in system).")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MemevolveError(f"{option} {spec}: no module named '{exc.name}' on the Python path. "
                             "Fix: install the package, or put the folder that holds it on "
                             "PYTHONPATH (the example: PYTHONPATH=examples).") from None
    except Exception as exc:  # the user's module failed while importing: say how
        raise MemevolveError(f"{option} {spec}: importing {module_name} raised "
                             f"{type(exc).__name__}: {exc}. Fix: repair that module.") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise MemevolveError(f"{option} {spec}: {module_name} has no attribute "
                                 f"'{attribute}'. Fix: name a class defined in that module.")
        target = getattr(target, part)
    check_system(target, f"{option} {spec}")
    return target


def check_system(cls: Any, label: str) -> None:
    """Refuse a class that does not implement MemoryPipeline, or whose space is malformed."""
    if not isinstance(cls, type):
        raise MemevolveError(f"{label}: is a {type(cls).__name__}, not a class. Fix: name the "
                             "pipeline class itself.")
    problems = []
    if not callable(getattr(cls, "retrieve", None)):
        problems.append("it has no retrieve(config, questions) method")
    dims = getattr(cls, "dimensions", None)
    if not isinstance(dims, (list, tuple)) or not dims or \
            not all(isinstance(d, Dimension) for d in dims):
        problems.append("its 'dimensions' must be a non-empty list of evolve.Dimension")
    else:
        names = [d.name for d in dims]
        problems += [f"dimension '{n}' is declared twice" for n in sorted(set(names))
                     if names.count(n) > 1]
        problems += [f"dimension '{n}' takes a reserved config field name" for n in names
                     if n in META_FIELDS]
        for d in dims:
            try:
                d.validate(d.default)
            except ValueError as exc:
                problems.append(f"dimension '{d.name}': its default {exc}")
        routed = [d.name for d in dims if d.scope == "per_category"]
        if routed and not callable(getattr(cls, "add_artefacts", None)):
            # Without the predictor its overrides would be proposed, evaluated and ignored.
            problems.append(f"per-category dimensions ({', '.join(routed)}) need an "
                            "add_artefacts(artefacts) method to receive the question-type "
                            "predictor that picks the overrides")
    if problems:
        raise MemevolveError(f"{label}: not a memory pipeline: {'; '.join(problems)}. Fix: "
                             "implement evolve.MemoryPipeline (see examples/byo_pipeline).")


def system_name(cls: type) -> str | None:
    """The canonical 'module:Class' of a system (None for the built-in one): what the store
    and the configs record, and what a Ray worker imports."""
    from evolve.memory.system import MemorySystem

    return None if cls is MemorySystem else f"{cls.__module__}:{cls.__qualname__}"


def space_of(cls: type) -> type[SpaceConfig]:
    """The config class of a system's space."""
    from evolve.memory.system import MemorySystem
    from search_space.config import RetrievalConfig

    if cls is MemorySystem:
        return RetrievalConfig
    return config_class(tuple(cls.dimensions), system_name(cls), f"{cls.__name__}Config")


def system_factory(cls: type) -> SystemFactory:
    return getattr(cls, "from_resources", cls)


def import_root(cls: type) -> str | None:
    """The sys.path entry the system's top-level package was imported from (so a Ray worker,
    which does not share this process's sys.path, can import it too); None when unknown."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    root = Path(file).resolve().parent
    for _ in range(cls.__module__.count(".") + (1 if file.endswith("__init__.py") else 0)):
        root = root.parent
    return str(root)


def load_system(name: str | None, root: str | None) -> type:
    """In a worker: the system a driver named, importable from ``root``."""
    if root is not None and root not in sys.path:
        sys.path.append(root)
    return resolve_system(name)


def describe_units(cls: type, conversation: Conversation, unit_ids: list[str],
                   config: SpaceConfig) -> list[str]:
    """The units' texts as the LLM diagnoser shows them: the system's own describe_units, else
    a turn id's text (any other id shown as itself)."""
    own = getattr(cls, "describe_units", None)
    if own is not None:
        return list(own(conversation, unit_ids, config))
    turns = {t.id: f"{t.speaker}: {t.content}" for t in conversation.turns}
    return [turns.get(unit_id, unit_id) for unit_id in unit_ids]


class SystemRunner:
    """Evaluates configs with one system on a shard: its retrievals become outcome rows (recall
    at every cut, turn and session metrics, LongMemEval's official ones, the answer score and
    the judge's verdict), the same for every system."""

    def __init__(self, system: Any, conversations: Iterable[Conversation],
                 questions: Iterable[Question], llm: "LLMSpec") -> None:
        self.system = system
        self.conversations = {c.id: c for c in conversations}
        self.questions = {q.id: q for q in questions}
        self._llm = llm
        self._judge = None

    def evaluate(self, config: SpaceConfig, question_ids: Iterable[str] | None = None,
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Outcome rows for the questions (default: all of the shard), plus LLM call rows."""
        ids = list(self.questions) if question_ids is None else list(question_ids)
        questions = [self.questions[qid] for qid in ids]
        start = time.perf_counter()
        retrievals = list(self.system.retrieve(config, questions))
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if not all(isinstance(r, Retrieval) for r in retrievals):
            got = "something other than Retrieval objects"
        elif [r.question_id for r in retrievals] != ids:
            got = f"{len(retrievals)} retrievals, not one per question in order,"
        else:
            got = None
        if got is not None:
            raise MemevolveError(f"{type(self.system).__name__}.retrieve returned {got} for "
                                 f"{len(ids)} questions. Fix: return [Retrieval(question_id="
                                 "q.id, ...) for q in questions].")
        judge = self._llm_judge()
        pairs = list(zip(questions, retrievals))

        def row(pair: tuple[Question, Retrieval]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            return self._row(*pair, judge, elapsed_ms / max(len(ids), 1))

        if judge is not None and judge.client.settings.concurrency > 1 and len(pairs) > 1:
            with ThreadPoolExecutor(max_workers=judge.client.settings.concurrency) as pool:
                done = list(pool.map(row, pairs))
        else:
            done = [row(pair) for pair in pairs]
        rows, calls = [], []
        for out, question_calls in done:
            rows.append(out)
            calls.extend(question_calls)
        return rows, calls

    def prepare(self, config: SpaceConfig, conversation_ids: Iterable[str]) -> dict[str, int]:
        hook = getattr(self.system, "prepare", None)
        return hook(config, conversation_ids) if hook is not None else {"embedded": 0}

    def add_artefacts(self, artefacts: dict[str, dict[str, Any]]) -> None:
        hook = getattr(self.system, "add_artefacts", None)
        if hook is not None:
            hook(artefacts)

    def embedding_counters(self) -> dict[str, int]:
        hook = getattr(self.system, "embedding_counters", None)
        return hook() if hook is not None else {"hits": 0, "misses": 0}

    def _llm_judge(self):
        if self._judge is None and self._llm.judge:
            from evolve.judge import LLMJudge
            from evolve.llm import LLMClient, LLMSettings, ResponseCache

            self._judge = LLMJudge(LLMClient(LLMSettings(**self._llm.judge),
                                             cache=ResponseCache()))
        return self._judge

    def _row(self, question: Question, retrieval: Retrieval, judge: Any, share_ms: float,
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        start = time.perf_counter()
        calls = list(retrieval.llm_calls)
        ranked = list(retrieval.ranked)[:KEPT_RANKS]
        row = outcome_row(question, ranked, list(retrieval.packed),
                          list(retrieval.selected if retrieval.selected is not None
                               else retrieval.packed),
                          list(retrieval.context_ids if retrieval.context_ids is not None
                               else [u.id for u in retrieval.packed]),
                          retrieval.context_tokens)
        row.update(self._turn_metrics(question, ranked))
        row["question_type"] = retrieval.question_type
        invalid = retrieval.invalid_reason
        row["answer"] = retrieval.answer or ""
        row["abstained"] = bool(retrieval.abstained)
        row["invalid_reason"] = invalid
        answered = retrieval.answer is not None and invalid is None
        row["answer_f1"] = locomo_answer_score(retrieval.answer, question) if answered and (
            question.answers or question.adversarial) else None
        row["judge_correct"] = None
        if judge is not None and answered:
            from evolve.llm import LLMError

            try:
                verdict = judge.judge(question, retrieval.answer)
                row["judge_correct"] = verdict.correct
                calls.extend(c.as_row() for c in verdict.calls)
            except LLMError as exc:
                # No verdict is no score: the question is invalid, as when the answerer fails.
                row["invalid_reason"] = f"judge unavailable: {exc}"
                row["answer_f1"] = None
                if exc.call is not None:
                    calls.append(exc.call.as_row())
        row["llm_prompt_tokens"] = sum(c["prompt_tokens"] for c in calls)
        row["llm_completion_tokens"] = sum(c["completion_tokens"] for c in calls)
        row["llm_cost_usd"] = float(sum(c["cost_usd"] for c in calls))
        own = retrieval.latency_ms if retrieval.latency_ms is not None else share_ms
        row["latency_ms"] = own + (time.perf_counter() - start) * 1000.0
        return row, calls

    def _turn_metrics(self, question: Question, ranked: list[UnitLike]) -> dict[str, Any]:
        """Turn-level recall@5/@10 of the ranking expanded to turns, and LongMemEval's official
        metrics where the question has official targets (None otherwise). The ranking is the
        kept head (KEPT_RANKS units, every turn of an oracle haystack); the official scorer
        completes it with the unranked user turns in corpus order."""
        turns = [t for unit in ranked for t in unit.turn_ids]
        out: dict[str, Any] = {
            f"turn_recall_at_{k}": turn_recall_at_k(turns, question.evidence, k)
            for k in LONGMEMEVAL_STORED_KS}
        official: dict[str, float] = {}
        if question.target_turns:
            conversation = self.conversations[question.conversation_id]
            session_of = {t.id: t.session_index for t in conversation.turns}
            corpus = [t.id for t in conversation.turns if t.speaker == OFFICIAL_CORPUS_ROLE]
            official = longmemeval_official_turn_metrics(
                turns, corpus, question.target_turns, session_of, question.evidence_sessions)
        for column, key in OFFICIAL_COLUMNS.items():
            out[column] = official.get(key)
        return out


def outcome_row(question: Question, ranked: list[UnitLike], packed: list[UnitLike],
                selected: list[UnitLike], context_ids: list[str],
                context_tokens: int) -> dict[str, Any]:
    """The retrieval columns of a result row: recall at each cut of the ranking, of the top-k
    and of the packed context, the first gold rank and session recall."""
    gold = set(question.evidence)

    def recall(units: list[UnitLike]) -> float | None:
        if not gold:
            return None
        covered = {t for u in units for t in u.turn_ids}
        return len(gold & covered) / len(gold)

    evidence_rank = next((r for r, u in enumerate(ranked, 1) if gold & set(u.turn_ids)), None)
    gold_sessions = set(question.evidence_sessions)
    # The first 5 distinct sessions: a turn ranking names a session once per turn.
    session_recall = session_recall_at_k([u.session_index for u in ranked], gold_sessions, 5)
    return {
        "question_id": question.id,
        "conversation_id": question.conversation_id,
        "category": question.category,
        "adversarial": question.adversarial,
        "retrieved_ids": [u.id for u in ranked],
        "context_ids": list(context_ids),
        "evidence_ids": list(question.evidence),
        "recall_at_5": recall(ranked[:5]),
        "recall_at_10": recall(ranked[:10]),
        "recall_at_k": recall(selected),
        "recall_in_context": recall(packed),
        "session_recall_at_5": session_recall,
        "evidence_rank": evidence_rank,
        "context_tokens": context_tokens,
    }
