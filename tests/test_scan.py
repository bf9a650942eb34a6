"""The search's pieces without a run: unusable cutouts listed with their reasons, the purity and the simulated rates
at a candidate's score, the result at the inspection budgets and operating thresholds, the coverage of its recall
interval, and L13 and L14 on single corruptions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from darkhalo.metrics.operating_points import Sample
from darkhalo.metrics.search import expected_purity, inspected, search_result, share_at_least
from darkhalo.scanning import usable_cutouts
from darkhalo.surveys.cutout_fits import FolderCutoutProvider, write_cutout_fits
from darkhalo.surveys.provider import Cutouts
from data_contracts.candidates import Candidates
from data_contracts.invariants import l13_complete_scan, l14_sealed_truth
from data_contracts.metrics import ReportedPoint

KEY = ["RELEASE", "BRICKID", "OBJID"]


def _hosts(n: int) -> pd.DataFrame:
    psf = {f"PSFSIZE_{b}": [1.3] * n for b in "GRZ"}
    return pd.DataFrame({"RELEASE": [10000] * n, "BRICKID": [1] * n, "OBJID": list(range(n)), **psf})


def test_a_host_without_a_usable_cutout_is_listed_with_its_reason_and_the_rest_are_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(0, 0.01, (3, 40, 40)).astype(np.float32)
    write_cutout_fits(tmp_path / "10000_1_0.fits", good, np.ones_like(good))
    nan = good.copy()
    nan[1, 5, 5] = np.nan
    write_cutout_fits(tmp_path / "10000_1_2.fits", nan, np.ones_like(good))
    empty = np.ones_like(good)
    empty[2] = 0
    write_cutout_fits(tmp_path / "10000_1_3.fits", good, empty)
    images, reasons = usable_cutouts(FolderCutoutProvider(tmp_path), _hosts(4), 32)
    assert reasons[0] == "" and np.array_equal(images[0], good[:, 4:36, 4:36])
    assert "10000_1_1.fits" in reasons[1]  # no such file: named
    assert reasons[2].endswith("10000_1_2.fits: band r has non-finite pixels (1 in all)")  # the provider's refusal
    assert reasons[3] == "no data (inverse variance 0) in band z"


class _NanProvider:
    """A survey edge that hands back a NaN pixel in its second host's g band without refusing it."""

    def cutouts(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        images = np.zeros((len(hosts), 3, size, size), np.float32)
        images[1, 0, 3, 3] = np.nan
        psf = np.ones((len(hosts), 3), np.float32)
        return Cutouts(images, np.ones_like(images), psf, psf)


def test_non_finite_pixels_a_provider_lets_through_are_a_reason_not_a_score() -> None:
    _, reasons = usable_cutouts(_NanProvider(), _hosts(3), 16)
    assert reasons.tolist() == ["", "non-finite pixels in band g", ""]


def _candidates(
    scores: np.ndarray, sky: np.ndarray, known: np.ndarray | None = None, tests: tuple[Sample, Sample] | None = None
) -> pd.DataFrame:
    """A ranked candidates frame of ``scores``; its simulated rates from the ``tests`` (positives, controls), or 0."""
    order = np.argsort(-scores, kind="stable")
    n = len(scores)
    frame = pd.DataFrame(
        {
            "RELEASE": np.full(n, 10000, np.int16),
            "BRICKID": np.ones(n, np.int32),
            "OBJID": order.astype(np.int32),
            "RA": np.full(n, 150.0),
            "DEC": np.full(n, 2.0),
            "score": scores[order],
            "rank": np.arange(1, n + 1, dtype=np.int64),
            "completeness": np.zeros(n) if tests is None else share_at_least(tests[0], scores[order]),
            "fpr": np.zeros(n) if tests is None else share_at_least(tests[1], scores[order]),
            "purity": np.full(n, 0.5),
            "known_lens": (np.zeros(n, bool) if known is None else known)[order],
            "known_lens_name": np.array([""] * n, dtype=object),
            "sky_lens": pd.array(sky[order], dtype="boolean"),
        }
    )
    return Candidates.validate(frame)


def test_purity_and_the_simulated_rates_at_a_score_follow_the_test_counts() -> None:
    pos = Sample.of(np.array([1.0, 2.0, 3.0, 4.0]), "positive")
    neg = Sample.of(np.arange(100, dtype=float) / 100, "negative")  # 0.00 .. 0.99
    scores = np.array([0.5, 2.5, 10.0])
    assert share_at_least(pos, scores).tolist() == [1.0, 0.5, 0.0]
    assert share_at_least(neg, scores).tolist() == [0.5, 0.0, 0.0]
    purity = expected_purity(0.01, pos, neg, scores)
    c, f = 4.5 / 5, 50.5 / 101  # Jeffreys: (k + 1/2) / (n + 1)
    assert purity[0] == pytest.approx(0.01 * c / (0.01 * c + 0.99 * f))
    assert purity[0] < purity[1] < 1  # above every control: high, never 1 from no evidence
    assert 0 < purity[2] < purity[1]  # above every positive too: the half counts keep it finite


def _point(threshold: float, completeness: float, fpr: float) -> ReportedPoint:
    return ReportedPoint.model_construct(threshold=threshold, completeness=completeness, fpr=fpr)


def test_the_search_counts_the_sky_lenses_in_the_top_n_and_above_each_operating_threshold() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    sky = np.zeros(n, bool)
    sky[:40] = True
    scores = np.where(sky, rng.normal(3, 1, n), rng.normal(0, 1, n))
    known = np.zeros(n, bool)
    known[[0, 100]] = True
    pos, neg = Sample.of(rng.normal(3, 1, 500), "p"), Sample.of(rng.normal(0, 1, 5000), "n")
    candidates = _candidates(scores, sky, known, (pos, neg))
    unscored = candidates.head(0)[[*KEY, "RA", "DEC"]].assign(reason="")
    result = search_result(candidates, unscored, {"fpr=0.01": _point(2.33, 0.75, 0.01)}, [100, 1000], 0.002)
    top = candidates.head(inspected(1000, n))
    assert [b.n_inspected for b in result.budgets] == [2, 20]
    b = result.budgets[1]
    assert b.sky.n == 40 and b.sky.n_found == int(top["sky_lens"].sum()) and b.sky_purity == b.sky.n_found / 20
    assert b.threshold == top["score"].iloc[-1] and b.sim_completeness == share_at_least(pos, [b.threshold])[0]
    assert b.sky.interval[0] <= b.sky.recall <= b.sky.interval[1]
    point = result.points["fpr=0.01"]
    flagged = candidates["score"] >= 2.33
    assert point.n_flagged == int(flagged.sum()) and point.sky.n_found == int(candidates["sky_lens"][flagged].sum())
    assert result.n_sky_lenses == 40 and result.n_known_lenses == 2 and point.known.n == 2


def test_a_real_survey_has_no_sky_recall() -> None:
    candidates = _candidates(np.array([3.0, 1.0, 2.0]), np.zeros(3, bool))
    candidates["sky_lens"] = pd.array([pd.NA] * 3, dtype="boolean")
    result = search_result(candidates, candidates.head(0).assign(reason=""), {}, [10_000], 0.001)
    assert result.n_sky_lenses is None and result.budgets[0].sky is None and result.budgets[0].sky_purity is None


def test_the_top_n_recall_interval_covers_the_population_recall_at_the_embedded_size() -> None:
    """The regime shown: ~3,800 hosts, ~1 % sky lenses, the 10,000-per-million budget. The population's recall at
    the budget is P(lens score >= t) with t the score quantile that admits the budget's share of all hosts. The exact
    interval is conservative here (0.986 with this seed), never short of 95 %."""
    rng = np.random.default_rng(2)
    n, prevalence, per_million, shift = 3800, 0.01, 10_000, 2.5
    grid = np.linspace(-6, 12, 200_001)
    share = (1 - prevalence) * norm.sf(grid) + prevalence * norm.sf(grid - shift)
    t = grid[np.searchsorted(-share, -per_million / 1e6)]
    truth = norm.sf(t - shift)
    covered, trials = 0, 1000
    for _ in range(trials):
        sky = rng.random(n) < prevalence
        scores = np.where(sky, rng.normal(shift, 1, n), rng.normal(0, 1, n))
        candidates = _candidates(scores, sky)
        unscored = candidates.head(0)[[*KEY, "RA", "DEC"]].assign(reason="")
        found = search_result(candidates, unscored, {}, [per_million], prevalence).budgets[0].sky
        covered += found.interval[0] <= truth <= found.interval[1]
    assert 0.94 <= covered / trials <= 0.995, covered / trials


def test_l13_fires_on_a_missing_a_repeated_and_a_foreign_host_and_passes_the_whole_scan() -> None:
    parent = pd.DataFrame({"RELEASE": [1] * 4, "BRICKID": [1] * 4, "OBJID": [0, 1, 2, 3]})
    candidates, unscored = parent.iloc[:3], parent.iloc[3:]
    assert l13_complete_scan.check(parent, candidates, unscored).passed
    for cands, unsc, problem in (
        (parent.iloc[:2], unscored, "scanned 0 times"),
        (parent.iloc[[0, 1, 2, 2]], unscored, "scanned 2 times"),
        (pd.concat([candidates, pd.DataFrame({"RELEASE": [1], "BRICKID": [1], "OBJID": [9]})]), unscored, "not in"),
    ):
        finding = l13_complete_scan.check(parent, cands, unsc)
        assert not finding.passed and finding.n_offending == 1 and problem in finding.evidence[0]["problem"]


def test_l14_fires_on_a_stage_that_read_the_truth_or_records_no_reads() -> None:
    truth = "survey/sky_lenses.parquet"
    clean = {"survey": {"artifacts_read": []}, "train": {"artifacts_read": ["inject/stamps"]}}
    scan = {"scan": {"artifacts_read": [truth]}, "audit": {"artifacts_read": [truth]}}
    assert l14_sealed_truth.check(clean | scan, truth).passed
    leaked = l14_sealed_truth.check(clean | scan | {"train": {"artifacts_read": ["inject/stamps", truth]}}, truth)
    assert not leaked.passed and leaked.evidence == ({"stage": "train", "problem": f"read {truth}"},)
    unknown = l14_sealed_truth.check(clean | {"evaluate": {}}, truth)
    assert not unknown.passed and unknown.evidence[0]["stage"] == "evaluate"
