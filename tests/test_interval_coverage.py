"""Coverage of the operating points' 95 % intervals, by simulation: positives score N(2, 1), controls
N(0, 1), each replication estimates its threshold from its own data, and the true rate at the target
comes from the two normals.

The headline interval (bootstrap, threshold re-derived per resample) must cover about 95 % on every
resolved target; the Clopper-Pearson interval "at this threshold" covers the rate of the threshold
chosen, not the rate at the target, and falls far short. The default test runs a small grid in
seconds; the slow one (``-m slow``) runs 2,000 replications at the default 1,000 resamples.

A confuser class's FPR is reported at the threshold chosen, so its exact interval must cover the class's
true FPR at that threshold, chosen from all the controls with the class among them (its scores pull the
threshold): a class scoring N(shift, 1) among controls otherwise N(0, 1).

L9's one-sided 95 % lower bound of core AUC - ring AUC (a paired bootstrap of the stamps) must lie at or
below the population difference about 95 % of the time, on two correlated binormal score sets at the
embedded run's 186 test stamps and at 2,000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from darkhalo.metrics.intervals import bootstrap_interval, clopper_pearson, headline_interval
from darkhalo.metrics.operating_points import OperatingPoint, Sample, completeness_at_fpr, fpr_at_completeness
from darkhalo.metrics.probes import PROBE_RESAMPLES, auc_difference_lower
from darkhalo.metrics.summary import confuser_fpr, summarise

#: Mean score of the positives (the controls' is 0; both have unit spread).
SHIFT = 2.0
#: A target: ("completeness", c) reports FPR at completeness c, ("fpr", f) completeness at FPR f.
Target = tuple[str, float]


def true_rate(target: Target, shift: float = SHIFT) -> float:
    """The headline rate at the target in the population: FPR at completeness c, or completeness at FPR f."""
    kind, value = target
    if kind == "completeness":
        return float(norm.sf(shift - norm.isf(1 - value)))  # threshold shift - z_c flags a share c of positives
    return float(norm.sf(norm.isf(value) - shift))


def _point(pos: Sample, neg: Sample, target: Target) -> OperatingPoint:
    kind, value = target
    return fpr_at_completeness(pos, neg, value) if kind == "completeness" else completeness_at_fpr(pos, neg, value)


def _headline(point: OperatingPoint) -> float:
    return point.fpr if point.target == "completeness" else point.completeness


def _at_threshold(point: OperatingPoint) -> tuple[float, float]:
    """The exact interval of the headline rate at the point's threshold (metrics.json's ``*_at_threshold``)."""
    if point.target == "completeness":
        return clopper_pearson(point.n_neg_flagged, point.n_neg)
    return clopper_pearson(point.n_pos_flagged, point.n_pos)


def coverage(
    n_neg: int,
    n_pos: int,
    targets: list[Target],
    replications: int,
    resamples: int,
    seed: int = 0,
    shift: float = SHIFT,
) -> dict[Target, tuple[bool, float, float, float]]:
    """Per target: (resolved, and the shares of replications whose interval holds the true rate: the
    headline interval, the bootstrap alone, the interval at this threshold). The bootstrap is the one
    ``summarise`` headlines (same resamples, same seed per replication), for these targets only."""
    rng = np.random.default_rng(seed)
    truth = np.array([true_rate(t, shift) for t in targets])
    covered = np.zeros((3, len(targets)))

    def statistics(p: Sample, n: Sample) -> np.ndarray:
        return np.array([_headline(_point(p, n, t)) for t in targets])

    for replication in range(replications):
        pos = Sample.of(rng.normal(shift, 1, n_pos), "positive")
        neg = Sample.of(rng.normal(0, 1, n_neg), "negative")
        bounds = bootstrap_interval(pos, neg, statistics, resamples, seed=replication)
        exact = np.array([_at_threshold(_point(pos, neg, t)) for t in targets])
        headline = np.array([headline_interval(b, e) for b, e in zip(bounds, exact, strict=True)])
        for row, (low, high) in enumerate((headline.T, bounds.T, exact.T)):
            covered[row] += (low <= truth) & (truth <= high)
    resolved = [_point(pos, neg, t).resolved for t in targets]
    share = covered / replications
    return {t: (resolved[i], *(float(x) for x in share[:, i])) for i, t in enumerate(targets)}


def _table(n_neg: int, n_pos: int, result: dict[Target, tuple[bool, float, float, float]]) -> str:
    rows = [f"n_neg {n_neg:,} n_pos {n_pos:,}: target, resolved, headline, bootstrap alone, at this threshold"]
    rows += [f"  {k} {v:g}: {r}, {h:.3f}, {b:.3f}, {e:.3f}" for (k, v), (r, h, b, e) in result.items()]
    return "\n".join(rows)


def test_the_coverage_simulation_measures_the_interval_summarise_headlines() -> None:
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(SHIFT, 1, 300), rng.normal(0, 1, 2000)
    metrics = summarise(pos, neg, min_expected_fp=10, confidence=0.95, bootstrap_samples=50, seed=7)
    targets = [("completeness", 0.9), ("fpr", 1e-2)]

    def statistics(p: Sample, n: Sample) -> np.ndarray:
        return np.array([_headline(_point(p, n, t)) for t in targets])

    alone = bootstrap_interval(pos, neg, statistics, 50, seed=7)
    exact = [_at_threshold(_point(Sample.of(pos, "p"), Sample.of(neg, "n"), t)) for t in targets]
    expected = [list(headline_interval(b, e)) for b, e in zip(alone, exact, strict=True)]
    assert [metrics.fpr_at_completeness[2].interval, metrics.completeness_at_fpr[0].interval] == expected


def test_the_headline_interval_covers_and_the_one_at_this_threshold_does_not() -> None:
    """250 replications: a true 95 % coverage lands within 3 binomial sigmas (1.4 % each) of 0.95."""
    targets = [("completeness", 0.9), ("fpr", 1e-2)]
    result = coverage(n_neg=2000, n_pos=300, targets=targets, replications=250, resamples=200)
    band = 3 * np.sqrt(0.95 * 0.05 / 250)
    for resolved, headline, *_ in result.values():
        assert resolved and abs(headline - 0.95) <= band, _table(2000, 300, result)
    # FPR at completeness 0.9: the threshold's scatter (from 300 positives) is twice the FPR's binomial
    # scatter at a fixed threshold, so the exact interval holds the true FPR about half the time
    assert result[("completeness", 0.9)][3] < 0.7, _table(2000, 300, result)


def test_with_hardly_a_control_flagged_the_headline_interval_keeps_the_binomial_upper_limit() -> None:
    """A separated model on the embedded run's sample (100 controls, 86 positives), FPR at completeness
    0.7: true FPR 4e-6 at shift 5 (no control flagged: the bootstrap is [0, 0] and never covers; the
    headline is then the exact interval, an upper limit that always does) and 0.007 at shift 3.0 (a
    flag or two: the bootstrap alone covers ~72 %)."""
    band = 3 * np.sqrt(0.95 * 0.05 / 300)
    for shift, alone_at_most in ((5.0, 0.05), (3.0, 0.8)):
        result = coverage(100, 86, [("completeness", 0.7)], replications=300, resamples=200, shift=shift)
        resolved, headline, alone, _ = result[("completeness", 0.7)]
        assert resolved and headline >= 0.95 - band and alone < alone_at_most, (shift, _table(100, 86, result))


SLOW_TARGETS = [("completeness", 0.99), ("completeness", 0.9), ("completeness", 0.85), ("fpr", 1e-3), ("fpr", 1e-4)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n_neg", "n_pos", "replications"),
    [(10_000, 100, 2000), (10_000, 10_000, 2000), (130_000, 11_000, 400)],
    ids=["10k-100", "10k-10k", "survey-scale"],
)
def test_the_headline_intervals_cover_92_to_98_percent_on_every_resolved_target(
    n_neg: int, n_pos: int, replications: int
) -> None:
    """At the spec's 1,000 resamples: 2,000 replications (binomial sigma of a coverage 0.5 %), 400 in the
    survey-scale regime (specs/survey_scale.yaml's test split; sigma 1.1 %, the band is 2.7 sigma)."""
    result = coverage(n_neg, n_pos, SLOW_TARGETS, replications=replications, resamples=1000)
    print(_table(n_neg, n_pos, result))
    for target, (resolved, headline, *_) in result.items():
        if resolved:
            assert 0.92 <= headline <= 0.98, (target, _table(n_neg, n_pos, result))


def class_coverage(n_rest: int, n_class: int, shift: float, replications: int, seed: int = 0) -> tuple[float, float]:
    """Over replications: the share whose class rate at the FPR 1e-2 point is resolved, and the share of those
    whose exact interval at this threshold holds the class's true FPR there (norm.sf(threshold - shift))."""
    rng = np.random.default_rng(seed)
    confuser = np.r_[np.full(n_rest, "none"), np.full(n_class, "spiral")]
    resolved = covered = 0
    for _ in range(replications):
        neg = np.r_[rng.normal(0, 1, n_rest), rng.normal(shift, 1, n_class)]
        metrics = summarise(
            rng.normal(SHIFT, 1, 100), neg, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0
        )
        point = metrics.resolved_points()["fpr=0.01"]
        controls = pd.DataFrame({"score": neg, "confuser": confuser, "host_id": np.arange(neg.size)})
        rate = confuser_fpr(controls, {"fpr=0.01": point}, 10, 0.95)["fpr=0.01"]["spiral"]
        if rate.resolved:
            low, high = rate.fpr_interval_at_threshold
            resolved += 1
            covered += low <= norm.sf(point.threshold - shift) <= high
    return resolved / replications, covered / max(resolved, 1)


def test_a_confuser_classs_interval_covers_its_fpr_at_the_threshold_chosen_from_all_controls() -> None:
    """6,000 controls, 2,000 of a class whose FPR at the 1e-2 threshold is 0.024, nine times the others' (2,000
    hosts x 1e-2 = 20: resolved); 1,000 replications, a binomial sigma of 0.7 % on a coverage of 0.95."""
    resolved, covered = class_coverage(4000, 2000, 0.8, replications=1000)
    assert resolved == 1 and covered >= 0.93, covered


@pytest.mark.slow
@pytest.mark.parametrize(("n_rest", "n_class", "shift"), [(1000, 1000, 0.5), (7000, 3000, 1.0), (9000, 1000, 1.5)])
def test_a_confuser_classs_interval_covers_in_every_resolved_regime(n_rest: int, n_class: int, shift: float) -> None:
    """2,000 replications each (sigma 0.5 %): a class of half, three tenths and a tenth of the controls (the first
    and last at the edge of resolution, 1,000 hosts x 1e-2), each taking 80-87 % of the flags."""
    resolved, covered = class_coverage(n_rest, n_class, shift, replications=2000)
    print(f"{n_rest:,} + {n_class:,} controls, class shift {shift}: coverage {covered:.3f}")
    assert resolved == 1 and 0.93 <= covered <= 0.99, covered


def difference_coverage(
    n_pos: int, n_neg: int, aucs: tuple[float, float], rho: float, replications: int, resamples: int, seed: int = 0
) -> float:
    """Share of replications whose paired-bootstrap lower bound of AUROC(core) - AUROC(ring) lies at or below the
    population difference: binormal scores, each set N(0, 1) on the controls and N(d, 1) on the positives, with
    d = sqrt(2) Phi^-1(AUC) (AUC = Phi(d / sqrt 2)), the two sets correlated at ``rho`` stamp by stamp."""
    rng = np.random.default_rng(seed)
    shift = np.sqrt(2) * norm.ppf(aucs)
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(bool)
    covered = 0
    for replication in range(replications):
        common, own = rng.normal(0, 1, (2, labels.size, 1)), rng.normal(0, 1, (labels.size, 2))
        scores = np.sqrt(rho) * common[0] + np.sqrt(1 - rho) * own + labels[:, None] * shift
        lower = auc_difference_lower(scores[:, 0], scores[:, 1], labels, seed=replication, resamples=resamples)
        covered += lower <= aucs[0] - aucs[1]
    return covered / replications


#: Core and ring AUCs as measured today: the embedded run's 186 test stamps (the core ahead by noise) and
#: 2,000 stamps of the same sky's train split (the ring ahead).
EMBEDDED, TRAIN_SIZED = (86, 100, (0.76, 0.73)), (1000, 1000, (0.825, 0.895))
#: The coverage a one-sided 95 % bound must reach in these simulations.
BOUND_COVERAGE = (0.92, 0.985)


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "aucs", "replications", "resamples"),
    [(*EMBEDDED, 400, 1000), (*TRAIN_SIZED, 300, 200)],
    ids=["186-stamps", "2000-stamps"],
)
def test_the_core_minus_ring_lower_bound_covers_the_true_difference(
    n_pos: int, n_neg: int, aucs: tuple[float, float], replications: int, resamples: int
) -> None:
    """Scores correlated at 0.5. Measured: 0.940 at 186 stamps (400 replications, binomial sigma 1.2 %) and
    0.937 at 2,000 (300 replications at 200 resamples, which keep it to seconds: the 5 % quantile's Monte Carlo
    error, ~0.15 of the bootstrap's spread, moves the coverage by ~0.3 %)."""
    coverage = difference_coverage(n_pos, n_neg, aucs, 0.5, replications, resamples)
    print(f"{n_pos} + {n_neg} stamps, AUCs {aucs}: coverage {coverage:.4f}")
    low, high = BOUND_COVERAGE
    assert low <= coverage <= high, coverage


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n_pos", "n_neg", "aucs", "rho", "replications"),
    [
        (*EMBEDDED, 0.5, 2000),
        (86, 100, (0.75, 0.75), 0.3, 2000),
        (86, 100, (0.9, 0.9), 0.8, 2000),
        (*TRAIN_SIZED, 0.5, 1000),
    ],
)
def test_the_core_minus_ring_lower_bound_covers_at_the_default_resamples(
    n_pos: int, n_neg: int, aucs: tuple[float, float], rho: float, replications: int
) -> None:
    """At the evaluation's 1,000 resamples, measured: 0.952, 0.952, 0.953 at 186 stamps (2,000 replications,
    sigma 0.5 %) and 0.932 at 2,000 (1,000 replications, sigma 0.8 %): the percentile bound runs up to ~2 %
    short of 95 % where one AUC nears 0.9."""
    coverage = difference_coverage(n_pos, n_neg, aucs, rho, replications, PROBE_RESAMPLES)
    print(f"{n_pos} + {n_neg} stamps, AUCs {aucs}, rho {rho}: coverage {coverage:.4f}")
    low, high = BOUND_COVERAGE
    assert low <= coverage <= high, coverage
