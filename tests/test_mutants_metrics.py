"""Boundary tests of the metrics (darkhalo/metrics: operating points, intervals, summary, probes) and of the
contracts' shared pieces (data_contracts: metrics.json's L4 judge, findings, thresholds, survey units,
the select reconciliation), written against mutation testing (benchmarks/mutation.py).

Small hand-computed inputs; each test pins the exact value a boundary or a formula gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta
from sklearn.metrics import roc_auc_score

from darkhalo.metrics import intervals, operating_points, probes, summary
from data_contracts import findings, reconciliation, survey
from data_contracts import metrics as contract
from data_contracts.findings import Finding
from data_contracts.thresholds import InvariantThresholds, L2Thresholds

# ------------------------------------------------------------------------------------- operating points


def test_threshold_flagging_at_most_flags_exactly_the_allowed_negatives() -> None:
    neg = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    t = operating_points.threshold_flagging_at_most(neg, 2)
    assert t == np.nextafter(0.8, math.inf) and int((neg >= t).sum()) == 2
    assert operating_points.threshold_flagging_at_most(neg, 0) == np.nextafter(1.0, math.inf)
    assert operating_points.threshold_flagging_at_most(neg, 9) == np.nextafter(0.1, math.inf)
    assert operating_points.threshold_flagging_at_most(neg, 10) == -math.inf
    tied = np.array([0.5, 0.5, 0.5, 0.1])
    assert operating_points.threshold_flagging_at_most(tied, 2) == np.nextafter(0.5, math.inf)  # ties stay together


def test_completeness_at_fpr_allows_floor_of_fpr_times_n_with_a_slack() -> None:
    pos, neg = np.array([0.85, 0.95]), np.linspace(0.1, 1.0, 10)
    assert operating_points.completeness_at_fpr(pos, neg, 0.2, 1).n_neg_flagged == 2
    assert operating_points.completeness_at_fpr(pos, neg, 0.19999999999, 1).n_neg_flagged == 2  # 1e-9 slack
    assert operating_points.completeness_at_fpr(pos, neg, 0.1999, 1).n_neg_flagged == 1
    assert operating_points.completeness_at_fpr(pos, neg, 1.0, 1).threshold == -math.inf


def test_a_sample_counts_each_stamp_and_finds_the_kth_highest() -> None:
    sample = operating_points.Sample.of(np.array([0.3, 0.1, 0.3, 0.2]), "positive")
    assert sample.values.tolist() == [0.1, 0.2, 0.3, 0.3] and sample.below.tolist() == [0, 1, 2, 3, 4]
    assert [sample.kth_highest(k) for k in (1, 2, 3, 4)] == [0.3, 0.3, 0.2, 0.1]
    assert [sample.at_least(t) for t in (0.0, 0.1, 0.15, 0.3, 0.31)] == [4, 4, 3, 2, 0]
    weighted = operating_points.Sample._counted(sample.values, np.array([0, 3, 0, 1]))  # a resample's counts
    assert weighted.n == 4 and [weighted.kth_highest(k) for k in (1, 2, 4)] == [0.3, 0.2, 0.2]
    assert [weighted.at_least(t) for t in (0.1, 0.2, 0.25)] == [4, 4, 1]
    assert operating_points.Sample.of(sample, "positive") is sample
    rng, again = np.random.default_rng(3), np.random.default_rng(3)
    resampled = sample.resampled(rng)
    assert resampled.counts.tolist() == np.bincount(again.integers(0, 4, 4), minlength=4).tolist()
    assert resampled.values is sample.values and resampled.n == 4


def test_threshold_at_completeness_is_the_needed_positive() -> None:
    pos = np.array([0.3, 0.1, 0.4, 0.2, 0.5])
    assert operating_points.threshold_at_completeness(pos, 0.6) == 0.3  # 3 of 5
    assert operating_points.threshold_at_completeness(pos, 0.6000000001) == 0.3  # within the slack
    assert operating_points.threshold_at_completeness(pos, 0.61) == 0.2
    assert operating_points.threshold_at_completeness(pos, 1e-9) == 0.5  # at least one flagged
    assert operating_points.threshold_at_completeness(pos, 0.9999) == 0.1


def test_evaluate_threshold_counts_score_at_least_threshold() -> None:
    point = operating_points.evaluate_threshold(
        np.array([0.1, 0.5, 0.9]), np.array([0.5, 0.2, 0.3, 0.4]), 0.5, "fpr", 0.25, False
    )
    assert point == operating_points.OperatingPoint(
        target="fpr",
        target_value=0.25,
        resolved=False,
        threshold=0.5,
        completeness=2 / 3,
        fpr=0.25,
        n_pos=3,
        n_neg=4,
        n_pos_flagged=2,
        n_neg_flagged=1,
        n_neg_needed=0,
        n_pos_needed=0,
    )


def test_completeness_at_fpr_is_resolved_from_exactly_the_minimum_expected_false_positives() -> None:
    pos, neg = np.linspace(0, 1, 50), np.linspace(-1, 0.5, 1000)
    at = operating_points.completeness_at_fpr(pos, neg, 0.01, min_expected_fp=10.0)  # 1000 x 0.01 = 10
    assert at.resolved and at.n_neg_needed == 1000 and at.target == "fpr" and at.target_value == 0.01
    assert at.n_neg_flagged == 10 and at.fpr == 0.01
    below = operating_points.completeness_at_fpr(pos, neg, 0.01, min_expected_fp=10.5)
    assert not below.resolved and below.n_neg_needed == 1050
    assert operating_points.completeness_at_fpr(pos, neg, 1e-3).n_neg_needed == 10_000
    assert operating_points.completeness_at_fpr(pos, neg, 1e-3, min_expected_fp=1.0).resolved
    assert operating_points.completeness_at_fpr(pos, neg, 1.0, min_expected_fp=1.0).completeness == 1.0


def test_fpr_targets_outside_zero_one_and_empty_or_non_finite_scores_are_refused() -> None:
    pos, neg = np.array([0.5]), np.array([0.1])
    for bad in (0.0, -0.1, 1.0000001):
        with pytest.raises(ValueError, match=rf"an FPR target must be in \(0, 1\], got {bad}"):
            operating_points.completeness_at_fpr(pos, neg, bad)
    with pytest.raises(ValueError, match=r"^no negative scores$"):
        operating_points.completeness_at_fpr(pos, np.array([]), 0.5)
    with pytest.raises(ValueError, match=r"^no positive scores$"):
        operating_points.fpr_at_completeness(np.array([]), neg, 0.5)
    with pytest.raises(ValueError, match=r"^negative scores hold 2 non-finite values$"):
        operating_points.evaluate_threshold(pos, np.array([np.inf, np.nan, 0.0]), 0.5, "fpr", 0.1, True)
    with pytest.raises(ValueError, match=r"^positive scores hold 1 non-finite values$"):
        operating_points.evaluate_threshold(np.array([np.nan]), neg, 0.5, "fpr", 0.1, True)


def test_fpr_at_completeness_reports_a_resolved_completeness_point() -> None:
    pos, neg = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.1, 0.3, 0.5, 0.7])
    point = operating_points.fpr_at_completeness(pos, neg, 0.5, min_expected_fp=2.0)  # 4 x 0.5 = 2 missed
    assert (point.target, point.target_value, point.resolved, point.threshold) == ("completeness", 0.5, True, 0.6)
    assert (point.completeness, point.fpr, point.n_neg_flagged, point.n_neg_needed) == (0.5, 0.25, 1, 0)
    assert point.n_pos_needed == 4
    short = operating_points.fpr_at_completeness(pos, neg, 0.5, min_expected_fp=2.5)
    assert not short.resolved and short.n_pos_needed == 5 and short.fpr == 0.25
    assert operating_points.fpr_at_completeness(pos, neg, 0.5).n_pos_needed == 20  # the default minimum, 10
    at_90 = operating_points.fpr_at_completeness(np.linspace(0, 1, 100), neg, 0.9)  # 100 x 0.1 = 10, in floats
    assert at_90.resolved and at_90.n_pos_needed == 100


def test_the_needed_sample_is_the_ceiling_with_a_slack() -> None:
    assert contract.sample_needed(10, 1e-3) == 10_000 and contract.sample_needed(10, 1 - 0.9) == 100
    assert contract.sample_needed(10, 0.3) == 34 and contract.sample_needed(10.5, 0.01) == 1050
    assert contract.sample_needed(1, 1.0) == 1


# -------------------------------------------------------------------------------------------- intervals


def test_clopper_pearson_at_another_confidence_and_the_edges() -> None:
    low, high = intervals.clopper_pearson(3, 10, 0.9)
    assert low == pytest.approx(beta.ppf(0.05, 3, 8), rel=1e-12) and high == pytest.approx(
        beta.ppf(0.95, 4, 7), rel=1e-12
    )
    assert intervals.clopper_pearson(0, 5) == (0.0, pytest.approx(beta.ppf(0.975, 1, 5), rel=1e-12))
    assert intervals.clopper_pearson(5, 5) == (pytest.approx(beta.ppf(0.025, 5, 1), rel=1e-12), 1.0)
    with pytest.raises(ValueError, match=r"^need 0 <= k <= n and n > 0, got k=0, n=0$"):
        intervals.clopper_pearson(0, 0)
    assert intervals.clopper_pearson(1, 1)[1] == 1.0 and intervals.clopper_pearson(0, 1)[0] == 0.0


def _mean(sample: operating_points.Sample) -> float:
    return float(np.average(sample.values, weights=sample.counts))


def test_bootstrap_resamples_each_class_to_its_own_size_with_the_seeded_generator() -> None:
    pos, neg = np.arange(5.0)[::-1], np.arange(100.0, 108.0)
    seen = []

    def stats(p: operating_points.Sample, n: operating_points.Sample) -> np.ndarray:
        seen.append((p.counts.copy(), n.counts.copy()))
        return np.array([_mean(p), _mean(n)])

    out = intervals.bootstrap_interval(pos, neg, stats, 3, seed=7, confidence=0.5)
    assert out.shape == (2, 2) and len(seen) == 4  # one call on the data, three resamples
    assert seen[0][0].tolist() == [1] * 5 and seen[0][1].tolist() == [1] * 8
    rng = np.random.default_rng(7)
    expected = []
    for i in range(3):
        p, n = rng.choice(np.sort(pos), pos.size), rng.choice(neg, neg.size)
        assert np.array_equal(np.repeat(np.sort(pos), seen[i + 1][0]), np.sort(p))
        assert np.array_equal(np.repeat(neg, seen[i + 1][1]), np.sort(n))
        expected.append([p.mean(), n.mean()])
    np.testing.assert_allclose(out, np.quantile(np.array(expected), [0.25, 0.75], axis=0).T, rtol=1e-12)
    empty = intervals.bootstrap_interval(pos, neg, stats, 0, seed=7)
    assert empty.shape == (2, 2) and np.isnan(empty).all()


def test_bootstrap_default_confidence_is_95_percent() -> None:
    pos, neg = np.arange(200.0), np.arange(3.0)
    out = intervals.bootstrap_interval(pos, neg, lambda p, n: np.array([_mean(p)]), 50, seed=1)
    rng = np.random.default_rng(1)
    values = []
    for _ in range(50):
        values.append(rng.choice(pos, pos.size).mean())
        rng.choice(neg, neg.size)
    np.testing.assert_allclose(out[0], np.quantile(values, [0.025, 0.975]), rtol=1e-12)


# ---------------------------------------------------------------------------------------------- summary


def test_point_at_fp_count_flags_at_most_n_negatives_and_everything_when_n_is_all() -> None:
    pos, neg = np.array([0.05, 0.5, 0.95]), np.array([0.1, 0.2, 0.3, 0.9])
    none = summary.point_at_fp_count(pos, neg, 0)
    assert none.n_neg_flagged == 0 and none.n_pos_flagged == 1 and none.target == "false_positives"
    assert none.target_value == 0 and none.resolved
    one = summary.point_at_fp_count(pos, neg, 1)
    assert one.n_neg_flagged == 1 and one.threshold == np.nextafter(0.3, math.inf)
    every = summary.point_at_fp_count(pos, neg, 10)
    assert every.threshold == 0.05 and every.completeness == 1.0 and every.fpr == 1.0
    assert summary.point_at_fp_count(np.array([0.5]), neg, 4).threshold == 0.1  # min over both classes


def test_summarise_reports_every_point_with_its_intervals() -> None:
    pos = np.linspace(0.5, 1.5, 40)
    neg = np.linspace(0.0, 1.0, 2000)
    s = summary.summarise(pos, neg, min_expected_fp=10, confidence=0.9, bootstrap_samples=0, seed=3)
    assert (s.n_pos, s.n_neg, s.n_neg_hosts, s.confidence, s.min_expected_false_positives) == (40, 2000, 2000, 0.9, 10)
    assert (s.bootstrap_samples, s.seed) == (0, 3)
    assert [p.resolved for p in s.fpr_at_completeness] == [False] * 5 + [True]  # 40 x 0.3 = 12 missed at 0.7
    assert [p.n_pos_needed for p in s.fpr_at_completeness] == [1000, 200, 100, 67, 50, 34]
    assert [p.target_value for p in s.fpr_at_completeness] == list(contract.COMPLETENESS_TARGETS)
    assert [p.target_value for p in s.completeness_at_fpr] == list(contract.FPR_TARGETS)
    assert [p.resolved for p in s.completeness_at_fpr] == [True, False, False, False]
    assert s.tpr0.target_value == 0 and s.tpr10.target_value == 10
    first = s.completeness_at_fpr[0]
    assert first.completeness_interval_at_threshold == list(intervals.clopper_pearson(first.n_pos_flagged, 40, 0.9))
    assert first.fpr_interval_at_threshold == list(intervals.clopper_pearson(first.n_neg_flagged, 2000, 0.9))
    assert first.interval is None and first.n_neg_needed == 1000 and first.n_pos_needed == 0
    unresolved = s.completeness_at_fpr[1]
    assert unresolved.threshold is None and unresolved.completeness_interval_at_threshold is None
    assert unresolved.n_neg_needed == 10_000
    hosts = summary.summarise(
        pos, neg, min_expected_fp=10, confidence=0.9, bootstrap_samples=0, seed=3, n_neg_hosts=999
    )
    assert hosts.n_neg_hosts == 999 and not hosts.completeness_at_fpr[0].resolved  # 999 x 1e-2 < 10
    assert s.auroc == pytest.approx(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def test_summarise_bootstraps_each_resolved_points_headline_rate() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(2, 1, 60), rng.normal(0, 1, 1000)
    s = summary.summarise(pos, neg, min_expected_fp=10, confidence=0.95, bootstrap_samples=20, seed=5)
    resolved = [p for p in [*s.fpr_at_completeness, *s.completeness_at_fpr, s.tpr0, s.tpr10] if p.resolved]
    assert [p.target_value for p in resolved] == [0.8, 0.7, 1e-2, 0, 10]
    assert all(p.interval is not None for p in resolved)
    assert all(p.interval is None for p in [*s.fpr_at_completeness, *s.completeness_at_fpr] if not p.resolved)

    def headlines(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        points = summary.operating_points(p, n, 10)
        flat = [q for section in points.values() for q in section if q.resolved]
        return np.array([q.fpr if q.target == "completeness" else q.completeness for q in flat])

    expected = intervals.bootstrap_interval(pos, neg, headlines, 20, 5, 0.95)
    assert [p.interval for p in resolved] == expected.tolist()


def _summary(pos: np.ndarray, neg: np.ndarray, bootstrap_samples: int) -> dict:
    """metrics.json's operating points of these scores (10 expected false positives, 95 %, seed 0)."""
    s = summary.summarise(pos, neg, min_expected_fp=10, confidence=0.95, bootstrap_samples=bootstrap_samples, seed=0)
    return s.model_dump(mode="json")


