"""Paired tests of a candidate against a baseline on the same questions, clustered by
conversation: an exact sign-flip permutation test over per-cluster deltas (Monte Carlo beyond
EXACT_MAX_CLUSTERS), a cluster t-interval with k-1 degrees of freedom, and Holm's step-down
correction across the candidates of a round.

Questions of one conversation are correlated, so the conversation is the unit of resampling;
a benchmark with one question per haystack (LongMemEval) has one cluster per question, which
makes the same test resample questions. The percentile bootstrap these replace over-accepted
with 8 dev conversations (4-6% at a nominal 2.5%)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Up to this many clusters every one of the 2^k sign vectors is enumerated.
EXACT_MAX_CLUSTERS = 16
#: Sign vectors drawn beyond that.
MONTE_CARLO_DRAWS = 20_000


@dataclass(frozen=True)
class PairedTest:
    """b - a: the question-weighted mean delta, its t-interval and one-sided p-values."""

    delta: float
    ci_low: float
    ci_high: float
    p_gain: float      # one-sided: H0 no effect against delta > 0
    p_drop: float      # one-sided: against delta < 0
    n: int
    clusters: int
    method: str        # exact sign-flip | Monte Carlo sign-flip

    @property
    def p_value(self) -> float:
        """Two-sided."""
        return min(1.0, 2.0 * min(self.p_gain, self.p_drop))

    def min_one_sided_p(self) -> float:
        """The smallest one-sided p-value this many clusters can reach (all signs agree)."""
        if self.clusters <= EXACT_MAX_CLUSTERS:
            return 2.0 ** -self.clusters
        return 1.0 / (MONTE_CARLO_DRAWS + 1)


def paired_test(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, *,
                confidence: float = 0.95, seed: int = 0) -> PairedTest:
    """Sign-flip permutation test of the mean of b - a, clusters flipped as wholes.

    The statistic is the ratio estimator sum_i s_i D_i / N (D_i: cluster i's summed delta, N:
    all questions), so clusters weigh by their size as the mean does. Under the null of no
    effect each cluster's delta is symmetric about 0, and every sign vector is equally likely.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    clusters = np.asarray(clusters)
    if not (a.shape == b.shape == clusters.shape) or a.ndim != 1 or a.size == 0:
        raise ValueError("a, b and clusters must be non-empty 1-d arrays of the same length")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie in (0, 1)")
    diff = b - a
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index, weights=diff)
    sizes = np.bincount(index).astype(np.float64)
    k, n = sums.size, diff.size
    observed = sums.sum() / n
    if k <= EXACT_MAX_CLUSTERS:
        signs = 1.0 - 2.0 * ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1)
        method = "exact sign-flip"
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((-1.0, 1.0), size=(MONTE_CARLO_DRAWS, k))
        method = "Monte Carlo sign-flip"
    flipped = signs @ sums / n
    # A tolerance, so that ties with the observed value (exact zeros, repeated sums) count.
    tol = 1e-12 * max(1.0, abs(observed))
    if k <= EXACT_MAX_CLUSTERS:
        p_gain = float(np.mean(flipped >= observed - tol))
        p_drop = float(np.mean(flipped <= observed + tol))
    else:
        p_gain = float((1 + np.sum(flipped >= observed - tol)) / (len(flipped) + 1))
        p_drop = float((1 + np.sum(flipped <= observed + tol)) / (len(flipped) + 1))
    low, high = cluster_t_interval(sums, sizes, confidence)
    return PairedTest(float(observed), low, high, p_gain, p_drop, n, k, method)


def cluster_t_interval(sums: np.ndarray, sizes: np.ndarray,
                       confidence: float) -> tuple[float, float]:
    """t-interval (k-1 df) of the ratio mean sum(D_i)/sum(n_i), linearised per cluster."""
    from scipy import stats

    k = sums.size
    mean = sums.sum() / sizes.sum()
    if k < 2:
        return float("-inf"), float("inf")
    residuals = sums - mean * sizes
    se = np.sqrt(k / (k - 1) * np.sum(residuals ** 2)) / sizes.sum()
    half = stats.t.ppf(0.5 + confidence / 2, k - 1) * se
    return float(mean - half), float(mean + half)


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down: which of the hypotheses are rejected at family-wise level ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected
