"""Shortcut probes and L9: the core probe finds a planted core shortcut and not an absent one, and bounds
core AUC - ring AUC from a paired bootstrap; blobs carry their flux through the PSF at the centre; L9 fails
on each single corruption."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from darkhalo.lensing.psf import moffat_ee
from darkhalo.metrics.probes import (
    _counted_auc,
    blob_images,
    core_pixels,
    core_ring_probe,
    flag_rates,
    probe_scores,
    psf_swap_completeness,
    resampled_aucs,
    ring_pixels,
)
from data_contracts.invariants.l9_no_shortcut import check
from data_contracts.metrics import Probes
from data_contracts.thresholds import L9Thresholds

SIZE = 32


def _stamps(n: int, seed: int, arc: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Noise stamps (sigma 0.01) with a ring of 'arc' light of peak ``arc`` at radius ~8 px on the positives
    (outside the core)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.01, (2 * n, 3, SIZE, SIZE)).astype(np.float32)
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    ring = np.exp(-0.5 * ((np.hypot(xx, yy) - 8) / 1.0) ** 2).astype(np.float32)
    images[:n] += arc * ring
    return images, np.r_[np.ones(n), np.zeros(n)].astype(np.int8)


def test_core_pixels_are_the_central_box_of_every_band() -> None:
    images = np.zeros((1, 3, SIZE, SIZE), dtype=np.float32)
    images[0, :, 14:18, 14:18] = 1
    assert core_pixels(images, 4).shape == (1, 48) and core_pixels(images, 4).sum() == 48


def _auc(features: np.ndarray, labels: np.ndarray) -> float:
    return float(roc_auc_score(labels, probe_scores(features, labels, seed=0)))


def test_the_core_probe_cannot_see_arcs_outside_the_core() -> None:
    images, labels = _stamps(150, seed=0)
    assert _auc(core_pixels(images, 8), labels) < 0.65


def test_the_core_probe_finds_a_planted_core_shortcut() -> None:
    images, labels = _stamps(150, seed=0)
    images[labels == 1, :, 15:17, 15:17] += 0.01  # positives' cores a little brighter: one noise sigma
    assert _auc(core_pixels(images, 8), labels) > 0.9


def test_the_core_probe_needs_both_classes() -> None:
    images, _ = _stamps(3, seed=1)
    with pytest.raises(ValueError, match="at least 2 stamps of each class"):
        probe_scores(core_pixels(images, 4), np.r_[np.ones(5), np.zeros(1)], seed=0)


def test_a_counted_auc_is_sklearns_weighted_auc_with_ties_counted_half() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, 40).astype(float)  # many ties
    labels = np.r_[np.ones(15), np.zeros(25)].astype(bool)
    counts = rng.integers(0, 4, (3, 40))
    counted = _counted_auc(scores[labels], scores[~labels], counts[:, labels], counts[:, ~labels])
    expected = [roc_auc_score(labels, scores, sample_weight=c) for c in counts]
    np.testing.assert_allclose(counted, expected, rtol=1e-12)


def test_resamples_are_paired_stratified_and_scatter_as_an_auc_does() -> None:
    """Hanley & McNeil's standard error of an AUROC of 0.76 from 86 positives and 100 controls is 0.035."""
    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(86), np.zeros(100)].astype(bool)
    first = rng.normal(0, 1, 186) + 1.0 * labels
    resampled = resampled_aucs(np.stack([first, first, -first]), labels, 1000, seed=2)
    assert np.array_equal(resampled[:, 0], resampled[:, 1]) and np.allclose(resampled[:, 2], 1 - resampled[:, 0])
    assert resampled[:, 0].mean() == pytest.approx(roc_auc_score(labels, first), abs=0.005)
    assert resampled[:, 0].std() == pytest.approx(0.035, rel=0.15)
    assert np.array_equal(resampled, resampled_aucs(np.stack([first, first, -first]), labels, 1000, seed=2))
    assert not np.array_equal(resampled, resampled_aucs(np.stack([first, first, -first]), labels, 1000, seed=3))


def test_resamples_drawn_in_blocks_are_the_resamples_drawn_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    labels, scores = np.r_[np.ones(30), np.zeros(20)].astype(bool), rng.normal(0, 1, (2, 50))
    whole = resampled_aucs(scores, labels, 40, seed=1)
    monkeypatch.setattr("darkhalo.metrics.probes.PROBE_BLOCK", 50 * 7)  # blocks of 7 resamples
    np.testing.assert_array_equal(resampled_aucs(scores, labels, 40, seed=1), whole)


