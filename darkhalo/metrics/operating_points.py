"""Thresholds at a target FPR or completeness, computed exactly (ties included).

A stamp is flagged when its score is >= the threshold. Completeness = flagged positives /
positives, FPR = flagged negatives / negatives. A target is *resolved* only when the sample can
show it: an FPR target when distinct control hosts x FPR >= ``min_expected_fp`` (expected false
positives), a completeness target when positives x (1 - completeness) >= ``min_expected_fp``
(expected missed positives). An unresolved point carries the sample size it would need.

Scores are held as a ``Sample`` (sorted once, a count per stamp), so a bootstrap resample is new
counts on the same sorted values and every threshold is a binary search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from data_contracts.metrics import sample_needed


@dataclass(frozen=True)
class Sample:
    """One class's scores sorted ascending, how many times each stamp counts (1, or its bootstrap
    multiplicity) and ``below[j]``, the count of stamps before index j (length n + 1)."""

    values: np.ndarray
    counts: np.ndarray
    below: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray | Sample, name: str) -> Sample:
        """``scores`` as a Sample (a Sample is returned as it is); empty or non-finite scores are refused."""
        if isinstance(scores, Sample):
            return scores
        values = np.asarray(scores, dtype=np.float64).ravel()
        if values.size == 0:
            raise ValueError(f"no {name} scores")
        if not np.isfinite(values).all():
            raise ValueError(f"{name} scores hold {int((~np.isfinite(values)).sum())} non-finite values")
        return cls._counted(np.sort(values), np.ones(values.size, dtype=np.int64))

    @classmethod
    def _counted(cls, values: np.ndarray, counts: np.ndarray) -> Sample:
        return cls(values, counts, np.concatenate(([0], np.cumsum(counts))))

    @property
    def n(self) -> int:
        return int(self.below[-1])

    def resampled(self, rng: np.random.Generator) -> Sample:
        """A bootstrap resample of a Sample made by ``of`` (each stamp counted once): n stamps drawn with
        replacement, as counts on the same sorted values."""
        size = self.values.size
        return self._counted(self.values, np.bincount(rng.integers(0, size, size), minlength=size))

    def at_least(self, threshold: float) -> int:
        """How many stamps score >= ``threshold`` (flagged)."""
        return int(self.flagged(np.asarray(threshold)))

    def flagged(self, thresholds: np.ndarray) -> np.ndarray:
        """How many stamps score >= each of ``thresholds`` (an array of the same shape)."""
        return self.n - self.below[np.searchsorted(self.values, thresholds, side="left")]

    def kth_highest(self, k: int) -> float:
        """The k-th highest score (1 <= k <= n), ties counted once per stamp."""
        return float(self.values[np.searchsorted(self.below, self.n - k, side="right") - 1])


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it does to both classes."""

    target: str  # "fpr", "completeness" or "false_positives"
    target_value: float
    resolved: bool
    threshold: float
    completeness: float
    fpr: float
    n_pos: int
    n_neg: int
    n_pos_flagged: int
    n_neg_flagged: int
    n_neg_needed: int = 0  # distinct control hosts an FPR target needs to be resolved (0 for other targets)
    n_pos_needed: int = 0  # positives a completeness target needs to be resolved (0 for other targets)


def threshold_flagging_at_most(neg: np.ndarray | Sample, allowed: int) -> float:
    """The lowest threshold that flags at most ``allowed`` negatives (tied negatives stay unflagged
    together); -inf when every negative may be flagged."""
    neg = Sample.of(neg, "negative")
    if allowed >= neg.n:
        return -math.inf
    # flag exactly what scores above the (allowed+1)-th highest negative
    return float(np.nextafter(neg.kth_highest(allowed + 1), math.inf))


def threshold_at_completeness(pos: np.ndarray | Sample, completeness: float) -> float:
    """The highest threshold whose completeness is >= ``completeness`` (in (0, 1))."""
    pos = Sample.of(pos, "positive")
    if not 0 < completeness < 1:
        raise ValueError(f"a completeness target must be in (0, 1) (no sample resolves 1), got {completeness}")
    needed = max(1, math.ceil(completeness * pos.n - 1e-9))
    return pos.kth_highest(needed)


def evaluate_threshold(
    pos: np.ndarray | Sample,
    neg: np.ndarray | Sample,
    threshold: float,
    target: str,
    target_value: float,
    resolved: bool,
) -> OperatingPoint:
    """Counts and rates of both classes at ``threshold`` (flag: score >= threshold)."""
    pos, neg = Sample.of(pos, "positive"), Sample.of(neg, "negative")
    tp, fp = pos.at_least(threshold), neg.at_least(threshold)
    return OperatingPoint(
        target=target,
        target_value=target_value,
        resolved=resolved,
        threshold=threshold,
        completeness=tp / pos.n,
        fpr=fp / neg.n,
        n_pos=pos.n,
        n_neg=neg.n,
        n_pos_flagged=tp,
        n_neg_flagged=fp,
    )


def completeness_at_fpr(
    pos: np.ndarray | Sample,
    neg: np.ndarray | Sample,
    fpr: float,
    min_expected_fp: float = 10.0,
    n_neg_hosts: int | None = None,
) -> OperatingPoint:
    """Completeness at the lowest threshold with FPR <= ``fpr`` (in (0, 1]); resolved when the
    ``n_neg_hosts`` distinct control hosts (default: every negative its own host) x ``fpr`` reach
    ``min_expected_fp``."""
    if not 0 < fpr <= 1:
        raise ValueError(f"an FPR target must be in (0, 1], got {fpr}")
    neg = Sample.of(neg, "negative")
    hosts = neg.n if n_neg_hosts is None else n_neg_hosts
    if not 1 <= hosts <= neg.n:
        raise ValueError(f"n_neg_hosts must be in [1, {neg.n}] (the negatives), got {hosts}")
    needed = sample_needed(min_expected_fp, fpr)
    threshold = threshold_flagging_at_most(neg, math.floor(fpr * neg.n + 1e-9))
    return replace(evaluate_threshold(pos, neg, threshold, "fpr", fpr, hosts >= needed), n_neg_needed=needed)


def fpr_at_completeness(
    pos: np.ndarray | Sample, neg: np.ndarray | Sample, completeness: float, min_expected_fp: float = 10.0
) -> OperatingPoint:
    """FPR at the highest threshold reaching ``completeness`` (in (0, 1)); resolved when positives x
    (1 - completeness) reach ``min_expected_fp``."""
    pos = Sample.of(pos, "positive")
    threshold = threshold_at_completeness(pos, completeness)
    needed = sample_needed(min_expected_fp, 1 - completeness)
    point = evaluate_threshold(pos, neg, threshold, "completeness", completeness, pos.n >= needed)
    return replace(point, n_pos_needed=needed)
