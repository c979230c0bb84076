"""Resume after a real kill -9: a round is one transaction, so the resumed run's tables equal
an uninterrupted run's row for row, in-process and with Ray; and a run's status tells the
truth (interrupted, final only after its test evaluation, a finished run left alone)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import evolve.evolution as evolution
from evolve.cli import app
from evolve.console import console, err_console
from evolve.evolution import EvolveSettings, RunFinished, evolve
from evolve.store import RunStore

console.width = err_console.width = 240
SMALL = dict(benchmark="synthetic", candidates=3, max_rounds=4, seed=1)
CLI_SMALL = ["--candidates", "3", "--max-rounds", "4", "--seed", "1", "--no-plots"]
MEMEVOLVE = [sys.executable, "-m", "evolve"]

TABLES = {
    "evaluations": ("SELECT * EXCLUDE (wall_s, created_at) FROM evaluations WHERE run_id = $r "
                    "ORDER BY evaluation_id"),
    "evaluation_questions": ("SELECT eq.* FROM evaluation_questions eq JOIN evaluations e "
                             "USING (evaluation_id) WHERE e.run_id = $r "
                             "ORDER BY evaluation_id, question_id"),
    "question_results": ("SELECT * EXCLUDE (latency_ms, created_at) FROM question_results "
                         "ORDER BY config_hash, question_id"),
    "rounds": "SELECT * EXCLUDE (wall_s, committed_at) FROM rounds WHERE run_id = $r ORDER BY round",
    "candidates": "SELECT * FROM candidates WHERE run_id = $r ORDER BY round, candidate",
    "llm_calls": "SELECT count(*) AS n FROM llm_calls WHERE run_id = $r",
}


def tables(store: RunStore, run_id: str) -> dict[str, list[dict]]:
    """The run's rows, with its id replaced so two runs compare."""
    out = {}
    for name, sql in TABLES.items():
        rows = store.query(sql, {"r": run_id} if "$r" in sql else None)
        out[name] = [{k: v.replace(run_id, "RUN") if isinstance(v, str) else v
                      for k, v in row.items()} for row in rows]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, in-process."""
    path = tmp_path_factory.mktemp("ref") / "ref.duckdb"
    with RunStore(path) as store:
        outcome = evolve(store, EvolveSettings(**SMALL, workers=0))
        return tables(store, outcome.run_id), outcome


def kill_during_round(db: Path, workers: int, after: str) -> str:
    """Start `memevolve run`, kill -9 its whole process group (Ray included) as soon as it
    prints a line starting with ``after``; returns the run id."""
    process = subprocess.Popen([*MEMEVOLVE, "run", "--workers", str(workers), "--db", str(db),
                                *CLI_SMALL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True,
                               env={**os.environ, "COLUMNS": "240"})
    run_id, lines = None, []
    deadline = time.monotonic() + 240
    try:
        for line in process.stdout:
            lines.append(line)
            run_id = run_id or (m.group(1) if (m := re.match(r"run (evolve-\S+): started",
                                                             line)) else None)
            if line.startswith(after) or time.monotonic() > deadline:
                break
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    assert run_id and lines[-1].startswith(after), "".join(lines)
    return run_id


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "ray"])
def test_a_run_killed_mid_round_resumes_to_the_same_rows(tmp_path, reference, workers):
    db = tmp_path / "m.duckdb"
    run_id = kill_during_round(db, workers, after="round 2 ")
    with RunStore(db, read_only=True) as store:
        [run] = store.list_runs()
        assert (run["status"], run["state"]) == ("running", "interrupted")
        # What the committed rounds wrote, in the uninterrupted run's order; had the killed
        # round left anything, the resumed run below would hold it twice.
        killed = tables(store, run_id)["evaluations"]
        assert killed == reference[0]["evaluations"][:len(killed)]
        assert all(e["part"] != "test" for e in killed)
    listing = CliRunner().invoke(app, ["runs", "--db", str(db)])
    assert "interrupted" in listing.output and f"--resume {run_id}" in listing.output
    with RunStore(db) as store:
        resumed = evolve(store, resume=run_id)
        assert tables(store, run_id) == reference[0]
    assert resumed.best.config == reference[1].best.config
    assert resumed.rounds == reference[1].rounds
    # The wall time covers both sessions, not only the resumed part.
    assert resumed.wall_s >= store_wall(db, run_id)


def store_wall(db: Path, run_id: str) -> float:
    with RunStore(db, read_only=True) as store:
        return store.query("SELECT max(wall_s) AS w FROM rounds WHERE run_id = ?",
                           [run_id])[0]["w"]


def test_an_interrupted_round_leaves_nothing_and_resumes_exactly(tmp_path, reference,
                                                                 monkeypatch):
    real_round = evolution._round
    calls = {"n": 0}

    def dying_round(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stopped in the middle of round 3, before its commit
        return real_round(*args, **kwargs)

    monkeypatch.setattr(evolution, "_round", dying_round)
    with RunStore(tmp_path / "m.duckdb") as store:
        with pytest.raises(KeyboardInterrupt):
            evolve(store, EvolveSettings(**SMALL, workers=0))
        run_id = store.list_runs()[0]["run_id"]
        assert store.run(run_id)["status"] == "interrupted"
    monkeypatch.setattr(evolution, "_round", real_round)
    with RunStore(tmp_path / "m.duckdb") as store:
        evolve(store, resume=run_id)
        assert tables(store, run_id) == reference[0]


def test_status_is_final_only_after_the_test_evaluation(tmp_path, reference, monkeypatch):
    real = evolution.record_result

    def dying_record(store, run_id, key, result):
        if result.part == "test":
            raise KeyboardInterrupt  # killed while storing the test evaluation
        return real(store, run_id, key, result)

    monkeypatch.setattr(evolution, "record_result", dying_record)
    with RunStore(tmp_path / "m.duckdb") as store:
        with pytest.raises(KeyboardInterrupt):
            evolve(store, EvolveSettings(**SMALL, workers=0))
        run_id = store.list_runs()[0]["run_id"]
        assert store.run(run_id)["status"] == "interrupted"
        assert not store.query("SELECT * FROM evaluations WHERE part = 'test'")
    monkeypatch.setattr(evolution, "record_result", real)
    with RunStore(tmp_path / "m.duckdb") as store:
        outcome = evolve(store, resume=run_id)
        assert outcome.status == store.run(run_id)["status"] == reference[1].status
        assert tables(store, run_id) == reference[0]


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    db = tmp_path / "m.duckdb"
    with RunStore(db) as store:
        outcome = evolve(store, EvolveSettings(**{**SMALL, "max_rounds": 1}, workers=0))
        before = tables(store, outcome.run_id)
        with pytest.raises(RunFinished, match="already finished"):
            evolve(store, resume=outcome.run_id)
    result = CliRunner().invoke(app, ["run", "--resume", outcome.run_id, "--db", str(db)])
    assert result.exit_code == 0 and "nothing was changed" in result.output
    with RunStore(db, read_only=True) as store:
        assert tables(store, outcome.run_id) == before


def test_the_run_id_is_printed_first_and_rounds_are_counted_right(tmp_path):
    result = CliRunner().invoke(app, ["run", "--workers", "0", "--max-rounds", "2",
                                      "--candidates", "2", "--no-plots", "--db",
                                      str(tmp_path / "m.duckdb")])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert re.match(r"run evolve-\S+: started", first)
    assert "after 2 rounds" in result.output
