"""Tables and PNG plots of evaluations and evolution runs, read back from the run store."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from rich.table import Table

from evolve.console import console, table

if TYPE_CHECKING:
    from evolve.evaluation import EvaluationResult
    from evolve.evolution import RunOutcome
    from evolve.store import RunStore

METRICS = ("recall_at_5", "recall_at_10", "recall_in_context", "answer_f1")


def _mean(values: Iterable[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


#: Row labels of the two summary groups: BudgetMem's headline leaves adversarial questions out.
HEADLINE = "all (non-adversarial)"
ADVERSARIAL = "adversarial"


def category_summary(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Per category, then the headline (non-adversarial questions) and the adversarial ones
    apart: n, the recall metrics, answer F1 and mean context tokens."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["category"]].append(row)
    summary = [(HEADLINE, [r for r in rows if not r["adversarial"]]),
               (ADVERSARIAL, [r for r in rows if r["adversarial"]])]
    out = []
    for name, members in sorted(groups.items()) + [g for g in summary if g[1]]:
        out.append([name, len(members)] + [_mean(r[m] for r in members) for m in METRICS]
                   + [_mean(r["context_tokens"] for r in members)])
    return out


def category_table(title: str, rows: list[dict[str, Any]]) -> Table:
    return table(title, ["category", "n", "recall@5", "recall@10", "recall in context",
                         "answer F1", "context tokens"], category_summary(rows))


def invalid_reasons(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Why questions were not scored: reason -> how many, most frequent first."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.get("invalid_reason"):
            counts[row["invalid_reason"]] += 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def print_invalid(reasons: dict[str, int], total: int, shown: int = 3) -> None:
    """One line per distinct reason (the first ``shown``), never one per question."""
    console.print(f"{sum(reasons.values())} of {total} questions are invalid (not scored):")
    for reason, n in list(reasons.items())[:shown]:
        console.print(f"  {n} x {reason[:400]}", soft_wrap=True)
    if len(reasons) > shown:
        console.print(f"  ... and {len(reasons) - shown} other reasons")


def official_retrieval_table(title: str, rows: list[dict[str, Any]]) -> Table | None:
    """LongMemEval's official retrieval metrics, averaged as officially: over the
    non-adversarial questions that have a user-side gold turn; None when no row has them."""
    from evolve.systems import OFFICIAL_COLUMNS

    scored = [r for r in rows if not r["adversarial"] and not r.get("invalid_reason")
              and r.get("lme_turn_recall_any_at_5") is not None]
    if not scored:
        return None
    return table(f"{title} ({len(scored)} questions scored)", ["metric", "mean"],
                 [[key, _mean(r[column] for r in scored)]
                  for column, key in OFFICIAL_COLUMNS.items()]
                 + [["turn recall@5 (all benchmarks)", _mean(r["turn_recall_at_5"] for r in scored)],
                    ["turn recall@10", _mean(r["turn_recall_at_10"] for r in scored)]])


def question_type_table(title: str, rows: list[dict[str, Any]]) -> Table | None:
    """Accuracy of the predicted question type against the gold category, per category; None
    when no row was routed by a predictor."""
    from evolve.question_types import accuracy_by_category

    accuracy = accuracy_by_category(rows)
    if not accuracy:
        return None
    return table(title, ["category", "n", "predicted right"], [list(a) for a in accuracy])


def print_outcome(store: "RunStore", outcome: "RunOutcome") -> None:
    """Start against evolved config, on dev and (once) on test, and the edits that got there."""
    def line(part: str, start: "EvaluationResult", best: "EvaluationResult") -> list[Any]:
        return [part, start.score, best.score, (best.score or 0) - (start.score or 0),
                start.adversarial_score, best.adversarial_score]

    rows = [line("dev", outcome.start, outcome.best)]
    if outcome.test_start is not None and outcome.test_best is not None:
        rows.append(line("test", outcome.test_start, outcome.test_best))
    console.print(table(f"run {outcome.run_id}: {outcome.status} after {outcome.rounds} rounds, "
                        f"{evaluations_text(outcome.evaluations)}, {outcome.wall_s:.1f}s "
                        "(headline: non-adversarial questions)",
                        ["split", "start", "evolved", "gain", "adversarial start",
                         "adversarial evolved"], rows))
    if outcome.llm_fallbacks:
        console.print(llm_fallback_line(outcome.llm_rounds, outcome.llm_fallbacks),
                      soft_wrap=True)
    changes = outcome.best.config.differences(outcome.start.config)
    if changes:
        console.print(table("edits accepted (start -> evolved)", ["field", "start", "evolved"],
                            [[k, v[1], v[0]] for k, v in changes.items()]))
    if outcome.test_best is not None:
        console.print(category_table("evolved config on test, per category",
                                     outcome.test_best.rows))
        types = question_type_table("question-type predictor on test (trained on dev only)",
                                    outcome.test_best.rows)
        if types is not None:
            console.print(types)


def evaluations_text(evaluations: float) -> str:
    """The budget spent: screening on a subsample counts by the share of dev questions it
    scored, so the figure can be fractional; one decimal says enough."""
    return f"{round(evaluations, 1):g} evaluations"


def llm_fallback_line(llm_rounds: int, fallbacks: list[str]) -> str:
    every = "every one" if len(fallbacks) == llm_rounds else f"{len(fallbacks)}"
    return (f"warning: the LLM diagnoser fell back to rules in {every} of its {llm_rounds} "
            f"rounds (first reason: {fallbacks[0][:300]})")


def trajectory(store: "RunStore", run_id: str) -> list[dict[str, Any]]:
    return store.query("""
        SELECT c.round, c.candidate, c.proposer, c.edit_json, c.dev_score, c.delta, c.ci_low,
               c.ci_high, c.p_value, c.decision, c.reason, r.mode, r.incumbent_score
        FROM candidates c JOIN rounds r USING (run_id, round)
        WHERE c.run_id = ? ORDER BY c.round, c.candidate""", [run_id])


def print_trajectory(store: "RunStore", run_id: str) -> None:
    run = store.run(run_id)
    rounds = store.query("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", [run_id])
    console.print(f"run {run_id} ({run['benchmark_key']}, split {run['split_name']}): "
                  f"{run['status']}")
    rows = [[c["round"], c["proposer"], _short_edit(c["edit_json"]), c["dev_score"],
             f"{c['delta']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
             if c["delta"] is not None else None, c["decision"]]
            for c in trajectory(store, run_id)]
    console.print(table("candidates", ["round", "proposer", "edit", "dev score",
                                       "delta [CI]", "decision"], rows))
    console.print(table("rounds", ["round", "mode", "decision", "incumbent dev", "reason"],
                        [[r["round"], r["mode"], r["decision"], r["incumbent_score"],
                          r["reason"][:120]] for r in rounds]))
    tests = [e for e in store.evaluations(run_id) if e["part"] == "test"]
    if tests:
        console.print(table("test evaluations (headline: non-adversarial questions)",
                            ["evaluation", "config", "headline", "adversarial (apart)"],
                            [[e["evaluation_id"], e["config_hash"], e["score"],
                              e["adversarial_score"]] for e in tests]))
        types = question_type_table("question-type predictor on test (trained on dev only)",
                                    store.evaluation_results(tests[-1]["evaluation_id"]))
        if types is not None:
            console.print(types)
    asked = [r for r in rounds if r["mode"] == "diagnose" or r["diagnoser_fallback"]]
    fallbacks = [r["diagnoser_fallback"] for r in asked if r["diagnoser_fallback"]]
    if fallbacks:
        console.print(llm_fallback_line(len(asked), fallbacks), soft_wrap=True)


def _short_edit(edit_json: str) -> str:
    import json

    edits = json.loads(edit_json)
    return ", ".join(f"{e['field']}{'[' + e['category'] + ']' if e.get('category') else ''}="
                     f"{e['value']}" for e in edits)[:80]


def write_plots(store: "RunStore", run_id: str, folder: Path) -> list[Path]:
    """trajectory.png (dev score per round, candidates and incumbent) and categories.png
    (per-category score of the start and the best config, dev and test)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rounds = store.query("SELECT round, incumbent_score FROM rounds WHERE run_id = ? "
                         "ORDER BY round", [run_id])
    cands = trajectory(store, run_id)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["round"] for r in rounds], [r["incumbent_score"] for r in rounds], "-o",
            color="black", label="incumbent (dev)")
    for decision, colour in (("accepted", "tab:green"), ("rejected", "tab:gray"),
                             ("reverted", "tab:red")):
        pts = [(c["round"], c["dev_score"]) for c in cands
               if c["decision"] == decision and c["dev_score"] is not None]
        if pts:
            ax.scatter(*zip(*pts), color=colour, s=18, label=decision, zorder=3)
    objective = _objective(store, run_id)
    ax.set_xlabel("round")
    ax.set_ylabel(f"dev {objective}")
    ax.set_title(f"evolution {run_id}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths = [folder / "trajectory.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    evals = store.evaluations(run_id)
    if rounds and evals:
        start_hash = store.query("SELECT incumbent_hash FROM rounds WHERE run_id = ? "
                                 "ORDER BY round LIMIT 1", [run_id])[0]["incumbent_hash"]
        best_hash = store.query("SELECT incumbent_hash FROM rounds WHERE run_id = ? "
                                "ORDER BY round DESC LIMIT 1", [run_id])[0]["incumbent_hash"]
        column = "judge_correct" if objective == "judge" else objective
        data = store.query(f"""
            SELECT e.part, e.config_hash, qr.category, avg(qr.{column}::DOUBLE) AS score
            FROM evaluations e JOIN evaluation_questions eq USING (evaluation_id)
            JOIN question_results qr ON qr.config_hash = e.config_hash
             AND qr.benchmark_key = e.benchmark_key AND qr.question_id = eq.question_id
            WHERE e.run_id = ? AND e.config_hash IN (?, ?)
            GROUP BY ALL ORDER BY qr.category""", [run_id, start_hash, best_hash])
        categories = sorted({d["category"] for d in data})
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.2
        series = [(p, h, label) for p in ("dev", "test")
                  for h, label in ((start_hash, "start"), (best_hash, "evolved"))]
        for i, (part, config_hash, label) in enumerate(series):
            values = {d["category"]: d["score"] for d in data
                      if d["part"] == part and d["config_hash"] == config_hash}
            ax.bar([c + (i - 1.5) * width for c in range(len(categories))],
                   [values.get(c) or 0 for c in categories], width, label=f"{label} ({part})")
        ax.set_xticks(range(len(categories)), categories)
        ax.set_xlabel("category")
        ax.set_ylabel(objective)
        ax.legend(fontsize=8)
        ax.set_title("per category: start vs evolved")
        fig.tight_layout()
        paths.append(folder / "categories.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _objective(store: "RunStore", run_id: str) -> str:
    import json

    settings = json.loads(store.run(run_id)["settings_json"])
    return settings.get("objective", "recall_in_context")
