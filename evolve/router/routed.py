"""The routed memory system: each question evaluated with the tier combination the policy picks."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from benchmarks.errors import MemevolveError
from evolve.evaluation import evaluate_configs, mean_score
from evolve.memory.system import MemorySystem
from evolve.router.features import feature_matrix

if TYPE_CHECKING:
    from benchmarks.model import Question
    from evolve.evaluation import Evaluator
    from evolve.router.model import RouterModel
    from evolve.store import RunStore


@dataclass
class RoutedResult:
    """Rows in question order, the lambda used and how many questions each combination got."""

    rows: list[dict[str, Any]]
    lam: float
    combos: Counter[str]
    score: float | None
    n_reused: int


def routed_evaluation(evaluator: "Evaluator", model: "RouterModel",
                      questions: Sequence["Question"], *, lam: float | None = None,
                      budget: float | None = None, part: str, objective: str,
                      store: "RunStore | None" = None, run_id: str | None = None) -> RoutedResult:
    """Route every question (features -> policy at lambda, or the lambda that meets a mean
    context-token budget), then evaluate each combination's questions with its config."""
    if (lam is None) == (budget is None):
        raise MemevolveError("routing needs exactly one of --lambda and --budget. Fix: pass one.")
    if lam is not None:
        model.check_lambda(lam)
    if not questions:
        raise MemevolveError("no question to route. Fix: choose a non-empty split part.")
    wanted = {q.conversation_id for q in questions}
    system = MemorySystem([c for c in evaluator.benchmark.conversations if c.id in wanted],
                          questions, evaluator.embedder)
    features = model.feature_spec.transform(feature_matrix(questions, system))
    if lam is None:
        lam = model.lambda_for_budget(features, budget)  # type: ignore[arg-type]
    tiers = model.tier_space
    chosen = model.choose(features, lam)
    by_combo: dict[int, list[str]] = {}
    for question, index in zip(questions, chosen):
        by_combo.setdefault(int(index), []).append(question.id)
    rows_by_id: dict[str, dict[str, Any]] = {}
    n_reused = 0
    for index, ids in sorted(by_combo.items()):
        result = evaluate_configs(evaluator, [tiers.config(tiers.combos[index])], ids, part=part,
                                  objective=objective, store=store, run_id=run_id)[0]
        n_reused += result.n_reused
        for row in result.rows:
            rows_by_id[row["question_id"]] = {**row, "combo": tiers.combo_label(
                tiers.combos[index])}
    rows = [rows_by_id[q.id] for q in questions]
    return RoutedResult(rows, lam, Counter(r["combo"] for r in rows), mean_score(rows, objective),
                        n_reused)
