"""--benchmark-option KEY=VALUE: parsed in one place, checked by each adapter, on every command."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchmarks import BenchmarkError, load_benchmark, parse_options
from evolve.cli import app
from evolve.console import console, err_console

runner = CliRunner()
console.width = err_console.width = 240


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_parse_keeps_text_values_and_the_last_equals_sign_in_the_value():
    assert parse_options(["questions=5", " shape = longmemeval", "x=a=b"]) == {
        "questions": "5", "shape": "longmemeval", "x": "a=b"}
    assert parse_options(None) == {}


@pytest.mark.parametrize("items, says", [(["questions"], "is not KEY=VALUE"),
                                         (["=3"], "is not KEY=VALUE"),
                                         (["seed=1", "seed=2"], "given twice")])
def test_malformed_options_name_the_flag_and_the_fix(items, says):
    with pytest.raises(BenchmarkError) as error:
        parse_options(items)
    assert "--benchmark-option" in str(error.value) and says in str(error.value)
    assert error.value.fix


def test_an_unknown_key_lists_the_adapters_options():
    with pytest.raises(BenchmarkError) as error:
        load_benchmark("synthetic", colour="red")
    assert error.value.field == "colour"
    assert "shape" in error.value.fix and "questions" in error.value.fix


def test_a_file_benchmark_takes_none(locomo_path):
    with pytest.raises(BenchmarkError) as error:
        load_benchmark("locomo", locomo_path, questions="3")
    assert "takes no --benchmark-option" in str(error.value)


def test_data_stats_and_eval_take_the_option(tmp_path):
    result = invoke("data", "stats", "--benchmark", "synthetic",
                    "--benchmark-option", "shape=longmemeval",
                    "--benchmark-option", "questions=7", "--benchmark-option", "sessions=3")
    assert result.exit_code == 0, result.output
    assert "│ conversations" in result.output and " 7 " in result.output
    result = invoke("eval", "-b", "synthetic", "--benchmark-option", "shape=longmemeval",
                    "--benchmark-option", "questions=6", "--benchmark-option", "sessions=3",
                    "--preset", "weak", "--workers", "0", "--db", tmp_path / "m.duckdb")
    assert result.exit_code == 0, result.output
    assert "6 questions" in result.output


def test_a_bad_value_on_the_command_line_is_one_paragraph(tmp_path):
    result = invoke("eval", "-b", "synthetic", "--benchmark-option", "sessions=lots",
                    "--workers", "0", "--db", tmp_path / "m.duckdb")
    assert result.exit_code == 2 and "sessions='lots' is not an integer" in result.output
    assert "Traceback" not in result.output
    result = invoke("run", "-b", "synthetic", "--benchmark-option", "speakers=3",
                    "--workers", "0", "--db", tmp_path / "r.duckdb")
    assert result.exit_code == 2 and "speakers" in result.output and "shape" in result.output
