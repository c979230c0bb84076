"""Learned reranking: a LambdaMART model (LightGBM's lambdarank) reorders the best fused candidates
of a question from label-free features of each unit (every retriever's score and rank, its
session's score, speaker, entity and term match with the question, date distance, position,
length), trained on the evidence of a dev split's questions only.

The model is an artefact (its LightGBM text in a JSON body, named by its content hash) like the
question-type predictor. What it was trained on is fixed by the config itself: the dev questions
of the config's question-type predictor (so each split or fold trains on its own dev), the config
fields the features read, the embedder, the seed and the LightGBM version, hashed into
``model_key``. Evaluation looks the model up by that key (the run store keeps every one), and
trains it only when nothing it depends on has a model yet: a candidate that changes top_k or the
packing reuses its parent's model, one that changes BM25's k1 gets its own."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from benchmarks.errors import MemevolveError
from evolve.memory.bounded import BoundedCache
from evolve.memory.retrievers import RETRIEVERS, minmax
from evolve.memory.text import RELATIVE_TIME, bm25_tokens, is_temporal_question, temporal_target
from evolve.memory.time_prior import cue_date
from search_space.dimension import dimension

if TYPE_CHECKING:
    from benchmarks.model import Question
    from evolve.memory.query import ProcessedQuery
    from evolve.memory.units import UnitSet

KIND = "ltr_reranker"
#: Bumped when the features, the labels or the estimator change: older models are not looked up.
FORMAT = 4
#: Fixed, like the question-type predictor's: a resume or another run seed gets the same model.
SEED = 0
RERANKERS = ("none", "ltr")
#: Dimension groups applied after reranking: changing them leaves the features (and the model)
#: as they were.
AFTER_RERANK_GROUPS = ("selection", "context", "answer")

DIMENSIONS = (
    dimension("reranker", "choice", "none", "Rerank the best fused candidates with a "
              "learning-to-rank model (LightGBM lambdarank over each unit's retriever scores and "
              "ranks, session score, speaker/entity/term match, date distance, position and "
              "length) trained on the dev split's evidence only ('ltr'), or keep the fused "
              "order ('none').", choices=RERANKERS, group="rerank"),
    # 150: the best of 50/100/150/200 on LoCoMo dev (cross-fitted), bm25+dense, top_k 50.
    dimension("rerank_depth", "int", 150, "Fused candidates the reranker reorders (and is "
              "trained on); the units below keep their fused order after them (reranker=ltr).",
              low=10, high=200, group="rerank", active_when=("reranker", "!=", "none")),
)

#: LightGBM settings: small trees, one thread and deterministic, so the same training rows give
#: the same model text on every machine. 50 rounds at 0.15 rather than 150 at 0.05: a third of
#: the fitting (on LoCoMo fold 0 of 5, depth 150, 165k rows: 2.3 s a fit against 5.4 s) for the
#: same held-out recall of the evidence (conversation-held-out, at 5/10/20/50: 0.778 0.858 0.916
#: 0.968 against 0.776 0.854 0.917 0.969) and, over LoCoMo's 5 folds (the weak start with the
#: reranker), the same recall_in_context: dev 0.6219 / test 0.6217 against 0.6215 / 0.6226
#: (test 0.6207 once the folds' mean ranked it, see train_body).
#: Training was 77% of a search's evaluation time.
PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "learning_rate": 0.15, "num_leaves": 15, "min_data_in_leaf": 20,
    "lambdarank_truncation_level": 30, "seed": SEED, "deterministic": True, "num_threads": 1,
    "force_col_wise": True, "verbosity": -1}
ROUNDS = 50
#: Cross-fitted models (conversations dealt round-robin, in id order); with fewer dev
#: conversations than this, one model of them all.
FOLDS = 4

_PER_RETRIEVER = ("score", "norm", "rank")
#: Per unit set, its units' question-independent signals (see _unit_signals).
_SIGNALS: BoundedCache[tuple[Any, Any]] = BoundedCache(256)
FEATURES: tuple[str, ...] = (
    "fused", "fused_norm", "fused_rank", "fused_gap",
    *(f"{name}_{what}" for name in RETRIEVERS for what in _PER_RETRIEVER),
    "session_score", "session_rank", "session_candidates",
    "speaker_named", "speaker_match", "entity_share", "term_share",
    "temporal_question", "mentions_time", "cue_days", "question_days",
    "position", "session_position", "tokens")
_COLUMN = {name: i for i, name in enumerate(FEATURES)}


@dataclass(frozen=True)
class Candidates:
    """A question's fused ranking before reranking, as the features read it."""

    question: "Question"
    units: "UnitSet"
    query: "ProcessedQuery"
    #: Each active retriever's scores over all units (after feedback, if any).
    scores: dict[str, np.ndarray]
    fused: np.ndarray
    order: np.ndarray
    #: The session-level fused score of every session unit, by session index.
    session_scores: dict[int, float]