def test_resolved_points_are_named_by_target() -> None:
    parsed = _summary(np.linspace(1, 2, 100), np.linspace(0, 1.5, 1000), 0)
    names = {
        name: p.model_dump(mode="json")
        for name, p in contract.OperatingPointSummary.model_validate(parsed).resolved_points().items()
    }
    assert list(names) == [*(f"completeness={c:g}" for c in contract.COMPLETENESS_TARGETS[2:]), "fpr=0.01"]
    assert names["fpr=0.01"]["target"] == "fpr" and names["fpr=0.01"]["resolved"] is True


def test_strata_values_derive_theta_e_over_psf() -> None:
    meta = pd.DataFrame({"theta_e": [1.0, 2.0], "psfsize_r": [2.0, 1.0], "arc_snr": [3.0, 4.0], "other": [0, 0]})
    values = summary.strata_values(meta)
    assert set(values) == {"theta_e", "arc_snr", "theta_e_over_psf"}
    assert values["theta_e_over_psf"].tolist() == [0.5, 2.0] and values["arc_snr"].dtype == np.float64
    assert set(summary.strata_values(meta.drop(columns=["psfsize_r"]))) == {"theta_e", "arc_snr"}


def test_stratified_completeness_bins_are_right_open_and_unbounded_edges_are_none() -> None:
    meta = pd.DataFrame({"host_mag_r": [16.0, 17.0, 17.0, 17.5, 22.0]})
    scores = np.array([1.0, 0.5, 0.2, 0.5, 0.9])
    table = summary.stratified_completeness(scores, meta, 0.5, 0.9)
    rows = table["host_mag_r"]
    assert [(r.low, r.high, r.n, r.n_flagged) for r in rows] == [
        (None, 17.0, 1, 1),
        (17.0, 18.0, 3, 2),
        (21.0, None, 1, 1),
    ]
    assert rows[1].completeness == 2 / 3 and rows[1].interval == list(intervals.clopper_pearson(2, 3, 0.9))


