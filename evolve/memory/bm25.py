"""BM25 Okapi over sparse postings, scoring exactly as rank-bm25's BM25Okapi does.

rank-bm25 keeps one Python dict per document (about 8 KB for a LongMemEval turn), which is
what kept LongMemEval M (2.5 million turns) out of memory. Here a document costs its distinct
terms' postings (a document id and a count, 1 to 4 bytes each) and its length. The formulas, the idf
floor and the order of every float operation are rank-bm25 0.2.2's, so the scores are the same
bits and results stored before this index stay comparable."""
from __future__ import annotations

import math
import threading
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Every index of a process maps its words to ids through this one table, so a word that occurs
#: in many haystacks is stored once, not once per index.
_TERM_IDS: dict[str, int] = {}
_TERM_LOCK = threading.Lock()


class SparseBM25:
    """rank-bm25's BM25Okapi(corpus, k1, b, epsilon): ``get_scores`` returns the same scores,
    and ``replace_tail`` replaces the documents after a point without touching the others.

    Postings are grouped by term: ``terms`` holds the index's term ids in ascending order, and
    the documents holding ``terms[i]`` are ``docs[starts[i]:starts[i + 1]]``, with the counts
    in ``counts``. ``arrival[i]`` places ``terms[i]`` in rank-bm25's document frequency dict
    (first appearance; a word that left the index and came back goes last), the order in
    which it sums idf.
    """

    def __init__(self, corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        terms, docs, counts, seen = _postings(corpus, offset=0)
        self._set(terms, docs, counts, seen, np.arange(len(seen), dtype=np.int64))
        self.doc_len = _lengths(corpus)
        self._recompute()

    @property
    def corpus_size(self) -> int:
        return len(self.doc_len)

    def replace_tail(self, keep: int, documents: Sequence[Sequence[str]]) -> None:
        """Drop the documents after the first ``keep`` and append ``documents``."""
        kept = self.docs < keep
        own = np.repeat(self.terms, np.diff(self.starts))[kept]
        staying = np.isin(self.terms, own)
        terms, docs, counts, seen = _postings(documents, offset=keep)
        arriving = seen[~np.isin(seen, self.terms[staying])]
        order = np.lexsort((np.concatenate([self.docs[kept], docs]),
                            np.concatenate([own, terms])))
        self._set(np.concatenate([own, terms])[order],
                  np.concatenate([self.docs[kept], docs])[order],
                  np.concatenate([self.counts[kept], counts])[order],
                  np.concatenate([self.terms[staying], arriving]),
                  np.concatenate([self.arrival[staying],
                                  self._next_arrival + np.arange(len(arriving))]))
        self.doc_len = np.concatenate([self.doc_len[:keep], _lengths(documents)])
        self._recompute()

    def get_scores(self, query: Sequence[str]) -> np.ndarray:
        score = np.zeros(self.corpus_size)
        with _TERM_LOCK:
            ids = [_TERM_IDS[word] for word in query if word in _TERM_IDS]
        for term_id, position in zip(ids, np.searchsorted(self.terms, ids)):
            if position >= len(self.terms) or self.terms[position] != term_id:
                continue  # rank-bm25 adds 0 * ... for a word no document holds
            start, end = self.starts[position], self.starts[position + 1]
            rows, frequency = self.docs[start:end], self.counts[start:end].astype(np.int64)
            # rank-bm25's expression, on the documents whose frequency is not 0 (it adds
            # exactly 0.0 to the others). A repeated query word is added again, as there.
            score[rows] += self.idf[position] * (frequency * (self.k1 + 1) /
                                                 (frequency + self._norm[rows]))
        return score

    def _set(self, terms: np.ndarray, docs: np.ndarray, counts: np.ndarray,
             arrived_terms: np.ndarray, arrival: np.ndarray) -> None:
        """Take postings sorted by (term, document) and each of their terms' arrival."""
        self.terms, first = np.unique(terms, return_index=True)
        self.starts = np.append(first, len(terms)).astype(np.int64)
        # The narrowest integers that hold them: a haystack's postings are mostly uint16 ids and
        # uint8 counts, 3 bytes instead of 16.
        self.docs = docs.astype(_narrowest(docs))
        self.counts = counts.astype(_narrowest(counts))
        by_term = np.argsort(arrived_terms)
        self.arrival = arrival[by_term]
        self._next_arrival = int(arrival.max()) + 1 if len(arrival) else 0

    def _recompute(self) -> None:
        size = self.corpus_size
        # rank-bm25 divides the token count by the document count, both integers.
        self.avgdl = int(self.doc_len.sum()) / size if size else 0.0
        frequency = np.diff(self.starts)
        # math.log, as rank-bm25 (numpy's log may differ in the last bit); once per distinct
        # frequency, of which there are few.
        distinct, inverse = np.unique(frequency, return_inverse=True)
        idf = np.array([math.log(size - f + 0.5) - math.log(f + 0.5) for f in distinct.tolist()],
                       dtype=np.float64)[inverse]
        # Summed in the dict's order, one addition at a time (cumsum does not pair terms).
        idf_sum = float(np.cumsum(idf[np.argsort(self.arrival)])[-1]) if len(idf) else 0.0
        self.average_idf = idf_sum / len(idf) if len(idf) else 0.0
        self.idf = np.where(idf < 0, self.epsilon * self.average_idf, idf)
        # The part of rank-bm25's denominator that depends on the document alone, computed as
        # it computes it: k1 * (1 - b + b * doc_len / avgdl).
        self._norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl) if size \
            else np.zeros(0)


def _narrowest(values: np.ndarray) -> np.dtype:
    return np.min_scalar_type(int(values.max()) if len(values) else 0)


def _lengths(corpus: Sequence[Sequence[str]]) -> np.ndarray:
    return np.fromiter((len(document) for document in corpus), dtype=np.int64,
                       count=len(corpus))


def _postings(corpus: Sequence[Sequence[str]], *, offset: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The (term, document, count) of every distinct term of every document, sorted by term
    then document (document ids from ``offset``), and the corpus's terms in order of first
    appearance."""
    words = list(chain.from_iterable(corpus))
    # Ids for the distinct words only (dict.fromkeys keeps first appearance, in C), then one
    # C-level lookup per word.
    distinct: dict[str, int] = dict.fromkeys(words)  # type: ignore[arg-type]
    with _TERM_LOCK:
        ids = _TERM_IDS
        for word in distinct:
            distinct[word] = ids.setdefault(word, len(ids))
    flat = np.fromiter(map(distinct.__getitem__, words), dtype=np.int64, count=len(words))
    seen = np.fromiter(distinct.values(), dtype=np.int64, count=len(distinct))
    # Each word as the rank of its id among the corpus's terms: few enough for 16 bits in a
    # haystack, where a stable sort is a radix sort, a fraction of sorting (term, document)
    # keys. Stable, so each term's words keep the documents' order.
    by_id = np.sort(seen)
    rank = np.zeros(int(by_id[-1]) + 1 if len(by_id) else 0,
                    dtype=np.min_scalar_type(max(len(by_id) - 1, 0)))
    rank[by_id] = np.arange(len(by_id))
    order = np.argsort(rank[flat], kind="stable")
    terms = flat[order]
    docs = np.repeat(np.arange(len(corpus), dtype=np.int64), _lengths(corpus))[order]
    first = np.flatnonzero(np.concatenate(([True], (terms[1:] != terms[:-1]) |
                                                   (docs[1:] != docs[:-1])))) \
        if len(terms) else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.append(first, len(terms)))
    return terms[first], docs[first] + offset, counts, seen
