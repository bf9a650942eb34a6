"""The evaluation summary against brute force and hand-computed answers (ties, tiny classes,
unresolved targets, all-equal scores), and its JSON shape."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.metrics.summary import (
    STRATA,
    evaluation_metrics,
    inspection_budget,
    point_at_fp_count,
    stratified_completeness,
    summarise,
)
from data_contracts.invariants.l4_operational_reporting import check as check_l4
from data_contracts.metrics import COMPLETENESS_TARGETS, FPR_TARGETS, OperatingPointSummary, ReportedPoint

tied = st.lists(st.integers(0, 5).map(lambda v: v / 5), min_size=1, max_size=40)


def _summary(pos: np.ndarray, neg: np.ndarray, samples: int = 0) -> OperatingPointSummary:
    return summarise(pos, neg, min_expected_fp=10, confidence=0.95, bootstrap_samples=samples, seed=0)


def _passes_l4(metrics: OperatingPointSummary) -> bool:
    """L4's verdict on the summary as written to and parsed from metrics.json."""
    return check_l4(metrics.model_dump(mode="json")).passed


@settings(max_examples=150, deadline=None)
@given(pos=tied, neg=tied, max_fp=st.sampled_from([0, 1, 10]))
def test_bologna_tpr_is_the_best_completeness_with_at_most_n_false_positives(
    pos: list[float], neg: list[float], max_fp: int
) -> None:
    p, n = np.array(pos), np.array(neg)
    point = point_at_fp_count(p, n, max_fp)
    candidates = [*np.unique(np.r_[p, n]), math.inf]
    best = max((p >= t).mean() for t in candidates if (n >= t).sum() <= max_fp)
    assert point.completeness == pytest.approx(best)
    assert point.n_neg_flagged <= max_fp and math.isfinite(point.threshold)


def test_tpr0_flags_only_what_beats_the_highest_negative() -> None:
    pos, neg = np.array([0.2, 0.5, 0.9, 0.9, 1.0]), np.array([0.1, 0.5, 0.9])
    metrics = _summary(pos, neg)
    assert metrics.tpr0.completeness == pytest.approx(1 / 5)  # only 1.0 beats the tied 0.9
    assert metrics.tpr0.n_neg_flagged == 0
    assert metrics.tpr10.completeness == 1.0  # 3 negatives: all may be flagged


def test_a_small_sample_reports_its_targets_as_unresolved_with_no_number() -> None:
    rng = np.random.default_rng(1)
    metrics = _summary(rng.normal(2, 1, 300), rng.normal(0, 1, 500), samples=50)
    by_target = {p.target_value: p for p in metrics.completeness_at_fpr}
    assert [by_target[f].resolved for f in FPR_TARGETS] == [False] * 4  # 500 x 1e-2 = 5 < 10
    assert [by_target[f].n_neg_needed for f in FPR_TARGETS] == [1_000, 10_000, 100_000, 1_000_000]
    for point in by_target.values():
        assert point.completeness is None and point.threshold is None and point.interval is None
    assert [p.target_value for p in metrics.fpr_at_completeness] == list(COMPLETENESS_TARGETS)
    at_99 = metrics.fpr_at_completeness[0]  # 300 x 0.01 = 3 expected missed positives
    assert not at_99.resolved and at_99.n_pos_needed == 1000 and at_99.fpr is None and at_99.interval is None
    assert [p.n_pos_needed for p in metrics.fpr_at_completeness] == [1000, 200, 100, 67, 50, 34]
    assert _passes_l4(metrics)
    names = [f"completeness={c:g}" for c in COMPLETENESS_TARGETS[1:]]
    assert list(metrics.resolved_points()) == names


def test_enough_negatives_resolve_the_fpr_target_and_give_intervals_around_it() -> None:
    rng = np.random.default_rng(2)
    metrics = _summary(rng.normal(2, 1, 400), rng.normal(0, 1, 1000), samples=100)
    point = metrics.completeness_at_fpr[0]
    assert point.resolved and point.target_value == 1e-2 and point.n_neg_flagged <= 10
    low, high = point.completeness_interval_at_threshold
    assert low < point.completeness < high
    blow, bhigh = point.interval
    assert blow <= point.completeness <= bhigh
    assert [p.resolved for p in metrics.completeness_at_fpr] == [True, False, False, False]
    assert OperatingPointSummary.model_validate_json(metrics.model_dump_json()) == metrics  # JSON round trip
    assert _passes_l4(metrics)


