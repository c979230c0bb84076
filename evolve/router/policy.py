"""The tier policy: a small MLP of (query features, lambda) -> a tier per module, trained with
REINFORCE (leave-one-out baseline) on logged outcomes and selected on a validation frontier."""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

N_TIERS = 3


@dataclass(frozen=True)
class Batch:
    """Questions as the policy sees them (scaled features) with their logged rewards' parts."""

    features: np.ndarray     # (n, F) float32, scaled by the FeatureSpec
    quality: np.ndarray      # (n, combos)
    cost: np.ndarray         # (n, combos) normalised cost

    def __post_init__(self) -> None:
        if not (len(self.features) == len(self.quality) == len(self.cost)) or not len(self.cost):
            raise ValueError("a batch needs the same, non-zero number of rows in each array")


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run; the defaults train LoCoMo in seconds on 2 cores."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 256
    #: Actions sampled per (question, lambda): each one's baseline is the others' mean reward.
    samples: int = 4
    learning_rate: float = 3e-3
    hidden: int = 64
    #: Entropy bonus at the start, decayed linearly to 0, so early training explores every tier.
    entropy: float = 0.02
    lambda_min: float = 0.01
    lambda_max: float = 2.0
    eval_every: int = 50
    #: Lambdas at which a checkpoint's validation frontier is measured.
    val_lambdas: int = 13

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError("samples must be at least 2: each sample's baseline is the others")
        if not 0 < self.lambda_min < self.lambda_max:
            raise ValueError("the lambda range must satisfy 0 < lambda_min < lambda_max")


@dataclass
class TrainedPolicy:
    """The checkpoint with the best validation frontier area, and how training went."""

    state_dict: dict[str, torch.Tensor]
    seed: int
    val_area: float
    best_step: int
    wall_s: float
    history: list[tuple[int, float, float]] = field(default_factory=list)  # step, reward, area


