"""The sparse BM25 scores as rank-bm25's BM25Okapi does, so results stored before it compare."""
from __future__ import annotations

import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from evolve.memory.bm25 import SparseBM25
from evolve.memory.text import bm25_tokens


def _corpus(rng: random.Random, size: int) -> list[list[str]]:
    # Zipf-like words, so some occur in more than half the documents (rank-bm25's idf floor).
    words = [f"w{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(300)]
    return [rng.choices(words, weights, k=rng.randint(1, 60)) for _ in range(size)]


def _queries(rng: random.Random, corpus: list[list[str]]) -> list[list[str]]:
    seen = sorted({word for document in corpus for word in document})
    return [rng.sample(seen, 3) + ["never-indexed"],
            [seen[0], seen[0], seen[1]],  # a repeated word counts twice, as in rank-bm25
            [rng.choice(corpus[0]) for _ in range(5)], ["never-indexed"], []]


def _assert_same(sparse: SparseBM25, okapi: BM25Okapi, queries: list[list[str]]) -> None:
    for query in queries:
        expected = np.asarray(okapi.get_scores(query))
        got = sparse.get_scores(query)
        assert got.shape == expected.shape
        # The same bits, not merely close: ties between units break the same way.
        assert np.array_equal(got, expected), float(np.abs(got - expected).max())


@pytest.mark.parametrize("k1, b", [(1.5, 0.75), (0.3, 0.0), (3.0, 1.0), (1.2, 0.4)])
def test_scores_equal_rank_bm25_okapi(k1, b):
    rng = random.Random(int(k1 * 10 + b * 100))
    corpus = _corpus(rng, 400)
    sparse, okapi = SparseBM25(corpus, k1=k1, b=b), BM25Okapi(corpus, k1=k1, b=b)
    assert sparse.avgdl == okapi.avgdl
    assert sparse.average_idf == okapi.average_idf
    # Some words are in more than half the documents: the idf floor is exercised.
    assert any(idf == okapi.epsilon * okapi.average_idf for idf in okapi.idf.values())
    _assert_same(sparse, okapi, _queries(rng, corpus))


def test_scores_equal_rank_bm25_on_real_turns(locomo_path):
    from benchmarks import load_benchmark

    conversation = load_benchmark("locomo", locomo_path).conversations[0]
    corpus = [bm25_tokens(turn.text, lowercase=True, strip_punctuation=True, stopwords=False,
                          stemming=False) or ["_"] for turn in conversation.turns]
    sparse, okapi = SparseBM25(corpus), BM25Okapi(corpus)
    questions = ["When did Caroline go to the LGBTQ support group?",
                 "What did Melanie paint recently?", "what what is the the"]
    _assert_same(sparse, okapi, [bm25_tokens(q, lowercase=True, strip_punctuation=True,
                                             stopwords=False, stemming=False) for q in questions])


def test_replacing_the_tail_equals_a_fresh_index():
    rng = random.Random(7)
    corpus = _corpus(rng, 300)
    index = SparseBM25(corpus[:250], k1=1.2, b=0.6)
    # Replace the last 50 documents and append 100: words leave the index and come back.
    index.replace_tail(200, corpus[200:])
    okapi = BM25Okapi(corpus, k1=1.2, b=0.6)
    assert index.corpus_size == 300
    _assert_same(index, okapi, _queries(rng, corpus))
    index.replace_tail(300, [["a-new-word", "w1"]])
    _assert_same(index, BM25Okapi([*corpus, ["a-new-word", "w1"]], k1=1.2, b=0.6),
                 [["a-new-word"], ["w1", "w2"]])
