"""L9, no shortcut (data_contracts.lessons), judged on the probe measurements the evaluate stage stores
in metrics.json (``probes``), so a tightened bound is judged without the model.

The rule, as the lesson writes it:
- core: the AUC of a classifier on the central core pixels alone fails above ``max_core_auc`` only when
  the core also separates the classes further than the same classifier on the ring around the core, with
  95 % confidence: the one-sided lower bound of core AUC - ring AUC (paired bootstrap of the test stamps,
  ``core_minus_ring_auc_lower``) is above 0. Through a ground-based PSF an arc of theta_E ~ 1" puts light
  in the core, so the core may separate the classes as far as the arcs' own region does; the bound, not
  the two point AUCs, is compared, so a small test split does not fail on noise (a 144-feature ring
  regression on ~200 stamps is weaker than on 2,000). ``core_bound_rises_to_ring: false``: above
  ``max_core_auc`` fails.
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
NEEDS = (
    "core_auc",
    "ring_auc",
    "core_minus_ring_auc_lower",
    "blob_flag_rates",
    "fpr_at_thresholds",
    "n_blobs",
    "fpr_floor",
)


def lower_bound(rate: float, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound at ``level`` of a rate seen in ``n`` trials."""
    if rate <= 0:
        return 0.0
    k = round(rate * n)
    return float(stats.beta.ppf(1 - level, k, n - k + 1))


def _core_line(core_auc: float, ring_auc: float, lower: float, thresholds: L9Thresholds) -> str:
    """What the core probe showed against its rule, for the finding's detail."""
    if not math.isfinite(core_auc):
        return f"core AUC {core_auc} is not a number"
    if core_auc <= thresholds.max_core_auc:
        return f"core AUC {core_auc:.3f} within {thresholds.max_core_auc}"
    above = f"core AUC {core_auc:.3f} > {thresholds.max_core_auc}"
    if not thresholds.core_bound_rises_to_ring:
        return above
    beyond = "not beyond" if lower <= 0 else "beyond"
    return f"{above}, {beyond} the ring AUC {ring_auc:.3f} at 95 % (core - ring >= {lower:+.3f})"


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
    lower = float(probes["core_minus_ring_auc_lower"])
    within_ring = thresholds.core_bound_rises_to_ring and lower <= 0  # False for a NaN bound
    offending = []
    if not (math.isfinite(core_auc) and (core_auc <= thresholds.max_core_auc or within_ring)):
        offending.append(
            {"probe": "core", "auc": core_auc, "bound": thresholds.max_core_auc, "core_minus_ring_auc_lower": lower}
        )
    worst, allowed = 0.0, thresholds.max_blob_rate_ratio
    for name, rate in rates.items():
        fpr = max(float(fprs[name]), float(probes["fpr_floor"]))
        ratio = lower_bound(float(rate), int(probes["n_blobs"])) / fpr if fpr > 0 else math.inf
        worst = max(worst, ratio)
        if ratio > allowed:
            offending.append({"probe": "blob", "operating_point": name, "blob_rate": rate, "fpr": fpr, "ratio": ratio})
    evidence, count = evidence_rows(offending)
    core = _core_line(core_auc, ring_auc, lower, thresholds)
    detail = "; ".join(
        core
        if row["probe"] == "core"
        else f"blobs flagged {row['ratio']:.2f}x the FPR (95 % lower bound) at {row['operating_point']}"
        for row in offending
    )
    blobs = f"blob rates' 95 % lower bounds within {allowed}x the FPR ({probes['n_blobs']} blobs)"
    threshold = {"core_auc": thresholds.max_core_auc}
    if thresholds.core_bound_rises_to_ring:
        threshold["core_minus_ring_auc_lower"] = 0.0
    return Finding(
        id=LESSON.id,
        title=LESSON.title,
        passed=not offending,
        measured={
            "core_auc": round(core_auc, 4),
            "core_minus_ring_auc_lower": round(lower, 4),
            "blob_lower_bound_over_fpr": round(worst, 4),
        },
        threshold=threshold | {"blob_lower_bound_over_fpr": allowed},
        detail=detail or f"{core}; {blobs}",
        evidence=evidence,
        n_offending=count,
    )
