"""A trained router on disk: its policies (one per seed), feature spec, tier space and lambda range."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.errors import MemevolveError
from evolve.router.features import FeatureSpec
from evolve.router.policy import TierPolicy, greedy_combos, lambda_grid
from search_space.tiers import TierSpace, tiers_from_dict

FORMAT = "memevolve-router/1"
#: Lambdas tried when a token budget is turned into a lambda.
BUDGET_GRID = 81


class RouterModelError(MemevolveError):
    """A router file that cannot be used as asked: names the file and the fix."""


@dataclass
class RouterModel:
    """Everything `eval --router` and `router eval` need, with no other file to agree with."""

    feature_spec: FeatureSpec
    tiers: dict[str, Any]            # TierSpace.to_dict(): base inline, patches, cost weights
    tiers_hash: str
    objective: str
    lambda_min: float
    lambda_max: float
    hidden: int
    policies: list[dict[str, torch.Tensor]]
    seeds: list[int]
    val_area: list[float]
    selected: int                    # index of the seed with the best validation area
    cost_reference: dict[str, float]
    combo_tokens: list[float]        # mean context tokens per combination, training questions
    benchmark: dict[str, Any]        # name, key, data, variant, split, split_seed, train, val
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = "router"

    @property
    def tier_space(self) -> TierSpace:
        return tiers_from_dict(self.tiers, f"{self.source} (its tiers)")

    @property
    def selected_seed(self) -> int:
        return self.seeds[self.selected]

    def policy(self, index: int | None = None) -> TierPolicy:
        """The policy of seed ``index`` (default: the selected one), ready for inference."""
        state = self.policies[self.selected if index is None else index]
        n_modules = len(self.tiers["modules"])
        policy = TierPolicy(len(self.feature_spec.names), n_modules, self.hidden)
        policy.load_state_dict(state)
        policy.eval()
        return policy

    def check_lambda(self, lam: float) -> None:
        if not self.lambda_min <= lam <= self.lambda_max:
            raise RouterModelError(
                f"{self.source}: lambda {lam:g} is outside the range the policy was trained on "
                f"[{self.lambda_min:g}, {self.lambda_max:g}]; it would extrapolate. Fix: pass "
                "a lambda in that range, or retrain with --lambda-min/--lambda-max covering it.")

    def choose(self, features: np.ndarray, lam: float, index: int | None = None) -> np.ndarray:
        """Combination index (TierSpace.combos order) per question, from scaled features."""
        self.check_lambda(lam)
        return greedy_combos(self.policy(index), features, lam, self.lambda_min, self.lambda_max)

    def lambda_for_budget(self, features: np.ndarray, budget: float) -> float:
        """The smallest lambda (most quality) whose choices for these questions are expected to
        stay within ``budget`` mean context tokens, each combination costing its training mean."""
        tokens = np.array(self.combo_tokens)
        policy = self.policy()
        cheapest = np.inf
        for lam in lambda_grid(self.lambda_min, self.lambda_max, BUDGET_GRID):
            expected = float(tokens[greedy_combos(policy, features, lam, self.lambda_min,
                                                  self.lambda_max)].mean())
            if expected <= budget:
                return float(lam)
            cheapest = min(cheapest, expected)
        raise RouterModelError(
            f"{self.source}: a budget of {budget:g} context tokens per question is below what the "
            f"router reaches at its largest lambda ({cheapest:.0f} expected). Fix: raise "
            "--budget, or pass --lambda.")

    # Files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = asdict(self)
        body.pop("source")
        body["feature_spec"] = self.feature_spec.to_dict()
        body["format"] = FORMAT
        torch.save(body, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RouterModel":
        """Read a router file; refuse one whose features this code computes differently."""
        path = Path(path)
        if not path.exists():
            raise RouterModelError(f"{path}: no such router file. Fix: train one with "
                                   "'memevolve router train --out PATH'.")
        try:
            body = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a foreign file
            raise RouterModelError(f"{path}: not a router file ({type(exc).__name__}). Fix: "
                                   "pass a file written by 'memevolve router train'.") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise RouterModelError(f"{path}: not a {FORMAT} file. Fix: pass a file written by "
                                   "'memevolve router train' (retrain an older one).")
        body.pop("format")
        spec = FeatureSpec.from_dict(body.pop("feature_spec"))
        spec.check_compatible(str(path))
        model = cls(feature_spec=spec, source=str(path), **body)
        if model.tier_space.tiers_hash != model.tiers_hash:
            raise RouterModelError(f"{path}: its tiers hash to {model.tier_space.tiers_hash}, "
                                   f"not the recorded {model.tiers_hash}: the search space "
                                   "changed since training. Fix: retrain the router.")
        return model
