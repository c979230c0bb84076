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
    # Every Ray test here runs with the driver's copy of the haystacks dropped.
    evaluator = Evaluator(bench, workers=2, hold_conversations=False)
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


def test_a_restarted_worker_still_routes_with_the_question_type_predictor(bench, ray_evaluator):
    """Ray rebuilds a dead actor from its constructor's arguments alone: a predictor handed
    over afterwards must come again with the calls that need it."""
    import ray

    from evolve.question_types import train_body
    from search_space.artefacts import artefact_hash

    body = train_body(list(bench.questions))
    config = load_preset("weak").with_values({"top_k": 1}, category="2").model_copy(
        update={"question_types": artefact_hash(body)})
    ray_evaluator.add_artefacts({artefact_hash(body): body})
    first, _ = ray_evaluator.run([(config, _ids(bench))])[0]
    pids = ray.get([a.pid.remote() for a in ray_evaluator._actors])
    os.kill(pids[0], signal.SIGKILL)
    again, _ = ray_evaluator.run([(config.with_values({"bm25_k1": 1.1}), _ids(bench))])[0]
    assert ray.get(ray_evaluator._actors[0].pid.remote()) != pids[0]
    assert [r["question_type"] for r in again] == [r["question_type"] for r in first]
    assert {r["question_type"] for r in first} >= {"2"}


def test_once_the_actors_hold_the_shards_the_driver_keeps_only_the_questions(bench,
                                                                           ray_evaluator):
    ray_evaluator.placement()
    assert ray_evaluator.benchmark.conversations == ()
    assert ray_evaluator.benchmark.questions == bench.questions
    assert ray_evaluator.benchmark.key == bench.key
    # In this process the memory system needs them: an in-process evaluator keeps them.
    local = Evaluator(bench, workers=0, hold_conversations=False)
    local.run([(load_preset("weak"), _ids(bench)[:3])])
    assert local.benchmark is bench


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
