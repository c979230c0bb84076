"""Logged outcomes: every tier combination evaluated on every question, quality and cost in DuckDB."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from benchmarks.errors import MemevolveError
from evolve.evaluation import evaluate_configs, objective_column

if TYPE_CHECKING:
    from evolve.evaluation import Evaluator
    from evolve.store import RunStore
    from search_space.tiers import TierSpace

#: Columns of router_outcomes a router can be trained to maximise.
QUALITY_OBJECTIVES = ("recall_in_context", "recall_at_k", "answer_f1")


class NoOutcomesError(MemevolveError):
    """The store holds no (or not all) logged outcomes the router needs."""


@dataclass(frozen=True)
class Outcomes:
    """Quality and cost measures, one row per question and one column per tier combination."""

    question_ids: tuple[str, ...]
    conversation_ids: tuple[str, ...]
    combos: tuple[str, ...]
    quality: np.ndarray          # NaN where the objective is undefined (no gold evidence)
    context_tokens: np.ndarray
    llm_usd: np.ndarray          # LLM tokens at the model's list price (local models: 0)
    latency_ms: np.ndarray

    def measures(self) -> dict[str, np.ndarray]:
        return {"context_tokens": self.context_tokens, "llm_usd": self.llm_usd,
                "latency_ms": self.latency_ms}

    def subset(self, question_ids: Sequence[str]) -> "Outcomes":
        index = {q: i for i, q in enumerate(self.question_ids)}
        rows = [index[q] for q in question_ids]
        return Outcomes(tuple(question_ids), tuple(self.conversation_ids[i] for i in rows),
                        self.combos, self.quality[rows], self.context_tokens[rows],
                        self.llm_usd[rows], self.latency_ms[rows])

    def scored(self) -> "Outcomes":
        """Only the questions whose quality is defined under every combination."""
        keep = ~np.isnan(self.quality).any(axis=1)
        return self.subset([q for q, k in zip(self.question_ids, keep) if k])


def check_objective(objective: str) -> None:
    if objective not in QUALITY_OBJECTIVES:
        raise MemevolveError(f"the router cannot optimise '{objective}'. Fix: use one of "
                             f"{', '.join(QUALITY_OBJECTIVES)}.")


def cost_reference(outcomes: Outcomes, high_combo: str) -> dict[str, float]:
    """Mean of each cost measure under the all-high combination: the unit of normalised cost."""
    column = outcomes.combos.index(high_combo)
    return {name: float(values[:, column].mean()) for name, values in outcomes.measures().items()}


def normalised_cost(outcomes: Outcomes, weights: dict[str, float],
                    reference: dict[str, float]) -> np.ndarray:
    """Sum over measures of weight * value / all-high mean; all-high costs sum(weights) on the
    training questions. A measure with a zero reference (nothing spent) adds nothing."""
    total = np.zeros_like(outcomes.context_tokens, dtype=np.float64)
    for name, values in outcomes.measures().items():
        if weights.get(name, 0.0) and reference[name] > 0:
            total += weights[name] * values / reference[name]
    return total


def log_outcomes(evaluator: "Evaluator", tiers: "TierSpace", question_ids: Sequence[str], *,
                 store: "RunStore", run_id: str, objective: str) -> Outcomes:
    """Evaluate every combination's config on the questions in one parallel batch (stored
    outcomes are reused) and write one router_outcomes row per (question, combination)."""
    configs = tiers.configs()
    results = evaluate_configs(evaluator, configs, list(question_ids), part="all",
                               objective=objective, store=store, run_id=run_id)
    rows = []
    for combo, config, result in zip(tiers.combos, configs, results):
        label = tiers.combo_label(combo)
        for row in result.rows:
            rows.append({
                "tiers_hash": tiers.tiers_hash, "benchmark_key": evaluator.benchmark.key,
                "question_id": row["question_id"], "conversation_id": row["conversation_id"],
                "combo": label, "config_hash": config.config_hash, "run_id": run_id,
                "recall_in_context": row["recall_in_context"], "recall_at_k": row["recall_at_k"],
                "answer_f1": row["answer_f1"], "context_tokens": row["context_tokens"],
                "llm_prompt_tokens": row["llm_prompt_tokens"],
                "llm_completion_tokens": row["llm_completion_tokens"],
                "llm_usd": list_price(config.answer_model, row["llm_prompt_tokens"],
                                      row["llm_completion_tokens"]),
                "latency_ms": row["latency_ms"]})
    with store.transaction():
        store.query("""
            DELETE FROM router_outcomes
            WHERE tiers_hash = $tiers_hash AND benchmark_key = $benchmark_key
              AND question_id IN (SELECT UNNEST($ids::VARCHAR[]))""",
                    {"tiers_hash": tiers.tiers_hash, "benchmark_key": evaluator.benchmark.key,
                     "ids": list(question_ids)})
        store.insert_rows("router_outcomes", rows)
    return load_outcomes(store, tiers, evaluator.benchmark.key, question_ids, objective)


def load_outcomes(store: "RunStore", tiers: "TierSpace", benchmark_key: str,
                  question_ids: Sequence[str], objective: str) -> Outcomes:
    """The logged outcomes of these questions under every combination of the tier space."""
    check_objective(objective)
    column = objective_column(objective)
    labels = [tiers.combo_label(c) for c in tiers.combos]
    rows = store.query(f"""
        SELECT question_id, conversation_id, combo, {column} AS quality, context_tokens, llm_usd,
               latency_ms
        FROM router_outcomes
        WHERE tiers_hash = $tiers_hash AND benchmark_key = $benchmark_key
          AND question_id IN (SELECT UNNEST($ids::VARCHAR[]))""",
                       {"tiers_hash": tiers.tiers_hash, "benchmark_key": benchmark_key,
                        "ids": list(question_ids)})
    expected = len(question_ids) * len(labels)
    if len(rows) < expected:
        have = "none" if not rows else f"only {len(rows)} of the {expected}"
        raise NoOutcomesError(
            f"{store.path}: {have} logged outcomes (question x tier combination) of tier space "
            f"{tiers.tiers_hash} on {benchmark_key} for these {len(question_ids)} questions. "
            "Fix: run 'memevolve router train' on this benchmark and split with this --db "
            "first; it logs every combination on every question.")
    index = {q: i for i, q in enumerate(question_ids)}
    column_of = {c: j for j, c in enumerate(labels)}
    shape = (len(question_ids), len(labels))
    arrays: dict[str, np.ndarray] = {k: np.full(shape, np.nan)
                                     for k in ("quality", "context_tokens", "llm_usd",
                                               "latency_ms")}
    conversations: dict[str, str] = {}
    for row in rows:
        i, j = index[row["question_id"]], column_of[row["combo"]]
        conversations[row["question_id"]] = row["conversation_id"]
        for key, values in arrays.items():
            values[i, j] = np.nan if row[key] is None else float(row[key])
    return Outcomes(tuple(question_ids), tuple(conversations[q] for q in question_ids),
                    tuple(labels), **arrays)


def list_price(model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
    """LLM tokens at litellm's list price: the cost of the work even when the reply came from
    the response cache (whose calls are recorded at 0). Local models are registered at 0."""
    if model is None or not (prompt_tokens or completion_tokens):
        return 0.0
    import litellm

    try:
        prompt_usd, completion_usd = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    except Exception as exc:  # noqa: BLE001 - litellm raises several types for unknown prices
        raise MemevolveError(f"no list price known for LLM '{model}' ({exc}), so the router "
                             "cannot weigh its cost. Fix: use a model in litellm's cost map, "
                             "or serve it locally (--local-llm, or --api-base on 127.0.0.1), "
                             "which is priced at zero.") from None
    return float(prompt_usd + completion_usd)

