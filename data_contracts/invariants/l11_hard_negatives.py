"""L11 hard negatives present: the controls hold every enabled confuser class, the test split enough of each
to resolve its own FPR (data_contracts.lessons)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from data_contracts.confusers import PLAIN, UNLABELLED
from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS
from data_contracts.metrics import sample_needed
from data_contracts.thresholds import L11Thresholds

#: What the check reads from a manifest.
NEEDS = ("host_id", "label", "split", "confuser")


def control_hosts(manifest: pd.DataFrame, split: str) -> pd.Series:
    """Distinct control hosts of ``split`` per confuser value."""
    controls = manifest[(manifest["label"] == 0) & (manifest["split"] == split)]
    return controls.groupby("confuser")["host_id"].nunique()


def check(
    manifest: pd.DataFrame,
    enabled: Sequence[str],
    thresholds: L11Thresholds,
    min_expected_fp: float,
    scale: float = 1.0,
) -> Finding:
    """Test control hosts per enabled class (times ``scale``: a pre-flight sample's counts extrapolated to the
    whole survey) against the hosts an FPR of ``thresholds.resolve_fpr`` needs; the confuser share of test
    control hosts against ``thresholds.min_share``; enabled classes missing from the training controls."""
    needed = sample_needed(min_expected_fp, thresholds.resolve_fpr)
    test = control_hosts(manifest, "test")
    per_class = {name: round(int(test.get(name, 0)) * scale) for name in enabled}
    all_hosts = int(test.sum())
    confused = int(test.drop([PLAIN, UNLABELLED], errors="ignore").sum())
    share = confused / all_hosts if all_hosts else 0.0
    train = control_hosts(manifest, "train")
    untrained = [name for name in enabled if not train.get(name, 0)]
    short = {name: n for name, n in per_class.items() if n < needed}
    problems = []
    if not enabled:
        problems.append("the spec enables no confuser class: its negatives are a sky of smooth hosts")
    if short:
        problems.append(
            f"too few test control hosts to resolve FPR {thresholds.resolve_fpr:g} (need {needed:,}): "
            + ", ".join(f"{k} {v:,}" for k, v in short.items())
        )
    if enabled and share < thresholds.min_share:
        problems.append(f"confusers are {share:.1%} of the test control hosts, below {thresholds.min_share:.0%}")
    if untrained:
        problems.append(f"no training control of class {', '.join(untrained)} (hard negatives are part of training)")
    detail = "; ".join(problems) or (
        f"{len(enabled)} classes, each on >= {needed:,} test control hosts; confuser share {share:.1%}"
    )
    return Finding(
        id="L11",
        title=LESSONS["L11"].title,
        passed=not problems,
        measured={"share": round(share, 4), **per_class},
        threshold={"share": thresholds.min_share, "hosts per class": needed},
        detail=detail,
        evidence=tuple({"class": k, "test_control_hosts": v} for k, v in short.items()),
        n_offending=len(short) + len(untrained) + (not enabled),
    )
