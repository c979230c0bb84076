"""Bring your own memory system: the example pipeline (examples/byo_pipeline) evolved by the
unchanged loop on the synthetic benchmark, with the real run store, CLI, Ray and diagnosers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.errors import MemevolveError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SYSTEM = "byo_pipeline:TfidfPipeline"
#: The canonical name the store records (the module that defines the class).
CANONICAL = "byo_pipeline.pipeline:TfidfPipeline"
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _examples_importable():
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def _cli(*args):
    from evolve.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def byo_run(tmp_path_factory):
    """`memevolve run --system` in process (no Ray): the run id and its store path."""
    db = tmp_path_factory.mktemp("byo") / "byo.duckdb"
    result = _cli("run", "--system", SYSTEM, "--workers", "0", "--max-rounds", "6", "--db", db,
                  "--no-plots")
    assert result.exit_code == 0, result.output
    from evolve.store import RunStore

    with RunStore(db, read_only=True) as store:
        (run,) = store.query("SELECT run_id FROM runs WHERE kind = 'evolve'")
    return run["run_id"], db


def _query(db, sql, params=()):
    from evolve.store import RunStore

    with RunStore(db, read_only=True) as store:
        return store.query(sql, list(params))


def test_the_loop_improves_the_pipeline_on_dev_and_tests_it_once(byo_run):
    run_id, db = byo_run
    rounds = _query(db, "SELECT round, decision, incumbent_score FROM rounds WHERE run_id = ? "
                        "ORDER BY round", [run_id])
    assert any(r["decision"] == "accept" for r in rounds)
    assert rounds[-1]["incumbent_score"] > rounds[0]["incumbent_score"]
    tests = _query(db, "SELECT config_hash FROM evaluations WHERE run_id = ? AND part = 'test'",
                   [run_id])
    start, best = rounds[0], _query(db, "SELECT incumbent_hash FROM rounds WHERE run_id = ? "
                                        "ORDER BY round DESC LIMIT 1", [run_id])[0]
    first = _query(db, "SELECT incumbent_hash FROM rounds WHERE run_id = ? AND round = 0",
                   [run_id])[0]
    # The start and the evolved config, each once.
    assert sorted(r["config_hash"] for r in tests) == sorted(
        {first["incumbent_hash"], best["incumbent_hash"]})
    assert start["incumbent_score"] is not None


def test_every_stored_config_is_of_the_pipeline_and_edits_only_its_dimensions(byo_run):
    from byo_pipeline import TfidfPipeline

    run_id, db = byo_run
    configs = _query(db, "SELECT canonical_json FROM configs")
    assert configs and all(json.loads(c["canonical_json"])["system"] == CANONICAL
                           for c in configs)
    own = {d.name for d in TfidfPipeline.dimensions}
    edits = _query(db, "SELECT proposer, edit_json FROM candidates WHERE run_id = ?", [run_id])
    assert {e["proposer"] for e in edits} >= {"rules"}
    assert {e["field"] for row in edits for e in json.loads(row["edit_json"])} <= own
    settings = json.loads(_query(db, "SELECT settings_json FROM runs WHERE run_id = ?",
                                 [run_id])[0]["settings_json"])
    assert settings["system"] == CANONICAL
    listed = _cli("runs", "--db", db)
    assert listed.exit_code == 0 and CANONICAL in listed.output


def test_report_and_export_work_and_the_export_evaluates_back(byo_run, tmp_path):
    run_id, db = byo_run
    report = _cli("report", run_id, "--db", db, "--out", tmp_path / "plots")
    assert report.exit_code == 0, report.output
    assert "converged" in report.output or "budget_spent" in report.output
    out = tmp_path / "tuned.yaml"
    exported = _cli("export", run_id, "--db", db, "-o", out)
    assert exported.exit_code == 0, exported.output
    body = yaml.safe_load(out.read_text())
    assert body["system"] == CANONICAL and "chunking" in body and "bm25_k1" not in body
    score = _query(db, "SELECT e.score FROM evaluations e WHERE run_id = ? AND part = 'test' "
                       "AND config_hash = ?", [run_id, body["provenance"]["config_hash"]])
    again = _cli("eval", "--system", SYSTEM, "--config", out, "--part", "test", "--split",
                 "random", "--workers", "0", "--db", db)
    assert again.exit_code == 0, again.output
    assert f"recall_in_context {score[0]['score']:.4f}" in again.output
    assert "outcomes reused" in again.output


def test_runs_of_two_systems_never_mix(byo_run, tmp_path):
    run_id, db = byo_run
    resumed = _cli("run", "--resume", run_id, "--system", "builtin", "--db", db)
    assert resumed.exit_code == 2
    assert f"tuned {CANONICAL}" in resumed.output and "never mixes" in resumed.output
    built_in = _cli("eval", "--workers", "0", "--split", "random", "--db", db)
    assert built_in.exit_code == 0, built_in.output
    (eval_run,) = _query(db, "SELECT run_id FROM runs WHERE kind = 'eval' AND settings_json "
                             "NOT LIKE '%TfidfPipeline%'")
    compared = _cli("compare", run_id, eval_run["run_id"], "--db", db)
    assert compared.exit_code == 2 and "compare pairs configs of one system" in compared.output
    builtin_file = _cli("export", eval_run["run_id"], "--db", db, "-o", tmp_path / "b.yaml")
    assert builtin_file.exit_code == 0
    wrong = _cli("eval", "--system", SYSTEM, "--config", tmp_path / "b.yaml", "--workers", "0",
                 "--db", db)
    assert wrong.exit_code == 2 and "unknown field" in wrong.output


def test_the_llm_diagnoser_prompt_documents_the_pipeline_space(byo_run):
    from byo_pipeline import TfidfPipeline
    from evolve.diagnosers.base import DiagnosisContext
    from evolve.diagnosers.llm import ProposalReply, diagnosis_messages, validated_proposals
    from evolve.store import RunStore
    from search_space.dimensions import space_documentation

    run_id, db = byo_run
    with RunStore(db, read_only=True) as store:
        last = store.query("SELECT incumbent_hash FROM rounds WHERE run_id = ? ORDER BY round "
                           "DESC LIMIT 1", [run_id])[0]["incumbent_hash"]
        dev = store.query("SELECT eq.question_id FROM evaluation_questions eq JOIN evaluations "
                          "e USING (evaluation_id) WHERE e.run_id = ? AND e.part = 'dev' AND "
                          "e.config_hash = ?", [run_id, last])
        context = DiagnosisContext(
            store=store, run_id=run_id, round=9, incumbent=store.config(last),
            benchmark_key=store.run(run_id)["benchmark_key"],
            question_ids=[r["question_id"] for r in dev], objective="recall_in_context",
            max_context_tokens=1000, history=[], seed=0, n_proposals=3)
        system, user = (m["content"] for m in diagnosis_messages(context))
        proposals = validated_proposals(context, [
            ProposalReply.model_validate({"edits": [{"field": "bm25_k1", "value": 1.2}]}),
            ProposalReply.model_validate({"edits": [{"field": "idf_power", "value": 1.0}]})])
    assert space_documentation(TfidfPipeline.dimensions) in system
    for dim in TfidfPipeline.dimensions:
        assert dim.doc_line() in system
    assert "bm25_k1" not in system and "retrievers" not in system
    assert "context_budget (global and per category) must stay <= 1000" in system
    assert "Failure buckets" in user
    assert [e.field for p in proposals for e in p.edits] == ["idf_power"]
    assert "unknown field 'bm25_k1'" in context.invalid[0]["reason"]


def test_rules_that_name_built_in_dimensions_do_not_fire_for_the_pipeline():
    from byo_pipeline import TfidfPipeline
    from evolve.diagnosers.rules import RULES, bucket_edits
    from evolve.systems import space_of
    from search_space.config import load_preset

    config = space_of(TfidfPipeline)()
    widened = bucket_edits(config, "ranked_below_cut", None)
    assert [(e.field, e.value) for e in widened[0]] == [("top_k", 2), ("context_budget", 320)]
    assert {e.field for edits in widened for e in edits} <= {d.name for d in
                                                             TfidfPipeline.dimensions}
    assert bucket_edits(config, "temporal_wrong_date", "2") == []
    never = bucket_edits(config, "never_retrieved", None)
    assert ("chunking", "turn") in [(e.field, e.value) for edits in never for e in edits]
    # The built-in space keeps its own rules, unchanged.
    weak = load_preset("weak")
    assert bucket_edits(weak, "ranked_below_cut", "1") == RULES["ranked_below_cut"](weak, "1")


def test_the_ray_worker_imports_the_pipeline_from_where_the_driver_did():
    from byo_pipeline import TfidfPipeline
    from evolve.systems import import_root, system_name

    assert import_root(TfidfPipeline) == str(EXAMPLES)
    assert system_name(TfidfPipeline) == CANONICAL


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_readme_command_evolves_the_pipeline_on_ray_workers(tmp_path):
    db = tmp_path / "ray.duckdb"
    env = {**os.environ, "PYTHONPATH": "examples"}
    memevolve = Path(sys.executable).with_name("memevolve")
    done = subprocess.run([str(memevolve), "run", "--system", SYSTEM, "--workers", "2",
                           "--max-rounds", "3", "--db", str(db), "--no-plots"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test: start" in done.stdout
    rows = _query(db, "SELECT round, incumbent_score FROM rounds ORDER BY round")
    assert rows[-1]["incumbent_score"] > rows[0]["incumbent_score"]
    assert len(_query(db, "SELECT * FROM evaluations WHERE part = 'test'")) == 2


def _pipeline(dimensions, retrieve):
    return type("Pipeline", (), {"dimensions": dimensions, "retrieve": retrieve,
                                 "__init__": lambda self, conversations, resources: None})


def test_a_class_that_is_no_pipeline_gets_a_clear_error():
    from evolve import Dimension
    from evolve.systems import check_system, resolve_system

    bad = _pipeline((Dimension("k", "int", 0, "k", low=1, high=3),
                     Dimension("k", "int", 1, "k", low=1, high=3),
                     Dimension("system", "bool", False, "clash"),
                     Dimension("depth", "int", 1, "d", low=1, high=3, scope="per_category")),
                    lambda *a: [])
    with pytest.raises(MemevolveError) as info:
        check_system(bad, "--system x:Bad")
    message = str(info.value)
    assert "dimension 'k' is declared twice" in message
    assert "'system' takes a reserved config field name" in message
    assert "dimension 'k': its default must be between 1 and 3" in message
    assert "per-category dimensions (depth) need an add_artefacts" in message
    assert "Fix: implement evolve.MemoryPipeline" in message
    with pytest.raises(MemevolveError, match="not of the form package.module:Class"):
        resolve_system("byo_pipeline")


def test_a_pipeline_that_answers_for_the_wrong_questions_is_refused():
    from benchmarks import load_benchmark
    from evolve import Dimension
    from evolve.evaluation import Evaluator

    broken = _pipeline((Dimension("k", "int", 1, "k", low=1, high=3),), lambda self, c, qs: [])
    bench = load_benchmark("synthetic", None, conversations=2)
    evaluator = Evaluator(bench, workers=0, system=broken)
    with pytest.raises(MemevolveError, match="one Retrieval per question|retrievals, not one"):
        evaluator.run([(evaluator.space(), [bench.questions[0].id])])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_workers_import_the_pipeline_from_the_driver_path_and_match_in_process():
    """No PYTHONPATH: the driver imported the example through sys.path alone, which Ray
    workers do not share; they import it from the folder the driver named."""
    import ray

    from benchmarks import load_benchmark
    from byo_pipeline import TfidfPipeline
    from evolve.evaluation import Evaluator

    assert str(EXAMPLES) not in os.environ.get("PYTHONPATH", "")
    bench = load_benchmark("synthetic", None, conversations=4)
    ids = [q.id for q in bench.questions]
    config = Evaluator(bench, workers=0, system=TfidfPipeline).space(
        chunking="session", top_k=3, context_budget=600)
    with Evaluator(bench, workers=0, system=TfidfPipeline) as local:
        ((expected, _),) = local.run([(config, ids)])
    try:
        with Evaluator(bench, workers=2, system=TfidfPipeline) as remote:
            ((rows, _),) = remote.run([(config, ids)])
            assert len({p["pid"] for p in remote.placement()}) == 2
    finally:
        ray.shutdown()
    columns = ("question_id", "retrieved_ids", "context_ids", "recall_in_context",
               "context_tokens")
    assert [{c: r[c] for c in columns} for r in rows] == \
        [{c: r[c] for c in columns} for r in expected]


def test_a_new_pipeline_version_recomputes_the_stored_outcomes(tmp_path):
    from benchmarks import load_benchmark
    from byo_pipeline import TfidfPipeline
    from evolve.evaluation import Evaluator, evaluate_configs
    from evolve.store import RunStore

    bench = load_benchmark("synthetic", None, conversations=2)
    ids = [q.id for q in bench.questions]
    newer = type("TfidfPipeline", (TfidfPipeline,), {"version": "2",
                                                      "__module__": TfidfPipeline.__module__})
    newer.__qualname__ = TfidfPipeline.__qualname__
    reused = []
    with RunStore(tmp_path / "v.duckdb") as store:
        from benchmarks.splits import make_split

        for cls in (TfidfPipeline, TfidfPipeline, newer):
            run_id = f"eval-{len(reused)}"
            store.create_run(run_id, "eval", bench, make_split(bench, "all"), {})
            with Evaluator(bench, workers=0, system=cls) as evaluator:
                (result,) = evaluate_configs(evaluator, [evaluator.space()], ids, part="all",
                                             objective="recall_in_context", store=store,
                                             run_id=run_id)
            reused.append(result.n_reused)
    assert reused == [0, len(ids), 0]