def uses_reranker(config: Any) -> bool:
    return getattr(config, "reranker", "none") != "none"


def needs_model(config: Any) -> bool:
    """Whether any question type of ``config`` reranks with a learned model."""
    return any(uses_reranker(config.for_type(t)) for t in (None, *config.overrides))


def ranking_fields(config: Any) -> list[str]:
    """The dimensions a question's ranking up to and including the reranker reads (what the
    reranker's features read, and what a kept ranking is keyed by)."""
    return [d.name for d in config.dimensions if d.group not in AFTER_RERANK_GROUPS]


def model_key(config: Any, embedder: Any) -> str:
    """The cache key of the model a config reranks with: everything its training reads."""
    feature_fields = ranking_fields(config)
    import lightgbm

    body = {"format": FORMAT, "seed": SEED, "lightgbm": lightgbm.__version__,
            "params": PARAMS, "rounds": ROUNDS, "folds": FOLDS, "trained_on": config.question_types,
            "fields": {name: getattr(config, name) for name in feature_fields},
            "overrides": {t: {k: v for k, v in patch.items() if k in feature_fields}
                          for t, patch in config.overrides.items()},
            "embedder": asdict(embedder) if embedder is not None else None,
            # The LLM query operators' texts come from the answering model.
            "llm": config.answer_model if any(
                getattr(config.for_type(t), "llm_query", "off") != "off"
                for t in (None, *config.overrides)) else None}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def model_for(config: Any, embedder: Any, artefacts: Iterable[dict[str, Any]]
              ) -> dict[str, Any] | None:
    key = model_key(config, embedder)
    return next((b for b in artefacts if b.get("kind") == KIND and b.get("key") == key), None)


def training_question_ids(config: Any, artefacts: dict[str, dict[str, Any]]) -> list[str]:
    """The dev questions a config's reranker learns from: its question-type predictor's."""
    body = artefacts.get(config.question_types or "")
    if body is None:
        raise MemevolveError(f"config {config.config_hash} sets reranker=ltr but names no "
                             "question-type predictor, whose dev questions the reranker is "
                             "trained on (gold-category oracle configs have none). Fix: evaluate "
                             "it with 'memevolve eval' or 'memevolve run', which train one on "
                             "the dev split.")
    return list(body["question_ids"])


