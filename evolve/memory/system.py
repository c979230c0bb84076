"""The built-in memory system: units -> retrievers -> fusion -> MMR -> expansion -> packing ->
answer, for every question of a shard of conversations; one implementation of
`evolve.MemoryPipeline` (its space is search_space.dimensions).

`MemorySystem.context` is the one retrieval path: the evaluation answers from it and
`evolve.Memory.search` serves it to an agent."""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable

import numpy as np

from benchmarks.errors import MemevolveError
from benchmarks.model import Conversation, Question
from evolve.embeddings import DEFAULT_BACKEND
from evolve.memory.answer import NOT_MENTIONED, extractive_answer
from evolve.memory.bounded import BoundedCache
from evolve.memory.cross_encoder import NO_CROSS_ENCODER, CrossEncoderScorer, reranked
from evolve.memory.feedback import feedback_scores
from evolve.memory.models import embedder_arguments
from evolve.memory.hierarchy import mix_session_scores, session_prior, uses_sessions
from evolve.memory.llm_query import QueryTexts, query_texts
from evolve.memory.multihop import multihop_scores
from evolve.memory.packing import pack_context
from evolve.memory.query import ProcessedQuery, process_query
from evolve.memory.rerank import (Candidates, RerankModel, candidate_features, model_for,
                                  model_key, ranking_fields, reordered, uses_reranker)
from evolve.memory.retrievers import RETRIEVERS, DenseRetriever, cosines, minmax, score_key
from evolve.memory.time_prior import apply_time
from evolve.memory.units import MemoryUnit, UnitSet, build_units, extend_units, unit_text
from evolve.systems import KEPT_RANKS, Resources, Retrieval, SystemRunner
from search_space.config import RetrievalConfig
from search_space.dimensions import DIMENSIONS
#: Retriever settings whose per-question scores a conversation keeps (most recently used).
SCORE_SETTINGS_KEPT = 16
#: Questions ranked before the learned reranker scores their candidates in one call per model
#: (see RerankModel.predict_many); a larger batch saves little and holds more rankings at once.
RERANK_BATCH = 32
#: Finished rankings (each question's scores and order after the learned reranker) are kept for
#: this many ranking settings, most recently used: a config that differs from one evaluated
#: before only in selection, context or answer settings (top_k, the budget, packing: most of
#: a search's edits) ranks nothing again.
RANKINGS_KEPT = 4
#: ... up to this many array elements (8 bytes each) per setting and process: on haystacks of
#: LongMemEval M's size (about 1.5M tokens a question) a setting's rankings would otherwise hold
#: hundreds of megabytes.
RANKING_ELEMENTS = 8_000_000


@dataclass
class EmbedderSpec:
    backend: str = DEFAULT_BACKEND
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LLMSpec:
    """The answering model (answerer=llm) and optional judge, as litellm settings dicts."""

    answer: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None


class ConversationMemory:
    """One conversation's units and retriever indexes, built lazily and kept."""

    def __init__(self, conversation: Conversation, retrievers: dict[str, Any]) -> None:
        self.conversation = conversation
        self.retrievers = retrievers
        self._unit_sets: dict[tuple[str, int, str, int], UnitSet] = {}
        self._queries: dict[tuple, ProcessedQuery] = {}
        # Per retriever setting (BM25 tokenisation, k1, b, ...), each question's scores; only
        # the latest settings are kept, or a search over k1 and b grows ~1 MB per setting.
        self._scores: BoundedCache[dict[ProcessedQuery, np.ndarray]] = \
            BoundedCache(SCORE_SETTINGS_KEPT)

    def extend(self, conversation: Conversation) -> None:
        """Take the conversation with new turns or sessions appended: each built unit set and
        each retriever index is updated for the units that changed (the new ones, and windows
        or sessions that now reach a new turn), not rebuilt."""
        self.conversation = conversation
        for key, old in list(self._unit_sets.items()):
            kind, window_size, roles, passages = key
            new, keep = extend_units(old, conversation, kind, window_size, roles=roles,
                                     passage_tokens=passages)
            for retriever in self.retrievers.values():
                retriever.extend(old, new, keep)
            self._unit_sets[key] = new
        # BM25 scores depend on the whole corpus (idf, mean length): every stored score is stale.
        self._scores = BoundedCache(SCORE_SETTINGS_KEPT)

    def units(self, config: RetrievalConfig) -> UnitSet:
        passages = config.passage_tokens if config.unit == "turn" else 0
        return self._built(config.unit, config.window_size if config.unit == "window" else 0,
                           config.index_roles, passages)

    def session_units(self, config: RetrievalConfig) -> UnitSet:
        """One unit per session (its turns joined), for session-level scores."""
        return self._built("session", 0, config.index_roles, 0)

    def _built(self, kind: str, window_size: int, roles: str, passages: int) -> UnitSet:
        key = (kind, window_size, roles, passages)
        if key not in self._unit_sets:
            self._unit_sets[key] = build_units(self.conversation, kind, window_size, roles=roles,
                                               passage_tokens=passages)
        return self._unit_sets[key]

    def query(self, question: Question, config: RetrievalConfig) -> ProcessedQuery:
        key = (question.id, config.query_keywords, config.speaker_swap)
        if key not in self._queries:
            self._queries[key] = process_query(question.text, self.conversation.speakers,
                                               use_keywords=config.query_keywords,
                                               speaker_swap=config.speaker_swap)
        return self._queries[key]

    def text_query(self, text: str, config: RetrievalConfig) -> ProcessedQuery:
        """Another query text (a sub-query, a second hop) processed as the question is."""
        return process_query(text, self.conversation.speakers,
                             use_keywords=config.query_keywords, speaker_swap=config.speaker_swap)

    def retriever_scores(self, name: str, units: UnitSet, query: ProcessedQuery,
                         config: RetrievalConfig) -> np.ndarray:
        setting = (name, id(units), score_key(self.retrievers[name], config))
        if setting not in self._scores:
            self._scores[setting] = {}
        by_query = self._scores[setting]
        if query not in by_query:
            by_query[query] = self.retrievers[name].scores(units, query, config)
        return by_query[query]


