"""The contract of ``evaluate/metrics.json``: every operating point of L4, with counts and intervals.

Explicit, JSON-schema-like checks over the parsed JSON; each problem names the field it is about.
A target the negatives cannot resolve carries ``resolved: false``, the negatives needed and no
number (a number there is a problem, as is a missing operating point or an AUROC without them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: L4's operating points: FPR is reported at these completeness targets ...
COMPLETENESS_TARGETS: tuple[float, ...] = (0.99, 0.95, 0.90, 0.85, 0.80, 0.70)
#: ... and completeness at these FPR targets.
FPR_TARGETS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)

#: The fields of an operating point that hold numbers only when it is resolved.
RESOLVED_NUMBERS = ("threshold", "completeness", "fpr", "n_pos_flagged", "n_neg_flagged")
RESOLVED_INTERVALS = ("completeness_interval", "fpr_interval")
NULL_WHEN_UNRESOLVED = (*RESOLVED_NUMBERS, *RESOLVED_INTERVALS, "bootstrap_interval")
#: Sections of metrics.json and the targets each must list exactly.
SECTIONS: dict[str, tuple[float, ...]] = {
    "fpr_at_completeness": COMPLETENESS_TARGETS,
    "completeness_at_fpr": FPR_TARGETS,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _interval_problems(where: str, interval: Any, value: Any) -> list[str]:
    if not (isinstance(interval, list | tuple) and len(interval) == 2 and all(_is_number(v) for v in interval)):
        return [f"{where}: needs [low, high] numbers, got {interval!r}"]
    low, high = interval
    if not 0 <= low <= high <= 1:
        return [f"{where}: [{low}, {high}] is not an interval inside [0, 1]"]
    if _is_number(value) and not low - 1e-12 <= value <= high + 1e-12:
        return [f"{where}: [{low}, {high}] does not contain the rate {value}"]
    return []


def _point_problems(where: str, point: Any, n_neg: int, min_expected_fp: float, bootstrap: bool) -> list[str]:
    if not isinstance(point, Mapping):
        return [f"{where}: an operating point must be an object, got {type(point).__name__}"]
    problems = []
    resolved = point.get("resolved")
    if not isinstance(resolved, bool):
        return [f"{where}.resolved: must be true or false, got {resolved!r}"]
    if point.get("target") == "fpr":
        can_resolve = n_neg * float(point.get("target_value", 0)) >= min_expected_fp
        if resolved != can_resolve:
            problems.append(
                f"{where}.resolved is {resolved} but n_neg x FPR = {n_neg * point.get('target_value', 0):g} "
                f"against a minimum of {min_expected_fp:g} expected false positives"
            )
        needed = point.get("n_neg_needed")
        if not (isinstance(needed, int) and needed > 0):
            problems.append(f"{where}.n_neg_needed: must be a positive integer, got {needed!r}")
    if not resolved:
        numbers = [k for k in NULL_WHEN_UNRESOLVED if point.get(k) is not None]
        if numbers:
            problems.append(f"{where}: unresolved but reports {', '.join(numbers)} (must be null)")
        return problems
    for key in RESOLVED_NUMBERS:
        if not _is_number(point.get(key)):
            problems.append(f"{where}.{key}: a resolved point needs a finite number, got {point.get(key)!r}")
    rates = {"completeness_interval": point.get("completeness"), "fpr_interval": point.get("fpr")}
    for key, value in rates.items():
        problems += _interval_problems(f"{where}.{key}", point.get(key), value)
    if bootstrap:
        problems += _interval_problems(f"{where}.bootstrap_interval", point.get("bootstrap_interval"), None)
    return problems


def metrics_problems(metrics: Any) -> list[str]:
    """Every way ``metrics`` (parsed metrics.json) breaks the contract; empty when it holds."""
    if not isinstance(metrics, Mapping):
        return [f"metrics: must be an object, got {type(metrics).__name__}"]
    problems = []
    for key in ("n_pos", "n_neg"):
        if not (isinstance(metrics.get(key), int) and metrics[key] > 0):
            problems.append(f"{key}: must be a positive integer, got {metrics.get(key)!r}")
    min_fp = metrics.get("min_expected_false_positives")
    if not (_is_number(min_fp) and min_fp > 0):
        problems.append(f"min_expected_false_positives: must be a positive number, got {min_fp!r}")
    if problems:
        return problems
    bootstrap = isinstance(metrics.get("bootstrap_samples"), int) and metrics["bootstrap_samples"] > 0
    missing_points = False
    for section, targets in SECTIONS.items():
        points = metrics.get(section)
        if not isinstance(points, list):
            problems.append(f"{section}: missing (L4 needs every operating point)")
            missing_points = True
            continue
        seen = [p.get("target_value") for p in points if isinstance(p, Mapping)]
        for target in targets:
            if not any(_is_number(v) and math.isclose(v, target, rel_tol=1e-9) for v in seen):
                problems.append(f"{section}: operating point {target:g} is missing")
                missing_points = True
        for i, point in enumerate(points):
            problems += _point_problems(f"{section}[{i}]", point, metrics["n_neg"], min_fp, bootstrap)
    for key in ("tpr0", "tpr10"):
        point = metrics.get(key)
        if not isinstance(point, Mapping):
            problems.append(f"{key}: missing")
            continue
        problems += _point_problems(key, point, metrics["n_neg"], min_fp, bootstrap)
    if missing_points and metrics.get("auroc") is not None:
        problems.append("auroc: reported without the operating points (AUROC is never the headline)")
    return problems
