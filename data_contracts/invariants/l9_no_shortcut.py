"""L9, no shortcut (data_contracts.lessons), judged on the probe measurements the evaluate stage stores
in metrics.json (``probes``), so a tightened bound is judged without the model.

The rule, as the lesson writes it:
- core: the AUC of a classifier on the central core pixels alone must not exceed the larger of
  ``max_core_auc`` and the same classifier's AUC on the ring around the core. Through a ground-based
  PSF an arc of theta_E ~ 1" puts light in the core, so the core may separate the classes as far as
  the arcs' own region does, never further (``core_bound_rises_to_ring: false`` drops this).
- blobs: at every operating threshold, the one-sided 95 % lower bound (exact binomial) of the rate at
  which unlensed blobs of an arc's flux are flagged must not exceed ``max_blob_rate_ratio`` x the
  controls' FPR there (an FPR of zero counts as 1 / n_controls). The bound, not the rate, is
  compared, so a few hundred controls do not fail on noise; the table shows the bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy import stats

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L9Thresholds

LESSON = LESSONS["L9"]
#: The probe measurements metrics.json must hold for L9.
NEEDS = ("core_auc", "ring_auc", "blob_flag_rates", "fpr_at_thresholds", "n_blobs", "fpr_floor")


def lower_bound(rate: float, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound at ``level`` of a rate seen in ``n`` trials."""
    if rate <= 0:
        return 0.0
    k = round(rate * n)
    return float(stats.beta.ppf(1 - level, k, n - k + 1))


def check(probes: Mapping[str, Any], thresholds: L9Thresholds) -> Finding:
    """Judge stored probe measurements (keyed as ``NEEDS``; rates by operating point name)."""
    missing = [key for key in NEEDS if key not in probes]
    if missing:
        return Finding(LESSON.id, LESSON.title, False, detail=f"probes lack {', '.join(missing)}")
    rates, fprs = probes["blob_flag_rates"], probes["fpr_at_thresholds"]
    if set(rates) != set(fprs):
        detail = f"blob rates and FPRs name different operating points: {sorted(rates)} vs {sorted(fprs)}"
        return Finding(LESSON.id, LESSON.title, False, detail=detail)
    core_auc, ring_auc = float(probes["core_auc"]), float(probes["ring_auc"])
    ring = ring_auc if thresholds.core_bound_rises_to_ring and math.isfinite(ring_auc) else 0.0
    core_bound = max(thresholds.max_core_auc, ring)
    offending = []
    if not (math.isfinite(core_auc) and core_auc <= core_bound):
        offending.append({"probe": "core", "auc": core_auc, "bound": core_bound})
    worst = 0.0
    for name, rate in rates.items():
        fpr = max(float(fprs[name]), float(probes["fpr_floor"]))
        ratio = lower_bound(float(rate), int(probes["n_blobs"])) / fpr if fpr > 0 else math.inf
        worst = max(worst, ratio)
        if ratio > thresholds.max_blob_rate_ratio:
            offending.append({"probe": "blob", "operating_point": name, "blob_rate": rate, "fpr": fpr, "ratio": ratio})
    evidence, count = evidence_rows(offending)
    detail = "; ".join(
        f"core AUC {row['auc']:.3f} > max(bound, ring AUC) = {row['bound']:.3f}"
        if row["probe"] == "core"
        else f"blobs flagged {row['ratio']:.2f}x the FPR (95 % lower bound) at {row['operating_point']}"
        for row in offending
    )
    return Finding(
        id=LESSON.id,
        title=LESSON.title,
        passed=not offending,
        measured={"core_auc": round(core_auc, 4), "blob_lower_bound_over_fpr": round(worst, 4)},
        threshold={"core_auc": round(core_bound, 4), "blob_lower_bound_over_fpr": thresholds.max_blob_rate_ratio},
        detail=detail
        or f"core AUC within max({thresholds.max_core_auc}, ring AUC {ring_auc:.3f}); blob rates' 95 % lower "
        f"bounds within {thresholds.max_blob_rate_ratio}x the FPR ({probes['n_blobs']} blobs)",
        evidence=evidence,
        n_offending=count,
    )
