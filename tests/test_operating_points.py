"""Exact operating points against brute force over every possible threshold (ties included)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.metrics.operating_points import Sample, completeness_at_fpr, fpr_at_completeness

scores = st.lists(st.integers(0, 6).map(lambda v: v / 6), min_size=1, max_size=40)  # many ties


def _brute(pos: np.ndarray, neg: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, completeness, fpr) for every distinct flagged set (flag: score >= t)."""
    cands = np.concatenate([np.unique(np.concatenate([pos, neg])), [math.inf]])
    return [(t, (pos >= t).mean(), (neg >= t).mean()) for t in cands]


@settings(max_examples=200, deadline=None)
@given(pos=scores, neg=scores, fpr=st.sampled_from([0.01, 0.1, 0.25, 0.5, 1.0]))
def test_completeness_at_fpr_is_the_best_allowed(pos: list[float], neg: list[float], fpr: float) -> None:
    p, n = np.array(pos), np.array(neg)
    point = completeness_at_fpr(p, n, fpr, min_expected_fp=1)
    assert point.fpr <= fpr + 1e-12
    best = max(c for _, c, f in _brute(p, n) if f <= fpr + 1e-12)
    assert point.completeness == pytest.approx(best)
    assert point.n_pos_flagged == int((p >= point.threshold).sum())


@settings(max_examples=200, deadline=None)
@given(pos=scores, neg=scores, target=st.sampled_from([0.01, 0.5, 0.7, 0.85, 0.95, 0.99]))
def test_fpr_at_completeness_is_the_lowest_reaching_it(pos: list[float], neg: list[float], target: float) -> None:
    p, n = np.array(pos), np.array(neg)
    point = fpr_at_completeness(p, n, target)
    assert point.completeness >= target - 1e-12
    best = min(f for _, c, f in _brute(p, n) if c >= target - 1e-12)
    assert point.fpr == pytest.approx(best)


@settings(max_examples=100, deadline=None)
@given(pos=scores, neg=scores, seed=st.integers(0, 2**32 - 1))
def test_a_resample_is_counts_on_the_sorted_scores(pos: list[float], neg: list[float], seed: int) -> None:
    """Every operating point of a resample (counts on the sorted scores) equals the point of the resampled
    stamps themselves, ties included."""
    rng = np.random.default_rng(seed)
    p, n = Sample.of(np.array(pos), "positive").resampled(rng), Sample.of(np.array(neg), "negative").resampled(rng)
    p_stamps, n_stamps = np.repeat(p.values, p.counts), np.repeat(n.values, n.counts)
    assert p_stamps.size == len(pos) and n_stamps.size == len(neg)
    for fpr in (0.1, 0.5, 1.0):
        assert completeness_at_fpr(p, n, fpr, 1) == completeness_at_fpr(p_stamps, n_stamps, fpr, 1)
    for target in (0.3, 0.9):
        assert fpr_at_completeness(p, n, target) == fpr_at_completeness(p_stamps, n_stamps, target)


def test_an_fpr_the_negatives_cannot_show_is_unresolved_with_the_count_needed() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(2, 1, 500), rng.normal(0, 1, 5000)
    assert completeness_at_fpr(pos, neg, 1e-2).resolved  # 50 expected false positives
    low = completeness_at_fpr(pos, neg, 1e-4)  # 0.5 expected
    assert not low.resolved and low.n_neg_needed == 100_000


def test_a_completeness_target_is_resolved_by_the_positives_it_would_miss() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(2, 1, 100), rng.normal(0, 1, 5000)
    at_90 = fpr_at_completeness(pos, neg, 0.9)  # 100 x 0.1 = 10 expected missed positives
    assert at_90.resolved and at_90.n_pos_needed == 100 and at_90.n_neg_needed == 0
    at_99 = fpr_at_completeness(pos, neg, 0.99)  # 1 expected missed positive
    assert not at_99.resolved and at_99.n_pos_needed == 1000
    assert fpr_at_completeness(pos, neg, 0.99, min_expected_fp=1).resolved


def test_the_fpr_resolution_counts_distinct_control_hosts() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(2, 1, 100), rng.normal(0, 1, 2000)
    assert completeness_at_fpr(pos, neg, 1e-2).resolved  # 2000 x 1e-2 = 20
    repeated = completeness_at_fpr(pos, neg, 1e-2, n_neg_hosts=999)  # 9.99 expected on distinct hosts
    assert not repeated.resolved and repeated.n_neg_needed == 1000
    assert completeness_at_fpr(pos, neg, 1e-2, n_neg_hosts=1000).resolved
    for hosts in (0, 2001):
        with pytest.raises(ValueError, match=r"n_neg_hosts must be in \[1, 2000\]"):
            completeness_at_fpr(pos, neg, 1e-2, n_neg_hosts=hosts)


def test_all_equal_scores_flag_everything_or_nothing() -> None:
    pos, neg = np.full(10, 0.3), np.full(10, 0.3)
    assert completeness_at_fpr(pos, neg, 0.5, 1).completeness == 0.0
    assert completeness_at_fpr(pos, neg, 1.0, 1).completeness == 1.0
    assert fpr_at_completeness(pos, neg, 0.9).fpr == 1.0


@pytest.mark.parametrize("fpr", [0.0, -1e-4, 1.5, 10.0, math.nan])
def test_fpr_targets_outside_zero_one_are_refused(fpr: float) -> None:
    with pytest.raises(ValueError, match=r"^an FPR target must be in \(0, 1\], got "):
        completeness_at_fpr(np.array([0.1]), np.array([0.2]), fpr)


@pytest.mark.parametrize("completeness", [0.0, -0.5, 1.0, 85.0, math.nan])
def test_completeness_targets_outside_zero_one_are_refused(completeness: float) -> None:
    with pytest.raises(ValueError, match=r"^a completeness target must be in \(0, 1\) \(no sample resolves 1\)"):
        fpr_at_completeness(np.array([0.1]), np.array([0.2]), completeness)


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        completeness_at_fpr(np.array([0.1, np.nan]), np.array([0.2]), 0.1)
