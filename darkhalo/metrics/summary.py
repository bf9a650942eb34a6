"""The metrics of an evaluation: L4's operating points with their headline (bootstrap) intervals
and exact intervals at each threshold, Bologna TPR0/TPR10, AUROC (secondary), the FPR per confuser
class, stratified completeness and the inspection budget.

The results are ``data_contracts.metrics`` models, metrics.json's shape. A target that the sample
cannot resolve carries ``resolved: false``, the sample size needed and nulls, never a number.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from darkhalo.metrics.intervals import bootstrap_interval, clopper_pearson, headline_interval
from darkhalo.metrics.operating_points import (
    OperatingPoint,
    Sample,
    completeness_at_fpr,
    evaluate_threshold,
    fpr_at_completeness,
    threshold_flagging_at_most,
)
from data_contracts.confusers import VALUES
from data_contracts.metrics import (
    CLASS_RATE_NUMBERS,
    COMPLETENESS_TARGETS,
    FPR_TARGETS,
    NULL_WHEN_UNRESOLVED,
    ConfuserRate,
    EvaluationMetrics,
    InspectionBudget,
    OperatingPointSummary,
    ReportedPoint,
    StratumBin,
    confuser_hosts_needed,
)

#: Bologna-challenge false-positive allowances: TPR0 (none) and TPR10 (at most ten).
BOLOGNA_FP = {"tpr0": 0, "tpr10": 10}

#: Bin edges of the stratified completeness (right-open bins): Einstein radius (arcsec), Einstein
#: radius over the host's r-band PSF FWHM, unlensed source r magnitude, integrated arc S/N, host r mag.
STRATA: dict[str, tuple[float, ...]] = {
    "theta_e": (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, math.inf),
    "theta_e_over_psf": (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, math.inf),
    "src_mag_r": (-math.inf, 21.0, 22.0, 23.0, 24.0, 25.0, math.inf),
    "arc_snr": (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, math.inf),
    "host_mag_r": (-math.inf, 17.0, 18.0, 19.0, 20.0, 21.0, math.inf),
}


def point_at_fp_count(pos: np.ndarray | Sample, neg: np.ndarray | Sample, max_fp: int) -> OperatingPoint:
    """Completeness at the lowest threshold that flags at most ``max_fp`` negatives (Bologna TPRn)."""
    pos, neg = Sample.of(pos, "positive"), Sample.of(neg, "negative")
    threshold = threshold_flagging_at_most(neg, max_fp)
    if threshold == -math.inf:  # every negative may be flagged: flag everything with a finite threshold
        threshold = float(min(pos.values[0], neg.values[0]))
    return evaluate_threshold(pos, neg, threshold, "false_positives", max_fp, True)


def operating_points(
    pos: np.ndarray | Sample, neg: np.ndarray | Sample, min_expected_fp: float, n_neg_hosts: int | None = None
) -> dict[str, list[OperatingPoint]]:
    """Every L4 operating point plus TPR0 and TPR10, keyed by section of metrics.json; FPR targets are
    resolved by ``n_neg_hosts`` distinct control hosts (default: every negative its own host)."""
    pos, neg = Sample.of(pos, "positive"), Sample.of(neg, "negative")
    return {
        "fpr_at_completeness": [fpr_at_completeness(pos, neg, c, min_expected_fp) for c in COMPLETENESS_TARGETS],
        "completeness_at_fpr": [completeness_at_fpr(pos, neg, f, min_expected_fp, n_neg_hosts) for f in FPR_TARGETS],
        "bologna": [point_at_fp_count(pos, neg, n) for n in BOLOGNA_FP.values()],
    }


def _headline(point: OperatingPoint) -> float:
    """The rate an operating point is about: FPR at a completeness target, else completeness."""
    return point.fpr if point.target == "completeness" else point.completeness


def _reported(point: OperatingPoint, confidence: float, bootstrap: tuple[float, float] | None) -> ReportedPoint:
    """``point`` as metrics.json reports it: exact intervals at its threshold and, when bootstrapped, its
    headline interval (``headline_interval`` of the ``bootstrap`` and the headline rate's exact one)
    when resolved; every number null when not."""
    if not point.resolved:
        return ReportedPoint(**(asdict(point) | dict.fromkeys(NULL_WHEN_UNRESOLVED)))
    completeness = clopper_pearson(point.n_pos_flagged, point.n_pos, confidence)
    fpr = clopper_pearson(point.n_neg_flagged, point.n_neg, confidence)
    exact = fpr if point.target == "completeness" else completeness
    return ReportedPoint(
        **asdict(point),
        interval=None if bootstrap is None else list(headline_interval(bootstrap, exact)),
        completeness_interval_at_threshold=list(completeness),
        fpr_interval_at_threshold=list(fpr),
    )


def summarise(
    pos: np.ndarray,
    neg: np.ndarray,
    *,
    min_expected_fp: float,
    confidence: float,
    bootstrap_samples: int,
    seed: int,
    n_neg_hosts: int | None = None,
) -> OperatingPointSummary:
    """metrics.json's core: operating points with headline and exact intervals, TPR0/10, AUROC.

    The headline interval is the bootstrap of each resolved point's headline rate (FPR for
    completeness targets, completeness otherwise), with the threshold re-derived from every
    resample, or that rate's exact interval at the threshold where the bootstrap has zero width
    (``headline_interval``);
    ``n_neg_hosts`` is the distinct control hosts among ``neg`` (default: all distinct).
    """
    pos_sample, neg_sample = Sample.of(pos, "positive"), Sample.of(neg, "negative")
    hosts = neg_sample.n if n_neg_hosts is None else n_neg_hosts
    points = operating_points(pos_sample, neg_sample, min_expected_fp, hosts)
    flat = [p for section in points.values() for p in section]
    resolved = [i for i, p in enumerate(flat) if p.resolved]

    def statistics(p: Sample, n: Sample) -> np.ndarray:
        again = [q for section in operating_points(p, n, min_expected_fp, hosts).values() for q in section]
        return np.array([_headline(again[i]) for i in resolved])

    intervals: dict[int, tuple[float, float]] = {}
    if bootstrap_samples > 0 and resolved:
        bounds = bootstrap_interval(pos_sample, neg_sample, statistics, bootstrap_samples, seed, confidence)
        intervals = {i: (float(lo), float(hi)) for i, (lo, hi) in zip(resolved, bounds, strict=True)}
    reported = [_reported(p, confidence, intervals.get(i)) for i, p in enumerate(flat)]
    n_fpr, n_comp = len(COMPLETENESS_TARGETS), len(FPR_TARGETS)
    pos, neg = pos_sample.values, neg_sample.values
    return OperatingPointSummary(
        n_pos=pos_sample.n,
        n_neg=neg_sample.n,
        n_neg_hosts=hosts,
        confidence=confidence,
        min_expected_false_positives=min_expected_fp,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        fpr_at_completeness=reported[:n_fpr],
        completeness_at_fpr=reported[n_fpr : n_fpr + n_comp],
        **dict(zip(BOLOGNA_FP, reported[n_fpr + n_comp :], strict=True)),
        auroc=float(roc_auc_score(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg])),
    )


def strata_values(meta: pd.DataFrame) -> dict[str, np.ndarray]:
    """The stratifying quantities of positives from stamp metadata (theta_e / psfsize_r derived)."""
    values = {name: meta[name].to_numpy(np.float64) for name in STRATA if name in meta}
    if {"theta_e", "psfsize_r"} <= set(meta.columns):
        values["theta_e_over_psf"] = meta["theta_e"].to_numpy(np.float64) / meta["psfsize_r"].to_numpy(np.float64)
    return values


def stratified_completeness(
    pos_scores: np.ndarray, meta: pd.DataFrame, threshold: float, confidence: float
) -> dict[str, list[StratumBin]]:
    """Completeness of positives per bin of each stratum (STRATA) at ``threshold``, with exact intervals.

    ``meta`` holds the positives' metadata row for row with ``pos_scores``; empty bins are left out.
    """
    flagged = np.asarray(pos_scores, dtype=np.float64) >= threshold
    table: dict[str, list[StratumBin]] = {}
    for name, values in strata_values(meta).items():
        edges = STRATA[name]
        rows = []
        for low, high in itertools.pairwise(edges):
            inside = (values >= low) & (values < high)
            n = int(inside.sum())
            if n == 0:
                continue
            k = int(flagged[inside].sum())
            rows.append(
                StratumBin(
                    low=low if math.isfinite(low) else None,
                    high=high if math.isfinite(high) else None,
                    n=n,
                    n_flagged=k,
                    completeness=k / n,
                    interval=list(clopper_pearson(k, n, confidence)),
                )
            )
        table[name] = rows
    return table


def inspection_budget(point: ReportedPoint, survey_hosts: int, prevalence: float) -> InspectionBudget:
    """Expected true and false candidates when a survey of ``survey_hosts`` hosts with ``prevalence``
    lenses per host is cut at this (resolved) operating point's threshold, and the candidates' purity;
    ``_high`` and ``_low`` use the upper end of the FPR's exact interval at that threshold, the rate the
    survey will see (a measured FPR of 0 is not 0)."""
    true = survey_hosts * prevalence * point.completeness
    fprs = (point.fpr, point.fpr_interval_at_threshold[1])
    false, false_high = (survey_hosts * (1 - prevalence) * fpr for fpr in fprs)
    return InspectionBudget(
        survey_hosts=survey_hosts,
        lens_prevalence=prevalence,
        expected_true=true,
        expected_false=false,
        purity=true / (true + false) if true + false > 0 else 0.0,
        expected_false_high=false_high,
        purity_low=true / (true + false_high) if true + false_high > 0 else 0.0,
    )


def _class_rate(n: int, n_hosts: int, k: int, needed: int | None, confidence: float) -> ConfuserRate:
    """A class of ``n`` controls on ``n_hosts`` hosts, ``k`` of them flagged: resolved when ``needed`` hosts are
    reached, with its FPR and exact interval then."""
    counts = dict(n=n, n_hosts=n_hosts, resolved=needed is not None and n_hosts >= needed, n_hosts_needed=needed)
    if not counts["resolved"]:
        return ConfuserRate(**counts, **dict.fromkeys(CLASS_RATE_NUMBERS))
    interval = list(clopper_pearson(k, n, confidence))
    return ConfuserRate(**counts, n_flagged=k, fpr=k / n, fpr_interval_at_threshold=interval)


def confuser_fpr(
    controls: pd.DataFrame, points: Mapping[str, ReportedPoint], min_expected_fp: float, confidence: float
) -> dict[str, dict[str, ConfuserRate]]:
    """The FPR of each confuser class present among ``controls`` (columns score, confuser, host_id; classes in
    VALUES order) at each resolved point's threshold (by name), with exact intervals at that threshold; a
    class's rate is resolved by its distinct hosts (``confuser_hosts_needed``), its numbers null when not."""
    if "confuser" not in controls:
        raise ValueError("scores: no confuser column (each stamp's host class, data_contracts.confusers.VALUES)")
    classes = controls["confuser"].to_numpy()
    unknown = sorted(set(classes) - set(VALUES), key=str)
    if unknown:
        raise ValueError(f"scores: confuser value(s) {unknown} are not in data_contracts.confusers.VALUES {VALUES}")
    members = {value: inside for value in VALUES if (inside := classes == value).any()}
    hosts = controls["host_id"].to_numpy()
    counts = {value: (int(inside.sum()), int(np.unique(hosts[inside]).size)) for value, inside in members.items()}
    scores = controls["score"].to_numpy(np.float64)
    table: dict[str, dict[str, ConfuserRate]] = {}
    for name, point in points.items():
        flagged = scores >= point.threshold
        needed = confuser_hosts_needed(point, min_expected_fp)
        table[name] = {
            value: _class_rate(*counts[value], int(flagged[inside].sum()), needed, confidence)
            for value, inside in members.items()
        }
    return table