def test_inspection_budget_uses_the_fpr_and_its_upper_bound() -> None:
    counts = {"n_pos": 10, "n_neg": 1000, "n_pos_flagged": 5, "n_neg_flagged": 10, "n_neg_needed": 1000}
    intervals_ = {"completeness_interval_at_threshold": [0.2, 0.8], "fpr_interval_at_threshold": [0.005, 0.02]}
    point = contract.ReportedPoint(
        target="fpr",
        target_value=0.01,
        resolved=True,
        threshold=1.0,
        completeness=0.5,
        fpr=0.01,
        interval=[0.2, 0.9],
        n_pos_needed=0,
        **counts,
        **intervals_,
    )
    budget = summary.inspection_budget(point, 10_000, 0.001)
    assert budget.expected_true == pytest.approx(5.0) and budget.expected_false == pytest.approx(99.9)
    assert budget.expected_false_high == pytest.approx(199.8)
    assert budget.purity == pytest.approx(5 / 104.9) and budget.purity_low == pytest.approx(5 / 204.8)
    assert budget.survey_hosts == 10_000 and budget.lens_prevalence == 0.001
    nothing = summary.inspection_budget(
        point.model_copy(update={"completeness": 0.0, "fpr": 0.0, "fpr_interval_at_threshold": [0.0, 0.0]}), 10, 0.5
    )
    assert nothing.purity == 0.0 and nothing.purity_low == 0.0
    no_fp = {"fpr": 0.0, "fpr_interval_at_threshold": [0.0, 0.0]}
    only_true = summary.inspection_budget(point.model_copy(update=no_fp), 10, 0.5)
    assert only_true.purity == 1.0 and only_true.purity_low == 1.0