def candidate_features(c: Candidates, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(indexes of the best ``depth`` units in fused order, their feature matrix)."""
    top = c.order[:depth]
    question = c.question
    unit = _unit_signals(c.units)
    out = np.full((len(top), len(FEATURES)), np.nan)

    def put(name: str, values: Any) -> None:
        out[:, _COLUMN[name]] = values

    fused_top = c.fused[top]
    put("fused", fused_top)
    put("fused_norm", minmax(c.fused, at=top))
    put("fused_rank", np.arange(len(top)))
    if len(top):
        put("fused_gap", fused_top[0] - fused_top)
    for name, values in c.scores.items():
        put(f"{name}_score", values[top])
        put(f"{name}_norm", minmax(values, at=top))
        put(f"{name}_rank", _ranks(values)[top])
    sessions = unit.session[top]
    session_score, session_rank = _session_signals(c.session_scores, unit.session)
    put("session_score", session_score[sessions])
    put("session_rank", session_rank[sessions])
    put("session_candidates", np.bincount(sessions)[sessions])
    speakers = set(c.query.speakers)
    put("speaker_named", float(bool(speakers)))
    named = np.array([name in speakers for name in unit.speakers], dtype=bool)
    put("speaker_match", named[unit.speaker_code[top]])
    entities = [e.lower() for e in c.query.entities if e not in speakers]
    if entities:
        put("entity_share", _entity_counts([unit.lower[i] for i in top], entities)
            / len(entities))
    terms = set(_terms(question.text))
    if terms:
        matched = np.zeros(len(unit.session))
        for term in terms:
            if term in unit.postings:
                matched[unit.postings[term]] += 1.0
        put("term_share", matched[top] / len(terms))
    put("temporal_question", float(is_temporal_question(question.text)))
    put("mentions_time", unit.mentions_time[top])
    cue = cue_date(question.text, question.question_date)
    if cue is not None:
        put("cue_days", np.abs(unit.days[top] - _day(cue)))
    if question.question_date is not None:
        put("question_days", _day(question.question_date) - unit.days[top])
    put("position", unit.position[top])
    put("session_position", unit.session_position[top])
    put("tokens", unit.tokens[top])
    return top, out


def reordered(c: Candidates, top: np.ndarray, predicted: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, order) of ``c`` once the model scored its best units ``top`` (the first of
    ``candidate_features``): they rank first, by the model's score (fused order breaking ties),
    the others after them as fused."""
    new_top = top[np.lexsort((np.arange(len(top)), -predicted))]
    order = np.concatenate([new_top, c.order[len(top):]])
    # Scores consistent with the order (MMR and the context read them): the reranked units lie
    # above every other one, spaced by the model's normalised score.
    scores = minmax(c.fused) - 2.0
    scores[top] = minmax(predicted)
    return scores, order


def training_rows(c: Candidates, depth: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, labels) of one dev question's candidates (label 1: the unit holds one of its
    evidence turns); None when its candidates are all alike, so it teaches no order."""
    top, features = candidate_features(c, depth)
    evidence = set(c.question.evidence)
    labels = np.array([float(bool(evidence.intersection(c.units.units[i].turn_ids)))
                       for i in top])
    if len(top) < 2 or labels.min() == labels.max():
        return None
    return features, labels


def train_body(groups: Sequence[tuple[str, str, np.ndarray, np.ndarray]], *, key: str,
               fields_key: str, trained_on: str | None, question_ids: Sequence[str]
               ) -> dict[str, Any]:
    """The artefact body of a model trained on (question id, conversation id, features, labels)
    groups; ``key`` is its ``model_key`` with the embedder, ``fields_key`` without (what an
    export finds it by).

    It holds FOLDS cross-fitted models, each trained without a share of the conversations: a
    training question is ranked by the model that never saw its conversation, so a dev score
    (what the guard compares) is not the model's own training fit, and any other question (test,
    a user's agent) by their mean. Which model ranks a question depends on its conversation
    only, never on a label. No model of all the groups is fitted besides them (``model`` is
    None): on 2 cores the fifth fit was a third wave of fitting, and the mean of the four ranks
    test as well (LoCoMo, 5 folds: see PARAMS). With fewer conversations than FOLDS there are no
    folds, and ``model`` is the one model of all groups."""
    groups = sorted(groups, key=lambda g: g[0])
    if not groups:
        raise MemevolveError("no dev question has evidence among its reranking candidates, so "
                             "the reranker has nothing to learn from. Fix: raise rerank_depth, "
                             "or use reranker=none on this benchmark.")
    import lightgbm

    conversations = sorted({g[1] for g in groups})
    held_out = [conversations[fold::FOLDS] for fold in range(FOLDS)] \
        if len(conversations) >= FOLDS else []
    trainings = [[g for g in groups if g[1] not in set(out)] for out in held_out] or [groups]
    # The fits are independent and single-threaded (PARAMS), and LightGBM releases the GIL
    # while it boosts: run side by side, each gives the model text it gives alone.
    with ThreadPoolExecutor(max_workers=min(len(trainings), os.cpu_count() or 1)) as pool:
        models = list(pool.map(_fit, trainings))
    full, fold_models = (None, models) if held_out else (models[0], [])
    labels = np.concatenate([g[3] for g in groups])
    return {"kind": KIND, "format": FORMAT, "key": key, "fields_key": fields_key,
            "trained_on": trained_on, "lightgbm": lightgbm.__version__,
            "features": list(FEATURES), "question_ids": sorted(question_ids),
            "groups": len(groups), "rows": int(len(labels)), "positives": int(labels.sum()),
            "model": full, "folds": [{"conversations": out, "model": model}
                                     for out, model in zip(held_out, fold_models)]}


class RerankModel:
    """A trained model (its cross-fitted folds, or one model), built once per process from its
    body."""

    def __init__(self, body: dict[str, Any]) -> None:
        import lightgbm

        if body.get("kind") != KIND or body.get("format") != FORMAT \
                or body.get("features") != list(FEATURES):
            raise MemevolveError(f"reranker artefact {body.get('key')} is of format "
                                 f"{body.get('format')} with other features than this version's "
                                 f"{FORMAT}. Fix: re-evaluate the config, which retrains it.")
        #: What ranks a conversation outside every fold: the one model, or all the folds' mean.
        self._others: tuple[Any, ...] = ()
        self._of_conversation: dict[str, tuple[Any, ...]] = {}
        for fold in body["folds"]:
            booster = (lightgbm.Booster(model_str=fold["model"]),)
            self._of_conversation.update(dict.fromkeys(fold["conversations"], booster))
            self._others += booster
        if body["model"] is not None:
            self._others = (lightgbm.Booster(model_str=body["model"]),)

    def predict(self, features: np.ndarray, conversation_id: str) -> np.ndarray:
        return self.predict_many([(features, conversation_id)])[0]

    def predict_many(self, batch: Sequence[tuple[np.ndarray, str]]) -> list[np.ndarray]:
        """The scores of several questions' candidates, (features, conversation id) each, with
        one call per model (each fold's, for a mean): a call costs about 0.2 ms beyond its
        rows (LightGBM sets up its predictor), a third of what 150 candidates cost. Rows are
        scored independently, so each question's scores are those it gets alone."""
        members: dict[int, tuple[tuple[Any, ...], list[int]]] = {}
        for i, (_, conversation_id) in enumerate(batch):
            boosters = self._of_conversation.get(conversation_id, self._others)
            members.setdefault(id(boosters), (boosters, []))[1].append(i)
        out: list[np.ndarray] = [np.empty(0)] * len(batch)
        for boosters, indexes in members.values():
            rows = np.vstack([batch[i][0] for i in indexes])
            scores = np.mean([np.asarray(b.predict(rows, num_threads=1), dtype=float)
                              for b in boosters], axis=0)
            ends = np.cumsum([len(batch[i][0]) for i in indexes])
            for i, part in zip(indexes, np.split(scores, ends[:-1])):
                out[i] = part
        return out


def _fit(groups: Sequence[tuple[str, str, np.ndarray, np.ndarray]]) -> str:
    import lightgbm

    data = lightgbm.Dataset(np.vstack([g[2] for g in groups]),
                            np.concatenate([g[3] for g in groups]),
                            group=[len(g[3]) for g in groups], feature_name=list(FEATURES),
                            free_raw_data=False)
    return lightgbm.train(PARAMS, data, num_boost_round=ROUNDS).model_to_string()


def collect_training_rows(system: Any, config_json: str, question_ids: list[str]
                          ) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """On one shard (run by ``Evaluator.on_shards``): the training groups of the dev questions
    it holds, each with its (predicted) type's settings, exactly as evaluation ranks them."""
    from search_space.config import RetrievalConfig

    config = RetrievalConfig.model_validate_json(config_json)
    out = []
    for qid in question_ids:
        question = system.questions.get(qid)
        if question is None or question.adversarial or not question.evidence:
            continue
        candidates, cfg = system.candidates(question, config)
        rows = training_rows(candidates, cfg.rerank_depth)
        if rows is not None:
            out.append((qid, question.conversation_id, *rows))
    return out


def _session_signals(session_scores: dict[int, float], unit_sessions: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """By session index: its session-level score and its rank among the sessions (best first,
    equal scores in the order given); NaN for a session without a score."""
    size = max(max(session_scores, default=-1), int(unit_sessions.max(initial=-1))) + 1
    score, rank = np.full(size, np.nan), np.full(size, np.nan)
    score[list(session_scores)] = list(session_scores.values())
    ordered = sorted(session_scores, key=lambda s: -session_scores[s])
    rank[ordered] = np.arange(len(ordered))
    return score, rank


def _entity_counts(texts: list[str], entities: list[str]) -> np.ndarray:
    """For each text, how many of the entities occur in it (as substrings): each entity is
    found in the texts joined, so that its cost is its occurrences, not one test per text."""
    joined = "\x00".join(texts)
    # No entity holds the separator (names_in: letters, "'" and "-"), so none matches across
    # two texts. Text i ends (separator included) at ends[i].
    ends = np.cumsum([len(t) + 1 for t in texts])
    counts = np.zeros(len(texts))
    for entity in entities:
        at = joined.find(entity)
        while at != -1:
            row = int(np.searchsorted(ends, at, side="right"))
            counts[row] += 1.0
            if row + 1 >= len(texts):
                break
            at = joined.find(entity, int(ends[row]))
    return counts


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values))
    ranks[np.argsort(-values, kind="stable")] = np.arange(len(values))
    return ranks