def uses_dense(config: RetrievalConfig) -> bool:
    """Whether retrieving with ``config`` (one question type's) needs unit embeddings."""
    return "dense" in config.retrievers.split("+") or config.mmr_lambda < 1.0


def needs_dense(config: RetrievalConfig) -> bool:
    """Whether any question type of ``config`` needs unit embeddings."""
    return any(uses_dense(config.for_type(t)) for t in (None, *config.overrides))


def fuse(scores: dict[str, np.ndarray], config: RetrievalConfig) -> np.ndarray:
    """Weighted sum of min-max normalised scores, or weighted reciprocal rank fusion."""
    weights = fusion_weights(list(scores), config)
    if len(scores) == 1:
        return next(iter(scores.values())).astype(float)
    fused = np.zeros(len(next(iter(scores.values()))))
    for name, values in scores.items():
        if config.fusion == "rrf":
            ranks = np.empty(len(values))
            ranks[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
            fused += weights[name] / (config.rrf_k + ranks)
        else:
            fused += weights[name] * minmax(values)
    return fused


def _sessions_scored(memory: ConversationMemory, sessions: UnitSet, query: ProcessedQuery,
                     scores: dict[str, np.ndarray], config: RetrievalConfig) -> np.ndarray:
    """The session prior of ``sessions`` by the retrievers that scored the units."""
    return session_prior({name: memory.retriever_scores(name, sessions, query, config)
                          for name in scores}, fusion_weights(list(scores), config))


def fusion_weights(active: list[str], config: RetrievalConfig) -> dict[str, float]:
    """Each active retriever's own weight dimension."""
    return {name: getattr(config, RETRIEVERS[name].weight.name) for name in active}


def mmr_select(order: np.ndarray, fused: np.ndarray, vectors: np.ndarray | None,
               top_k: int, lam: float) -> list[int]:
    """Maximal marginal relevance over the best 4*k candidates, similarity = cosine of the unit
    embeddings (lam=1: plain ranking)."""
    if lam >= 1.0 or top_k <= 1 or vectors is None:
        return [int(i) for i in order[:top_k]]
    pool = order[:4 * top_k]
    relevance = minmax(fused[pool]) if len(pool) > 1 else np.ones(1)
    sims = cosines(vectors[pool], vectors[pool])
    penalty = np.zeros(len(pool))
    taken = np.zeros(len(pool), dtype=bool)
    chosen: list[int] = []
    for _ in range(min(top_k, len(pool))):
        gains = lam * relevance - (1.0 - lam) * penalty
        gains[taken] = -np.inf
        best = int(np.argmax(gains))
        taken[best] = True
        chosen.append(int(pool[best]))
        # The first pick has no redundancy penalty; later ones against all picked so far.
        penalty = np.maximum(penalty, sims[best])
    return chosen


def expand_neighbours(selected: list[MemoryUnit], units: UnitSet, n: int) -> list[MemoryUnit]:
    """Each selected unit followed by the turns within n positions of it in its session."""
    if n <= 0:
        return selected
    turns = units.turn_units
    out: list[MemoryUnit] = []
    seen: set[str] = set()
    for unit in selected:
        for candidate in [unit] + [
                turns[p] for p in range(unit.position - n, unit.position + n + 1)
                if 0 <= p < len(turns) and p != unit.position
                and turns[p].session_index == unit.session_index]:
            if candidate.id not in seen:
                seen.add(candidate.id)
                out.append(candidate)
    return out


@dataclass(frozen=True)
class ContextUnit:
    """One memory unit (or, with span packing, one turn of it) as it stands in a context."""

    id: str
    text: str                  # its line in the context (dated when dates are shown per line)
    score: float | None        # fused retrieval score; None for a turn added by expansion/spans
    date: datetime | None
    tokens: int
    speaker: str
    session_index: int
    turn_ids: tuple[str, ...]


@dataclass(frozen=True)
class RetrievedContext:
    """What retrieval hands the answerer for one question: the context units in order, the
    context text and its token count (session headers included), and the ranking they were
    packed from."""

    question: str
    conversation_id: str
    #: The type whose overrides applied (predicted from the text), None without a predictor.
    question_type: str | None
    units: tuple[ContextUnit, ...]
    text: str
    tokens: int
    #: The best KEPT_RANKS units, best first (MMR's picks first).
    ranked: tuple[MemoryUnit, ...]
    #: The top_k units MMR picked, before neighbour expansion and packing.
    selected: tuple[MemoryUnit, ...]
    #: What the budget paid for, in rank order (recall and the extractive answerer read it).
    packed: tuple[MemoryUnit, ...]
    query: ProcessedQuery
    #: LLM calls retrieval made (llm_query), priced with the answer's.
    llm_calls: tuple[dict[str, Any], ...] = ()

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self.units]

    @property
    def ranked_ids(self) -> list[str]:
        return [u.id for u in self.ranked]


@dataclass
class _Ranking:
    """A question's ranking between retrieval and packing (see MemorySystem._contexts)."""

    question: Question
    question_type: str | None
    cfg: RetrievalConfig
    units: UnitSet
    query: ProcessedQuery
    fused: np.ndarray
    order: np.ndarray
    operator: QueryTexts
    seconds: float = 0.0
    #: Its ranking key (None: not kept), and whether it came from the kept rankings.
    key: str | None = None
    kept: bool = False
    #: While the learned reranker's scores are pending: its candidates, their best units and
    #: those units' features.
    candidates: Candidates | None = None
    top: np.ndarray | None = None
    features: np.ndarray | None = None


class _KeptRankings(dict):
    """One ranking setting's finished rankings by (conversation id, question id), and their
    array elements."""

    elements: int = 0


class MemorySystem:
    """Retrieves and answers for the questions of a shard of conversations, keeping indexes
    warm between configs."""

    dimensions = DIMENSIONS

    def __init__(self, conversations: Iterable[Conversation], questions: Iterable[Question],
                 embedder: EmbedderSpec | None = None, llm: LLMSpec | None = None, *,
                 artefacts: dict[str, dict[str, Any]] | None = None,
                 oracle_gold_categories: bool = False) -> None:
        self._retrievers = {name: factory() for name, factory in RETRIEVERS.items()}
        self.memories = {c.id: ConversationMemory(c, self._retrievers) for c in conversations}
        self.questions = {q.id: q for q in questions}
        self._embedder_spec = embedder or EmbedderSpec()
        self._llm_spec = llm or LLMSpec()
        self._answerer = None
        self._token_maps: dict[tuple[int, bool], dict[str, int]] = {}
        self._artefacts: dict[str, dict[str, Any]] = dict(artefacts or {})
        self._predicted_types: dict[str, dict[str, str]] = {}
        #: By model key (see rerank.model_key).
        self._rerank_models: dict[str, RerankModel] = {}
        self._last_rerank: tuple[RetrievalConfig, RerankModel] | None = None
        self.oracle_gold_categories = oracle_gold_categories
        self._runner: SystemRunner | None = None
        self._cross_encoders: dict[str, CrossEncoderScorer] = {}
        #: By ranking key (see _ranking_key): (conversation id, question id) -> (units, query,
        #: scores, order).
        self._rankings: BoundedCache[_KeptRankings] = BoundedCache(RANKINGS_KEPT)
        self._last_keys: tuple[RetrievalConfig, dict[str | None, str | None]] | None = None

    @classmethod
    def from_resources(cls, conversations: Iterable[Conversation],
                       resources: Resources) -> "MemorySystem":
        return cls(conversations, resources.questions, resources.embedder, resources.llm,
                   artefacts=resources.artefacts,
                   oracle_gold_categories=resources.oracle_gold_categories)

    @staticmethod
    def describe_units(conversation: Conversation, unit_ids: list[str],
                       config: RetrievalConfig) -> list[str]:
        return [unit_text(conversation, unit_id, config.window_size) for unit_id in unit_ids]

    @staticmethod
    def prepares(config: RetrievalConfig) -> bool:
        return needs_dense(config)

    def add_conversation(self, conversation: Conversation) -> None:
        """A new conversation, or a known one with turns or sessions appended (its indexes are
        updated, not rebuilt)."""
        # The runner holds the conversations (the official metrics read their turns).
        self._runner = None
        if conversation.id in self.memories:
            self.memories[conversation.id].extend(conversation)
            # Token maps are keyed by unit set; the replaced sets' maps are stale, and so are
            # the rankings over them.
            self._token_maps.clear()
            self.forget_rankings()
        else:
            self.memories[conversation.id] = ConversationMemory(conversation, self._retrievers)

    def forget_rankings(self) -> None:
        """Drop the kept rankings (what a measurement of ranking from warm indexes needs)."""
        self._rankings = BoundedCache(RANKINGS_KEPT)

    def add_artefacts(self, artefacts: dict[str, dict[str, Any]]) -> None:
        """Learned parts (by content hash) that configs may reference."""
        self._artefacts.update(artefacts)

    def question_type(self, question: Question, config: RetrievalConfig) -> str | None:
        """The type whose overrides apply: predicted from the question text by the config's
        predictor; the gold category only for an oracle config, and only when allowed."""
        check_routing(config, self.oracle_gold_categories)
        if config.question_types is None:
            return None
        if config.routes_on_gold:
            return question.category
        predicted = self._predicted_types.get(config.question_types)
        if predicted is None:
            from evolve.question_types import QuestionTypePredictor

            body = self._artefacts.get(config.question_types)
            if body is None:
                raise MemevolveError(f"config {config.config_hash} routes on question-type "
                                     f"predictor {config.question_types}, which this memory "
                                     "system was not given. Fix: evaluate it through the run "
                                     "store that holds it, or a config file exported with it.")
            # All of the shard's questions at once: one vectorised pass instead of one per row.
            types = QuestionTypePredictor(body).predict(q.text for q in self.questions.values())
            predicted = self._predicted_types[config.question_types] = dict(
                zip(self.questions, types))
        if question.id not in predicted:
            # A question from outside the shard (an agent's, through evolve.Memory).
            from evolve.question_types import QuestionTypePredictor

            body = self._artefacts[config.question_types]
            predicted[question.id] = QuestionTypePredictor(body).predict([question.text])[0]
        return predicted[question.id]

    # Lazy heavy parts ----------------------------------------------------------------------
    def _ensure_dense(self) -> DenseRetriever:
        dense = self._retrievers["dense"]
        if dense.make_embedder is None:
            from evolve.embeddings import make_embedder

            spec = self._embedder_spec

            def build(model: str):
                backend, name, options = embedder_arguments(model, spec.backend, spec.model,
                                                            spec.options)
                return make_embedder(backend, name, **options)
            dense.make_embedder = build
        return dense

    def _cross_encoder(self, model: str) -> CrossEncoderScorer:
        if model not in self._cross_encoders:
            self._cross_encoders[model] = CrossEncoderScorer(model)
        return self._cross_encoders[model]

    def _llm_answerer(self, needed_by: str = "answerer=llm", instead: str = "answerer: "
                      "extractive"):
        if self._answerer is None:
            if not self._llm_spec.answer:
                raise MemevolveError(f"the config sets {needed_by} but no answering model is "
                                     "configured. Fix: pass --answer-model (a litellm model name) "
                                     f"or set {instead}.")
            from evolve.llm import LLMClient, LLMSettings, ResponseCache
            from evolve.memory.answer_llm import LLMAnswerer

            client = LLMClient(LLMSettings(**self._llm_spec.answer), cache=ResponseCache())
            self._answerer = LLMAnswerer(client)
        return self._answerer

    def prepare(self, config: RetrievalConfig, conversation_ids: Iterable[str]) -> dict[str, int]:
        """Build the dense indexes that ``config`` needs on these conversations (none when no
        question type of it uses dense retrieval or MMR); returns how many texts were embedded."""
        wanted = set(conversation_ids)
        before = self._embedded()
        for question in self.questions.values():
            if question.conversation_id not in wanted:
                continue
            cfg = config.for_type(self.question_type(question, config))
            if uses_dense(cfg):
                self._ensure_dense().unit_vectors(
                    self.memories[question.conversation_id].units(cfg), cfg.embedding_model)
        return {"embedded": self._embedded() - before}

    def _embedded(self) -> int:
        return sum(e.embedded for e in self._retrievers["dense"].embedders())

    def embedding_counters(self) -> dict[str, int]:
        """Texts the embedding caches served (hits) and the models embedded (misses), so far,
        over every embedding model used."""
        embedders = self._retrievers["dense"].embedders()
        return {"hits": sum(e.hits for e in embedders),
                "misses": sum(e.misses for e in embedders)}

    # Evaluation ----------------------------------------------------------------------------
    def evaluate(self, config: RetrievalConfig, question_ids: Iterable[str] | None = None,
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Outcome rows for the questions (default: all of the shard), plus LLM call rows."""
        if self._runner is None:
            self._runner = SystemRunner(self, [m.conversation for m in self.memories.values()],
                                        self.questions.values(), self._llm_spec)
        return self._runner.evaluate(config, question_ids)

    def retrieve(self, config: RetrievalConfig, questions: Iterable[Question]
                 ) -> list[Retrieval]:
        """The MemoryPipeline method: each question's context and answer."""
        # Retrieval runs here, one question after another (its indexes are shared state); the
        # answers, which mostly wait on the LLM, run `concurrency` at a time.
        questions = list(questions)
        retrieved = [(question, config, context, seconds) for question, (context, seconds)
                     in zip(questions, self._contexts(questions, config))]
        concurrency = self._llm_concurrency(config)
        if concurrency > 1 and len(retrieved) > 1:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                return list(pool.map(lambda args: self._answered(*args), retrieved))
        return [self._answered(*args) for args in retrieved]

    def _llm_concurrency(self, config: RetrievalConfig) -> int:
        """Threads for the answer phase: 1 unless some category answers with the LLM; its
        client is built here, before any thread could race to build it."""
        answerers = {config.for_type(t).answerer for t in (None, *config.overrides)}
        if "llm" in answerers:
            return self._llm_answerer().client.settings.concurrency
        return 1

    def context(self, question: Question, config: RetrievalConfig) -> RetrievedContext:
        """The context for a question: its type's settings, query processing, retrieval,
        fusion, session scores, feedback, multi-hop, reranking, MMR, neighbour expansion and
        packing."""
        return self._contexts([question], config)[0][0]

    def _contexts(self, questions: list[Question], config: RetrievalConfig
                  ) -> list[tuple[RetrievedContext, float]]:
        """Each question's context and the seconds spent on it alone. RERANK_BATCH questions
        are ranked at a time, and the learned reranker scores the candidates of all of them at
        once (each question is charged its rows' share of that call)."""
        out: list[tuple[RetrievedContext, float]] = []
        for begin in range(0, len(questions), RERANK_BATCH):
            rankings = [self._ranking(q, config) for q in questions[begin:begin + RERANK_BATCH]]
            pending = [r for r in rankings if r.features is not None]
            if pending:
                started = time.perf_counter()
                scored = self._rerank_model(config).predict_many(
                    [(r.features, r.question.conversation_id) for r in pending])
                per_row = (time.perf_counter() - started) / sum(len(r.features) for r in pending)
                for r, predicted in zip(pending, scored):
                    started = time.perf_counter()
                    r.fused, r.order = reordered(r.candidates, r.top, predicted)
                    r.seconds += per_row * len(predicted) + time.perf_counter() - started
            for r in rankings:
                started = time.perf_counter()
                self._keep(r)
                context = self._packed(r)
                out.append((context, r.seconds + time.perf_counter() - started))
        return out

    def _ranking(self, question: Question, config: RetrievalConfig) -> "_Ranking":
        """A question's ranking up to the learned reranker, whose features it holds (the
        scores are filled in by _contexts)."""
        started = time.perf_counter()
        question_type = self.question_type(question, config)
        cfg = config.for_type(question_type)
        key = self._ranking_key(config, question_type, cfg)
        # By conversation too: an agent's search names a question by its text and date only.
        where = (question.conversation_id, question.id)
        kept = self._rankings[key].get(where) if key in self._rankings else None
        if kept is not None:
            ranking = _Ranking(question, question_type, cfg, *kept, QueryTexts(), key=key,
                               kept=True)
            ranking.seconds = time.perf_counter() - started
            return ranking
        units, query, scores, fused, order, operator = self._fused_ranking(question, cfg)
        ranking = _Ranking(question, question_type, cfg, units, query, fused, order, operator,
                           key=key)
        if uses_reranker(cfg):
            self._rerank_model(config)      # a missing model fails here, before any work waits
            candidates = self._candidates(question, cfg, units, query, scores, fused, order)
            top, features = candidate_features(candidates, cfg.rerank_depth)
            if len(top) >= 2:
                ranking.candidates, ranking.top, ranking.features = candidates, top, features
        ranking.seconds = time.perf_counter() - started
        return ranking

    def _ranking_key(self, config: RetrievalConfig, question_type: str | None,
                     cfg: RetrievalConfig) -> str | None:
        """What a question's finished ranking under ``cfg`` (the settings of its type in
        ``config``) depends on: the settings before selection, the embedder and the reranker's
        model. None where rankings are not kept: the LLM query operators' calls are made and
        priced by each evaluation. Computed once per config and type, not per question."""
        if self._last_keys is None or self._last_keys[0] is not config:
            self._last_keys = (config, {})
        keys = self._last_keys[1]
        if question_type not in keys:
            body = {"fields": {name: getattr(cfg, name) for name in ranking_fields(cfg)},
                    "embedder": asdict(self._embedder_spec),
                    "model": model_key(config, self._embedder_spec)
                    if uses_reranker(cfg) else None}
            keys[question_type] = None if cfg.llm_query != "off" else hashlib.sha256(
                json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return keys[question_type]

    def _keep(self, r: "_Ranking") -> None:
        """Keep a freshly finished ranking under its key, while its setting has room."""
        if r.key is None or r.kept:
            return
        if r.key not in self._rankings:
            self._rankings[r.key] = _KeptRankings()
        kept = self._rankings[r.key]
        size = len(r.fused) + len(r.order)
        if kept.elements + size <= RANKING_ELEMENTS:
            kept[(r.question.conversation_id, r.question.id)] = (r.units, r.query, r.fused,
                                                                 r.order)
            kept.elements += size

    def _packed(self, r: "_Ranking") -> RetrievedContext:
        """The context of a finished ranking: MMR, neighbour expansion and packing."""
        question, cfg, units, fused, order = r.question, r.cfg, r.units, r.fused, r.order
        vectors = (self._ensure_dense().unit_vectors(units, cfg.embedding_model)
                   if cfg.mmr_lambda < 1.0 else None)
        selected_idx = mmr_select(order, fused, vectors, cfg.top_k, cfg.mmr_lambda)
        chosen = set(selected_idx)
        # MMR's picks, then the best of the others: the head of the order is enough for that.
        ranked_idx = selected_idx + [int(i) for i in order[:KEPT_RANKS + len(chosen)]
                                     if int(i) not in chosen]
        ranked = [units.units[i] for i in ranked_idx[:KEPT_RANKS]]
        selected = [units.units[i] for i in selected_idx]
        candidates = expand_neighbours(selected, units, cfg.neighbor_expansion)
        token_of = self._token_map(units, cfg.include_dates and not cfg.session_headers)
        packing = pack_context(candidates, units, budget=cfg.context_budget,
                               spans=cfg.span_packing, session_headers=cfg.session_headers,
                               include_dates=cfg.include_dates,
                               chronological=cfg.packing_order == "chronological",
                               token_of=token_of)
        dated_lines = cfg.include_dates and not cfg.session_headers
        return RetrievedContext(
            question=question.text, conversation_id=question.conversation_id,
            question_type=r.question_type,
            units=tuple(ContextUnit(
                id=u.id, text=u.rendered(dated_lines),
                score=float(fused[units.index_of[u.id]]) if u.id in units.index_of else None,
                date=u.date, tokens=token_of[u.id], speaker=u.speaker,
                session_index=u.session_index, turn_ids=u.turn_ids)
                for u in packing.context_units),
            text=packing.text, tokens=packing.tokens, ranked=tuple(ranked),
            selected=tuple(selected), packed=tuple(packing.packed), query=r.query,
            llm_calls=r.operator.calls)

    def candidates(self, question: Question, config: RetrievalConfig
                   ) -> tuple[Candidates, RetrievalConfig]:
        """A question's ranking before the learned reranker (what its features read), with the
        settings of its predicted type: the reranker trains on exactly these."""
        cfg = config.for_type(self.question_type(question, config))
        units, query, scores, fused, order, _ = self._fused_ranking(question, cfg)
        return self._candidates(question, cfg, units, query, scores, fused, order), cfg

    def _fused_ranking(self, question: Question, cfg: RetrievalConfig) -> tuple[
            UnitSet, ProcessedQuery, dict[str, np.ndarray], np.ndarray, np.ndarray, QueryTexts]:
        """(units, query, each retriever's scores, fused scores, order, the LLM query
        operator's texts): query operators, retrieval, fusion, session scores, time priors,
        feedback, multi-hop and the cross-encoder, for one type's settings."""
        memory = self.memories[question.conversation_id]
        units = memory.units(cfg)
        query = memory.query(question, cfg)
        active = cfg.retrievers.split("+")
        if uses_dense(cfg):
            dense = self._ensure_dense()

        def scores_for(q: ProcessedQuery) -> dict[str, np.ndarray]:
            return {name: memory.retriever_scores(name, units, q, cfg) for name in active}

        operator = (query_texts(self._llm_answerer(f"llm_query={cfg.llm_query}",
                                                   "llm_query: off").client,
                                question, cfg.llm_query)
                    if cfg.llm_query != "off" else QueryTexts())
        if operator.extra:
            searched = [memory.text_query(text, cfg) for text in operator.extra]
            # HyDE's hypothetical turn is a dense query only: as a BM25 query its invented
            # details would outweigh the question's own words.
            query = replace(query, dense_texts=query.dense_texts + tuple(
                t for q in searched for t in q.dense_texts), bm25_texts=query.bm25_texts + (
                () if cfg.llm_query == "hyde" else tuple(t for q in searched
                                                           for t in q.bm25_texts)))
        scores = scores_for(query)
        fused = self._ranking_scores(memory, units, query, scores, cfg, question)
        positions = units.positions
        order = np.lexsort((positions, -fused))
        if cfg.prf_units > 0:
            feedback = [int(i) for i in order[:cfg.prf_units]]
            scores = feedback_scores(
                scores, units, query, feedback, n_terms=cfg.prf_terms, weight=cfg.prf_weight,
                rescore=lambda name, q: memory.retriever_scores(name, units, q, cfg),
                dense=dense if "dense" in active else None, model=cfg.embedding_model)
            fused = self._ranking_scores(memory, units, query, scores, cfg, question)
            order = np.lexsort((positions, -fused))
        if cfg.multi_query != "off" or cfg.hop2_units > 0 or operator.sub_questions:
            def fused_for(text: str) -> np.ndarray:
                other = memory.text_query(text, cfg)
                return self._ranking_scores(memory, units, other, scores_for(other), cfg,
                                            question)
            fused = multihop_scores(fused, units, positions, query, cfg, fused_for,
                                    operator.sub_questions)
            order = np.lexsort((positions, -fused))
        if cfg.cross_encoder != NO_CROSS_ENCODER:
            fused = reranked(fused, order, units, question.text, cfg.cross_encoder_depth,
                             cfg.cross_encoder_weight, self._cross_encoder(cfg.cross_encoder))
            order = np.lexsort((positions, -fused))
        return units, query, scores, fused, order, operator

    def _candidates(self, question: Question, cfg: RetrievalConfig, units: UnitSet,
                    query: ProcessedQuery, scores: dict[str, np.ndarray], fused: np.ndarray,
                    order: np.ndarray) -> Candidates:
        memory = self.memories[question.conversation_id]
        sessions = memory.session_units(cfg)
        session_fused = _sessions_scored(memory, sessions, query, scores, cfg)
        return Candidates(question=question, units=units, query=query, scores=scores,
                          fused=fused, order=order,
                          session_scores={u.session_index: float(v)
                                          for u, v in zip(sessions.units, session_fused)})

    def _rerank_model(self, config: RetrievalConfig) -> RerankModel:
        """The learned reranker of ``config``: looked up by what its training read once per
        config, not per question (hashing the config took 0.1 ms a question), and built once
        per model, however many configs share it."""
        if self._last_rerank is not None and self._last_rerank[0] is config:
            return self._last_rerank[1]
        body = model_for(config, self._embedder_spec, self._artefacts.values())
        if body is None:
            raise MemevolveError(f"config {config.config_hash} reranks with a model trained on "
                                 f"its dev split (key {model_key(config, self._embedder_spec)}),"
                                 " which this memory system was not given. Fix: evaluate it "
                                 "through 'memevolve eval' or 'memevolve run' (they train it), "
                                 "or use a config file exported with it.")
        model = self._rerank_models.get(body["key"])
        if model is None:
            model = self._rerank_models[body["key"]] = RerankModel(body)
        self._last_rerank = (config, model)
        return model

    def answer(self, question: Question, config: RetrievalConfig, context: RetrievedContext
               ) -> tuple[str, bool, str | None, list[dict[str, Any]]]:
        """(answer, abstained, invalid reason, LLM call rows) for a question from its context,
        with the settings of the context's question type."""
        cfg = config.for_type(context.question_type)
        calls: list[dict[str, Any]] = list(context.llm_calls)
        if cfg.answerer == "llm":
            # Resolved before importing litellm, so a missing model fails at once.
            answerer = self._llm_answerer()
            from evolve.llm import LLMError, LLMUnavailable

            try:
                outcome = answerer.answer(question, context.text, cfg.answer_style)
                calls.extend(c.as_row() for c in outcome.calls)
                return outcome.text, outcome.text.strip() == NOT_MENTIONED, None, calls
            except LLMError as exc:
                # A refused request (bad key, unknown model) is no verdict on the config either.
                what = "unavailable" if isinstance(exc, LLMUnavailable) else "refused"
                if exc.call is not None:
                    calls.append(exc.call.as_row())
                return "", False, f"LLM {what}: {exc}", calls
        extracted = extractive_answer(question, list(context.packed), context.query.speakers,
                                      abstain_threshold=cfg.abstain_threshold,
                                      dates_in_context=cfg.include_dates or cfg.session_headers)
        return extracted.text, extracted.abstained, None, calls

    def _answered(self, question: Question, config: RetrievalConfig, context: RetrievedContext,
                  context_s: float) -> Retrieval:
        """``context_s``: the seconds its retrieval took (its own, see _contexts)."""
        start = time.perf_counter() - context_s
        answer, abstained, invalid, calls = self.answer(question, config, context)
        return Retrieval(question_id=question.id, ranked=context.ranked, packed=context.packed,
                         selected=context.selected, context_ids=context.ids,
                         context_text=context.text, context_tokens=context.tokens,
                         answer=answer, abstained=abstained, invalid_reason=invalid,
                         question_type=context.question_type, llm_calls=calls,
                         latency_ms=(time.perf_counter() - start) * 1000.0)

    @staticmethod
    def _ranking_scores(memory: ConversationMemory, units: UnitSet, query: ProcessedQuery,
                        scores: dict[str, np.ndarray], cfg: RetrievalConfig,
                        question: Question) -> np.ndarray:
        """The retrievers' scores fused, the session-level scores and time priors mixed in."""
        fused = fuse(scores, cfg)
        if uses_sessions(cfg.session_weight, cfg.session_top):
            sessions = memory.session_units(cfg)
            session_scores = _sessions_scored(memory, sessions, query, scores, cfg)
            fused = mix_session_scores(fused, units, sessions, session_scores,
                                       cfg.session_weight, cfg.session_top)
        if cfg.recency_weight > 0.0 or cfg.date_window_days > 0:
            fused = apply_time(fused, units, question.text, question.question_date,
                               cfg.recency_weight, cfg.date_window_days)
        return fused

    def _token_map(self, units: UnitSet, dated: bool) -> dict[str, int]:
        key = (id(units), dated)
        if key not in self._token_maps:
            counts = units.tokens_dated if dated else units.tokens
            tokens = {u.id: c for u, c in zip(units.units, counts)}
            # Turns a neighbour expansion may add, counted once; with turn units they are the
            # units themselves (a whole M haystack was counted again per question here).
            for unit in units.turn_units:
                if unit.id not in tokens:
                    tokens[unit.id] = unit.token_counts()[dated]
            self._token_maps[key] = tokens
        return self._token_maps[key]


def check_routing(config: RetrievalConfig, oracle_gold_categories: bool = False) -> None:
    """Refuse a config whose overrides would be chosen by a gold label (or by nothing)."""
    if config.routes_on_gold and not oracle_gold_categories:
        raise MemevolveError(f"config {config.config_hash} routes its overrides on the questions' "
                             "gold categories, which a deployed memory never knows. Fix: drop "
                             "'question_types' to have a predictor trained on the dev split, or "
                             "pass --oracle-gold-categories for an oracle ablation.")
    if config.overrides and config.question_types is None:
        raise MemevolveError(f"config {config.config_hash} has per-type overrides "
                             f"({', '.join(config.overrides)}) but no question-type predictor. "
                             "Fix: evaluate it with 'memevolve eval' or 'memevolve run', which "
                             "train one on the dev split, or set 'question_types' to a "
                             "predictor's artefact hash.")