def test_the_core_ring_probe_bounds_core_minus_ring_on_the_same_folds() -> None:
    images, labels = _stamps(100, seed=2, arc=0.001)  # faint arcs: the ring's AUC 0.73
    core, ring = core_pixels(images, 8), ring_pixels(images, 8)
    same = core_ring_probe(core, core, labels, seed=4)  # the same folds and resamples: a difference of 0 exactly
    assert same["core_auc"] == same["ring_auc"] == roc_auc_score(labels, probe_scores(core, labels, seed=4))
    assert same["core_minus_ring_auc_lower"] == 0
    honest = core_ring_probe(core, ring, labels, seed=4)
    assert honest["core_auc"] < 0.6 < honest["ring_auc"] and honest["core_minus_ring_auc_lower"] < -0.2
    images[labels == 1, :, 15:17, 15:17] += 0.01  # a core shortcut of one noise sigma: core AUC 0.95
    shortcut = core_ring_probe(core_pixels(images, 8), ring_pixels(images, 8), labels, seed=4)
    assert shortcut["core_auc"] > 0.9 and shortcut["core_minus_ring_auc_lower"] > 0.1


def test_a_blob_keeps_its_flux_at_the_centre_and_spreads_like_its_psf() -> None:
    flux = np.array([[1.0, 2.0, 4.0], [0.5, 0.5, 0.5]])
    blobs = blob_images(flux, np.array([1.2, 1.6]), 64, 0.262, psf_model="moffat", beta=3.5, kernel_size=63)
    np.testing.assert_allclose(blobs.sum(axis=(2, 3)), flux, rtol=2e-3)
    assert np.unravel_index(blobs[0, 2].argmax(), (64, 64)) == (32, 32)
    # light within 1" follows the PSF's closed-form encircled energy (the 0.1" blob barely widens it)
    yy, xx = (np.mgrid[:64, :64] - 32) * 0.262
    inside = np.hypot(xx, yy) <= 1.0
    for i, fwhm in enumerate([1.2, 1.6]):
        expected = float(moffat_ee(torch.tensor(1.0), fwhm, 3.5))
        assert blobs[i, 1][inside].sum() / flux[i, 1] == pytest.approx(expected, abs=0.03)


def test_flag_rates_and_the_psf_swap_use_score_at_least_threshold() -> None:
    assert flag_rates(np.array([0.1, 0.5, 0.9, 0.5]), {"a": 0.5, "b": 1.0}) == {"a": 0.75, "b": 0.0}
    as_made = np.array([1.0, 2.0, 3.0, 4.0])
    swap = psf_swap_completeness(as_made, as_made / 2, {"t": 2.0})
    assert swap == {"t": {"survey": 0.75, "gaussian": 0.25, "change": -0.5}}


LIMITS = L9Thresholds(max_core_auc=0.7, max_blob_rate_ratio=2.0)
FPRS = {"completeness=0.9": 0.05, "fpr=0.01": 0.01}


def probes(
    core: float, ring: float, rates: dict, fprs: dict, n_blobs: int = 10**9, fpr_floor: float = 0.0, lower: float = -0.1
) -> dict:
    """The probe measurements metrics.json stores (a huge ``n_blobs``: the lower bound is the rate)."""
    keys = ("core_auc", "ring_auc", "core_minus_ring_auc_lower", "blob_flag_rates", "fpr_at_thresholds", "n_blobs")
    return dict(zip(keys, (core, ring, lower, rates, fprs, n_blobs), strict=True)) | {"fpr_floor": fpr_floor}


def test_l9_passes_an_honest_finder_and_shows_the_bound_it_compared() -> None:
    finding = check(probes(0.55, 0.6, {"completeness=0.9": 0.08, "fpr=0.01": 0.015}, FPRS), LIMITS)
    assert finding.id == "L9" and finding.passed
    assert finding.measured["blob_lower_bound_over_fpr"] == pytest.approx(1.6, rel=1e-3)
    assert finding.threshold == {"core_auc": 0.7, "core_minus_ring_auc_lower": 0.0, "blob_lower_bound_over_fpr": 2.0}


def test_l9_fails_a_core_shortcut_alone() -> None:
    finding = check(probes(0.83, 0.6, {"completeness=0.9": 0.05, "fpr=0.01": 0.01}, FPRS, lower=0.12), LIMITS)
    assert not finding.passed and [row["probe"] for row in finding.evidence] == ["core"]
    assert finding.detail == "core AUC 0.830 > 0.7, beyond the ring AUC 0.600 at 95 % (core - ring >= +0.120)"


