"""Confidence intervals for operating-point rates.

- ``clopper_pearson``: the exact binomial interval for a rate k/n seen at a fixed threshold.
- ``bootstrap_interval``: the percentile interval of a whole estimate (threshold re-derived on
  every resample), resampling positives and negatives separately with a seeded generator, so the
  threshold's own scatter is part of the interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import beta


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval for a binomial rate with k successes in n trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def bootstrap_interval(
    pos: np.ndarray,
    neg: np.ndarray,
    statistics: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_samples: int,
    seed: int,
    confidence: float = 0.95,
) -> np.ndarray:
    """Percentile intervals (K, 2) of the K values ``statistics(pos, neg)`` returns, over resamples.

    Each resample draws len(pos) positives and len(neg) negatives with replacement; ``statistics``
    must re-derive its thresholds from the resampled scores. With ``n_samples`` 0 the intervals
    are NaN.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    k = len(np.atleast_1d(statistics(pos, neg)))
    if n_samples == 0:
        return np.full((k, 2), np.nan)
    rng = np.random.default_rng(seed)
    values = np.empty((n_samples, k))
    for i in range(n_samples):
        values[i] = statistics(rng.choice(pos, pos.size), rng.choice(neg, neg.size))
    alpha = 1 - confidence
    return np.quantile(values, [alpha / 2, 1 - alpha / 2], axis=0).T
