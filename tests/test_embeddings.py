"""Embeddings: the real MiniLM and local-server backends, the disk cache, dedup and ordering."""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from benchmarks.errors import MemevolveError
from evolve.embeddings import (
    CachedEmbedder,
    EmbeddingCache,
    EmbeddingError,
    LiteLLMEmbedder,
    SentenceTransformerEmbedder,
    make_embedder,
)

SENTENCES = ["The cat sat on the mat.", "A kitten was sitting on the rug.",
             "Quarterly tax filings are due in April."]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    """One loaded model for the module: each test still gets its own empty cache."""
    return SentenceTransformerEmbedder()


@pytest.fixture
def embedder(minilm) -> CachedEmbedder:
    return CachedEmbedder(minilm, EmbeddingCache())


def test_make_embedder_defaults_to_minilm_without_loading_it(cache_dir):
    from evolve.embeddings import ONNX_EXPORT_VERSION

    embedder = make_embedder()
    # The default is MiniLM in int8 onnx; neither it nor its export is loaded before use.
    assert embedder.model_id == f"onnx-int8-v{ONNX_EXPORT_VERSION}:all-MiniLM-L6-v2"
    assert embedder.cache.path == cache_dir / "embeddings.sqlite"
    assert embedder.embedder._session is None
    assert make_embedder("sentence-transformers").model_id == "st:all-MiniLM-L6-v2"


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(MemevolveError, match="unknown embedding backend 'word2vec'.*"
                                             "litellm, onnx, sentence-transformers"):
        make_embedder("word2vec")


def test_cache_round_trips_many_vectors_in_bulk():
    cache = EmbeddingCache()
    keys = [f"{i:032d}".encode() for i in range(6000)]
    vectors = np.random.default_rng(0).standard_normal((6000, 384)).astype(np.float32)
    cache.put("test:model", keys, vectors)
    found = EmbeddingCache().get("test:model", keys + [b"absent"])
    assert len(found) == 6000
    np.testing.assert_array_equal(np.stack([found[key] for key in keys]), vectors)
    assert EmbeddingCache().get("other:model", keys[:10]) == {}


def _store_range(path: str, start: int) -> None:
    keys = [f"{i:032d}".encode() for i in range(start, start + 2000)]
    EmbeddingCache(path).put("test:model", keys, np.ones((2000, 8), dtype=np.float32))


def test_concurrent_writers_in_several_processes_lose_nothing(cache_dir):
    path = str(cache_dir / "embeddings.sqlite")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.starmap(_store_range, [(path, 0), (path, 1000), (path, 2000)])
    assert EmbeddingCache(path).count("test:model") == 4000


def test_unreachable_litellm_endpoint_fails_with_the_model_and_the_fix():
    backend = LiteLLMEmbedder("openai/nothing-here", api_base="http://127.0.0.1:9/v1",
                              api_key="sk-local", timeout=2, max_attempts=2, backoff_s=0.01)
    with pytest.raises(EmbeddingError, match="'openai/nothing-here' failed 2 times.*Fix: check"):
        backend.embed(["hello"])


@pytest.mark.slow
def test_vectors_are_float32_unit_rows_of_the_model_width(embedder):
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dim == 384


@pytest.mark.slow
def test_similar_sentences_are_closer_than_unrelated_ones(embedder):
    cat, kitten, taxes = embedder.embed(SENTENCES)
    assert cat @ kitten > cat @ taxes + 0.3


@pytest.mark.slow
def test_second_call_is_served_from_the_cache(embedder):
    first = embedder.embed(SENTENCES)
    second = embedder.embed(SENTENCES)
    assert (embedder.hits, embedder.misses, embedder.embedded) == (3, 3, 3)
    np.testing.assert_array_equal(first, second)


@pytest.mark.slow
def test_cache_persists_for_a_new_embedder_on_the_same_file(embedder, minilm):
    first = embedder.embed(SENTENCES)
    embedder.cache.close()
    reopened = CachedEmbedder(minilm, EmbeddingCache())
    np.testing.assert_array_equal(reopened.embed(SENTENCES), first)
    assert (reopened.hits, reopened.misses, reopened.embedded) == (3, 0, 0)


@pytest.mark.slow
def test_duplicates_in_one_call_are_embedded_once(embedder):
    vectors = embedder.embed(["same", "other", "same", "same"])
    assert embedder.embedded == 2
    assert (embedder.hits, embedder.misses) == (0, 4)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])


@pytest.mark.slow
def test_rows_follow_the_input_order_when_hits_and_misses_mix(embedder, minilm):
    embedder.embed([SENTENCES[0], SENTENCES[2]])
    texts = ["a new sentence", SENTENCES[2], SENTENCES[1], SENTENCES[0]]
    vectors = embedder.embed(texts)
    assert (embedder.hits, embedder.embedded) == (2, 4)
    for text, row in zip(texts, vectors):
        np.testing.assert_allclose(row, minilm.embed([text])[0], atol=1e-5)


@pytest.mark.slow
def test_a_model_that_cannot_be_loaded_names_it_and_the_fix(tmp_path):
    with pytest.raises(EmbeddingError, match="'.*missing-model' could not be loaded.*Fix: use"):
        make_embedder("sentence-transformers", str(tmp_path / "missing-model")).embed(["hello"])


@pytest.mark.llm
@pytest.mark.slow
def test_litellm_backend_embeds_through_the_local_server():
    from evolve.local_llm import LocalLLMServer

    with LocalLLMServer(embedding=True) as server:
        embedder = make_embedder("litellm", server.settings.model, api_base=server.api_base,
                                 api_key="sk-local", timeout=120)
        vectors = embedder.embed(SENTENCES + [SENTENCES[0]])
        reopened = make_embedder("litellm", server.settings.model, api_base=server.api_base,
                                 api_key="sk-local")
        again = reopened.embed(SENTENCES)
    assert embedder.model_id == "litellm:openai/smollm2"
    assert vectors.shape[0] == 4 and vectors.shape[1] > 0 and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embedded == 3
    assert (reopened.hits, reopened.misses, reopened.embedded) == (3, 0, 0)
    np.testing.assert_array_equal(again, vectors[:3])