def test_evaluation_metrics_adds_strata_and_budgets_at_every_resolved_point() -> None:
    n_pos, n_neg = 40, 1000
    scores = pd.DataFrame(
        {
            "label": np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)],
            "score": np.r_[np.linspace(0.5, 1.5, n_pos), np.linspace(0.0, 1.0, n_neg)],
            "theta_e": np.r_[np.linspace(0.6, 2.5, n_pos), np.full(n_neg, np.nan)],
            "host_id": np.r_[np.arange(n_pos), np.arange(n_neg) // 2 + n_pos],  # each control host twice
            "confuser": "none",
        }
    )
    m = summary.evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=1000, prevalence=0.01
    )
    assert m.n_pos == n_pos and m.n_neg == n_neg and m.n_neg_hosts == 500
    assert m.strata_edges["theta_e"] == [0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, None]
    assert m.strata_edges["src_mag_r"][0] is None
    assert set(m.stratified) == set(m.inspection_budget) == set(m.resolved_points())
    assert list(m.resolved_points()) == ["completeness=0.7"]  # 500 hosts x 1e-2 = 5 < 10
    point = m.resolved_points()["completeness=0.7"]
    assert sum(b.n for b in m.stratified["completeness=0.7"]["theta_e"]) == n_pos
    assert sum(b.n_flagged for b in m.stratified["completeness=0.7"]["theta_e"]) == point.n_pos_flagged
    assert m.inspection_budget["completeness=0.7"].expected_true == pytest.approx(1000 * 0.01 * point.completeness)
    assert m.probes is None and contract.metrics_problems(m.model_dump(mode="json")) == []


# ----------------------------------------------------------------------------------------------- probes


def test_core_and_ring_pixels_on_an_odd_and_an_even_stamp() -> None:
    images = np.arange(2 * 3 * 12 * 12, dtype=float).reshape(2, 3, 12, 12)
    core = probes.core_pixels(images, 4)
    assert core.shape == (2, 3 * 16) and np.array_equal(core, images[:, :, 4:8, 4:8].reshape(2, -1))
    ring = probes.ring_pixels(images, 4)
    assert ring.shape == (2, 3 * 48)
    box = images[:, :, 2:10, 2:10].copy()
    box[:, :, 2:6, 2:6] = np.nan
    assert np.array_equal(ring, box.reshape(2, 3, -1)[:, :, ~np.isnan(box[0, 0].ravel())].reshape(2, -1))
    odd = np.arange(13 * 13, dtype=float).reshape(1, 1, 13, 13)
    assert np.array_equal(probes.core_pixels(odd, 3), odd[:, :, 5:8, 5:8].reshape(1, -1))


