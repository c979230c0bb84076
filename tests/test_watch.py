"""A run can be watched while it runs: `runs`, `report` and `compare` read its committed rounds
from the store that another process is writing."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.console import console, err_console
from evolve.store import RunStore

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _committed(db: Path) -> tuple[str, str, int] | None:
    """(run id, status, committed rounds) of the store's evolution run, once it has one."""
    if not db.exists():
        return None
    with RunStore(db, read_only=True, lock_timeout_s=30) as store:
        rows = store.query("SELECT r.run_id, r.status, count(o.round) AS rounds FROM runs r "
                           "LEFT JOIN rounds o USING (run_id) WHERE r.kind = 'evolve' "
                           "GROUP BY ALL")
    return (rows[0]["run_id"], rows[0]["status"], rows[0]["rounds"]) if rows else None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_runs_report_and_compare_read_a_run_while_it_writes(tmp_path, monkeypatch):
    db = tmp_path / "watched.duckdb"
    writer = subprocess.Popen(
        [sys.executable, "-m", "evolve", "run", "--workers", "0", "--db", str(db),
         "--max-rounds", "8", "--explore-after", "8", "--converge-after", "8", "--no-plots"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    monkeypatch.setattr(console, "width", 240)
    monkeypatch.setattr(err_console, "width", 240)
    try:
        seen = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and writer.poll() is None:
            state = _committed(db)
            if state and state[1] == "running" and state[2] >= 2:
                seen = state
                break
            time.sleep(0.2)
        assert seen is not None, "the store never showed a running evolution with rounds"
        run_id = seen[0]
        listed = runner.invoke(app, ["runs", "--db", str(db)])
        assert listed.exit_code == 0, listed.output
        assert run_id in listed.output and "running" in listed.output
        report = runner.invoke(app, ["report", run_id, "--db", str(db), "--out",
                                     str(tmp_path / "plots")])
        assert report.exit_code == 0, report.output
        assert "baseline" in report.output
        compared = runner.invoke(app, ["compare", f"{run_id}:e0001", run_id, "--db", str(db)])
        assert compared.exit_code == 0, compared.output
        assert "delta" in compared.output
        # The reads happened while the run was still writing, not after it ended.
        assert writer.poll() is None, writer.stdout.read()
    finally:
        output, _ = writer.communicate(timeout=240)
    assert writer.returncode == 0, output
    with RunStore(db, read_only=True) as store:
        final = store.run(run_id)
        rounds = store.query("SELECT count(*) AS n FROM rounds WHERE run_id = ?", [run_id])
    assert final["status"] != "running"
    assert rounds[0]["n"] > seen[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_piped_to_a_file_reads_cleanly(tmp_path):
    """No line wrapped at 80 columns, no truncated header, no Ray start-up or core_worker
    lines (they go to the native log unless --verbose)."""
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "MEMEVOLVE_VERBOSE")}
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "evolve", "run", "--workers", "2", "--max-rounds", "1",
             "--db", str(tmp_path / "m.duckdb"), "--no-plots"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=280)
    text = log.read_text()
    assert done.returncode == 0, text
    assert re.search(r"^round 1 \(\w+\): \w+; incumbent dev [\d.]+ \[\d+ candidates, best delta "
                     r"[-+][\d.]+\]$", text, re.M), text
    assert re.search(r"^run evolve-\S+: \w+ after \d+ rounds, \d+ evaluations, .*\)$", text,
                     re.M), text
    assert "recall in context" in text and "…" not in text
    for noise in ("Token authentication", "core_worker", "RAY_AUTH_MODE"):
        assert noise not in text
