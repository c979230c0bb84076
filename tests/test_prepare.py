"""The embedding phase: dense indexes are built only for configs that use them, once."""
from __future__ import annotations

import pytest

from benchmarks import load_benchmark
from evolve.evaluation import Evaluator
from search_space.config import load_preset


@pytest.mark.timeout(300)
def test_only_configs_with_dense_retrieval_embed_and_only_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path))
    bench = load_benchmark("synthetic", shape="longmemeval", questions=3, sessions=2)
    ids = [q.id for q in bench.questions]
    evaluator = Evaluator(bench, workers=0)
    weak, strong = load_preset("weak"), load_preset("strong")
    assert "dense" not in weak.retrievers and weak.mmr_lambda == 1.0
    assert evaluator.prepare([(weak, ids)]) == {"embedded": 0}
    assert evaluator.embedding_counters() == {"hits": 0, "misses": 0}
    turns = {f"{t.speaker}: {t.content}" for c in bench.conversations for t in c.turns}
    first = evaluator.prepare([(strong, ids)])["embedded"]
    # Every distinct turn once (windows are means of turn vectors), never a second time.
    assert first == len(turns)
    assert evaluator.prepare([(strong, ids)]) == {"embedded": 0}
    rows = evaluator.run([(strong, ids)])[0][0]
    assert [r["question_id"] for r in rows] == ids