def _probe_auc(features: np.ndarray, labels: np.ndarray, seed: int, folds: int = 5) -> float:
    """The AUROC of the pixel probe's out-of-fold scores."""
    return float(roc_auc_score(labels, probes.probe_scores(features, labels, seed, folds)))


def test_probe_auc_separates_a_planted_feature_and_needs_two_of_each_class() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30), np.zeros(30)]
    features = rng.normal(0, 1, (60, 3))
    features[:, 0] += 5 * labels
    assert _probe_auc(features, labels, seed=1) > 0.99
    assert _probe_auc(features[:, 1:], labels, seed=1) < 0.8
    assert _probe_auc(features, labels, seed=1, folds=2) > 0.99
    small = np.r_[1, 1, 0, 0, 0, 0]
    assert 0 <= _probe_auc(features[:6], small, seed=2**33 + 1) <= 1  # 2 of a class: 2 folds; seed reduced
    with pytest.raises(ValueError, match=r"^the pixel probes need at least 2 stamps of each class, got 1$"):
        _probe_auc(features[:5], np.r_[1, 0, 0, 0, 0], seed=0)


def test_ring_probe_sees_the_ring_and_core_probe_does_not() -> None:
    rng = np.random.default_rng(1)
    n, size, core = 20, 16, 4
    images = rng.normal(0, 0.01, (2 * n, 3, size, size))
    labels = np.r_[np.ones(n), np.zeros(n)]
    ring = np.zeros((size, size))
    ring[4:12, 4:12] = 1.0  # the 8 x 8 box around the centre ...
    ring[6:10, 6:10] = 0.0  # ... less the 4 x 4 core
    images[:n] += ring
    assert _probe_auc(probes.ring_pixels(images, core), labels, seed=0) > 0.99
    assert _probe_auc(probes.core_pixels(images, core), labels, seed=0) < 0.85
    assert _probe_auc(probes.ring_pixels(images, core), labels, seed=0, folds=3) > 0.99


def test_blobs_keep_their_flux_per_band_in_chunks() -> None:
    flux = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.5, 0.5, 0.5]])
    blobs = probes.blob_images(flux, np.array([1.0, 1.3, 1.6]), 33, 0.262, psf_model="moffat", chunk=2)
    assert blobs.shape == (3, 3, 33, 33) and blobs.dtype == np.float32
    kept = blobs.sum(axis=(2, 3)) / flux  # the same share of every band's flux (one PSF per host) ...
    np.testing.assert_allclose(kept, kept[:, :1] * np.ones((1, 3)), rtol=1e-5)
    np.testing.assert_allclose(kept, 1.0, atol=0.02)  # ... all but the wing light beyond the stamp
    assert kept[0, 0] > kept[1, 0] > kept[2, 0]
    assert np.unravel_index(blobs[1, 1].argmax(), (33, 33)) == (16, 16)
    wider = probes.blob_images(flux[:1], np.array([2.0]), 33, 0.262, psf_model="moffat")
    assert wider[0, 1, 16, 16] < blobs[0, 1, 16, 16]


def test_psf_swap_completeness_names_each_threshold() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    swap = probes.psf_swap_completeness(scores, scores + 1, {"a": 3.0, "b": 5.0})
    assert swap == {
        "a": {"survey": 0.5, "gaussian": 0.75, "change": 0.25},
        "b": {"survey": 0.0, "gaussian": 0.25, "change": 0.25},
    }
    assert probes.flag_rates(np.array([1, 2]), {}) == {}


# ------------------------------------------------------------------------------- metrics.json and L4


@pytest.fixture(scope="module")
def parsed() -> dict:
    return _summary(np.linspace(0.5, 1.5, 200), np.linspace(0.0, 1.0, 1000), 5)


def _copy(d: dict) -> dict:
    return json.loads(json.dumps(d))


def test_a_valid_summary_has_no_problem(parsed: dict) -> None:
    assert contract.metrics_problems(parsed) == []


def test_interval_problems_name_the_field() -> None:
    assert contract._interval_problems("x", None, 0.5) == ["x: needs [low, high] numbers, got None"]
    assert contract._interval_problems("x", [0.6, 0.4], None) == ["x: [0.6, 0.4] is not an interval inside [0, 1]"]
    assert contract._interval_problems("x", [-0.1, 0.4], None) == ["x: [-0.1, 0.4] is not an interval inside [0, 1]"]
    assert contract._interval_problems("x", [0.1, 1.1], None) == ["x: [0.1, 1.1] is not an interval inside [0, 1]"]
    assert contract._interval_problems("x", [0.0, 1.0], None) == []
    assert contract._interval_problems("x", [0.2, 0.2], 0.2) == []
    assert contract._interval_problems("x", [0.2, 0.4], 0.2 - 5e-13) == []
    assert contract._interval_problems("x", [0.2, 0.4], 0.4 + 5e-13) == []
    assert contract._interval_problems("x", [0.2, 0.4], 0.19) == ["x: [0.2, 0.4] does not contain the rate 0.19"]
    assert contract._interval_problems("x", [0.2, 0.4], 0.41) == ["x: [0.2, 0.4] does not contain the rate 0.41"]


