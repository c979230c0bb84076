"""Ray actors that load their own haystacks (Evaluator(source=...)): what lets LongMemEval M fit."""
from __future__ import annotations

import os
import signal

import pytest

from benchmarks import BenchmarkSource
from evolve.evaluation import Evaluator
from search_space.config import load_preset

SOURCE = BenchmarkSource("synthetic", options=(("conversations", 6), ("sessions", 6),
                                               ("turns", 16)))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_actors_that_load_their_own_shards_give_the_same_rows_and_reload_after_a_kill():
    import ray

    bench = SOURCE.load()
    ids = [q.id for q in bench.questions]
    config = load_preset("weak").with_values({"bm25_b": 0.6})
    strip = lambda rows: [{k: v for k, v in r.items() if k != "latency_ms"} for r in rows]
    expected = strip(Evaluator(bench, workers=0).run([(config, ids)])[0][0])
    try:
        # The driver loads the questions only; each actor its own haystacks.
        with Evaluator(SOURCE.load(keep=()), workers=2, source=SOURCE) as own:
            assert strip(own.run([(config, ids)])[0][0]) == expected
            pids = ray.get([a.pid.remote() for a in own._actors])
            os.kill(pids[1], signal.SIGKILL)
            # Ray rebuilds the actor from how to load its shard, and it loads it again.
            assert strip(own.run([(config, ids)])[0][0]) == expected
            assert ray.get(own._actors[1].pid.remote()) != pids[1]
    finally:
        ray.shutdown()


def test_in_process_an_evaluator_loads_the_haystacks_its_questions_need():
    questions_only = SOURCE.load(keep=())
    local = Evaluator(questions_only, workers=0, source=SOURCE)
    rows = local.run([(load_preset("weak"), [q.id for q in questions_only.questions[:5]])])[0][0]
    assert len(rows) == 5 and all(r["recall_in_context"] is not None for r in rows)
