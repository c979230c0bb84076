"""The accuracy-cost frontier on test: the router per lambda (over seeds) against every fixed tier
combination, the per-query oracle and an evolved config; as a table, a PNG and DuckDB rows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from evolve.router.model import RouterModel
    from evolve.router.training import RouterData
    from evolve.store import RunStore

DEFAULT_LAMBDAS = (0.02, 0.05, 0.1, 0.3, 1.0)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class FrontierPoint:
    """Mean quality and cost of one method on the test questions (CIs over training seeds)."""

    method: str                      # router | fixed | oracle | evolved
    label: str
    lam: float | None
    n_seeds: int
    n_questions: int
    quality: float
    quality_ci: tuple[float, float] | None
    context_tokens: float
    context_tokens_ci: tuple[float, float] | None
    cost: float | None

    def as_row(self, run_id: str, model_id: str) -> dict[str, object]:
        q_ci = self.quality_ci or (None, None)
        t_ci = self.context_tokens_ci or (None, None)
        return {"run_id": run_id, "model_id": model_id, "method": self.method,
                "label": self.label, "cost_lambda": self.lam, "n_seeds": self.n_seeds,
                "n_questions": self.n_questions, "quality": self.quality,
                "quality_ci_low": q_ci[0], "quality_ci_high": q_ci[1],
                "context_tokens": self.context_tokens, "context_tokens_ci_low": t_ci[0],
                "context_tokens_ci_high": t_ci[1], "cost": self.cost}


def frontier(model: "RouterModel", test: "RouterData",
             lambdas: Sequence[float] = DEFAULT_LAMBDAS) -> list[FrontierPoint]:
    """Router (every seed's greedy policy, per lambda), fixed combinations and oracle."""
    for lam in lambdas:
        model.check_lambda(lam)
    quality, tokens, cost = test.outcomes.quality, test.outcomes.context_tokens, test.cost
    rows = np.arange(len(quality))
    n = len(rows)
    points = []
    for lam in lambdas:
        per_seed = []
        for index in range(len(model.seeds)):
            chosen = model.choose(test.features, lam, index)
            per_seed.append((quality[rows, chosen].mean(), tokens[rows, chosen].mean(),
                             cost[rows, chosen].mean()))
        q, t, c = (np.array(v) for v in zip(*per_seed))
        points.append(FrontierPoint("router", f"{lam:g}", lam, len(per_seed), n,
                                    float(q.mean()), t_interval(q), float(t.mean()),
                                    t_interval(t), float(c.mean())))
    for j, label in enumerate(test.outcomes.combos):
        points.append(FrontierPoint("fixed", label, None, 0, n, float(quality[:, j].mean()),
                                    None, float(tokens[:, j].mean()), None,
                                    float(cost[:, j].mean())))
    for lam in lambdas:
        # The best combination per question in hindsight: an upper bound no router can pass.
        best = np.argmax(quality - lam * cost, axis=1)
        points.append(FrontierPoint("oracle", f"{lam:g}", lam, 0, n,
                                    float(quality[rows, best].mean()), None,
                                    float(tokens[rows, best].mean()), None,
                                    float(cost[rows, best].mean())))
    return points


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t interval of the mean over seeds; None for a single seed."""
    if len(values) < 2:
        return None
    from scipy.stats import t

    half = float(t.ppf(0.5 + confidence / 2, len(values) - 1)
                 * values.std(ddof=1) / math.sqrt(len(values)))
    mean = float(values.mean())
    return mean - half, mean + half


def best_within(points: Sequence[FrontierPoint], method: str,
                tokens: float) -> FrontierPoint | None:
    """The best point of ``method`` costing at most ``tokens`` mean context tokens."""
    affordable = [p for p in points if p.method == method and p.context_tokens <= tokens + 1e-9]
    return max(affordable, key=lambda p: p.quality, default=None)


def router_margin(points: Sequence[FrontierPoint],
                  point: FrontierPoint) -> tuple[FrontierPoint, float] | None:
    """What a point is compared with, and router quality minus the other's: a router point
    against the best fixed combination it can afford; a fixed or evolved point against the best
    router point that costs no more. A positive margin means the router wins at that cost."""
    if point.method == "router":
        other = best_within(points, "fixed", point.context_tokens)
        return (other, point.quality - other.quality) if other else None
    if point.method in ("fixed", "evolved"):
        other = best_within(points, "router", point.context_tokens)
        return (other, other.quality - point.quality) if other else None
    return None


def router_quality_at(points: Sequence[FrontierPoint], tokens: float) -> float | None:
    """Router quality at exactly ``tokens`` mean context tokens, interpolated between the two
    router points around it: routing each question with one lambda or the other, at random,
    achieves any mix of the two. None outside the router's range."""
    router = sorted((p.context_tokens, p.quality) for p in points if p.method == "router")
    for (t0, q0), (t1, q1) in zip(router, router[1:]):
        if t0 <= tokens <= t1:
            return q0 if t1 == t0 else q0 + (q1 - q0) * (tokens - t0) / (t1 - t0)
    return None


def store_frontier(store: "RunStore", run_id: str, model_id: str,
                   points: Sequence[FrontierPoint]) -> None:
    store.insert_rows("router_frontier", [p.as_row(run_id, model_id) for p in points])


def plot_frontier(points: Sequence[FrontierPoint], path: str | Path, title: str) -> Path:
    """Quality against mean context tokens: fixed combinations labelled, router with seed CIs,
    oracle and evolved config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    fixed = [p for p in points if p.method == "fixed"]
    ax.scatter([p.context_tokens for p in fixed], [p.quality for p in fixed], color="0.45",
               label="fixed tiers", zorder=2)
    for p in fixed:
        ax.annotate(p.label, (p.context_tokens, p.quality), textcoords="offset points",
                    xytext=(4, -10), fontsize=8, color="0.35")
    router = sorted((p for p in points if p.method == "router"), key=lambda p: p.context_tokens)
    if router:
        xerr = _errors([p.context_tokens for p in router], [p.context_tokens_ci for p in router])
        yerr = _errors([p.quality for p in router], [p.quality_ci for p in router])
        ax.errorbar([p.context_tokens for p in router], [p.quality for p in router], xerr=xerr,
                    yerr=yerr, marker="o", color="tab:blue", capsize=3, zorder=3,
                    label=f"router ({router[0].n_seeds} seeds, 95% CI)")
        for p in router:
            ax.annotate(f"λ={p.label}", (p.context_tokens, p.quality),
                        textcoords="offset points", xytext=(4, 5), fontsize=8, color="tab:blue")
    oracle = sorted((p for p in points if p.method == "oracle"), key=lambda p: p.context_tokens)
    if oracle:
        ax.plot([p.context_tokens for p in oracle], [p.quality for p in oracle], "--",
                color="tab:green", marker="^", label="per-query oracle")
    for p in points:
        if p.method == "evolved":
            ax.scatter([p.context_tokens], [p.quality], marker="*", s=160, color="tab:red",
                       label=f"evolved config {p.label[:8]}", zorder=4)
    ax.set_xlabel("mean context tokens per question")
    ax.set_ylabel("quality")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _errors(means: list[float], cis: list[tuple[float, float] | None]) -> np.ndarray | None:
    if any(ci is None for ci in cis):
        return None
    return np.array([[m - ci[0] for m, ci in zip(means, cis)],  # type: ignore[index]
                     [ci[1] - m for m, ci in zip(means, cis)]])  # type: ignore[index]
