"""`router train`: log every tier combination on the split, compute features, train one policy per
seed and keep the checkpoint with the best validation frontier."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from benchmarks.errors import MemevolveError
from evolve.memory.system import MemorySystem
from evolve.router.features import FeatureSpec, feature_matrix
from evolve.router.model import RouterModel
from evolve.router.outcomes import (Outcomes, check_objective, cost_reference, log_outcomes,
                                     normalised_cost)
from evolve.router.policy import Batch, TrainSettings, train_policy

if TYPE_CHECKING:
    from benchmarks.model import Benchmark
    from benchmarks.splits import Split
    from evolve.evaluation import Evaluator
    from evolve.store import RunStore
    from search_space.tiers import TierSpace

#: Share of the dev conversations held out (whole conversations) to select checkpoints on.
VAL_SHARE = 0.25


@dataclass(frozen=True)
class RouterData:
    """One part's logged outcomes with the features and normalised cost the policy sees."""

    outcomes: Outcomes
    features: np.ndarray      # scaled
    cost: np.ndarray

    def batch(self) -> Batch:
        return Batch(self.features, self.outcomes.quality, self.cost)


def validation_split(split: "Split", share: float = VAL_SHARE) -> tuple[list[str], list[str]]:
    """(train, validation) conversations: the last ``share`` of the dev conversations validate,
    so a conversation's questions never straddle (LoCoMo budgetmem: 0-5 train, 6-7 validation)."""
    dev = list(split.dev)
    n_val = max(1, round(len(dev) * share))
    if len(dev) - n_val < 1:
        raise MemevolveError(f"split '{split.name}' has {len(dev)} dev conversation(s): the "
                             "router needs at least 2 (one to train on, one to validate on). "
                             "Fix: use a split with more dev conversations.")
    return dev[:-n_val], dev[-n_val:]


def router_data(benchmark: "Benchmark", outcomes: Outcomes, spec: FeatureSpec,
                system: MemorySystem, weights: dict[str, float],
                reference: dict[str, float]) -> RouterData:
    """Scaled features and normalised cost of the questions with a defined quality."""
    scored = outcomes.scored()
    by_id = {q.id: q for q in benchmark.questions}
    raw = feature_matrix([by_id[q] for q in scored.question_ids], system)
    return RouterData(scored, spec.transform(raw), normalised_cost(scored, weights, reference))


def train_router(evaluator: "Evaluator", split: "Split", tiers: "TierSpace", *,
                 store: "RunStore", run_id: str, objective: str, seeds: Sequence[int],
                 settings: TrainSettings = TrainSettings(),
                 report: Callable[[str], None] = lambda line: None) -> RouterModel:
    """Log outcomes on every question of the split, then train and select the policies."""
    if not seeds:
        raise MemevolveError("no seed to train. Fix: pass --seeds with at least one seed.")
    check_objective(objective)
    benchmark = evaluator.benchmark
    train_convs, val_convs = validation_split(split)
    questions = split.questions(benchmark, "all")
    start = time.perf_counter()
    outcomes = log_outcomes(evaluator, tiers, [q.id for q in questions], store=store,
                            run_id=run_id, objective=objective)
    logging_s = time.perf_counter() - start
    report(f"logged {len(questions)} questions x {len(tiers.combos)} tier combinations in "
           f"{logging_s:.1f}s")

    def part(conversations: list[str]) -> Outcomes:
        wanted = set(conversations)
        return outcomes.subset([q.id for q in questions if q.conversation_id in wanted])

    train_outcomes = part(train_convs).scored()
    if not train_outcomes.question_ids:
        raise MemevolveError(f"no training question has a defined {objective}. Fix: use "
                             "another objective or benchmark.")
    high = tiers.combo_label(tiers.combos[-1])
    reference = cost_reference(train_outcomes, high)
    system = MemorySystem([c for c in benchmark.conversations if c.id in set(split.dev)],
                          [q for q in questions if q.conversation_id in set(split.dev)],
                          evaluator.embedder)
    by_id = {q.id: q for q in benchmark.questions}
    start = time.perf_counter()
    spec = FeatureSpec().fitted(feature_matrix(
        [by_id[q] for q in train_outcomes.question_ids], system))
    train = router_data(benchmark, train_outcomes, spec, system, tiers.cost_weights, reference)
    val = router_data(benchmark, part(val_convs), spec, system, tiers.cost_weights, reference)
    report(f"features of {len(train.features) + len(val.features)} questions in "
           f"{time.perf_counter() - start:.1f}s")
    start = time.perf_counter()
    trained = []
    for seed in seeds:
        result = train_policy(train.batch(), val.batch(), len(tiers.modules),
                              dataclasses.replace(settings, seed=seed))
        report(f"seed {seed}: validation frontier area {result.val_area:.4f} at step "
               f"{result.best_step} ({result.wall_s:.1f}s)")
        trained.append(result)
    train_wall = time.perf_counter() - start
    selected = int(np.argmax([t.val_area for t in trained]))
    return RouterModel(
        feature_spec=spec, tiers=tiers.to_dict(), tiers_hash=tiers.tiers_hash,
        objective=objective, lambda_min=settings.lambda_min, lambda_max=settings.lambda_max,
        hidden=settings.hidden, policies=[t.state_dict for t in trained],
        seeds=[t.seed for t in trained], val_area=[t.val_area for t in trained],
        selected=selected, cost_reference=reference,
        combo_tokens=[float(v) for v in train.outcomes.context_tokens.mean(axis=0)],
        benchmark={"name": benchmark.name, "key": benchmark.key, "variant": benchmark.variant,
                   "split": split.name, "split_seed": split.seed, "train": train_convs,
                   "val": val_convs, "test": list(split.test)},
        metrics={"run_id": run_id, "logging_s": logging_s, "train_wall_s": train_wall,
                 "steps": settings.steps, "best_steps": [t.best_step for t in trained],
                 "n_train": len(train.features), "n_val": len(val.features)})
