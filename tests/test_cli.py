"""The CLI end to end: data verify, eval, runs, compare, export round trip, bad inputs."""
from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from evolve.cli import app
from evolve.console import console, err_console

runner = CliRunner()
# Wide enough that tables are not truncated in the captured output.
console.width = err_console.width = 240


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "m.duckdb"


def _run_id(output: str) -> str:
    return re.search(r"run (eval-[\w-]+)", output).group(1)


def test_data_verify_prints_locomo_counts(locomo_path):
    result = invoke("data", "verify", locomo_path)
    assert result.exit_code == 0, result.output
    assert "locomo (locomo10)" in result.output and "matches the known official" in result.output
    for count in ("5882", "1986", "272", "2820", "1070"):
        assert count in result.output


def test_data_verify_prints_longmemeval_counts(longmemeval_path):
    result = invoke("data", "verify", longmemeval_path)
    assert result.exit_code == 0, result.output
    assert "longmemeval (oracle)" in result.output and "500" in result.output


def test_data_verify_rejects_an_unknown_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    result = invoke("data", "verify", path)
    assert result.exit_code == 2 and "not a file of any known benchmark" in result.output
    assert "Traceback" not in result.output


def test_data_fetch_without_network_says_so(tmp_path, monkeypatch):
    import benchmarks.data as data

    monkeypatch.setitem(data.KNOWN_FILES, "locomo", data.KNOWN_FILES["locomo"].__class__(
        "locomo", "locomo10", "locomo10.json", "http://127.0.0.1:9/locomo10.json",
        data.KNOWN_FILES["locomo"].sha256, {}))
    result = invoke("data", "fetch", "locomo", "--dest", tmp_path / "l.json")
    assert result.exit_code == 2 and "could not be downloaded" in result.output
    assert not (tmp_path / "l.json").exists()


def test_eval_compare_export_round_trip(db, tmp_path):
    weak = invoke("eval", "--preset", "weak", "--workers", "0", "--db", db)
    assert weak.exit_code == 0, weak.output
    assert "recall in context" in weak.output
    strong = invoke("eval", "--preset", "strong", "--workers", "0", "--db", db)
    assert strong.exit_code == 0, strong.output
    a, b = _run_id(weak.output), _run_id(strong.output)
    compared = invoke("compare", a, b, "--db", db)
    assert compared.exit_code == 0, compared.output
    assert "CI" in compared.output and "all" in compared.output
    out = tmp_path / "tuned.yaml"
    exported = invoke("export", b, "-o", out, "--db", db)
    assert exported.exit_code == 0, exported.output
    provenance = yaml.safe_load(out.read_text())["provenance"]
    assert provenance["run_id"] == b
    again = invoke("eval", "--config", out, "--workers", "0", "--db", db)
    assert again.exit_code == 0, again.output
    assert re.search(r"(\d+) of \1 outcomes reused", again.output)
    listed = invoke("runs", "--db", db)
    assert a in listed.output and b in listed.output


def test_eval_rejects_a_config_outside_the_space(tmp_path, db):
    bad = tmp_path / "bad.yaml"
    bad.write_text("top_k: 500\nfusion: magic\nshiny: true\n")
    result = invoke("eval", "--config", bad, "--workers", "0", "--db", db)
    assert result.exit_code == 2
    for part in ("bad.yaml", "'top_k' must be between 1 and 50", "'fusion' must be one of",
                 "unknown field 'shiny'"):
        assert part in result.output
    assert not db.exists()


def test_eval_with_llm_answerer_and_no_model_is_refused(tmp_path, db):
    config = tmp_path / "llm.yaml"
    config.write_text("answerer: llm\n")
    result = invoke("eval", "--config", config, "--workers", "0", "--db", db)
    assert result.exit_code == 2 and "no answering model" in result.output


def test_eval_on_a_missing_benchmark_file_names_it(tmp_path, db):
    result = invoke("eval", "-b", "locomo", "--data", tmp_path / "nope.json", "--db", db)
    assert result.exit_code == 2 and "nope.json: no such file" in result.output


def test_a_store_of_another_schema_version_is_refused(db):
    import duckdb

    invoke("eval", "--workers", "0", "--db", db)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    result = invoke("runs", "--db", db)
    assert result.exit_code == 2 and "99" in result.output


def test_space_lists_every_dimension():
    from search_space.dimensions import DIMENSIONS

    result = invoke("space")
    assert all(d.name in result.output for d in DIMENSIONS)


def test_run_then_report_writes_the_trajectory_and_plots(db):
    result = invoke("run", "--workers", "0", "--max-rounds", "2", "--candidates", "2",
                    "--no-plots", "--db", db)
    assert result.exit_code == 0, result.output
    run_id = re.search(r"run (evolve-[\w-]+)", result.output).group(1)
    assert "start" in result.output and "evolved" in result.output
    report = invoke("report", run_id, "--db", db)
    assert report.exit_code == 0, report.output
    assert "candidates" in report.output and "rounds" in report.output
    for name in ("trajectory.png", "categories.png"):
        assert (db.parent / run_id / name).stat().st_size > 1000


def test_a_run_on_a_store_held_elsewhere_is_refused_after_the_lock_timeout(db, monkeypatch):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                               f"c = duckdb.connect({str(db)!r}); print('ok', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        monkeypatch.setenv("MEMEVOLVE_LOCK_TIMEOUT_S", "1")
        result = invoke("run", "--workers", "0", "--max-rounds", "1", "--db", db)
        assert result.exit_code == 2 and "another" in result.output and "--db" in result.output
    finally:
        holder.kill()


def test_an_empty_config_file_is_refused(tmp_path, db):
    config = tmp_path / "empty.yaml"
    config.write_text("# nothing here\n")
    result = invoke("eval", "--config", config, "--workers", "0", "--db", db)
    assert result.exit_code == 2 and "empty.yaml: the config file is empty" in result.output
