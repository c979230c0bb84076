"""The DuckDB run store: schema, locking, cache, atomic writes, compare, bootstrap, export, docs SQL."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.model import Benchmark, Conversation, Question, Session, Turn
from benchmarks.splits import Split
from evolve.store import SCHEMA_VERSION, RunStore, StoreError
from search_space.config import RetrievalConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SQL_EXAMPLES = REPO / "README.md"
BASE = RetrievalConfig()
WIDE = BASE.with_values({"top_k": 10})


def make_benchmark(n_conversations: int = 3) -> Benchmark:
    conversations = tuple(
        Conversation(id=f"c{i}", speakers=("Ann", "Bob"), sessions=(Session(index=1, turns=(
            Turn(id=f"c{i}:D1:1", session_index=1, turn_index=1, speaker="Ann", text="hi"),
            Turn(id=f"c{i}:D1:2", session_index=1, turn_index=2, speaker="Bob", text="hello"),
        )),)) for i in range(1, n_conversations + 1))
    questions = tuple(Question(id=f"q{i}", conversation_id=f"c{(i - 1) // 2 + 1}", text="?",
                               category=str(1 + (i - 1) // 2 % 2), answers=("hello",),
                               evidence=(f"c{(i - 1) // 2 + 1}:D1:2",))
                      for i in range(1, 2 * n_conversations + 1))
    return Benchmark(name="synthetic", variant="tiny", source="written by the test",
                     sha256="ab" * 32, conversations=conversations, questions=questions)


BENCH = make_benchmark()
SPLIT = Split(name="random", seed=7, benchmark_key=BENCH.key, dev=("c1", "c2"), test=("c3",))


def result_row(question_id: str, conversation_id: str, category: str,
               recall: float | None, **extra: object) -> dict[str, object]:
    """One question_results row without its key (config hash, benchmark key)."""
    return {
        "question_id": question_id, "conversation_id": conversation_id, "category": category,
        "adversarial": False, "retrieved_ids": [f"{conversation_id}:D1:1"],
        "context_ids": [f"{conversation_id}:D1:1"], "evidence_ids": [f"{conversation_id}:D1:2"],
        "recall_at_5": recall, "recall_at_10": recall, "recall_at_k": recall,
        "recall_in_context": recall, "session_recall_at_5": recall,
        "evidence_rank": None if not recall else 1, "context_tokens": 12, "answer": "hello",
        "abstained": False, "answer_f1": recall, "judge_correct": None, "latency_ms": 3.5,
        "invalid_reason": None, **extra,
    }


def evaluate(store: RunStore, run_id: str, config: RetrievalConfig,
             rows: list[dict[str, object]], part: str = "dev") -> str:
    recalls = [r["recall_in_context"] for r in rows if r["recall_in_context"] is not None]
    return store.record_evaluation(
        run_id, config, BENCH.key, part, [r["question_id"] for r in rows], rows, n_reused=0,
        objective="recall_in_context", score=sum(recalls) / len(recalls), wall_s=0.1)


def counts(store: RunStore, *tables: str) -> dict[str, int]:
    return {t: store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables}


@pytest.fixture
def store(tmp_path: Path):
    with RunStore(tmp_path / "runs" / "memevolve.duckdb") as opened:
        yield opened


@pytest.fixture
def weak_vs_strong(store: RunStore) -> RunStore:
    """Two eval runs on 6 questions with hand-checkable recalls; q5 only in A, q6 unscored."""
    a_rows = [result_row("q1", "c1", "1", 0.0), result_row("q2", "c1", "1", 1.0),
              result_row("q3", "c2", "2", 0.5), result_row("q4", "c2", "2", 0.0),
              result_row("q5", "c3", "1", 1.0), result_row("q6", "c3", "1", None)]
    b_rows = [result_row("q1", "c1", "1", 1.0), result_row("q2", "c1", "1", 1.0),
              result_row("q3", "c2", "2", 0.0), result_row("q4", "c2", "2", 0.25),
              result_row("q6", "c3", "1", None)]
    for run_id, config, rows in (("eval-weak", BASE, a_rows), ("eval-strong", WIDE, b_rows)):
        store.create_run(run_id, "eval", BENCH, SPLIT, {"objective": "recall_in_context"})
        evaluate(store, run_id, config, rows, part="all")
        store.finish_run(run_id, "done")
    return store


# Opening --------------------------------------------------------------------------------
def test_new_store_has_every_table_and_the_schema_version(store: RunStore) -> None:
    tables = {r["table_name"] for r in store.query("SELECT table_name FROM duckdb_tables()")}
    assert {"meta", "benchmarks", "configs", "runs", "evaluations", "evaluation_questions",
            "question_results", "llm_calls", "rounds", "candidates"} <= tables
    assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [
        {"value": SCHEMA_VERSION}]


def test_a_store_of_the_previous_version_is_migrated_with_its_rows_kept(tmp_path: Path) -> None:
    import duckdb

    from evolve.store import MIGRATIONS

    [previous] = [old for old, (new, _) in MIGRATIONS.items() if new == SCHEMA_VERSION]
    path = tmp_path / "previous.duckdb"
    schema = (Path(__file__).resolve().parents[1] / "evolve" / "schema.sql").read_text()
    # The previous schema: this one without the columns its migration adds (bench_summary's
    # start config test score and excess gap).
    v2 = re.sub(r"\n    (start_test|excess_gap) [^\n]*(\n +--[^\n]*)?", "", schema)
    assert v2 != schema
    with duckdb.connect(str(path)) as con:
        con.execute(v2)
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [previous])
        con.execute("INSERT INTO runs (run_id, kind, benchmark_key, split_name, split_seed, "
                    "split_json, settings_json, status) VALUES ('old', 'eval', 'b', 'all', 0, "
                    "'{}', '{}', 'done')")
    with RunStore(path, read_only=True) as store:
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [
            {"value": SCHEMA_VERSION}]
        [run] = store.list_runs()
        assert (run["run_id"], run["state"], run["owner_pid"]) == ("old", "done", None)


def test_reopening_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    with RunStore(path) as store:
        store.register_config(WIDE)
    with RunStore(path, read_only=True) as store:
        assert store.config(WIDE.config_hash) == WIDE


def test_other_schema_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with RunStore(path) as store:
        store.query("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(StoreError) as err:
        RunStore(path)
    message = str(err.value)
    assert str(path) in message and "version 0" in message and f"version {SCHEMA_VERSION}" in message
    assert "--db" in message


def test_file_that_is_not_duckdb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database " * 100)
    with pytest.raises(StoreError, match="not a DuckDB database file"):
        RunStore(path)


def test_duckdb_file_of_another_application_is_refused(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE sales (id INTEGER)")
    with pytest.raises(StoreError, match="not a memevolve run store"):
        RunStore(path)


def test_read_only_open_of_a_missing_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run store there yet"):
        RunStore(tmp_path / "missing.duckdb", read_only=True)


def test_a_connection_held_elsewhere_gets_a_clear_lock_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    RunStore(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); sys.stdin.read()", str(path)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError) as err:
            RunStore(path, lock_timeout_s=0.5)
        message = str(err.value)
        assert str(path) in message and "another process" in message and "0.5s" in message
        assert "--db" in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_an_open_store_leaves_the_file_to_other_processes_between_transactions(
        tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    writer = RunStore(path)
    writer.create_run("r1", "eval", BENCH, SPLIT, {})
    reader = subprocess.run(
        [sys.executable, "-c", "import sys; from evolve.store import RunStore; "
         "s = RunStore(sys.argv[1], read_only=True, lock_timeout_s=5); "
         "print([r['run_id'] for r in s.list_runs()])", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "['r1']"
    writer.finish_run("r1", "done")
    assert writer.run("r1")["status"] == "done"
    writer.close()


def test_a_writer_waits_for_a_reader_to_finish(tmp_path: Path) -> None:
    path = tmp_path / "queued.duckdb"
    RunStore(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; "
         "con = duckdb.connect(sys.argv[1], read_only=True); print('ready', flush=True); "
         "time.sleep(1.0); con.close(); time.sleep(30)", str(path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        store = RunStore(path, lock_timeout_s=20)
        store.create_run("r1", "eval", BENCH, SPLIT, {})
        assert [r["run_id"] for r in store.list_runs()] == ["r1"]
    finally:
        holder.kill()
        holder.wait(timeout=30)


# Writing ------------------------------------------------------------------------------
def test_cache_serves_stored_rows_of_the_same_config_only(store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 1.0),
                                 result_row("q2", "c1", "1", 0.0)])
    hit = store.cached_results(BASE.config_hash, BENCH.key, ["q1", "q2", "q3"])
    assert sorted(hit) == ["q1", "q2"]
    assert hit["q1"]["recall_in_context"] == 1.0
    assert hit["q1"]["retrieved_ids"] == ["c1:D1:1"]
    assert hit["q1"]["llm_prompt_tokens"] == 0  # the schema default
    assert store.cached_results(WIDE.config_hash, BENCH.key, ["q1", "q2"]) == {}


def test_cache_serves_only_the_same_context_and_rows_holding_the_objective(
        store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 1.0, context_key="k1")])
    assert sorted(store.cached_results(BASE.config_hash, BENCH.key, ["q1"], context_key="k1"))
    assert store.cached_results(BASE.config_hash, BENCH.key, ["q1"], context_key="k2") == {}
    # Computed without a judge: no verdict, so a judge objective recomputes it.
    assert store.cached_results(BASE.config_hash, BENCH.key, ["q1"], context_key="k1",
                                require="judge_correct") == {}
    assert store.cached_results(BASE.config_hash, BENCH.key, ["q1"], context_key="k1",
                                require="recall_in_context")


def test_invalid_row_is_not_served_and_its_recomputation_replaces_it(store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 0.0, invalid_reason="timeout")])
    assert store.cached_results(BASE.config_hash, BENCH.key, ["q1"]) == {}
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 1.0)])
    assert store.cached_results(BASE.config_hash, BENCH.key, ["q1"])["q1"]["recall_at_5"] == 1.0


def test_evaluation_reusing_cached_rows_stores_only_the_new_ones(store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 1.0)])
    evaluation_id = store.record_evaluation(
        "r1", BASE, BENCH.key, "dev", ["q1", "q2"], [result_row("q2", "c1", "1", 0.0)],
        n_reused=1, objective="recall_in_context", score=0.5, wall_s=0.2)
    assert [r["question_id"] for r in store.evaluation_results(evaluation_id)] == ["q1", "q2"]
    assert store.evaluation(evaluation_id)["n_reused"] == 1


@pytest.mark.parametrize("spoil", ["null_in_not_null_column", "not_null_column_missing"])
def test_record_evaluation_writes_nothing_when_a_row_is_invalid(store: RunStore,
                                                                spoil: str) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    bad = result_row("q2", "c1", "1", 0.0)
    if spoil == "null_in_not_null_column":
        bad["answer"] = None
    else:
        del bad["answer"]
    with pytest.raises(StoreError, match="question_results"):
        store.record_evaluation("r1", BASE, BENCH.key, "dev", ["q1", "q2"],
                                [result_row("q1", "c1", "1", 1.0), bad], n_reused=0,
                                objective="recall_in_context", score=0.5, wall_s=0.1)
    assert counts(store, "configs", "question_results", "evaluations",
                  "evaluation_questions") == dict.fromkeys(
        ["configs", "question_results", "evaluations", "evaluation_questions"], 0)


def test_record_evaluation_refuses_questions_without_a_result(store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    with pytest.raises(StoreError, match="1 of its 2 questions have no stored result"):
        store.record_evaluation("r1", BASE, BENCH.key, "dev", ["q1", "q2"],
                                [result_row("q1", "c1", "1", 1.0)], n_reused=0,
                                objective="recall_in_context", score=1.0, wall_s=0.1)
    assert counts(store, "question_results", "evaluations") == {"question_results": 0,
                                                                "evaluations": 0}


def test_a_round_commits_whole_or_not_at_all(store: RunStore) -> None:
    round_row = {"run_id": "e1", "round": 1, "incumbent_hash": BASE.config_hash,
                 "incumbent_score": 0.5, "mode": "diagnose", "decision": "keep",
                 "reason": "no significant gain", "rng_state": "{}", "evaluations_used": 2,
                 "tokens_used": 0, "cost_used": 0.0, "wall_s": 1.0}
    candidate_row = {"run_id": "e1", "round": 1, "candidate": 0,
                     "parent_hash": BASE.config_hash, "config_hash": WIDE.config_hash,
                     "proposer": "rules", "edit_json": '{"top_k": 10}', "rationale": "cut",
                     "dev_score": 0.52, "decision": "rejected", "reason": "CI spans 0"}
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.insert_rows("rounds", [round_row])
            store.insert_rows("candidates", [candidate_row])
            raise RuntimeError("killed mid-round")
    assert counts(store, "rounds", "candidates") == {"rounds": 0, "candidates": 0}
    with store.transaction():
        store.insert_rows("rounds", [round_row])
        store.insert_rows("candidates", [candidate_row])
    assert counts(store, "rounds", "candidates") == {"rounds": 1, "candidates": 1}


def test_unknown_column_is_named(store: RunStore) -> None:
    with pytest.raises(StoreError, match="no column colour"):
        store.insert_rows("configs", [{"config_hash": "x", "canonical_json": "{}",
                                       "colour": "red"}])


def test_duplicate_run_id_is_refused(store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    with pytest.raises(StoreError, match="already exists"):
        store.create_run("r1", "eval", BENCH, SPLIT, {})


def test_llm_calls_are_recorded_under_their_run(store: RunStore) -> None:
    store.record_llm_calls("r1", [{"call_key": "k1", "model": "openai/smol", "purpose": "answer",
                                   "prompt_tokens": 10, "completion_tokens": 2,
                                   "cost_usd": 0.001, "latency_s": 0.3, "cached": False,
                                   "ok": True, "attempts": 1}])
    assert store.query("SELECT run_id, error FROM llm_calls") == [{"run_id": "r1",
                                                                   "error": None}]


def test_list_runs_counts_evaluations_and_best_dev_score(store: RunStore) -> None:
    store.create_run("r1", "evolve", BENCH, SPLIT, {"seed": 0})
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 0.5)])
    evaluate(store, "r1", WIDE, [result_row("q1", "c1", "1", 1.0)])
    evaluate(store, "r1", WIDE, [result_row("q5", "c3", "1", 0.0)], part="test")
    store.finish_run("r1", "converged")
    [run] = store.list_runs()
    assert (run["run_id"], run["kind"], run["split_name"], run["status"]) == (
        "r1", "evolve", "random", "converged")
    assert run["n_evaluations"] == 3 and run["best_dev_score"] == 1.0
    assert run["finished_at"] is not None


def test_list_runs_shows_the_kept_configs_dev_score_not_a_rejected_candidates(
        store: RunStore) -> None:
    store.create_run("r1", "evolve", BENCH, SPLIT, {"seed": 0})
    evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 0.5)])
    evaluate(store, "r1", WIDE, [result_row("q1", "c1", "1", 1.0)])  # the guard rejected it
    store.insert_rows("rounds", [
        {"run_id": "r1", "round": number, "incumbent_hash": BASE.config_hash,
         "incumbent_score": 0.5, "mode": mode, "decision": decision, "reason": "",
         "rng_state": "{}", "evaluations_used": 2.0, "tokens_used": 0, "cost_used": 0.0,
         "wall_s": 1.0} for number, mode, decision in ((0, "baseline", "baseline"),
                                                        (1, "diagnose", "keep"))])
    [run] = store.list_runs()
    assert run["best_dev_score"] == 0.5


def test_evolve_run_resolves_to_its_last_accepted_candidate(store: RunStore) -> None:
    late = BASE.with_values({"top_k": 20})
    store.create_run("evo", "evolve", BENCH, SPLIT, {})
    evaluate(store, "evo", BASE, [result_row("q1", "c1", "1", 0.2)])
    accepted = evaluate(store, "evo", WIDE, [result_row("q1", "c1", "1", 0.6)])
    evaluate(store, "evo", late, [result_row("q1", "c1", "1", 0.7)])
    evaluate(store, "evo", WIDE, [result_row("q5", "c3", "1", 0.4)], part="test")
    common = {"run_id": "evo", "parent_hash": BASE.config_hash, "proposer": "rules",
              "edit_json": "{}", "rationale": "", "reason": ""}
    store.insert_rows("candidates", [
        {**common, "round": 1, "candidate": 0, "config_hash": WIDE.config_hash,
         "decision": "accepted"},
        {**common, "round": 2, "candidate": 0, "config_hash": late.config_hash,
         "decision": "rejected"}])
    assert store.resolve("evo") == (WIDE.config_hash, accepted)


def test_resolve_accepts_evaluation_ids_and_unique_hash_prefixes(store: RunStore) -> None:
    store.create_run("r1", "eval", BENCH, SPLIT, {})
    evaluation_id = evaluate(store, "r1", BASE, [result_row("q1", "c1", "1", 1.0)])
    assert store.resolve("r1") == (BASE.config_hash, evaluation_id)
    assert store.resolve(evaluation_id) == (BASE.config_hash, evaluation_id)
    assert store.resolve(BASE.config_hash[:6]) == (BASE.config_hash, None)


def test_resolve_refuses_ambiguous_short_and_unknown_refs(store: RunStore) -> None:
    store.insert_rows("configs", [{"config_hash": "abcdef0000000001", "canonical_json": "{}"},
                                  {"config_hash": "abcdef0000000002", "canonical_json": "{}"}])
    with pytest.raises(StoreError, match="ambiguous.*abcdef0000000001, abcdef0000000002"):
        store.resolve("abcdef")
    assert store.resolve("abcdef0000000001") == ("abcdef0000000001", None)
    with pytest.raises(StoreError, match="at least 6 characters"):
        store.resolve("abc")
    with pytest.raises(StoreError, match="neither a run id"):
        store.resolve("ffffffff")


# Compare ------------------------------------------------------------------------------
def test_compare_pairs_shared_questions_per_category(weak_vs_strong: RunStore) -> None:
    result = weak_vs_strong.compare("eval-weak", "eval-strong")
    overall = result.overall
    # Shared scored questions q1..q4: A = 0, 1, .5, 0 and B = 1, 1, 0, .25.
    assert (overall.n, overall.n_conversations) == (4, 2)
    assert overall.mean_a == pytest.approx(0.375) and overall.mean_b == pytest.approx(0.5625)
    assert overall.delta == pytest.approx(0.1875)
    by_category = {c.category: c for c in result.categories}
    assert by_category["1"].delta == pytest.approx(0.5) and by_category["1"].n == 2
    assert by_category["2"].mean_a == pytest.approx(0.25)
    assert by_category["2"].delta == pytest.approx(-0.125)
    assert [(f.question_id, f.a, f.b) for f in result.flipped] == [("q1", 0.0, 1.0),
                                                                   ("q3", 0.5, 0.0)]
    assert (result.only_a, result.only_b) == (1, 0)
    # Two conversations can never give a sign-flip p below 0.25: it says so, tests by question.
    assert overall.method.endswith("by question") and "2 conversations cannot" in overall.note


def test_compare_by_config_hash_matches_compare_by_run(weak_vs_strong: RunStore) -> None:
    by_run = weak_vs_strong.compare("eval-weak", "eval-strong")
    by_hash = weak_vs_strong.compare(BASE.config_hash, WIDE.config_hash[:8])
    assert by_hash.a_evaluation is None
    assert by_hash.overall == by_run.overall


def test_compare_refuses_an_unknown_metric(weak_vs_strong: RunStore) -> None:
    with pytest.raises(StoreError, match="unknown metric 'accuracy'"):
        weak_vs_strong.compare("eval-weak", "eval-strong", metric="accuracy")


def test_export_round_trips_the_config_with_its_provenance(store: RunStore,
                                                           tmp_path: Path) -> None:
    store.create_run("r1", "evolve", BENCH, SPLIT, {})
    dev = evaluate(store, "r1", WIDE, [result_row("q1", "c1", "1", 0.75)])
    evaluate(store, "r1", WIDE, [result_row("q5", "c3", "1", 0.5)], part="test")
    out = store.export_config("r1", tmp_path / "exported" / "best.yaml")
    loaded = load_config(out)
    assert loaded.config_hash == WIDE.config_hash
    provenance = loaded.provenance
    assert provenance["config_hash"] == WIDE.config_hash and provenance["run_id"] == "r1"
    assert provenance["benchmark"]["sha256"] == BENCH.sha256
    assert provenance["split"] == {"name": "random", "seed": 7}
    assert [(e["evaluation_id"], e["part"], e["score"]) for e in provenance["evaluations"]] == [
        (dev, "dev", 0.75), ("r1:e0002", "test", 0.5)]
    assert "exported_at" in provenance


def test_export_into_a_folder_names_the_file_by_hash(store: RunStore, tmp_path: Path) -> None:
    store.register_config(WIDE)
    out = store.export_config(WIDE.config_hash, tmp_path)
    assert out == tmp_path / f"{WIDE.config_hash}.yaml"
    assert load_config(out).config_hash == WIDE.config_hash


# The README's SQL ---------------------------------------------------------------------
SQL_BLOCKS = re.findall(r"```sql\n(.*?)```", SQL_EXAMPLES.read_text(), flags=re.S)


@pytest.fixture
def populated(weak_vs_strong: RunStore) -> RunStore:
    store = weak_vs_strong
    store.create_run("evolve-demo", "evolve", BENCH, SPLIT, {})
    evaluate(store, "evolve-demo", BASE, [result_row("q1", "c1", "1", 0.0)])
    evaluate(store, "evolve-demo", WIDE, [result_row("q1", "c1", "1", 1.0)])
    with store.transaction():
        store.insert_rows("rounds", [{
            "run_id": "evolve-demo", "round": 1, "incumbent_hash": BASE.config_hash,
            "incumbent_score": 0.0, "mode": "diagnose", "decision": "accept",
            "reason": "significant gain", "rng_state": "{}", "evaluations_used": 2,
            "tokens_used": 0, "cost_used": 0.0, "wall_s": 1.0}])
        store.insert_rows("candidates", [{
            "run_id": "evolve-demo", "round": 1, "candidate": 0,
            "parent_hash": BASE.config_hash, "config_hash": WIDE.config_hash,
            "proposer": "rules", "edit_json": '{"top_k": 10}', "rationale": "evidence cut",
            "dev_score": 1.0, "delta": 1.0, "ci_low": 0.5, "ci_high": 1.0, "p_value": 0.0,
            "decision": "accepted", "reason": "CI above 0"}])
    store.record_llm_calls("evolve-demo", [{
        "call_key": "k1", "model": "openai/smol", "purpose": "diagnose", "prompt_tokens": 900,
        "completion_tokens": 80, "cost_usd": 0.002, "latency_s": 1.2, "cached": False,
        "ok": True, "attempts": 1}])
    return store


def test_sql_examples_file_has_the_documented_queries() -> None:
    assert len(SQL_BLOCKS) >= 4


@pytest.mark.parametrize("sql", SQL_BLOCKS, ids=[f"query{i + 1}" for i in range(len(SQL_BLOCKS))])
def test_sql_example_runs_and_returns_rows(populated: RunStore, sql: str) -> None:
    assert populated.query(sql)
