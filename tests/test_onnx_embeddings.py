"""The onnx embedding backend: exported here from the bundled weights, int8, close to torch."""
from __future__ import annotations

import numpy as np
import pytest

from evolve.embeddings import EmbeddingCache, make_embedder

TEXTS = ["My sister moved to Lisbon last month.", "Which city did my sibling move to?",
         "I cooked mushroom risotto for the first time this weekend. " * 30, "ok"]


@pytest.mark.timeout(300)
def test_vectors_are_unit_float32_close_to_torch_and_cached_apart(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    onnx = make_embedder("onnx", cache=cache, export_dir=tmp_path / "onnx")
    torch_ = make_embedder("sentence-transformers", cache=cache)
    fast, slow = onnx.embed(TEXTS), torch_.embed(TEXTS)
    assert fast.dtype == np.float32 and fast.shape == (4, 384)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # int8 kernels differ by CPU (VNNI or not): the sentences stay above 0.98 (0.99 here); the
    # two-letter "ok" is the hardest, 0.9695 on an AVX2 EPYC with no VNNI (0.964-0.97 with
    # reduce_range or uint8 weights too), above 0.97 on the machines this passed on before.
    cosine = (fast * slow).sum(axis=1)
    assert cosine[:3].min() > 0.98 and cosine[3] > 0.95, cosine
    # The nearest neighbours agree: the question's nearest text is its evidence.
    assert int(np.argmax(fast[1] @ fast[[0, 2, 3]].T)) == 0
    assert onnx.model_id != torch_.model_id and cache.count(onnx.model_id) == 4
    assert list((tmp_path / "onnx").glob("*/model.int8.onnx"))
    # A second embedder reuses the export and returns the same vectors whatever the order:
    # a text's vector never depends on the texts embedded beside it.
    again = make_embedder("onnx", cache=EmbeddingCache(tmp_path / "other.sqlite"),
                          export_dir=tmp_path / "onnx")
    assert np.array_equal(again.embed(TEXTS[::-1])[::-1], fast)


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path):
    from evolve.embeddings import EmbeddingError

    embedder = make_embedder("onnx", str(tmp_path), cache=EmbeddingCache(tmp_path / "e.sqlite"))
    with pytest.raises(EmbeddingError, match="local sentence-transformers folders"):
        embedder.embed(["x"])


def test_each_quantization_and_export_version_has_its_own_cache_id(tmp_path):
    from evolve.embeddings import ONNX_EXPORT_VERSION, ONNX_QUANTIZATIONS, EmbeddingError

    cache = EmbeddingCache(tmp_path / "e.sqlite")
    ids = {make_embedder("onnx", cache=cache, quantization=name).model_id
           for name in ONNX_QUANTIZATIONS}
    assert len(ids) == len(ONNX_QUANTIZATIONS)
    assert all(f"-v{ONNX_EXPORT_VERSION}:" in model_id for model_id in ids)
    with pytest.raises(EmbeddingError, match="unknown onnx quantization 'int4'.*int8, none"):
        make_embedder("onnx", cache=cache, quantization="int4")


def test_a_listed_embedding_model_runs_on_torch_when_the_memory_embeds_with_onnx(tmp_path):
    from evolve.memory.models import embedder_arguments

    for name in ("BAAI/bge-small-en-v1.5", str(tmp_path)):
        assert embedder_arguments(name, "onnx", None, {"threads": 1}) == (
            "sentence-transformers", name, {})
    assert embedder_arguments("default", "onnx", None, {"threads": 1}) == (
        "onnx", None, {"threads": 1})
