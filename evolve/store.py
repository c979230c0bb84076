"""The run store: every run, config, evaluation and per-question outcome in one DuckDB file."""
from __future__ import annotations

import json
import os
import re
import time
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from benchmarks.errors import MemevolveError
from evolve.systems import OFFICIAL_COLUMNS
from evolve.stats import paired_test
from search_space.config import SpaceConfig

if TYPE_CHECKING:
    from benchmarks.model import Benchmark
    from benchmarks.splits import Split

SCHEMA_VERSION = "8"
#: Version -> (next version, statements upgrading a store file to it), applied in order.
MIGRATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "4": ("5", ("ALTER TABLE runs ADD COLUMN owner_host VARCHAR",
                "ALTER TABLE runs ADD COLUMN owner_pid INTEGER",
                "ALTER TABLE runs ADD COLUMN owner_started BIGINT",
                "ALTER TABLE rounds ADD COLUMN diagnoser_fallback VARCHAR",
                "ALTER TABLE candidates ALTER COLUMN config_hash DROP NOT NULL")),
    "5": ("6", ("ALTER TABLE bench_scale ADD COLUMN driver_peak_mb DOUBLE",
                "ALTER TABLE bench_scale ADD COLUMN actors_peak_mb DOUBLE",
                "ALTER TABLE bench_scale ADD COLUMN actor_peaks_mb DOUBLE[]",
                "ALTER TABLE bench_scale ADD COLUMN tree_peak_mb DOUBLE")),
    "6": ("7", ("ALTER TABLE bench_throughput ADD COLUMN train_s DOUBLE",)),
    "7": ("8", ("ALTER TABLE bench_summary ADD COLUMN start_test DOUBLE",
                "ALTER TABLE bench_summary ADD COLUMN excess_gap DOUBLE")),
}
DEFAULT_PATH = Path("runs/memevolve.duckdb")
RUN_KINDS = ("eval", "evolve", "bench", "router")
RUN_STATUSES = ("running", "converged", "budget_spent", "done", "failed", "interrupted")
#: Statuses of a run that has ended for good: nothing is left to resume.
FINAL_STATUSES = ("converged", "budget_spent", "done")
# Per-question metrics `compare` can pair; a boolean verdict compares as 0/1.
COMPARE_METRICS = ("recall_in_context", "recall_at_5", "recall_at_10", "recall_at_k",
                   "session_recall_at_5", "turn_recall_at_5", "turn_recall_at_10", "answer_f1",
                   "judge_correct", *OFFICIAL_COLUMNS)
# A question "flips" when its metric crosses this threshold between the two sides.
FLIP_THRESHOLD = 0.5
#: How long a reader and a writer wait for another process to release the file
#: ($MEMEVOLVE_LOCK_TIMEOUT_S overrides both). A run waits long: a duckdb shell left open on
#: the file should pause it, not kill it.
READ_LOCK_TIMEOUT_S = 60.0
WRITE_LOCK_TIMEOUT_S = 600.0


class StoreError(MemevolveError):
    """A run store that cannot be opened, read or written: names the file and the fix."""


@dataclass(frozen=True)
class MetricDelta:
    """Paired comparison of one metric on one group of shared questions ('all' = overall)."""

    category: str
    n: int
    n_conversations: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float       # two-sided
    #: How it was tested: by conversation (exact or Monte Carlo sign-flip), or by question when
    #: too few conversations could ever reach significance (the note says so).
    method: str = ""
    note: str = ""


@dataclass(frozen=True)
class Flip:
    """A shared question whose metric crossed FLIP_THRESHOLD between A and B."""

    question_id: str
    category: str
    a: float
    b: float


@dataclass(frozen=True)
class Comparison:
    """B against A on the questions both have results for, overall and per category."""

    metric: str
    confidence: float
    a_hash: str
    b_hash: str
    a_evaluation: str | None
    b_evaluation: str | None
    overall: MetricDelta | None       # non-adversarial questions: the headline
    adversarial: MetricDelta | None   # adversarial questions alone
    categories: list[MetricDelta]
    flipped: list[Flip]
    only_a: int
    only_b: int


