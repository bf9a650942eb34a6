"""Confidence intervals for operating-point rates.

- ``bootstrap_interval``: the percentile interval of a whole estimate (threshold re-derived on
  every resample), resampling positives and negatives separately with a seeded generator, so the
  threshold's own scatter is part of the interval. This is the interval that covers a rate at a
  target (tests/test_interval_coverage.py measures it).
- ``clopper_pearson``: the exact binomial interval for a rate k/n at a fixed threshold: exact for
  the rate of the threshold actually chosen, not for the rate at the target, whose threshold
  scatters with the data.
- ``headline_interval``: the one metrics.json headlines, the bootstrap unless it has zero width. A
  resample cannot see events its sample lacks: with no control flagged at the threshold every
  resample's FPR is 0 and the bootstrap is [0, 0]; the exact interval then gives the binomial upper
  limit (3.7 / n_neg at 95 %).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import beta

from darkhalo.metrics.operating_points import Sample


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval for a binomial rate with k successes in n trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def bootstrap_interval(
    pos: np.ndarray | Sample,
    neg: np.ndarray | Sample,
    statistics: Callable[[Sample, Sample], np.ndarray],
    n_samples: int,
    seed: int,
    confidence: float = 0.95,
) -> np.ndarray:
    """Percentile intervals (K, 2) of the K values ``statistics(pos, neg)`` returns, over resamples.

    Each resample draws n_pos positives and n_neg negatives with replacement (``Sample.resampled``,
    positives first); ``statistics`` must re-derive its thresholds from the resampled Samples. With
    ``n_samples`` 0 the intervals are NaN.
    """
    pos, neg = Sample.of(pos, "positive"), Sample.of(neg, "negative")
    k = len(np.atleast_1d(statistics(pos, neg)))
    if n_samples == 0:
        return np.full((k, 2), np.nan)
    rng = np.random.default_rng(seed)
    values = np.empty((n_samples, k))
    for i in range(n_samples):
        values[i] = statistics(pos.resampled(rng), neg.resampled(rng))
    alpha = 1 - confidence
    return np.quantile(values, [alpha / 2, 1 - alpha / 2], axis=0).T


def headline_interval(bootstrap: Sequence[float], exact: Sequence[float]) -> tuple[float, float]:
    """An operating point's headline 95 % interval: the ``bootstrap`` (it carries the threshold's scatter),
    or, when every resample gave the same rate (a zero-width bootstrap), the ``exact`` one at the chosen
    threshold."""
    chosen = exact if bootstrap[0] == bootstrap[1] else bootstrap
    return float(chosen[0]), float(chosen[1])