def evaluation_metrics(
    scores: pd.DataFrame,
    *,
    min_expected_fp: float,
    confidence: float,
    bootstrap_samples: int,
    seed: int,
    survey_hosts: int,
    prevalence: float,
) -> EvaluationMetrics:
    """metrics.json without its probes: ``summarise`` of the scores (columns label, score, host_id, confuser
    and positives' metadata) plus the FPR per confuser class, stratified completeness and the inspection
    budget at every resolved L4 operating point. The FPR targets are resolved by the controls' distinct host_id."""
    if "host_id" not in scores:
        raise ValueError("scores: no host_id column (the FPR resolution counts the controls' distinct hosts)")
    positive = scores["label"].to_numpy() == 1
    pos_scores = scores["score"].to_numpy(np.float64)[positive]
    summary = summarise(
        pos_scores,
        scores["score"].to_numpy(np.float64)[~positive],
        min_expected_fp=min_expected_fp,
        confidence=confidence,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        n_neg_hosts=int(scores.loc[~positive, "host_id"].nunique()),
    )
    meta = scores.loc[positive].reset_index(drop=True)
    points = summary.resolved_points()
    by_class = confuser_fpr(scores.loc[~positive], points, min_expected_fp, confidence)
    return EvaluationMetrics(
        **(dict(summary) | {"confuser_fpr": by_class}),
        strata_edges={name: [e if math.isfinite(e) else None for e in edges] for name, edges in STRATA.items()},
        stratified={
            name: stratified_completeness(pos_scores, meta, point.threshold, confidence)
            for name, point in points.items()
        },
        inspection_budget={name: inspection_budget(point, survey_hosts, prevalence) for name, point in points.items()},
    )
