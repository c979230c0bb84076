"""Evaluation: in-process and on a real local Ray, cache reuse through the store, dead workers."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from benchmarks import load_benchmark
from evolve.evaluation import Evaluator, evaluate_configs, shard_conversations
from evolve.store import RunStore
from benchmarks.splits import make_split
from search_space.config import load_preset


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("synthetic", conversations=6, sessions=6, turns=16)


@pytest.fixture(scope="module")
def ray_evaluator(bench):
    evaluator = Evaluator(bench, workers=2)
    yield evaluator
    evaluator.close()
    import ray

    ray.shutdown()


def _ids(bench):
    return [q.id for q in bench.questions]


def test_shards_balance_questions_and_cover_every_conversation(bench):
    shards = shard_conversations(bench, 4)
    assert sorted(c for s in shards for c in s) == sorted(c.id for c in bench.conversations)
    assert len(shards) == 4 and all(shards)


def test_ray_and_in_process_give_identical_rows(bench, ray_evaluator):
    config = load_preset("weak")
    local = Evaluator(bench, workers=0).run([(config, _ids(bench))])[0][0]
    remote = ray_evaluator.run([(config, _ids(bench))])[0][0]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "latency_ms"} for r in rows]
    assert strip(local) == strip(remote)


def test_several_configs_run_concurrently_and_keep_question_order(bench, ray_evaluator):
    weak = load_preset("weak")
    configs = [weak.with_values({"top_k": k}) for k in (2, 4, 8)]
    ids = _ids(bench)[::-1]
    results = ray_evaluator.run([(c, ids) for c in configs])
    assert [[r["question_id"] for r in rows] for rows, _ in results] == [ids] * 3
    assert [len(rows[0]["context_ids"]) for rows, _ in results] == [2, 4, 8]


def test_a_killed_worker_loses_and_duplicates_no_question(bench, ray_evaluator):
    import ray

    config = load_preset("weak").with_values({"bm25_k1": 0.9, "unit": "window"})
    pids = ray.get([a.pid.remote() for a in ray_evaluator._actors])

    def kill_one() -> None:
        time.sleep(0.3)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    rows, _ = ray_evaluator.run([(config, _ids(bench))])[0]
    killer.join()
    assert [r["question_id"] for r in rows] == _ids(bench)
    new_pids = ray.get([a.pid.remote() for a in ray_evaluator._actors])
    assert new_pids[0] != pids[0]


def test_stored_outcomes_are_reused_not_recomputed(bench, tmp_path):
    split = make_split(bench, "all")
    config = load_preset("weak")
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("r1", "eval", bench, split, {})
        first = evaluate_configs(Evaluator(bench, workers=0), [config], _ids(bench), part="all",
                                 objective="recall_in_context", store=store, run_id="r1")[0]
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("r2", "eval", bench, split, {})
        fresh = Evaluator(bench, workers=0)
        second = evaluate_configs(fresh, [config], _ids(bench), part="all",
                                  objective="recall_in_context", store=store, run_id="r2")[0]
    assert first.n_reused == 0 and second.n_reused == len(bench.questions)
    assert fresh._local is None  # nothing had to be evaluated
    assert second.score == first.score
