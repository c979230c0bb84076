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


def _stored_rows(db) -> list[dict]:
    from evolve.store import RunStore

    with RunStore(db) as store:
        (run,) = store.list_runs()
        (evaluation,) = store.evaluations(run["run_id"])
        return [{k: v for k, v in row.items() if k not in ("latency_ms", "created_at")}
                for row in store.evaluation_results(evaluation["evaluation_id"])]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_eval_leaves_the_haystacks_to_the_actors_where_the_adapter_loads_parts(tmp_path,
                                                                              monkeypatch):
    import ray
    from typer.testing import CliRunner

    from benchmarks import _registry
    from evolve.cli import app

    options = ["-b", "synthetic", "--benchmark-option", "shape=longmemeval",
               "--benchmark-option", "questions=12", "--benchmark-option", "sessions=8"]
    runner = CliRunner()
    # In process, the evaluator is the one that loads the haystacks: the reference rows.
    reference = runner.invoke(app, ["eval", *options, "--workers", "0",
                                    "--db", str(tmp_path / "local.duckdb")])
    assert reference.exit_code == 0, reference.output
    loads = []
    real_load = _registry.BenchmarkSource.load

    def spied(self, keep=None):
        loads.append(None if keep is None else tuple(keep))
        return real_load(self, keep)

    monkeypatch.setattr(_registry.BenchmarkSource, "load", spied)
    try:
        result = runner.invoke(app, ["eval", *options, "--workers", "2",
                                     "--db", str(tmp_path / "ray.duckdb")])
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    assert loads == [()]  # the driver's one load: the questions, no haystack
    rows = _stored_rows(tmp_path / "ray.duckdb")
    assert len(rows) == 12 and rows == _stored_rows(tmp_path / "local.duckdb")
