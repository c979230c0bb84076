"""Retrievers over one conversation's units: BM25, dense (FAISS) and structured signals.

A retriever is one class here, registered by name: it declares its own knobs (``dimensions``),
the config fields its scores depend on (``reads``: the score cache key is built from them) and its
fusion weight (``weight``). The search space's ``retrievers`` set, its weight dimensions, the
score cache and the rules diagnoser's options are all derived from this registry."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from evolve.memory.bm25 import SparseBM25
from evolve.memory.bounded import BoundedCache
from evolve.memory.models import DEFAULT_MODEL, MODEL_LISTS, listed_models, widen_hint
from evolve.memory.text import (RELATIVE_TIME, bm25_tokens, is_temporal_question, names_in,
                                temporal_target)
from evolve.memory.units import COMPOSED_PREFIXES
from search_space.dimension import Dimension, dimension

if TYPE_CHECKING:
    from evolve.memory.query import ProcessedQuery
    from evolve.memory.units import UnitSet
    from search_space.config import RetrievalConfig


class Retriever(Protocol):
    """Scores every unit of a conversation for a processed query (higher is more relevant)."""

    name: str
    #: The retriever's own knobs, added to the search space.
    dimensions: tuple[Dimension, ...]
    #: Every config field its scores depend on (own knobs and shared ones such as temporal_cues).
    reads: tuple[str, ...]
    #: Its weight in fusion (a per-category float in 0..1).
    weight: Dimension

    def scores(self, units: "UnitSet", query: "ProcessedQuery",
               config: "RetrievalConfig") -> np.ndarray: ...

    def extend(self, old: "UnitSet", new: "UnitSet", keep: int) -> None:
        """``new`` replaces ``old``, whose first ``keep`` units it shares: move any index of
        ``old`` to ``new``, doing work only for the units after ``keep``."""


RETRIEVERS: dict[str, Callable[[], Retriever]] = {}
#: BM25 settings (tokenisation, k1, b) whose index a unit set keeps (most recently used).
BM25_SETTINGS_KEPT = 8


def register(cls: type) -> type:
    """Add a retriever class to the registry (its name, reads and weight are checked here)."""
    if cls.name in RETRIEVERS or "+" in cls.name:
        raise ValueError(f"retriever name {cls.name!r} is taken or contains '+'")
    if cls.weight.kind != "float" or cls.weight.scope != "per_category":
        raise ValueError(f"retriever {cls.name!r}: its weight must be a per-category float")
    own = {d.name for d in cls.dimensions}
    if not own <= set(cls.reads):
        raise ValueError(f"retriever {cls.name!r} must read its own dimensions: "
                         f"{sorted(own - set(cls.reads))}")
    RETRIEVERS[cls.name] = cls
    return cls


def weight_dimension(name: str, default: float, what: str) -> Dimension:
    return dimension(f"{name}_weight", "float", default, f"Weight of the {what} in fusion "
                     "(relative to the other active retrievers' weights).", low=0.0, high=1.0,
                     group="fusion", scope="per_category")


def score_key(retriever: Retriever, config: "RetrievalConfig") -> tuple:
    """What a retriever's scores for a unit set and query depend on, beyond those two."""
    return tuple(getattr(config, name) for name in retriever.reads)


def _token_settings(config: "RetrievalConfig") -> tuple[bool, bool, bool, bool]:
    return (config.bm25_lowercase, config.bm25_strip_punctuation, config.bm25_stopwords,
            config.bm25_stemming)