def test_an_fpr_point_resolved_exactly_at_the_minimum_is_consistent(parsed: dict) -> None:
    point = parsed["completeness_at_fpr"][0]  # 1000 x 0.01 = 10 = the minimum
    assert point["resolved"] and contract.metrics_problems(parsed) == []
    assert parsed["fpr_at_completeness"][1]["resolved"]  # 200 x (1 - 0.95) = 10 = the minimum, in floats
    m = _copy(parsed)
    m["min_expected_false_positives"] = 10.5
    problems = contract.metrics_problems(m)
    assert problems == [
        "fpr_at_completeness[1].resolved is True but n_pos x (1 - c) = 10 "
        "against a minimum of 10.5 expected missed positives",
        "completeness_at_fpr[0].resolved is True but n_neg_hosts x FPR = 10 "
        "against a minimum of 10.5 expected false positives",
    ]
    m = _copy(parsed)
    m["n_neg_hosts"] = 999
    assert contract.metrics_problems(m) == [
        "completeness_at_fpr[0].resolved is True but n_neg_hosts x FPR = 9.99 "
        "against a minimum of 10 expected false positives"
    ]
    m["n_neg_hosts"] = 1001
    assert contract.metrics_problems(m) == ["n_neg_hosts: 1001 distinct control hosts among 1000 controls"]


def test_an_unresolved_point_that_claims_numbers_names_them(parsed: dict) -> None:
    m = _copy(parsed)
    m["completeness_at_fpr"][2]["threshold"] = 1.0
    m["completeness_at_fpr"][2]["interval"] = [0.0, 1.0]
    m["fpr_at_completeness"][0]["fpr_interval_at_threshold"] = [0.0, 1.0]
    assert contract.metrics_problems(m) == [
        "fpr_at_completeness[0]: unresolved but reports fpr_interval_at_threshold (must be null)",
        "completeness_at_fpr[2]: unresolved but reports threshold, interval (must be null)",
    ]


def test_a_resolved_point_without_numbers_or_with_zero_negatives_needed(parsed: dict) -> None:
    m = _copy(parsed)
    m["fpr_at_completeness"][1]["n_neg_flagged"] = None
    m["fpr_at_completeness"][2]["n_pos_needed"] = 0
    m["completeness_at_fpr"][0]["n_neg_needed"] = 0
    assert contract.metrics_problems(m) == [
        "fpr_at_completeness[1].n_neg_flagged: a resolved point needs a finite number, got None",
        "fpr_at_completeness[2].n_pos_needed: must be a positive integer, got 0",
        "completeness_at_fpr[0].n_neg_needed: must be a positive integer, got 0",
    ]
    m = _copy(parsed)
    m["tpr10"]["completeness_interval_at_threshold"] = [0.0, 0.0]
    assert contract.metrics_problems(m) == [
        f"tpr10.completeness_interval_at_threshold: [0.0, 0.0] does not contain the rate {m['tpr10']['completeness']}"
    ]
    m = _copy(parsed)
    m["tpr0"]["fpr_interval_at_threshold"] = [0.5, 0.6]
    assert contract.metrics_problems(m) == [
        f"tpr0.fpr_interval_at_threshold: [0.5, 0.6] does not contain the rate {m['tpr0']['fpr']}"
    ]


def test_bootstrap_intervals_are_judged_only_when_bootstrapped(parsed: dict) -> None:
    m = _copy(parsed)
    m["fpr_at_completeness"][1]["interval"] = None
    assert contract.metrics_problems(m) == ["fpr_at_completeness[1].interval: needs [low, high] numbers, got None"]
    m["fpr_at_completeness"][2]["interval"] = [0.0, 1.0]  # a headline interval need not hold its rate
    m["bootstrap_samples"] = 0
    assert contract.metrics_problems(m) == [
        f"{where}.interval: bootstrap_samples is 0 but an interval is reported (must be null)"
        for where in [*(f"fpr_at_completeness[{i}]" for i in range(2, 6)), "completeness_at_fpr[0]", "tpr0", "tpr10"]
    ]


def test_a_missing_target_is_named_and_flags_auroc_alone(parsed: dict) -> None:
    m = _copy(parsed)
    m["completeness_at_fpr"] = m["completeness_at_fpr"][:3]
    assert contract.metrics_problems(m) == [
        "completeness_at_fpr: operating point 1e-05 is missing",
        contract.AUROC_ALONE,
    ]
    m = _copy(parsed)
    m["fpr_at_completeness"][0]["target_value"] = 0.99 * (1 + 1e-12)  # still the 0.99 target
    assert contract.metrics_problems(m) == []


def test_sections_missing_entirely_with_an_auroc_is_auroc_alone(parsed: dict) -> None:
    m = _copy(parsed)
    del m["completeness_at_fpr"]
    problems = contract.metrics_problems(m)
    assert problems == ["completeness_at_fpr: missing", contract.AUROC_ALONE]
    m["auroc"] = None
    assert contract.AUROC_ALONE not in contract.metrics_problems(m)
    m = _copy(parsed)
    del m["n_pos"]
    assert contract.metrics_problems(m) == ["n_pos: missing"]
    assert contract.metrics_problems([1, 2]) == [
        "metrics: Input should be a valid dictionary or instance of OperatingPointSummary, got [1, 2]"
    ]


def test_field_problems_show_the_path_and_the_value(parsed: dict) -> None:
    m = _copy(parsed)
    m["completeness_at_fpr"][3]["fpr"] = "x" * 100
    (problem,) = contract.metrics_problems(m)
    assert problem.startswith("completeness_at_fpr[3].fpr: Input should be a valid number, got 'xxx")
    assert problem.endswith(", got " + repr("x" * 100)[:60])