class RunStore:
    """One DuckDB file: writers commit whole units (an evaluation, a round) or nothing.

    DuckDB lets one process write a file (or several only read it). So that a run can be
    watched while it runs (`memevolve runs`, `report`, `compare`, a duckdb shell), a store
    holds its file only for one read or one transaction, and a process that finds the file
    held waits up to ``lock_timeout_s`` for its turn.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, read_only: bool = False,
                 lock_timeout_s: float | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        default = READ_LOCK_TIMEOUT_S if read_only else WRITE_LOCK_TIMEOUT_S
        self.lock_timeout_s = lock_timeout_s if lock_timeout_s is not None else \
            float(os.environ.get("MEMEVOLVE_LOCK_TIMEOUT_S", default))
        self._con: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._depth = 0
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create its folder ({exc}). Fix: pass "
                                 "--db with a path in a writable folder.") from None
        if read_only:
            with self._connected():
                outdated = self._outdated()
            if outdated:
                # Upgrading needs a writer once; readers after it see the new schema.
                self.read_only = False
                with self._connected():
                    self._check_schema()
                self.read_only = True
        with self._connected():
            self._check_schema()
            self._columns = self._table_columns()

    def _outdated(self) -> bool:
        try:
            found = self._scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        except duckdb.Error:
            return False
        return found in MIGRATIONS

    # Lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._users = 0

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connected(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file open for the block (nested blocks share it); closed, and so free for other
        processes, when the outermost block ends."""
        if self._con is None:
            self._con = self._connect()
        self._users += 1
        try:
            yield self._con
        finally:
            self._users -= 1
            if self._users == 0 and self._con is not None:
                self._con.close()
                self._con = None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        pause = 0.02
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=self.read_only)
            except duckdb.Error as exc:
                if "Could not set lock" not in str(exc) or time.monotonic() >= deadline:
                    raise _open_error(self.path, exc, self.lock_timeout_s) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit everything written inside at once, or nothing; nested uses join the outer one."""
        if self.read_only:
            raise StoreError(f"{self.path}: opened read-only, cannot write. Fix: open it "
                             "without read_only.")
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._connected() as con:
            con.execute("BEGIN TRANSACTION")
            self._depth = 1
            try:
                yield
                con.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._depth = 0

    # Writers ------------------------------------------------------------------------------
    def insert_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows (dict keys = column names; omitted columns take their default)."""
        with self.transaction():
            self._insert(table, rows)

    def register_benchmark(self, benchmark: Benchmark) -> None:
        with self.transaction():
            self._insert("benchmarks", [_benchmark_row(benchmark)], conflict="IGNORE")

    def register_config(self, config: SpaceConfig) -> None:
        with self.transaction():
            self._insert("configs", [_config_row(config)], conflict="IGNORE")

    def create_run(self, run_id: str, kind: str, benchmark: Benchmark, split: Split,
                   settings: dict[str, Any]) -> None:
        if kind not in RUN_KINDS:
            raise StoreError(f"unknown run kind '{kind}'. Fix: use one of {', '.join(RUN_KINDS)}.")
        with self.transaction():
            if self._scalar("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]):
                raise StoreError(f"{self.path}: a run '{run_id}' already exists. Fix: choose "
                                 "another run id, or --db another file.")
            self._insert("benchmarks", [_benchmark_row(benchmark)], conflict="IGNORE")
            self._insert("runs", [{
                "run_id": run_id, "kind": kind, "benchmark_key": benchmark.key,
                "split_name": split.name, "split_seed": split.seed,
                "split_json": json.dumps({"dev": list(split.dev), "test": list(split.test)}),
                "settings_json": json.dumps(settings, sort_keys=True, default=str),
                "status": "running", **_owner_columns(),
            }])

    def claim_run(self, run_id: str) -> None:
        """Make this process the owner of a run it resumes: running again, finished_at unset.
        Refused while another live process drives it."""
        with self.transaction():
            run = self.run(run_id)
            if run_state(run) == "running" and run["owner_pid"] is not None and \
                    (run["owner_host"], run["owner_pid"]) != (socket.gethostname(), os.getpid()):
                raise StoreError(f"run '{run_id}' is still running (process {run['owner_pid']} "
                                 f"on {run['owner_host']}). Fix: wait for it to finish, or stop "
                                 "that process first.")
            self._con.execute("UPDATE runs SET status = 'running', finished_at = NULL, "
                              "owner_host = ?, owner_pid = ?, owner_started = ? WHERE run_id = ?",
                              [*_owner_columns().values(), run_id])

    def finish_run(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status '{status}'. Fix: use one of "
                             f"{', '.join(RUN_STATUSES)}.")
        with self.transaction():
            self.run(run_id)
            self._con.execute("UPDATE runs SET status = ?, finished_at = current_timestamp "
                              "WHERE run_id = ?", [status, run_id])

    def record_evaluation(self, run_id: str, config: SpaceConfig, benchmark_key: str,
                          part: str, question_ids: list[str], new_rows: list[dict[str, Any]],
                          n_reused: int, objective: str, score: float | None,
                          wall_s: float, adversarial_score: float | None = None) -> str:
        """Store one evaluation: its config, its newly computed question rows, the evaluation
        and the questions it covers, in one transaction. Returns the new evaluation id."""
        config_hash = config.config_hash
        rows = [{"config_hash": config_hash, "benchmark_key": benchmark_key, **row}
                for row in new_rows]
        foreign = [r["question_id"] for r in rows
                   if (r["config_hash"], r["benchmark_key"]) != (config_hash, benchmark_key)]
        if foreign:
            raise StoreError(f"{len(foreign)} result rows (e.g. {foreign[0]}) belong to another "
                             f"config or benchmark than {config_hash} on {benchmark_key}.")
        with self.transaction():
            self.run(run_id)
            n_before = self._scalar("SELECT count(*) FROM evaluations WHERE run_id = ?", [run_id])
            evaluation_id = f"{run_id}:e{n_before + 1:04d}"
            self._insert("configs", [_config_row(config)], conflict="IGNORE")
            # A stored row marked invalid is not served by the cache, so its recomputation
            # replaces it.
            self._insert("question_results", rows, conflict="REPLACE")
            self._insert("evaluations", [{
                "evaluation_id": evaluation_id, "run_id": run_id, "config_hash": config_hash,
                "benchmark_key": benchmark_key, "part": part, "n_questions": len(question_ids),
                "n_reused": n_reused, "objective": objective, "score": score,
                "adversarial_score": adversarial_score, "wall_s": wall_s,
            }])
            self._con.execute("INSERT INTO evaluation_questions "
                              "SELECT ?, UNNEST(?::VARCHAR[])", [evaluation_id, question_ids])
            missing = self._scalar("""
                SELECT count(*) FROM evaluation_questions eq
                ANTI JOIN question_results qr
                  ON qr.config_hash = ? AND qr.benchmark_key = ? AND qr.question_id = eq.question_id
                WHERE eq.evaluation_id = ?""", [config_hash, benchmark_key, evaluation_id])
            if missing:
                raise StoreError(f"evaluation of {config_hash} in run {run_id}: {missing} of its "
                                 f"{len(question_ids)} questions have no stored result (neither "
                                 "new nor cached); nothing was written.")
        return evaluation_id

    def put_artefact(self, body: dict[str, Any]) -> str:
        """Store a learned part by its content hash (a no-op when it is there); returns it."""
        from search_space.artefacts import artefact_hash, canonical_artefact_json

        key = artefact_hash(body)
        if not self.read_only and not self._scalar(
                "SELECT count(*) FROM artefacts WHERE artefact_hash = ?", [key]):
            with self.transaction():
                self._insert("artefacts", [{"artefact_hash": key, "kind": body.get("kind", ""),
                                            "body_json": canonical_artefact_json(body)}],
                             conflict="IGNORE")
        return key

    def artefacts_of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(r["body_json"]) for r in self._dicts(
            "SELECT body_json FROM artefacts WHERE kind = ? ORDER BY artefact_hash", [kind])]

    def artefact(self, artefact_hash: str) -> dict[str, Any] | None:
        stored = self._scalar("SELECT body_json FROM artefacts WHERE artefact_hash = ?",
                              [artefact_hash])
        return None if stored is None else json.loads(stored)

    def record_llm_calls(self, run_id: str | None, rows: list[dict[str, Any]]) -> None:
        with self.transaction():
            self._insert("llm_calls", [{**row, "run_id": run_id} for row in rows])

    # Readers ------------------------------------------------------------------------------
    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None
              ) -> list[dict[str, Any]]:
        """Run any SQL against the store; rows as dicts."""
        try:
            return self._dicts(sql, params)
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: query failed: {exc}") from None

    def cached_results(self, config_hash: str, benchmark_key: str, question_ids: list[str], *,
                       context_key: str | None = None, require: str | None = None,
                       ) -> dict[str, dict[str, Any]]:
        """Stored valid rows for these questions under this config: the evaluation cache.

        Only rows computed in the same context (engine version, embedder, LLM and judge reply
        settings) are served, and, with ``require``, only rows that hold that column: a row
        without the objective (say, no judge verdict) is recomputed, not scored as missing.
        Recall columns are NULL by definition when a question has no gold evidence."""
        if require is not None and require not in self._columns["question_results"]:
            raise StoreError(f"no column '{require}' in question_results. Fix: use one of the "
                             "objectives 'memevolve run --help' lists.")
        holds = "TRUE" if require is None else (
            f"(qr.{require} IS NOT NULL OR len(qr.evidence_ids) = 0)"
            if require.startswith("recall") else f"qr.{require} IS NOT NULL")
        rows = self._dicts(f"""
            SELECT qr.* FROM question_results qr
            SEMI JOIN (SELECT UNNEST($ids::VARCHAR[]) AS question_id) wanted USING (question_id)
            WHERE qr.config_hash = $config_hash AND qr.benchmark_key = $benchmark_key
              AND qr.invalid_reason IS NULL AND {holds}
              AND ($context_key::VARCHAR IS NULL OR qr.context_key = $context_key)""",
            {"ids": list(question_ids), "config_hash": config_hash,
             "benchmark_key": benchmark_key, "context_key": context_key})
        return {row["question_id"]: row for row in rows}

    def evaluation_results(self, evaluation_id: str) -> list[dict[str, Any]]:
        """The question_results rows an evaluation covers, by question id."""
        self.evaluation(evaluation_id)
        return self._dicts("""
            SELECT qr.* FROM evaluations e
            JOIN evaluation_questions eq USING (evaluation_id)
            JOIN question_results qr ON qr.config_hash = e.config_hash
             AND qr.benchmark_key = e.benchmark_key AND qr.question_id = eq.question_id
            WHERE e.evaluation_id = ?
            ORDER BY qr.question_id""", [evaluation_id])

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run; ``state`` is its status, or 'interrupted' for a running run whose
        process is gone."""
        rows = self._dicts("""
            SELECT r.run_id, r.kind,
                   json_extract_string(r.settings_json, '$.system') AS system,
                   r.benchmark_key, r.split_name, r.status,
                   count(e.evaluation_id) AS n_evaluations,
                   -- The kept config's dev score (the last committed round's incumbent):
                   -- a rejected candidate, or one screened on a subsample, may score higher.
                   coalesce(any_value(k.kept_score),
                            max(e.score) FILTER (WHERE e.part = 'dev')) AS best_dev_score,
                   r.started_at, r.finished_at, r.owner_host, r.owner_pid, r.owner_started
            FROM runs r LEFT JOIN evaluations e USING (run_id)
            LEFT JOIN (SELECT run_id, arg_max(incumbent_score, round) AS kept_score
                       FROM rounds GROUP BY run_id) k USING (run_id)
            GROUP BY ALL
            ORDER BY r.started_at, r.run_id""")
        return [{**row, "state": run_state(row)} for row in rows]

    def run(self, run_id: str) -> dict[str, Any]:
        rows = self._dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"{self.path}: no run '{run_id}'. Fix: list runs with "
                             "'memevolve runs'.")
        return rows[0]

    def evaluations(self, run_id: str) -> list[dict[str, Any]]:
        self.run(run_id)
        return self._dicts("SELECT * FROM evaluations WHERE run_id = ? ORDER BY evaluation_id",
                           [run_id])

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        rows = self._dicts("SELECT * FROM evaluations WHERE evaluation_id = ?", [evaluation_id])
        if not rows:
            raise StoreError(f"{self.path}: no evaluation '{evaluation_id}'. Fix: list a run's "
                             "evaluations with 'memevolve runs'.")
        return rows[0]

    def config(self, config_hash: str, space: type[SpaceConfig] | None = None) -> SpaceConfig:
        """A stored config, as an instance of its system's config class (``space``, when given,
        must be that class: a run never mixes systems)."""
        from evolve.systems import resolve_system, space_of

        data = json.loads(self._canonical_json(config_hash))
        system = data.get("system")
        if space is not None and space.system_name != system:
            raise StoreError(f"{self.path}: config {config_hash} is of "
                             f"{_system_label(system)}, not of "
                             f"{_system_label(space.system_name)}; a run never mixes systems. "
                             "Fix: resume or evaluate it with its own --system.")
        if space is None:
            space = space_of(resolve_system(system, option=f"config {config_hash}'s system"))
        return space.model_validate(data)

    def config_system(self, config_hash: str) -> str | None:
        """The memory system a stored config is of ('module:Class'; None: the built-in one)."""
        return json.loads(self._canonical_json(config_hash)).get("system")

    def _canonical_json(self, config_hash: str) -> str:
        stored = self._scalar("SELECT canonical_json FROM configs WHERE config_hash = ?",
                              [config_hash])
        if stored is None:
            raise StoreError(f"{self.path}: no config {config_hash}. Fix: pass a hash shown by "
                             "'memevolve runs' or 'memevolve compare'.")
        return stored

    def resolve(self, ref: str) -> tuple[str, str | None]:
        """A run id, an evaluation id or a config hash (unique prefix of 6+ characters) ->
        (config hash, evaluation id or None for a bare config).

        A run stands for its final config: an eval run's config; for other runs the last
        accepted candidate, else the first round's incumbent, else the best-scoring
        evaluation. Its evaluation is that config's dev evaluation in the run (else 'all',
        else 'test').
        """
        ref = ref.strip()
        if self._scalar("SELECT count(*) FROM runs WHERE run_id = ?", [ref]):
            return self._resolve_run(ref)
        found = self._scalar("SELECT config_hash FROM evaluations WHERE evaluation_id = ?", [ref])
        if found is not None:
            return found, ref
        if len(ref) < 6:
            raise StoreError(f"{self.path}: '{ref}' is not a run or evaluation id, and a config "
                             "hash prefix needs at least 6 characters. Fix: list runs with "
                             "'memevolve runs'.")
        hashes = [r["config_hash"] for r in self._dicts(
            "SELECT config_hash FROM configs WHERE starts_with(config_hash, lower(?)) "
            "ORDER BY config_hash", [ref])]
        if len(hashes) > 1:
            raise StoreError(f"{self.path}: config hash prefix '{ref}' is ambiguous: it matches "
                             f"{', '.join(hashes[:5])}{' ...' if len(hashes) > 5 else ''}. "
                             "Fix: give more characters.")
        if not hashes:
            raise StoreError(f"{self.path}: '{ref}' is neither a run id, an evaluation id nor a "
                             "stored config hash. Fix: list runs with 'memevolve runs'.")
        return hashes[0], None

    # Compare and export -------------------------------------------------------------------
    def compare(self, a_ref: str, b_ref: str, *, metric: str = "recall_in_context",
                seed: int = 0, confidence: float = 0.95) -> Comparison:
        """B against A, paired on the questions both have valid results for (a question whose
        metric is NULL on either side, e.g. no gold evidence, is left out)."""
        if metric not in COMPARE_METRICS:
            raise StoreError(f"unknown metric '{metric}'. Fix: use one of "
                             f"{', '.join(COMPARE_METRICS)}.")
        with self._connected():
            return self._compare(a_ref, b_ref, metric, seed, confidence)

    def _compare(self, a_ref: str, b_ref: str, metric: str, seed: int,
                 confidence: float) -> Comparison:
        a_hash, a_evaluation = self.resolve(a_ref)
        b_hash, b_evaluation = self.resolve(b_ref)
        a_system, b_system = self.config_system(a_hash), self.config_system(b_hash)
        if a_system != b_system:
            raise StoreError(f"{a_ref} is a config of {_system_label(a_system)} and {b_ref} one of "
                             f"{_system_label(b_system)}: compare pairs configs of one system. "
                             "Fix: compare runs of the same --system.")
        params = {"a_hash": a_hash, "a_evaluation": a_evaluation,
                  "b_hash": b_hash, "b_evaluation": b_evaluation}
        sides = _sides_sql(metric)
        pairs = self._con.execute(sides + """
            SELECT category, adversarial, conversation_id, a, b FROM paired
            ORDER BY category, question_id""", params).fetchall()
        if not pairs:
            raise StoreError(f"{a_ref} and {b_ref} share no question with a {metric} value. "
                             "Fix: compare evaluations of the same benchmark and split.")
        categories = np.array([p[0] for p in pairs])
        adversarial = np.array([bool(p[1]) for p in pairs])
        clusters = np.array([p[2] for p in pairs])
        a_values = np.array([p[3] for p in pairs], dtype=np.float64)
        b_values = np.array([p[4] for p in pairs], dtype=np.float64)

        def delta(name: str, mask: np.ndarray) -> MetricDelta:
            test = paired_test(a_values[mask], b_values[mask], clusters[mask],
                               confidence=confidence, seed=seed)
            method, note = f"{test.method} by conversation", ""
            if test.min_one_sided_p() > (1 - confidence) / 2:
                # With k conversations no sign-flip p goes below 2^-k: a cluster test could
                # never resolve a difference, so say so and test questions as independent.
                note = (f"{test.clusters} conversations cannot reach {confidence:.0%} "
                        "(best possible p {:.3f}); question-level test, which ignores their "
                        "correlation".format(2 * test.min_one_sided_p()))
                test = paired_test(a_values[mask], b_values[mask],
                                   np.arange(int(mask.sum())), confidence=confidence, seed=seed)
                method = f"{test.method} by question"
            return MetricDelta(category=name, n=int(mask.sum()),
                               n_conversations=len(set(clusters[mask])),
                               mean_a=float(a_values[mask].mean()),
                               mean_b=float(b_values[mask].mean()), delta=test.delta,
                               ci_low=test.ci_low, ci_high=test.ci_high,
                               p_value=test.p_value, method=method, note=note)

        per_category = [delta(c, categories == c) for c in sorted(set(categories))]
        # BudgetMem's protocol: the headline row leaves adversarial questions out; they get a
        # row of their own.
        overall = delta("all", ~adversarial) if (~adversarial).any() else None
        adversarial_row = delta("adversarial", adversarial) if adversarial.any() else None
        flipped = [Flip(**row) for row in self._dicts(sides + """
            SELECT question_id, category, a, b FROM paired
            WHERE (a >= $threshold) <> (b >= $threshold)
            ORDER BY category, question_id""", {**params, "threshold": FLIP_THRESHOLD})]
        only_a, only_b = self._con.execute(sides + """
            SELECT count(*) FILTER (WHERE b.question_id IS NULL),
                   count(*) FILTER (WHERE a.question_id IS NULL)
            FROM a FULL JOIN b USING (benchmark_key, question_id)""", params).fetchone()
        return Comparison(metric=metric, confidence=confidence, a_hash=a_hash,
                          b_hash=b_hash, a_evaluation=a_evaluation, b_evaluation=b_evaluation,
                          overall=overall, adversarial=adversarial_row, categories=per_category,
                          flipped=flipped, only_a=only_a, only_b=only_b)

    def export_config(self, ref: str, out_path: str | Path) -> Path:
        """Write the config ``ref`` resolves to as YAML with its provenance; a folder gets
        ``<config hash>.yaml``."""
        config_hash, evaluation_id = self.resolve(ref)
        provenance: dict[str, Any] = {
            "config_hash": config_hash,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": str(self.path),
        }
        if evaluation_id is not None:
            evaluation = self.evaluation(evaluation_id)
            run = self.run(evaluation["run_id"])
            benchmark = self._dicts("SELECT * FROM benchmarks WHERE benchmark_key = ?",
                                    [evaluation["benchmark_key"]])
            provenance["run_id"] = run["run_id"]
            if benchmark:
                provenance["benchmark"] = {k: benchmark[0][k]
                                           for k in ("benchmark_key", "name", "variant", "sha256")}
            provenance["split"] = {"name": run["split_name"], "seed": run["split_seed"]}
        # Scores of this config in its run, or in every run for a bare config hash.
        provenance["evaluations"] = self._dicts("""
            SELECT evaluation_id, run_id, part, objective, score, n_questions
            FROM evaluations
            WHERE config_hash = $config_hash AND ($run_id::VARCHAR IS NULL OR run_id = $run_id)
            ORDER BY evaluation_id""",
            {"config_hash": config_hash, "run_id": provenance.get("run_id")})
        out = Path(out_path)
        if out.is_dir():
            out = out / f"{config_hash}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        config = self.config(config_hash)
        artefacts = {}
        if config.question_types and not config.routes_on_gold:
            body = self.artefact(config.question_types)
            if body is None:
                raise StoreError(f"{self.path}: config {config_hash} references question-type "
                                 f"predictor {config.question_types}, which the store lacks. "
                                 "Fix: export from the store of the run that trained it.")
            artefacts[config.question_types] = body
        from evolve.memory import rerank
        from search_space.artefacts import artefact_hash

        if rerank.needs_model(config):
            fields_key = rerank.model_key(config, None)
            models = [b for b in self.artefacts_of_kind(rerank.KIND)
                      if b.get("fields_key") == fields_key]
            if not models:
                raise StoreError(f"{self.path}: config {config_hash} reranks with a model the "
                                 "store lacks. Fix: export from the store of the run that "
                                 "evaluated it.")
            artefacts.update({artefact_hash(b): b for b in models})
        config = config.model_copy(update={"provenance": provenance, "artefacts": artefacts})
        out.write_text(config.to_yaml())
        return out

    # Internals ----------------------------------------------------------------------------
    def _check_schema(self) -> None:
        found = self._unmigrated_check()
        while found in MIGRATIONS:
            target, statements = MIGRATIONS[found]
            with self.transaction():
                for statement in statements:
                    self._con.execute(statement)
                self._con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                                  [target])
            found = target
        if found not in (None, SCHEMA_VERSION):
            raise StoreError(f"{self.path}: written with run-store schema version {found}, but "
                             f"this memevolve uses version {SCHEMA_VERSION} and cannot read it. "
                             "Fix: pass --db with a new file (the old one stays readable by the "
                             "memevolve that wrote it).")

    def _unmigrated_check(self) -> str | None:
        """The file's schema version (None: just created at the current one)."""
        tables = {r[0] for r in self._con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main'").fetchall()}
        if "meta" not in tables:
            if tables:
                raise StoreError(f"{self.path}: a DuckDB file, but not a memevolve run store "
                                 f"(it has tables {', '.join(sorted(tables)[:5])}). Fix: pass "
                                 "--db with a new file.")
            if self.read_only:
                raise StoreError(f"{self.path}: an empty DuckDB file, no run store yet. Fix: "
                                 "run 'memevolve eval' or 'memevolve run' with this --db first.")
            schema = resources.files("evolve").joinpath("schema.sql").read_text()
            with self.transaction():
                self._con.execute(schema)
                self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                  [SCHEMA_VERSION])
            return None
        return self._scalar("SELECT value FROM meta WHERE key = 'schema_version'")

    def _table_columns(self) -> dict[str, dict[str, str]]:
        columns: dict[str, dict[str, str]] = {}
        for table, column, data_type in self._con.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "ORDER BY table_name, column_index").fetchall():
            columns.setdefault(table, {})[column] = data_type
        return columns

    def _insert(self, table: str, rows: list[dict[str, Any]], conflict: str | None = None) -> None:
        """Insert column-wise: one statement per set of keys, each column bound as one list
        (executemany runs one statement per row and is ~25x slower)."""
        types = self._columns.get(table)
        if types is None:
            raise StoreError(f"no table '{table}' in the run store. Fix: use one of "
                             f"{', '.join(sorted(self._columns))}.")
        by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            by_keys.setdefault(tuple(row), []).append(row)
        verb = f"INSERT OR {conflict} INTO" if conflict else "INSERT INTO"
        for keys, group in by_keys.items():
            unknown = [k for k in keys if k not in types]
            if unknown:
                raise StoreError(f"table '{table}' has no column {', '.join(unknown)}. Fix: use "
                                 f"the columns of evolve/schema.sql.")
            selects = ", ".join(f"UNNEST(${i + 1}::{types[k]}[])" for i, k in enumerate(keys))
            try:
                self._con.execute(f"{verb} {table} ({', '.join(keys)}) SELECT {selects}",
                                  [[row[k] for row in group] for k in keys])
            except (duckdb.ConstraintException, duckdb.ConversionException) as exc:
                raise StoreError(f"{self.path}: could not write {len(group)} rows to {table}: "
                                 f"{exc}. Nothing from this transaction was written.") from exc

    def _resolve_run(self, run_id: str) -> tuple[str, str | None]:
        kind = self.run(run_id)["kind"]
        if kind == "eval":
            config_hash = self._scalar("SELECT config_hash FROM evaluations WHERE run_id = ? "
                                       "ORDER BY evaluation_id DESC LIMIT 1", [run_id])
        else:
            config_hash = self._scalar("""
                SELECT config_hash FROM (
                    SELECT config_hash, 0 AS source, -round AS r, -candidate AS c
                    FROM candidates WHERE run_id = $run_id AND decision = 'accepted'
                    UNION ALL
                    SELECT incumbent_hash, 1, round, 0 FROM rounds WHERE run_id = $run_id
                    UNION ALL
                    SELECT config_hash, 2, 0, 0 FROM (
                        SELECT config_hash FROM evaluations WHERE run_id = $run_id
                        ORDER BY CASE part WHEN 'dev' THEN 0 WHEN 'all' THEN 1 ELSE 2 END,
                                 score DESC NULLS LAST, evaluation_id
                        LIMIT 1))
                ORDER BY source, r, c LIMIT 1""", {"run_id": run_id})
        if config_hash is None:
            raise StoreError(f"{self.path}: run '{run_id}' has no evaluation yet. Fix: wait for "
                             "it to evaluate a config, or pass an evaluation id or config hash.")
        evaluation_id = self._scalar("""
            SELECT evaluation_id FROM evaluations WHERE run_id = ? AND config_hash = ?
            ORDER BY CASE part WHEN 'dev' THEN 0 WHEN 'all' THEN 1 ELSE 2 END,
                     evaluation_id DESC
            LIMIT 1""", [run_id, config_hash])
        return config_hash, evaluation_id

    def _dicts(self, sql: str, params: list[Any] | dict[str, Any] | None = None
               ) -> list[dict[str, Any]]:
        with self._connected() as con:
            cursor = con.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _scalar(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        with self._connected() as con:
            row = con.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _execute(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        with self._connected() as con:
            con.execute(sql, params)

    def _rollback(self) -> None:
        assert self._con is not None
        try:
            self._con.execute("ROLLBACK")
        except duckdb.TransactionException:
            pass  # a failed COMMIT has already ended the transaction


def run_state(run: dict[str, Any]) -> str:
    """A run's status as it truly is: 'running' only while its owning process lives (as far
    as this host can tell; a run owned on another host is taken at its word)."""
    if run["status"] != "running" or run.get("owner_pid") is None:
        return run["status"]
    if run["owner_host"] != socket.gethostname():
        return "running"
    alive = _process_started(run["owner_pid"])
    if alive is None or (run["owner_started"] is not None and alive != run["owner_started"]):
        return "interrupted"
    return "running"


def _owner_columns() -> dict[str, Any]:
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid(),
            "owner_started": _process_started(os.getpid())}


def _process_started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when there is none.
    Without /proc (not Linux) only its existence is known: 0."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its closing parenthesis are
    # fixed: starttime is field 22.
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _sides_sql(metric: str) -> str:
    """CTEs a, b (each side's valid rows: an evaluation's questions, or all of a config's) and
    paired (questions both sides have a value for). ``metric`` must be a COMPARE_METRICS name."""
    side = """
        SELECT qr.benchmark_key, qr.question_id, qr.conversation_id, qr.category,
               qr.adversarial, qr.{metric}::DOUBLE AS value
        FROM question_results qr
        WHERE qr.config_hash = ${s}_hash AND qr.invalid_reason IS NULL
          AND (${s}_evaluation::VARCHAR IS NULL OR EXISTS (
                SELECT 1 FROM evaluation_questions eq JOIN evaluations e USING (evaluation_id)
                WHERE eq.evaluation_id = ${s}_evaluation
                  AND e.benchmark_key = qr.benchmark_key AND eq.question_id = qr.question_id))"""
    return f"""
        WITH a AS ({side.format(metric=metric, s="a")}),
             b AS ({side.format(metric=metric, s="b")}),
             paired AS (
                SELECT question_id, a.conversation_id, a.category, a.adversarial,
                       a.value AS a, b.value AS b
                FROM a JOIN b USING (benchmark_key, question_id)
                WHERE a.value IS NOT NULL AND b.value IS NOT NULL)
        """


def _system_label(system: str | None) -> str:
    return f"memory system {system}" if system else "the built-in memory system"


def _benchmark_row(benchmark: Benchmark) -> dict[str, Any]:
    return {"benchmark_key": benchmark.key, "name": benchmark.name,
            "variant": benchmark.variant, "source": benchmark.source,
            "sha256": benchmark.sha256, "n_questions": len(benchmark.questions)}


def _config_row(config: SpaceConfig) -> dict[str, Any]:
    return {"config_hash": config.config_hash, "canonical_json": config.canonical_json()}


def _open_error(path: Path, exc: duckdb.Error, waited_s: float) -> StoreError:
    message = str(exc)
    if "Could not set lock" in message:
        pid = re.search(r"\(PID (\d+)\)", message)
        holder = f" (process {pid.group(1)})" if pid else ""
        return StoreError(f"{path}: another process{holder} has held this run store open for "
                          f"more than {waited_s:g}s (memevolve itself holds it only for one read "
                          "or one round's transaction; a duckdb shell or notebook holds it until "
                          "it closes). Fix: close that process's connection, or pass --db with "
                          "another file.")
    if "not a valid DuckDB database file" in message:
        return StoreError(f"{path}: exists but is not a DuckDB database file. Fix: pass --db with "
                          "a .duckdb file written by memevolve, or a new path.")
    if "database does not exist" in message:
        return StoreError(f"{path}: no run store there yet. Fix: run 'memevolve eval' or "
                          "'memevolve run' first, or pass --db with an existing file.")
    return StoreError(f"{path}: cannot open the run store ({message}). Fix: pass --db with "
                      "another file.")