class TierPolicy(nn.Module):
    """Features plus encoded lambda -> independent tier logits per module (factorised)."""

    def __init__(self, n_features: int, n_modules: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_modules = n_modules
        self.body = nn.Sequential(nn.Linear(n_features + 1, hidden), nn.Tanh(),
                                  nn.Linear(hidden, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, n_modules * N_TIERS)

    def forward(self, features: torch.Tensor, lam_code: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, modules, tiers)."""
        hidden = self.body(torch.cat([features, lam_code[:, None]], dim=1))
        return self.head(hidden).view(-1, self.n_modules, N_TIERS)


def encode_lambda(lam: torch.Tensor, lambda_min: float, lambda_max: float) -> torch.Tensor:
    """log lambda mapped onto [-1, 1] over the trained range: the policy's budget input."""
    low, high = math.log(lambda_min), math.log(lambda_max)
    return 2.0 * (torch.log(lam) - low) / (high - low) - 1.0


def combo_index(tiers: torch.Tensor) -> torch.Tensor:
    """(..., modules) tier indices -> the combination's index in TierSpace.combos order."""
    weights = N_TIERS ** torch.arange(tiers.shape[-1] - 1, -1, -1)
    return (tiers * weights).sum(-1)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread: on matrices this small, intra-op threads cost more than they
    save (ten times slower on two busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def greedy_combos(policy: TierPolicy, features: np.ndarray, lam: float, lambda_min: float,
                  lambda_max: float) -> np.ndarray:
    """The most likely tier of each module, per question, at one lambda: the deployed policy."""
    with torch.no_grad(), single_threaded():
        x = torch.as_tensor(features, dtype=torch.float32)
        code = encode_lambda(torch.full((len(x),), float(lam)), lambda_min, lambda_max)
        return combo_index(policy(x, code).argmax(-1)).numpy()


def lambda_grid(lambda_min: float, lambda_max: float, n: int) -> np.ndarray:
    return np.exp(np.linspace(math.log(lambda_min), math.log(lambda_max), n))


def frontier_area(points: list[tuple[float, float]], max_cost: float) -> float:
    """Hypervolume of (cost, quality) points against (max_cost, 0), as a share of max_cost: the
    mean over budgets in [0, max_cost] of the best quality affordable at that budget."""
    area, best, last = 0.0, 0.0, 0.0
    for cost, quality in sorted(p for p in points if p[0] <= max_cost):
        area += best * (cost - last)
        best, last = max(best, quality), cost
    return (area + best * (max_cost - last)) / max_cost


def validation_frontier(policy: TierPolicy, val: Batch, lambdas: np.ndarray,
                        lambda_min: float, lambda_max: float) -> list[tuple[float, float]]:
    """(mean cost, mean quality) of the greedy policy at each lambda."""
    rows = np.arange(len(val.cost))
    points = []
    for lam in lambdas:
        chosen = greedy_combos(policy, val.features, lam, lambda_min, lambda_max)
        points.append((float(val.cost[rows, chosen].mean()),
                       float(val.quality[rows, chosen].mean())))
    return points


def train_policy(train: Batch, val: Batch, n_modules: int,
                 settings: TrainSettings = TrainSettings()) -> TrainedPolicy:
    """REINFORCE in the logged bandit: per step, questions and lambdas (log-uniform over the
    range) are drawn, tiers sampled, and reward = quality - lambda * cost read from the log.
    The checkpoint kept is the one with the best validation frontier area, never the best
    training reward."""
    with single_threaded():
        return _train(train, val, n_modules, settings)


def _train(train: Batch, val: Batch, n_modules: int, settings: TrainSettings) -> TrainedPolicy:
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    policy = TierPolicy(train.features.shape[1], n_modules, settings.hidden)
    optimiser = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
    features = torch.as_tensor(train.features, dtype=torch.float32)
    quality = torch.as_tensor(train.quality, dtype=torch.float32)
    cost = torch.as_tensor(train.cost, dtype=torch.float32)
    lambdas = lambda_grid(settings.lambda_min, settings.lambda_max, settings.val_lambdas)
    max_cost = float(val.cost.mean(axis=0).max())
    log_low, log_high = math.log(settings.lambda_min), math.log(settings.lambda_max)
    k = settings.samples
    best_area, best_step, best_state = -1.0, 0, copy.deepcopy(policy.state_dict())
    history: list[tuple[int, float, float]] = []
    rewards_seen: list[float] = []
    for step in range(1, settings.steps + 1):
        rows = torch.randint(len(features), (settings.batch_size,), generator=generator)
        lam = torch.exp(log_low + (log_high - log_low)
                        * torch.rand(settings.batch_size, generator=generator))
        logits = policy(features[rows], encode_lambda(lam, settings.lambda_min,
                                                      settings.lambda_max))
        log_probs = torch.log_softmax(logits, dim=-1)
        probs = log_probs.exp()
        # (batch, modules, k) sampled tiers -> (batch, k) combinations.
        tiers = torch.multinomial(probs.reshape(-1, N_TIERS), k, replacement=True,
                                  generator=generator).view(settings.batch_size, n_modules, k)
        combos = combo_index(tiers.transpose(1, 2))
        reward = (quality[rows[:, None], combos] - lam[:, None] * cost[rows[:, None], combos])
        baseline = (reward.sum(1, keepdim=True) - reward) / (k - 1)
        advantage = reward - baseline
        log_prob = log_probs.gather(2, tiers).sum(1)                      # (batch, k)
        entropy = -(probs * log_probs).sum((1, 2)).mean()
        beta = settings.entropy * (1.0 - step / settings.steps)
        loss = -(advantage.detach() * log_prob).mean() - beta * entropy
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        rewards_seen.append(float(reward.mean()))
        if step % settings.eval_every == 0 or step == settings.steps:
            points = validation_frontier(policy, val, lambdas, settings.lambda_min,
                                         settings.lambda_max)
            area = frontier_area(points, max_cost)
            history.append((step, float(np.mean(rewards_seen)), area))
            rewards_seen = []
            if area > best_area:
                best_area, best_step = area, step
                best_state = copy.deepcopy(policy.state_dict())
    return TrainedPolicy(best_state, settings.seed, best_area, best_step,
                         time.perf_counter() - start, history)