def test_read_metrics_names_the_file_and_the_field(tmp_path: Path, parsed: dict) -> None:
    s = summary.evaluation_metrics(
        pd.DataFrame(
            {"label": [1, 1, 0, 0], "score": [0.9, 0.8, 0.1, 0.2], "host_id": [1, 2, 3, 4], "confuser": "none"}
        ),
        min_expected_fp=10,
        confidence=0.95,
        bootstrap_samples=0,
        seed=0,
        survey_hosts=10,
        prevalence=0.1,
    )
    good = tmp_path / "metrics.json"
    good.write_text(s.model_dump_json())
    assert contract.read_metrics(good) == s
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(s.model_dump_json()), "n_pos": -1}))
    with pytest.raises(
        ValueError, match=r"bad\.json: not a valid metrics\.json: n_pos: Input should be greater than 0, got -1$"
    ):
        contract.read_metrics(bad)


def test_resolved_points_of_the_summary_model(parsed: dict) -> None:
    model = contract.OperatingPointSummary.model_validate(parsed)
    assert set(model.sections()) == set(contract.SECTIONS)
    assert list(model.resolved_points())[-1] == "fpr=0.01"


# --------------------------------------------------------------------------------------------- findings


def test_finding_verdicts_and_waivers() -> None:
    ok = Finding("L1", "t", True)
    bad = Finding("L1", "t", False, measured=1.23456, threshold={"a": 1.0, "b": [1, 2.5]}, detail="d")
    assert (ok.verdict, ok.blocking) == ("pass", False)
    assert (bad.verdict, bad.blocking) == ("FAIL", True)
    waived = bad.waived("because the spec says so")
    assert (waived.verdict, waived.blocking, waived.waiver) == ("waived", False, "because the spec says so")
    assert bad.waived(None) is bad and bad.waived("") is bad
    assert ok.waived("reason").verdict == "pass"
    assert bad.table_row() == ["L1", "t", "1.235", "a=1, b=[1, 2.5]", "FAIL", "d"]
    assert waived.table_row()[4] == "waived: because the spec says so"
    assert ok.table_row() == ["L1", "t", "", "", "pass", ""]
    assert list(findings.TABLE_COLUMNS) == ["id", "lesson", "measured", "threshold", "verdict", "detail"]


def test_finding_round_trips_through_its_json_record() -> None:
    f = Finding(
        "L6",
        "host matching",
        False,
        measured={"x": np.float64(math.nan), "y": [np.int64(2), math.inf]},
        threshold=1.0,
        detail="d",
        evidence=({"k": np.float32(1.5)},),
        n_offending=3,
        waiver="a reason of some length",
    )
    record = f.to_dict()
    assert record == {
        "id": "L6",
        "title": "host matching",
        "verdict": "waived",
        "passed": False,
        "measured": {"x": "nan", "y": [2, "inf"]},
        "threshold": 1.0,
        "detail": "d",
        "n_offending": 3,
        "evidence": [{"k": 1.5}],
        "waiver": "a reason of some length",
    }
    json.dumps(record, allow_nan=False)
    back = Finding.from_dict(json.loads(json.dumps(record)))
    assert back == Finding(
        "L6",
        "host matching",
        False,
        {"x": "nan", "y": [2, "inf"]},
        1.0,
        "d",
        ({"k": 1.5},),
        3,
        "a reason of some length",
    )
    assert Finding.from_dict({"id": "L1", "title": "t", "passed": True}) == Finding("L1", "t", True)


def test_evidence_rows_keep_the_cap_and_the_count() -> None:
    rows = [{"i": i} for i in range(findings.MAX_EVIDENCE_ROWS + 1)]
    kept, count = findings.evidence_rows(rows)
    assert kept == tuple(rows[: findings.MAX_EVIDENCE_ROWS]) and count == findings.MAX_EVIDENCE_ROWS + 1
    assert findings.evidence_rows([]) == ((), 0)


def test_jsonable_and_show() -> None:
    assert findings.jsonable({1: (np.int32(3), -math.inf)}) == {"1": [3, "-inf"]}
    assert findings.jsonable("text") == "text" and findings.jsonable(None) is None
    assert findings.show(None) == "" and findings.show(0.000123456) == "0.0001235" and findings.show(3) == "3"
    assert findings.show((1.0, "a")) == "[1, a]" and findings.show({"k": None}) == "k="
    assert findings.show(True) == "True"


# ------------------------------------------------------------------------------------- thresholds, units


def test_the_spec_attaches_waivers_only_to_its_own_lessons() -> None:
    spec = InvariantThresholds(L2=L2Thresholds(waiver="the grid is fixed by the benchmark"))
    assert spec.waiver("L2") == "the grid is fixed by the benchmark"
    assert spec.waiver("L1") is None and spec.waiver("L99") is None and spec.waiver("judged") is None
    judged = spec.judged([Finding("L2", "t", False), Finding("L1", "t", False), Finding("schema:x", "t", False)])
    assert [f.verdict for f in judged] == ["waived", "FAIL", "FAIL"]
    assert judged[0].waiver == "the grid is fixed by the benchmark"


def test_survey_magnitudes_and_fluxes() -> None:
    assert survey.mag_to_flux(22.5) == 1.0 and survey.mag_to_flux(20.0) == pytest.approx(10.0)
    np.testing.assert_allclose(survey.flux_to_mag(np.array([1.0, 100.0])), [22.5, 17.5])
    mags = survey.flux_to_mag(np.array([0.0, -1.0, np.nan, 10.0]))
    assert np.isnan(mags[:3]).all() and mags[3] == pytest.approx(20.0)
    assert survey.flux_to_mag(survey.mag_to_flux(np.array([18.25]))) == pytest.approx(18.25)
    assert survey.KEY == ("RELEASE", "BRICKID", "OBJID") and survey.BANDS == ("g", "r", "z")


