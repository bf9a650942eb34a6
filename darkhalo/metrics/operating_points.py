"""Thresholds at a target FPR or completeness, computed exactly (ties included).

A stamp is flagged when its score is >= the threshold. Completeness = flagged positives /
positives, FPR = flagged negatives / negatives. An FPR target is *resolved* only when the
negatives can show it: n_negatives x FPR >= ``min_expected_fp`` (a rate the sample cannot see is
reported as unresolved, never as a number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it does to both classes."""

    target: str  # "fpr" or "completeness"
    target_value: float
    resolved: bool
    threshold: float
    completeness: float
    fpr: float
    n_pos: int
    n_neg: int
    n_pos_flagged: int
    n_neg_flagged: int
    n_neg_needed: int  # negatives needed to resolve this FPR target (0 for completeness targets)


def _as_scores(scores: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError(f"no {name} scores")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} scores hold {int((~np.isfinite(scores)).sum())} non-finite values")
    return scores


def threshold_at_fpr(neg: np.ndarray, fpr: float) -> float:
    """The lowest threshold whose FPR is <= ``fpr`` (ties of negatives stay unflagged together)."""
    neg = np.sort(_as_scores(neg, "negative"))[::-1]
    allowed = math.floor(fpr * neg.size + 1e-9)
    if allowed >= neg.size:
        return -math.inf
    # flag exactly what scores above the (allowed+1)-th highest negative
    return float(np.nextafter(neg[allowed], math.inf))


def threshold_at_completeness(pos: np.ndarray, completeness: float) -> float:
    """The highest threshold whose completeness is >= ``completeness``."""
    pos = np.sort(_as_scores(pos, "positive"))[::-1]
    needed = max(1, math.ceil(completeness * pos.size - 1e-9))
    return float(pos[min(needed, pos.size) - 1])


def evaluate_threshold(
    pos: np.ndarray, neg: np.ndarray, threshold: float, target: str, target_value: float, resolved: bool
) -> OperatingPoint:
    """Counts and rates of both classes at ``threshold`` (flag: score >= threshold)."""
    pos = _as_scores(pos, "positive")
    neg = _as_scores(neg, "negative")
    tp = int((pos >= threshold).sum())
    fp = int((neg >= threshold).sum())
    return OperatingPoint(
        target=target,
        target_value=target_value,
        resolved=resolved,
        threshold=threshold,
        completeness=tp / pos.size,
        fpr=fp / neg.size,
        n_pos=pos.size,
        n_neg=neg.size,
        n_pos_flagged=tp,
        n_neg_flagged=fp,
        n_neg_needed=0,
    )


def completeness_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float, min_expected_fp: float = 10.0) -> OperatingPoint:
    """Completeness at the lowest threshold with FPR <= ``fpr``; ``resolved`` says if it can be trusted."""
    if not 0 < fpr <= 1:
        raise ValueError(f"an FPR target must be in (0, 1], got {fpr}")
    neg_arr = _as_scores(neg, "negative")
    resolved = neg_arr.size * fpr >= min_expected_fp
    point = evaluate_threshold(pos, neg_arr, threshold_at_fpr(neg_arr, fpr), "fpr", fpr, resolved)
    return replace(point, n_neg_needed=math.ceil(min_expected_fp / fpr - 1e-9))


def fpr_at_completeness(pos: np.ndarray, neg: np.ndarray, completeness: float) -> OperatingPoint:
    """FPR at the highest threshold reaching ``completeness``."""
    threshold = threshold_at_completeness(pos, completeness)
    return evaluate_threshold(pos, neg, threshold, "completeness", completeness, True)
