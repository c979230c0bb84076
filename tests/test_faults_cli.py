"""The CLI against a real OpenAI-compatible server that fails on purpose: a dead or refusing
LLM endpoint costs a few requests and seconds, ends in a clear summary and a non-zero exit,
never a traceback, and leaves a truthful run and its llm_calls rows in the store."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import duckdb
import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.console import console, err_console

runner = CliRunner()
console.width = err_console.width = 240


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def cache_dir(module_cache, monkeypatch):
    # One cache for the module, so the synthetic benchmark is embedded once. LLM replies
    # cannot leak between tests: they are keyed on the endpoint, a new port per test.
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(module_cache))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fault")


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "m.duckdb"


@pytest.fixture()
def llm_config(tmp_path):
    path = tmp_path / "llm.yaml"
    path.write_text("unit: turn\nretrievers: bm25\ntop_k: 5\nanswerer: llm\n")
    return path


def invoke(*args):
    started = time.monotonic()
    result = runner.invoke(app, [str(a) for a in args])
    return result, time.monotonic() - started


def llm_eval(server, config, db, *extra):
    return invoke("eval", "--config", config, "--part", "test", "--workers", "0", "--db", db,
                  "--answer-model", "openai/fault", "--api-base", server.api_base, *extra)


def store_rows(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("mode", ["500", "html"])
def test_eval_against_a_dead_endpoint_fails_fast_with_a_summary(fault_server, llm_config, db,
                                                                 mode):
    fault_server.mode = mode
    result, wall = llm_eval(fault_server, llm_config, db, "--llm-retries", "1",
                            "--llm-concurrency", "1")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)
    assert "50 of 50 questions are invalid" in result.output
    assert "circuit open" in result.output and "failed" in result.output
    # Three failed requests (a call of two attempts, then one more), then the circuit is
    # open: 3 requests, not 50 x 4.
    assert fault_server.count() == 3 and wall < 30
    assert store_rows(db, "SELECT status FROM runs") == [("failed",)]
    assert store_rows(db, "SELECT count(*), bool_or(ok) FROM llm_calls") == [(2, False)]


def test_eval_with_a_refused_key_records_the_call_and_fails_the_run(fault_server, llm_config,
                                                                    db):
    fault_server.mode = "401"
    result, _ = llm_eval(fault_server, llm_config, db)
    assert result.exit_code == 1, result.output
    assert "LLM refused" in result.output and "api_key" in result.output
    # Only the calls already in flight (--llm-concurrency, default 4) when the first was
    # refused reach the server; each is recorded.
    assert 1 <= fault_server.count() <= 4
    assert store_rows(db, "SELECT status FROM runs") == [("failed",)]
    calls = store_rows(db, "SELECT ok, error FROM llm_calls")
    assert len(calls) == fault_server.count()
    assert all(ok is False and "401" in error for ok, error in calls)


def test_eval_against_a_hung_endpoint_costs_its_timeout_a_few_times(fault_server, llm_config, db):
    fault_server.mode = "hang"
    result, wall = llm_eval(fault_server, llm_config, db, "--llm-timeout", "0.5",
                            "--llm-retries", "0", "--llm-concurrency", "1")
    assert result.exit_code == 1 and "Timeout" in result.output
    assert fault_server.count() == 3 and wall < 20


def test_eval_that_recovers_mid_way_scores_the_valid_questions(fault_server, llm_config, db):
    fault_server.script = ["500", "500"]
    result, _ = llm_eval(fault_server, llm_config, db, "--llm-retries", "0",
                         "--llm-concurrency", "1")
    assert result.exit_code == 0, result.output
    assert "2 of 50 questions are invalid" in result.output
    assert re.search(r"recall_in_context \d\.\d{4}", result.output)
    assert store_rows(db, "SELECT status FROM runs") == [("done",)]


class Finished:
    def __init__(self, completed: subprocess.CompletedProcess) -> None:
        self.exit_code = completed.returncode
        self.output = completed.stdout + completed.stderr


def llm_run(server, db, *extra):
    """`memevolve run` with the LLM diagnoser, as its own process, as a user runs it. The
    first one of the module embeds the synthetic benchmark cold: on a loaded CI machine that
    alone can take minutes, hence the tests' long timeouts (measured: 20-100 s at load 6)."""
    args = ["run", "--workers", "0", "--candidates", "2", "--max-rounds", "3", "--no-plots",
            "--db", db, "--diagnoser", "llm", "--diagnoser-model", "openai/fault",
            "--api-base", server.api_base, *extra]
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-m", "evolve", *map(str, args)],
                               capture_output=True, text=True, timeout=840,
                               env={**os.environ, "COLUMNS": "240"})
    return Finished(completed), time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_proposal_outside_the_space_is_recorded_as_an_invalid_candidate(fault_server, db):
    fault_server.reply = ('{"proposals": [{"edits": [{"field": "top_k", "value": 999}], '
                          '"rationale": "more"}, {"edits": [{"field": "top_k", "value": 10}], '
                          '"rationale": "a few more"}]}')
    result, _ = llm_run(fault_server, db, "--max-rounds", "1")
    assert result.exit_code == 0, result.output
    rows = store_rows(db, "SELECT config_hash, edit_json, decision, reason FROM candidates "
                          "WHERE decision = 'invalid'")
    assert rows == [(None, '[{"category": null, "field": "top_k", "value": 999}]', "invalid",
                     "'top_k' must be between 1 and 50, got 999")]
    assert store_rows(db, "SELECT count(*) FROM candidates WHERE decision <> 'invalid'") == [(1,)]