def test_all_equal_scores_and_one_stamp_per_class() -> None:
    metrics = _summary(np.full(200, 0.4), np.full(2000, 0.4), samples=20)
    assert metrics.auroc == 0.5
    assert metrics.completeness_at_fpr[0].completeness == 0.0  # any flag would flag every negative
    assert [p.fpr for p in metrics.fpr_at_completeness] == [None, *[1.0] * 5]  # 200 x 0.01 = 2 < 10
    assert metrics.tpr0.completeness == 0.0
    assert _passes_l4(metrics)
    tiny = _summary(np.array([0.7]), np.array([0.3]), samples=20)
    assert tiny.auroc == 1.0 and tiny.tpr0.completeness == 1.0
    # every resample of one positive flags it: a zero-width bootstrap gives way to the exact interval
    assert tiny.tpr0.interval == tiny.tpr0.completeness_interval_at_threshold == [pytest.approx(0.025), 1.0]
    assert not any(p.resolved for p in [*tiny.fpr_at_completeness, *tiny.completeness_at_fpr])
    assert _passes_l4(tiny)


def _scores(hosts: np.ndarray) -> pd.DataFrame:
    """Scores of 100 positives (hosts 0-99) and of controls on ``hosts`` (offset past the positives)."""
    rng = np.random.default_rng(4)
    n_neg = hosts.size
    return pd.DataFrame(
        {
            "label": np.r_[np.ones(100, int), np.zeros(n_neg, int)],
            "score": np.r_[rng.normal(2, 1, 100), rng.normal(0, 1, n_neg)],
            "host_id": np.r_[np.arange(100), 100 + hosts],
            "confuser": "none",
        }
    )


def test_the_fpr_resolution_counts_the_controls_distinct_hosts() -> None:
    kwargs = dict(min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3)
    distinct = evaluation_metrics(_scores(np.arange(2000)), **kwargs)
    assert distinct.n_neg_hosts == 2000 and distinct.completeness_at_fpr[0].resolved  # 2000 x 1e-2 = 20
    repeated = evaluation_metrics(_scores(np.arange(2000) // 4), **kwargs)  # each host's image four times
    assert repeated.n_neg == 2000 and repeated.n_neg_hosts == 500
    assert not repeated.completeness_at_fpr[0].resolved  # 500 x 1e-2 = 5 < 10
    assert _passes_l4(distinct) and _passes_l4(repeated)
    with pytest.raises(ValueError, match=r"^scores: no host_id column"):
        evaluation_metrics(_scores(np.arange(10)).drop(columns="host_id"), **kwargs)


def test_stratified_completeness_counts_each_bin() -> None:
    meta = pd.DataFrame(
        {
            "theta_e": [0.4, 0.6, 0.6, 1.2, 1.2, 1.2],
            "psfsize_r": [1.0, 1.2, 0.6, 1.2, 1.2, 0.4],
            "arc_snr": [3.0, 8.0, 8.0, 30.0, 30.0, 600.0],
        }
    )
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95])
    table = stratified_completeness(scores, meta, threshold=0.5, confidence=0.95)
    assert set(table) == {"theta_e", "theta_e_over_psf", "arc_snr"}
    theta = {(row.low, row.high): (row.n, row.n_flagged) for row in table["theta_e"]}
    assert theta == {(0.0, 0.5): (1, 1), (0.5, 0.75): (2, 1), (1.0, 1.5): (3, 2)}
    ratio = {(row.low, row.high): (row.n, row.n_flagged) for row in table["theta_e_over_psf"]}
    # ratios 0.4, 0.5, 1.0, 1.0, 1.0, 3.0
    assert ratio == {(0.0, 0.5): (1, 1), (0.5, 0.75): (1, 0), (1.0, 1.5): (3, 2), (2.0, None): (1, 1)}
    assert table["arc_snr"][-1].high is None and STRATA["arc_snr"][-1] == math.inf


def test_inspection_budget_is_survey_times_rates() -> None:
    point = ReportedPoint(
        target="completeness",
        target_value=0.8,
        resolved=True,
        threshold=1.5,
        completeness=0.8,
        fpr=1e-3,
        n_pos=1000,
        n_neg=10_000,
        n_pos_flagged=800,
        n_neg_flagged=10,
        n_neg_needed=0,
        n_pos_needed=50,
        interval=[8e-4, 1.4e-3],
        completeness_interval_at_threshold=[0.77, 0.83],
        fpr_interval_at_threshold=[5e-4, 2e-3],
    )
    budget = inspection_budget(point, survey_hosts=1_000_000, prevalence=1e-3)
    assert budget.survey_hosts == 1_000_000 and budget.lens_prevalence == 1e-3
    assert budget.expected_true == pytest.approx(800)
    assert budget.expected_false == pytest.approx(999)
    assert budget.purity == pytest.approx(800 / 1799)
    assert budget.expected_false_high == pytest.approx(1998)
    assert budget.purity_low == pytest.approx(800 / 2798)
