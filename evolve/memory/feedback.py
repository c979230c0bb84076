"""Pseudo-relevance feedback: the best units of a first ranking feed a second query. BM25 gets
RM3-style expansion terms (the feedback units' most frequent content terms that the query lacks);
dense retrieval gets Rocchio (the query vector moved toward the feedback units' mean vector)."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from evolve.memory.retrievers import cosines, minmax
from evolve.memory.text import STOPWORDS, bm25_tokens

if TYPE_CHECKING:
    from evolve.memory.query import ProcessedQuery
    from evolve.memory.units import UnitSet


def expansion_terms(units: "UnitSet", feedback: list[int], query: "ProcessedQuery",
                    n_terms: int) -> list[str]:
    """The ``n_terms`` content words most frequent over the feedback units, each weighted by its
    unit's rank (1/rank, RM3's document weight), that the query does not already contain."""
    asked = set(bm25_tokens(query.text, lowercase=True, strip_punctuation=True, stopwords=True,
                            stemming=False))
    weights: Counter[str] = Counter()
    for rank, index in enumerate(feedback, start=1):
        words = bm25_tokens(units.units[index].text, lowercase=True, strip_punctuation=True,
                            stopwords=True, stemming=False)
        for word, count in Counter(words).items():
            if word not in asked and word not in STOPWORDS and len(word) > 2:
                weights[word] += count / (len(words) or 1) / rank
    return [word for word, _ in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
            [:n_terms]]


def expanded_query(query: "ProcessedQuery", terms: list[str]) -> "ProcessedQuery":
    """The BM25 texts with the expansion terms appended (the dense texts are left alone)."""
    suffix = " " + " ".join(terms) if terms else ""
    return replace(query, bm25_texts=tuple(t + suffix for t in query.bm25_texts))


def rocchio_scores(unit_vectors: np.ndarray, query_vectors: np.ndarray, feedback: list[int],
                   weight: float) -> np.ndarray:
    """Cosine of each unit with q' = (1 - w) q + w mean(feedback vectors), best over the query's
    texts."""
    centroid = unit_vectors[feedback].mean(axis=0)
    moved = (1.0 - weight) * query_vectors + weight * centroid
    moved /= np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)
    return cosines(unit_vectors, moved).max(axis=1)


def mixed(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """(1 - w) * min-max(first round) + w * min-max(feedback round)."""
    return (1.0 - weight) * minmax(first) + weight * minmax(second)


def feedback_scores(scores: dict[str, np.ndarray], units: "UnitSet", query: "ProcessedQuery",
                    feedback: list[int], *, n_terms: int, weight: float, rescore,
                    dense=None, model: str) -> dict[str, np.ndarray]:
    """Each active retriever's scores after one feedback round: BM25 re-scored with the
    expansion terms, dense with the Rocchio query, each mixed with its first-round scores;
    ``rescore(name, query)`` scores a retriever for another query (cached by the caller);
    ``model`` is dense retrieval's embedding model."""
    out = dict(scores)
    if "bm25" in scores:
        terms = expansion_terms(units, feedback, query, n_terms)
        if terms:
            out["bm25"] = mixed(scores["bm25"], rescore("bm25", expanded_query(query, terms)),
                                weight)
    if "dense" in scores and dense is not None:
        vectors = dense.unit_vectors(units, model)
        query_vectors = dense.embed(list(query.dense_texts), model)
        out["dense"] = mixed(scores["dense"], rocchio_scores(vectors, query_vectors, feedback,
                                                             weight), weight)
    return out
