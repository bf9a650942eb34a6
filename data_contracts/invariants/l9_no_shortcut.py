"""L9, no shortcut: a classifier on the central core pixels alone must not separate positives from
controls beyond ``max_core_auc`` — unless the same classifier on the ring around the core, where
resolved arcs put their light, separates them at least as well (through a ground-based PSF an arc
of theta_E ~ 1" leaks into the core; what must not happen is the core carrying more of the class
than the arcs' own region) — and unlensed blobs of an arc's flux must not be flagged more than
``max_blob_rate_ratio`` times the controls' FPR at any operating threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy import stats

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L9Thresholds

LESSON = LESSONS["L9"]


def check(
    core_auc: float,
    ring_auc: float,
    blob_flag_rates: Mapping[str, float],
    fpr_at_thresholds: Mapping[str, float],
    thresholds: L9Thresholds,
    fpr_floor: float = 0.0,
    n_blobs: int | None = None,
) -> Finding:
    """Judge the probes' results, keyed by operating point name (e.g. ``completeness=0.9``).

    ``fpr_floor`` is the smallest FPR the controls can show (1 / n_controls): a zero FPR is raised
    to it, so one flagged blob out of many does not fail an otherwise perfect finder. With
    ``n_blobs`` given, a blob rate fails only when its one-sided 95 % lower bound (exact binomial)
    exceeds the allowed ratio x FPR, so a few hundred test controls do not fail on noise.
    """
    if set(blob_flag_rates) != set(fpr_at_thresholds):
        raise ValueError(
            f"blob rates and FPRs name different operating points: {sorted(blob_flag_rates)} "
            f"vs {sorted(fpr_at_thresholds)}"
        )
    offending = []
    bound = max(thresholds.max_core_auc, ring_auc if math.isfinite(ring_auc) else 0.0)
    if not (math.isfinite(core_auc) and core_auc <= bound):
        offending.append({"probe": "core", "auc": core_auc, "max_auc": bound})
    worst = 0.0
    for name, rate in blob_flag_rates.items():
        fpr = max(fpr_at_thresholds[name], fpr_floor)
        ratio = rate / fpr if fpr > 0 else (math.inf if rate > 0 else 0.0)
        worst = max(worst, ratio)
        lower = _lower_bound(rate, n_blobs)
        if lower > thresholds.max_blob_rate_ratio * fpr:
            offending.append({"probe": "blob", "operating_point": name, "blob_rate": rate, "fpr": fpr, "ratio": ratio})
    evidence, count = evidence_rows(offending)
    detail = "; ".join(
        f"core AUC {row['auc']:.3f} > max(bound, ring AUC) = {row['max_auc']:.3f}"
        if row["probe"] == "core"
        else f"blobs flagged {row['ratio']:.2f}x the FPR at {row['operating_point']}"
        for row in offending
    )
    return Finding(
        id=LESSON.id,
        title=LESSON.title,
        passed=not offending,
        measured={"core_auc": core_auc, "ring_auc": ring_auc, "max_blob_rate_ratio": worst},
        threshold={"max_core_auc": thresholds.max_core_auc, "max_blob_rate_ratio": thresholds.max_blob_rate_ratio},
        detail=detail or "no core or blob shortcut",
        evidence=evidence,
        n_offending=count,
    ).waived(thresholds.waiver)


def _lower_bound(rate: float, n: int | None) -> float:
    """One-sided 95 % Clopper-Pearson lower bound of a rate seen in ``n`` trials (the rate itself if n is None)."""
    if n is None or rate <= 0:
        return rate
    k = round(rate * n)
    return float(stats.beta.ppf(0.05, k, n - k + 1))