@register
class BM25Retriever:
    """BM25 Okapi (rank-bm25's scores, sparse postings) over the units, one index per
    (unit set, tokenisation, k1, b)."""

    name = "bm25"
    dimensions = (
        dimension("bm25_lowercase", "bool", True, "BM25 tokenisation lowercases text.",
                  group="bm25"),
        dimension("bm25_strip_punctuation", "bool", True, "BM25 tokenisation drops punctuation.",
                  group="bm25"),
        dimension("bm25_stopwords", "bool", False, "BM25 tokenisation drops English stopwords.",
                  group="bm25"),
        dimension("bm25_stemming", "bool", False, "BM25 tokenisation Porter-stems words.",
                  group="bm25"),
        dimension("bm25_k1", "float", 1.5, "BM25 term-frequency saturation k1.", low=0.3,
                  high=3.0, group="bm25"),
        dimension("bm25_b", "float", 0.75, "BM25 length normalisation b.", low=0.0, high=1.0,
                  group="bm25"),
    )
    reads = tuple(d.name for d in dimensions)
    weight = weight_dimension("bm25", 0.5, "BM25 retriever")

    def __init__(self) -> None:
        # Per unit set, the indexes of its latest settings only: a search over k1 and b would
        # otherwise keep one index per value it ever tried.
        self._indexes: dict[int, BoundedCache[SparseBM25]] = {}

    def _index(self, units: "UnitSet", config: "RetrievalConfig") -> SparseBM25:
        settings = (_token_settings(config), config.bm25_k1, config.bm25_b)
        indexes = self._indexes.setdefault(id(units), BoundedCache(BM25_SETTINGS_KEPT))
        if settings not in indexes:
            indexes[settings] = SparseBM25(_corpus(units.units, settings[0]), k1=config.bm25_k1,
                                           b=config.bm25_b)
        return indexes[settings]

    def extend(self, old, new, keep) -> None:
        indexes = self._indexes.pop(id(old), None)
        if indexes is None:
            return
        for settings, index in indexes.items():
            index.replace_tail(keep, _corpus(new.units[keep:], settings[0]))
        self._indexes[id(new)] = indexes

    def scores(self, units, query, config) -> np.ndarray:
        index = self._index(units, config)
        lower, punct, stop, stem = _token_settings(config)
        best = np.zeros(len(units.units))
        for text in query.bm25_texts:
            tokens = bm25_tokens(text, lowercase=lower, strip_punctuation=punct, stopwords=stop,
                                 stemming=stem)
            if tokens:
                best = np.maximum(best, index.get_scores(tokens))
        return best


def _corpus(units, token_settings: tuple[bool, bool, bool, bool]) -> list[list[str]]:
    lower, punct, stop, stem = token_settings
    return [bm25_tokens(u.rendered(False), lowercase=lower, strip_punctuation=punct,
                        stopwords=stop, stemming=stem) or ["_"] for u in units]


@register
class DenseRetriever:
    """Cosine similarity of sentence embeddings, searched with a FAISS inner-product index; one
    index per (unit set, embedding model)."""

    name = "dense"
    dimensions = (
        dimension("embedding_model", "choice", DEFAULT_MODEL, "Embedding model of dense "
                  f"retrieval: '{DEFAULT_MODEL}' is the memory's embedder (--embedder; the "
                  f"bundled all-MiniLM-L6-v2 unless set), the others the models listed in "
                  f"${MODEL_LISTS['embedding']} (sentence-transformers names or folders, or "
                  "litellm:<model>).", choices=(DEFAULT_MODEL, *listed_models("embedding")),
                  group="dense", widen_hint=widen_hint("embedding")),
    )
    reads = tuple(d.name for d in dimensions)
    weight = weight_dimension("dense", 0.5, "dense retriever")

    def __init__(self) -> None:
        self._indexes: dict[tuple[int, str], object] = {}
        self._embedders: dict[str, object] = {}
        # model name -> embedder (cached on disk, shared); set by the memory system.
        self.make_embedder: Callable[[str], object] | None = None

    def embedder(self, model: str):
        if model not in self._embedders:
            assert self.make_embedder is not None, "the memory system sets make_embedder"
            self._embedders[model] = self.make_embedder(model)
        return self._embedders[model]

    def embedders(self) -> list:
        """The embedders built so far (their counters are the system's)."""
        return list(self._embedders.values())

    def embed(self, texts: list[str], model: str) -> np.ndarray:
        return self.embedder(model).embed(texts).astype(np.float32)

    def unit_vectors(self, units: "UnitSet", model: str) -> np.ndarray:
        return self._index(units, model)[1]

    def _index(self, units: "UnitSet", model: str):
        key = (id(units), model)
        if key not in self._indexes:
            import faiss

            vectors = self._unit_vectors(units, model)
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
            self._indexes[key] = (index, vectors)
        return self._indexes[key]

    def extend(self, old, new, keep) -> None:
        for key in [k for k in self._indexes if k[0] == id(old)]:
            import faiss

            index, vectors = self._indexes.pop(key)
            tail = self._unit_vectors(new, key[1], start=keep)
            index.remove_ids(faiss.IDSelectorRange(keep, index.ntotal))
            index.add(tail)
            self._indexes[(id(new), key[1])] = (
                index, np.ascontiguousarray(np.vstack([vectors[:keep], tail])))

    def _unit_vectors(self, units: "UnitSet", model: str, start: int = 0) -> np.ndarray:
        """Turn, passage and summary units are embedded; a window or a whole session is the
        normalised mean of its turns' vectors, so they cost no embedding beyond the turns.
        Rows from ``start`` on only (an index extended by appended units)."""
        embedder = self.embedder(model)
        wanted = units.units[start:]
        needed = {t for u in wanted for t in u.turn_ids}
        turns = [u for u in units.turn_units if u.id in needed]
        turn_rows = {u.id: i for i, u in enumerate(turns)}
        turn_vectors = embedder.embed([u.rendered(False) for u in turns])
        own = [u for u in wanted
               if u.id not in turn_rows and not u.id.startswith(COMPOSED_PREFIXES)]
        own_vectors = dict(zip((u.id for u in own),
                               embedder.embed([u.rendered(False) for u in own]) if own
                               else []))
        rows = []
        for unit in wanted:
            if unit.id in turn_rows:
                rows.append(turn_vectors[turn_rows[unit.id]])
            elif unit.id in own_vectors:
                rows.append(own_vectors[unit.id])
            else:
                mean = turn_vectors[[turn_rows[t] for t in unit.turn_ids]].mean(axis=0)
                rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        if not rows:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)

    def scores(self, units, query, config) -> np.ndarray:
        index, _ = self._index(units, config.embedding_model)
        n = index.ntotal
        vectors = self.embed(list(query.dense_texts), config.embedding_model)
        sims, ids = index.search(vectors, n)
        out = np.full(n, -1.0)
        for row_sims, row_ids in zip(sims, ids):
            np.maximum.at(out, row_ids, row_sims)
        return out