#: The rounds whose diagnoser was asked (the last row records only why the run stopped).
DIAGNOSED = "WHERE round IN (SELECT round FROM candidates)"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_dead_diagnoser_endpoint_falls_back_to_rules_once_and_fails_under_strict(
        fault_server, db):
    fault_server.mode = "500"
    result, wall = llm_run(fault_server, db, "--llm-timeout", "5", "--llm-retries", "0",
                           "--strict-llm")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "fell back to rules in every one of its 3 rounds" in result.output
    # The breaker opens after three failed calls: 3 requests for the whole run, not 3 per round.
    assert fault_server.count() == 3
    assert store_rows(db, "SELECT count(*), bool_or(ok) FROM llm_calls") == [(3, False)]
    fallbacks = store_rows(db, "SELECT diagnoser_fallback FROM rounds " + DIAGNOSED)
    assert len(fallbacks) == 3 and all(reason and "unavailable" in reason
                                       for (reason,) in fallbacks), fallbacks
    assert store_rows(db, "SELECT status FROM runs") == [("budget_spent",)]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_hung_diagnoser_endpoint_costs_its_timeout_a_few_times(fault_server, db):
    fault_server.mode = "hang"
    result, wall = llm_run(fault_server, db, "--llm-timeout", "2")
    assert result.exit_code == 0, result.output
    assert "fell back to rules in every one of its 3 rounds" in result.output
    # Three timeouts open the circuit inside the first call's retries; nothing more is sent
    # in this or any later round.
    assert fault_server.count() == 3
    assert store_rows(db, "SELECT status FROM runs") == [("budget_spent",)]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_diagnoser_that_cannot_write_json_is_repaired_once_then_falls_back(fault_server, db):
    fault_server.mode = "nonjson"
    result, _ = llm_run(fault_server, db, "--llm-timeout", "5", "--llm-retries", "0")
    assert result.exit_code == 0, result.output
    assert "invalid JSON after one repair" in result.output
    # Each round: the reply and one repair, both failed calls, neither cached.
    rounds = store_rows(db, "SELECT count(*) FROM rounds " + DIAGNOSED)[0][0]
    assert fault_server.count() == 2 * rounds
    assert store_rows(db, "SELECT count(*), bool_or(ok) FROM llm_calls") == [(2 * rounds, False)]
