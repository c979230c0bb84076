"""A real two-node Ray cluster on this machine: shards on both nodes, a node killed in the middle
of an evaluation, and every question counted exactly once."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from benchmarks import load_benchmark
from evolve.evaluation import Evaluator, evaluate_configs
from search_space.config import load_preset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _free_port() -> int:
    # An unusual port of our own: other Ray instances on this machine keep theirs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # The head has room for both shards, so the worker node's shard can restart there.
    made = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "gcs_server_port": _free_port(), "include_dashboard": False})
    worker = made.add_node(num_cpus=1, resources={"worker_node": 1})
    made.wait_for_nodes()
    yield made, worker
    ray.shutdown()
    # Stops only this cluster's processes (never `ray stop`, which stops every Ray here).
    made.shutdown()


def test_a_worker_node_dies_mid_evaluation_and_every_question_is_counted_once(cluster):
    made, worker = cluster
    bench = load_benchmark("synthetic", conversations=8, sessions=40, turns=25, questions=100)
    ids = [q.id for q in bench.questions]
    # Eight configs that each need units and a BM25 index of their own: seconds of work on
    # each shard, so the kill lands mid-evaluation even on a quiet machine.
    configs = [load_preset("weak").with_values({
        "unit": "window", "window_size": size, "bm25_stemming": stem, "bm25_stopwords": stop,
        "top_k": 20}) for size in (1, 2) for stem in (True, False) for stop in (True, False)]
    with Evaluator(bench, workers=2, ray_address=made.address) as evaluator:
        before = evaluator.placement()
        nodes = {p["node"] for p in before}
        assert worker.node_id in nodes and len(nodes) == 2, before
        outcome: dict = {}

        def evaluate() -> None:
            outcome["results"] = evaluate_configs(evaluator, configs, ids, part="all",
                                                  objective="recall_in_context")
            outcome["finished"] = time.monotonic()

        thread = threading.Thread(target=evaluate)
        thread.start()
        time.sleep(0.5)
        killed_at = time.monotonic()
        made.remove_node(worker, allow_graceful=False)
        thread.join(timeout=300)
        assert not thread.is_alive(), "the evaluation did not finish after the node died"
        assert outcome["finished"] > killed_at, "finished before the kill: nothing was tested"
        after = evaluator.placement()
    for result in outcome["results"]:
        assert [r["question_id"] for r in result.rows] == ids
        assert len({r["question_id"] for r in result.rows}) == len(ids)
    moved = [a for b, a in zip(before, after) if b["node"] == worker.node_id]
    assert moved and all(a["node"] != worker.node_id for a in moved)
    # The same configs in one process give the same outcomes: nothing lost, nothing doubled.
    alone = evaluate_configs(Evaluator(bench, workers=0), configs, ids, part="all",
                             objective="recall_in_context")
    assert [r.score for r in outcome["results"]] == pytest.approx([r.score for r in alone])