def test_select_reconciliation() -> None:
    ok = reconciliation.check(10, 6, 3, 1)
    assert ok.passed and ok.id == "select:reconciliation" and ok.measured == 10 and ok.threshold == 10
    assert ok.detail == "6 selected + 3 rejected by cuts + 1 quarantined"
    assert not reconciliation.check(10, 6, 3, 0).passed
    assert not reconciliation.check(10, 12, -3, 1).passed and not reconciliation.check(10, -1, 10, 1).passed
    assert not reconciliation.check(10, 6, 5, -1).passed
    assert reconciliation.check(0, 0, 0, 0).passed


# ------------------------------------------------------------------------ float64 inside, probe recipes


def test_thresholds_are_computed_in_float64_whatever_the_score_dtype() -> None:
    neg = np.array([0.1, 0.2, 0.3, 0.7], dtype=np.float32)
    t = operating_points.threshold_flagging_at_most(neg, 1)
    assert t == np.nextafter(np.float64(np.float32(0.3)), math.inf)
    pos = np.array([0.5, 0.6], dtype=np.float32)
    point = operating_points.completeness_at_fpr(pos, neg, 0.25, min_expected_fp=1)
    assert point.threshold == t and point.n_neg_flagged == 1
    with pytest.raises(ValueError, match=r"^negative scores hold 1 non-finite values$"):
        operating_points.threshold_flagging_at_most(np.array([0.1, np.nan]), 1)


def test_flag_rates_compare_in_float64() -> None:
    score = np.array([0.1], dtype=np.float32)
    just_above = float(score[0]) + 1e-12  # rounds to the score in float32
    assert probes.flag_rates(score, {"t": just_above}) == {"t": 0.0}
    assert probes.flag_rates(score, {"t": float(score[0])}) == {"t": 1.0}


def test_bootstrap_resamples_in_float64() -> None:
    dtypes = set()

    def stats(p: operating_points.Sample, n: operating_points.Sample) -> np.ndarray:
        dtypes.update({p.values.dtype, n.values.dtype})
        return np.array([_mean(p) - _mean(n)])

    intervals.bootstrap_interval(np.arange(4, dtype=np.float32), np.arange(3, dtype=np.float32), stats, 2, seed=0)
    assert dtypes == {np.dtype(np.float64)}


def _noisy(n: int = 24, features: int = 6, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n), np.zeros(n)].astype(int)
    x = rng.normal(0, 1, (2 * n, features))
    x[:, 0] += 0.8 * labels
    return x, labels


def test_probe_scores_are_the_documented_recipe() -> None:
    """Standardised features, L2 logistic regression (C = 1), seeded stratified 5-fold out-of-fold scores,
    averaged over CV_REPEATS fold draws seeded seed, seed + 1, ..."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels = _noisy()
    assert probes.CV_REPEATS == 5
    for seed, folds, repeats in ((7, 5, 5), (2**32 + 7, 5, 5), (3, 3, 2), (4, 5, 1)):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        draws = [
            cross_val_predict(
                model,
                x,
                labels,
                cv=StratifiedKFold(folds, shuffle=True, random_state=(seed + r) % 2**32),
                method="decision_function",
            )
            for r in range(repeats)
        ]
        np.testing.assert_allclose(probes.probe_scores(x, labels, seed, folds, repeats), np.mean(draws, axis=0))
    assert _probe_auc(x, labels, 7) == _probe_auc(x, labels, 7, 5) != _probe_auc(x, labels, 7, 6)


def test_probe_auc_does_not_depend_on_the_features_units() -> None:
    x, labels = _noisy()
    scaled = x * np.array([1e-3, 1e3, 1.0, 1e2, 1e-2, 10.0])
    assert _probe_auc(scaled, labels, 1) == pytest.approx(_probe_auc(x, labels, 1), abs=1e-9)


def test_blob_defaults_the_survey_psf_per_band_and_a_kernel_that_fits_the_stamp() -> None:
    flux = np.ones((1, 3))
    fwhm = np.array([1.2])
    survey_psf = probes.blob_images(flux, fwhm, 16, 0.262)
    assert np.array_equal(survey_psf, probes.blob_images(flux, fwhm, 16, 0.262, psf_model="survey"))
    assert np.array_equal(survey_psf, probes.blob_images(flux, fwhm, 16, 0.262, kernel_size=31))
    assert not np.allclose(survey_psf[0, 0], survey_psf[0, 2], rtol=1e-3, atol=0)  # g and z wings differ
    moffat = probes.blob_images(flux, fwhm, 16, 0.262, psf_model="moffat")
    assert np.array_equal(moffat, probes.blob_images(flux, fwhm, 16, 0.262, psf_model="moffat", beta=2.8))


def test_recorded_counts_without_an_integer_count_fail_naming_it() -> None:
    assert reconciliation.check_recorded({"input": 10, "rejected_by_cuts": 3, "quarantined": 1}, 6).passed
    broken = reconciliation.check_recorded({"input": 10, "rejected_by_cuts": "3"}, 6)
    assert not broken.passed and broken.detail == "counts.json lacks integer rejected_by_cuts, quarantined"
    assert not reconciliation.check_recorded([], 6).passed