def test_l9_accepts_a_core_above_the_ring_by_less_than_its_noise() -> None:
    """The embedded run's test split (186 stamps): core 0.77 over ring 0.73, a difference the paired bootstrap
    cannot tell from 0; the same rule fails it once the bound rises above 0, or without the ring rule."""
    rates = {"completeness=0.9": 0.05, "fpr=0.01": 0.01}
    noisy = check(probes(0.77, 0.73, rates, FPRS, lower=-0.021), LIMITS)
    assert noisy.passed and noisy.measured["core_minus_ring_auc_lower"] == -0.021
    assert noisy.detail.startswith(
        "core AUC 0.770 > 0.7, not beyond the ring AUC 0.730 at 95 % (core - ring >= -0.021)"
    )
    assert not check(probes(0.77, 0.73, rates, FPRS, lower=0.001), LIMITS).passed
    assert check(probes(0.77, 0.73, rates, FPRS, lower=0.0), LIMITS).passed  # the bound at 0: not further
    strict = L9Thresholds(max_core_auc=0.7, max_blob_rate_ratio=2.0, core_bound_rises_to_ring=False)
    without_ring = check(probes(0.77, 0.73, rates, FPRS, lower=-0.021), strict)
    assert not without_ring.passed and without_ring.detail == "core AUC 0.770 > 0.7"
    assert without_ring.threshold == {"core_auc": 0.7, "blob_lower_bound_over_fpr": 2.0}
    assert check(probes(0.69, 0.73, rates, FPRS, lower=0.3), LIMITS).passed  # within max_core_auc: no shortcut


def test_l9_fails_an_unknown_core_difference_above_the_auc_bound() -> None:
    rates = {"completeness=0.9": 0.05, "fpr=0.01": 0.01}
    assert not check(probes(0.77, 0.73, rates, FPRS, lower=math.nan), LIMITS).passed
    assert check(probes(0.69, 0.73, rates, FPRS, lower=math.nan), LIMITS).passed


def test_probes_without_the_core_ring_bound_are_refused_naming_it() -> None:
    stored = probes(0.77, 0.73, {"fpr=0.01": 0.01}, {"fpr=0.01": 0.01})
    del stored["core_minus_ring_auc_lower"]
    finding = check(stored, LIMITS)
    assert not finding.passed and finding.detail == "probes lack core_minus_ring_auc_lower"
    with pytest.raises(ValidationError, match="core_minus_ring_auc_lower"):
        Probes.model_validate(stored)
    with pytest.raises(ValidationError, match="core_minus_ring_auc_lower"):
        Probes.model_validate(stored | {"core_minus_ring_auc_lower": 1.5})


def test_l9_judges_a_blob_rate_by_its_lower_bound() -> None:
    fprs = {"completeness=0.99": 0.23}
    assert check(probes(0.5, 0.6, {"completeness=0.99": 0.49}, fprs, n_blobs=99), LIMITS).passed  # 49 of 99
    assert not check(probes(0.5, 0.6, {"completeness=0.99": 0.49}, fprs, n_blobs=10_000), LIMITS).passed


def test_ring_pixels_surround_the_core_without_it() -> None:
    images = np.zeros((1, 3, 32, 32))
    images[0, :, 12:20, 12:20] = 1.0  # the 8x8 core
    ring = ring_pixels(images, 8)
    assert ring.shape == (1, 3 * (16 * 16 - 8 * 8)) and ring.sum() == 0


def test_l9_fails_blobs_flagged_beyond_the_fpr_at_one_threshold() -> None:
    finding = check(probes(0.55, 0.6, {"completeness=0.9": 0.05, "fpr=0.01": 0.03}, FPRS), LIMITS)
    assert not finding.passed
    assert [(row["probe"], row["operating_point"]) for row in finding.evidence] == [("blob", "fpr=0.01")]


def test_l9_zero_fpr_uses_the_floor_and_a_nan_auc_or_mismatched_points_fail() -> None:
    fprs = {"completeness=0.7": 0.0}
    assert check(probes(0.5, 0.6, {"completeness=0.7": 0.001}, fprs, fpr_floor=0.001), LIMITS).passed
    assert not check(probes(0.5, 0.6, {"completeness=0.7": 0.001}, fprs), LIMITS).passed
    assert not check(probes(math.nan, 0.6, {"completeness=0.7": 0.0}, fprs), LIMITS).passed
    mismatched = check(probes(0.5, 0.6, {"a": 0.0}, {"b": 0.0}), LIMITS)
    assert not mismatched.passed and "different operating points" in mismatched.detail
    missing = check({"core_auc": 0.5}, LIMITS)
    assert not missing.passed and missing.detail.startswith("probes lack ring_auc, core_minus_ring_auc_lower")