@register
class StructuredRetriever:
    """Speaker and entity match, plus date proximity to the question's temporal cues."""

    name = "structured"
    dimensions = ()
    reads = ("temporal_cues",)
    weight = weight_dimension("structured", 0.2, "structured retriever (speaker, entity, date "
                              "proximity)")

    def __init__(self) -> None:
        self._features: dict[int, tuple[list[str], np.ndarray, list[set[str]]]] = {}

    def _unit_features(self, units: "UnitSet"):
        key = id(units)
        if key not in self._features:
            self._features[key] = _structured_features(units.units)
        return self._features[key]

    def extend(self, old, new, keep) -> None:
        entry = self._features.pop(id(old), None)
        if entry is None:
            return
        speakers, has_time, names = entry
        tail = _structured_features(new.units[keep:])
        self._features[id(new)] = (speakers[:keep] + tail[0],
                                   np.concatenate([has_time[:keep], tail[1]]),
                                   names[:keep] + tail[2])

    def scores(self, units, query, config) -> np.ndarray:
        speakers, has_time, names = self._unit_features(units)
        n = len(units.units)
        score = np.zeros(n)
        asked = {s.lower() for s in query.speakers}
        if asked:
            score += 0.5 * np.array([s in asked for s in speakers], dtype=float)
        entities = {e.lower() for e in query.entities} - asked
        if entities:
            score += 0.5 * np.array([len(entities & u) / len(entities) for u in names])
        if config.temporal_cues:
            target = temporal_target(query.text)
            if target is not None:
                days = np.array([abs((u.date - target).days) if u.date else 365.0
                                 for u in units.units], dtype=float)
                score += np.exp(-days / 45.0)
            elif is_temporal_question(query.text):
                score += 0.5 * has_time
        return score


def _structured_features(units) -> tuple[list[str], np.ndarray, list[set[str]]]:
    speakers = [u.speaker.lower() for u in units]
    has_time = np.array([bool(RELATIVE_TIME.search(u.text)) for u in units], dtype=float)
    names = [{n.lower() for n in names_in(u.text)} for u in units]
    return speakers, has_time, names


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T for unit vectors, in float64: a float32 product rounds differently with BLAS's
    thread count (one in a Ray actor, every core in the driver), enough to flip a near-tie."""
    return a.astype(np.float64) @ b.astype(np.float64).T


def minmax(values: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """``values`` scaled to [0, 1] (all 0 when they are all alike); with ``at``, only the values
    at those indexes (scaled by the range of all), without scaling the others."""
    lo, hi = float(values.min()), float(values.max())
    picked = values if at is None else values[at]
    if math.isclose(hi, lo):
        return np.zeros_like(picked, dtype=float)
    return (picked - lo) / (hi - lo)
