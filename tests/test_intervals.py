"""Exact binomial and bootstrap intervals against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binom

from darkhalo.metrics.intervals import bootstrap_interval, clopper_pearson
from darkhalo.metrics.operating_points import fpr_at_completeness


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (7, 1000), (500, 1000)])
def test_clopper_pearson_matches_the_beta_quantiles(k: int, n: int) -> None:
    low, high = clopper_pearson(k, n, 0.95)
    assert low == pytest.approx(beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0, abs=1e-12)
    assert high == pytest.approx(beta.ppf(0.975, k + 1, n - k) if k < n else 1.0, abs=1e-12)
    # the defining property: each bound leaves alpha/2 of binomial probability beyond k
    if k > 0:
        assert binom.sf(k - 1, n, low) == pytest.approx(0.025, rel=1e-6)
    if k < n:
        assert binom.cdf(k, n, high) == pytest.approx(0.025, rel=1e-6)


def test_clopper_pearson_refuses_impossible_counts() -> None:
    for k, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError, match="0 <= k <= n"):
            clopper_pearson(k, n)


def _fpr_at_90(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    return np.array([fpr_at_completeness(pos, neg, 0.9).fpr])


def test_bootstrap_is_seeded_and_rederives_the_threshold() -> None:
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    first = bootstrap_interval(pos, neg, _fpr_at_90, 300, seed=11)
    assert np.array_equal(first, bootstrap_interval(pos, neg, _fpr_at_90, 300, seed=11))
    assert not np.array_equal(first, bootstrap_interval(pos, neg, _fpr_at_90, 300, seed=12))
    point = fpr_at_completeness(pos, neg, 0.9)
    low, high = first[0]
    assert low < point.fpr < high
    # a threshold held fixed would only see the negatives' binomial scatter; re-deriving it on
    # every resample adds the positives' scatter, so the interval is clearly wider
    exact_low, exact_high = clopper_pearson(point.n_neg_flagged, point.n_neg)
    assert (high - low) > 1.2 * (exact_high - exact_low)


def test_bootstrap_of_a_perfect_separation_is_a_point_and_zero_samples_give_nan() -> None:
    pos, neg = np.linspace(2, 3, 50), np.linspace(0, 1, 50)
    assert bootstrap_interval(pos, neg, _fpr_at_90, 100, seed=0).tolist() == [[0.0, 0.0]]
    assert np.isnan(bootstrap_interval(pos, neg, _fpr_at_90, 0, seed=0)).all()
