"""The rules diagnoser: an edit that once changed no outcome is not proposed again."""
from __future__ import annotations

from benchmarks import load_benchmark
from benchmarks.splits import make_split
from evolve.diagnosers.base import Attempt, DiagnosisContext
from evolve.diagnosers.rules import RulesDiagnoser
from evolve.evaluation import Evaluator, evaluate_configs
from evolve.store import RunStore
from search_space.config import load_preset


def test_an_edit_with_an_exact_zero_delta_is_not_proposed_again(tmp_path):
    bench = load_benchmark("synthetic", conversations=2, sessions=3, turns=8, questions=6)
    split = make_split(bench, "all")
    weak = load_preset("weak")
    ids = [q.id for q in bench.questions]
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("evolve-rules", "evolve", bench, split, {})
        evaluate_configs(Evaluator(bench, workers=0), [weak], ids, part="dev",
                         objective="recall_in_context", store=store, run_id="evolve-rules")

        def propose(history: list[Attempt]) -> list[str]:
            context = DiagnosisContext(
                store=store, run_id="evolve-rules", round=1, incumbent=weak,
                benchmark_key=bench.key, question_ids=ids, objective="recall_in_context",
                max_context_tokens=1000, history=history, seed=0, n_proposals=4)
            return [p.edit_json() for p in RulesDiagnoser().propose(context)]

        first = propose([])
        inert, gained = first[0], first[1]
        again = propose([Attempt(1, "rules", inert, 0.0, "rejected"),
                         Attempt(1, "rules", gained, 0.01, "rejected")])
    assert inert not in again and gained in again
