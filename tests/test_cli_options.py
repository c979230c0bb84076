"""`memevolve run`'s options come from EvolveSettings: one flag, default, help and range each."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from evolve.cli import app
from evolve.cli_options import cli_fields, flags
from evolve.console import console, err_console
from evolve.settings import EvolveSettings
from evolve.store import RunStore

runner = CliRunner()
console.width = err_console.width = 240


def test_every_settings_field_marked_for_the_cli_is_a_run_option_with_its_help():
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    for name, field in cli_fields(EvolveSettings).items():
        assert flags(name, field)[0] in result.output, name
    assert "(range 1..32)" in result.output  # --candidates, from the model's bounds


def test_out_of_range_values_get_one_clear_error_naming_option_and_range(tmp_path):
    result = runner.invoke(app, ["run", "--candidates", "100", "--confidence", "0.3",
                                 "--db", str(tmp_path / "m.duckdb")])
    assert result.exit_code == 2
    assert "--candidates 100: input should be less than or equal to 32 (allowed: 1..32)" \
        in result.output
    assert "--confidence 0.3" in result.output and "Fix:" in result.output
    assert "Traceback" not in result.output and "ValidationError" not in result.output
    assert not (tmp_path / "m.duckdb").exists()  # refused before anything started


def test_a_run_without_options_stores_the_models_defaults(tmp_path):
    db = tmp_path / "m.duckdb"
    result = runner.invoke(app, ["run", "--workers", "0", "--max-rounds", "1", "--no-plots",
                                 "--db", str(db)])
    assert result.exit_code == 0, result.output
    with RunStore(db, read_only=True) as store:
        stored = json.loads(store.query("SELECT settings_json FROM runs")[0]["settings_json"])
    defaults = EvolveSettings()
    for name in cli_fields(EvolveSettings):
        if name not in ("workers", "max_rounds"):
            assert stored[name] == getattr(defaults, name), name
    assert stored["workers"] == 0 and stored["max_rounds"] == 1