@dataclass(frozen=True)
class _UnitSignals:
    """What the features read of each unit that is the same for every question."""

    session: np.ndarray
    #: The speakers, and each unit's speaker as an index into them.
    speakers: tuple[str, ...]
    speaker_code: np.ndarray
    lower: tuple[str, ...]
    #: Each stemmed content word (see _terms) -> the units that hold it.
    postings: dict[str, np.ndarray]
    mentions_time: np.ndarray
    #: Days since 1970 of the unit's date (NaN: undated).
    days: np.ndarray
    position: np.ndarray
    session_position: np.ndarray
    tokens: np.ndarray


def _unit_signals(units: "UnitSet") -> _UnitSignals:
    """Computed once per unit set (the cache holds the set, so its id is never reused)."""
    key = id(units)
    if key in _SIGNALS and _SIGNALS[key][0] is units:
        return _SIGNALS[key][1]
    members = units.units
    positions = np.array([u.position for u in members], dtype=float)
    sessions = np.array([u.session_index for u in members], dtype=float)
    speakers = tuple(dict.fromkeys(u.speaker for u in members))
    code = {name: k for k, name in enumerate(speakers)}
    postings: dict[str, list[int]] = {}
    for i, u in enumerate(members):
        for term in set(_terms(u.text)):
            postings.setdefault(term, []).append(i)
    signals = _UnitSignals(
        session=units.session_indexes,
        speakers=speakers, speaker_code=np.array([code[u.speaker] for u in members], dtype=int),
        lower=tuple(u.text.lower() for u in members),
        postings={term: np.array(at) for term, at in postings.items()},
        mentions_time=np.array([float(bool(RELATIVE_TIME.search(u.text)
                                           or temporal_target(u.text))) for u in members]),
        days=np.array([_day(u.date) if u.date is not None else np.nan for u in members]),
        position=positions / max(positions.max(initial=0.0), 1.0),
        session_position=sessions / max(sessions.max(initial=0.0), 1.0),
        tokens=np.array(units.tokens, dtype=float))
    _SIGNALS[key] = (units, signals)
    return signals


def _day(date: "datetime") -> float:
    return date.timestamp() / 86400.0 if date.tzinfo else \
        (date - datetime(1970, 1, 1)).total_seconds() / 86400.0


def _terms(text: str) -> list[str]:
    # Stemmed content words whatever BM25's own settings: matching "the" says nothing.
    return bm25_tokens(text, lowercase=True, strip_punctuation=True, stopwords=True,
                       stemming=True)
