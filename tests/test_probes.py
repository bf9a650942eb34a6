"""Shortcut probes and L9: the core probe finds a planted core shortcut and not an absent one; blobs
carry their flux through the PSF at the centre; L9 fails on each single corruption."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darkhalo.lensing.psf import moffat_ee
from darkhalo.metrics.probes import (
    blob_images,
    core_pixels,
    flag_rates,
    probe_auc,
    psf_swap_completeness,
    ring_pixels,
)
from data_contracts.invariants.l9_no_shortcut import check
from data_contracts.thresholds import L9Thresholds

SIZE = 32


def _stamps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise stamps with a ring of 'arc' light at radius ~8 px on the positives (outside the core)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.01, (2 * n, 3, SIZE, SIZE)).astype(np.float32)
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    ring = np.exp(-0.5 * ((np.hypot(xx, yy) - 8) / 1.0) ** 2).astype(np.float32)
    images[:n] += 0.05 * ring
    return images, np.r_[np.ones(n), np.zeros(n)].astype(np.int8)


def test_core_pixels_are_the_central_box_of_every_band() -> None:
    images = np.zeros((1, 3, SIZE, SIZE), dtype=np.float32)
    images[0, :, 14:18, 14:18] = 1
    assert core_pixels(images, 4).shape == (1, 48) and core_pixels(images, 4).sum() == 48


def test_the_core_probe_cannot_see_arcs_outside_the_core() -> None:
    images, labels = _stamps(150, seed=0)
    assert probe_auc(core_pixels(images, 8), labels, seed=0) < 0.65


def test_the_core_probe_finds_a_planted_core_shortcut() -> None:
    images, labels = _stamps(150, seed=0)
    images[labels == 1, :, 15:17, 15:17] += 0.01  # positives' cores a little brighter: one noise sigma
    assert probe_auc(core_pixels(images, 8), labels, seed=0) > 0.9


def test_the_core_probe_needs_both_classes() -> None:
    images, _ = _stamps(3, seed=1)
    with pytest.raises(ValueError, match="at least 2 stamps of each class"):
        probe_auc(core_pixels(images, 4), np.r_[np.ones(5), np.zeros(1)], seed=0)


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


def probes(core: float, ring: float, rates: dict, fprs: dict, n_blobs: int = 10**9, fpr_floor: float = 0.0) -> dict:
    """The probe measurements metrics.json stores (a huge ``n_blobs``: the lower bound is the rate)."""
    keys = ("core_auc", "ring_auc", "blob_flag_rates", "fpr_at_thresholds", "n_blobs", "fpr_floor")
    return dict(zip(keys, (core, ring, rates, fprs, n_blobs, fpr_floor), strict=True))


def test_l9_passes_an_honest_finder_and_shows_the_bound_it_compared() -> None:
    finding = check(probes(0.55, 0.6, {"completeness=0.9": 0.08, "fpr=0.01": 0.015}, FPRS), LIMITS)
    assert finding.id == "L9" and finding.passed
    assert finding.measured["blob_lower_bound_over_fpr"] == pytest.approx(1.6, rel=1e-3)
    assert finding.threshold == {"core_auc": 0.7, "blob_lower_bound_over_fpr": 2.0}


def test_l9_fails_a_core_shortcut_alone() -> None:
    finding = check(probes(0.83, 0.6, {"completeness=0.9": 0.05, "fpr=0.01": 0.01}, FPRS), LIMITS)
    assert not finding.passed and [row["probe"] for row in finding.evidence] == ["core"]


def test_l9_accepts_core_light_when_the_ring_carries_at_least_as_much_class_signal() -> None:
    """Honest arcs at theta_E ~ PSF leak into the core; the ring where they live separates better."""
    rates = {"completeness=0.9": 0.05, "fpr=0.01": 0.01}
    passing = check(probes(0.93, 0.98, rates, FPRS), LIMITS)
    assert passing.passed and passing.threshold["core_auc"] == 0.98  # the table shows the bound that decided
    assert not check(probes(0.93, 0.85, rates, FPRS), LIMITS).passed
    strict = L9Thresholds(max_core_auc=0.7, max_blob_rate_ratio=2.0, core_bound_rises_to_ring=False)
    assert not check(probes(0.93, 0.98, rates, FPRS), strict).passed


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
    assert not missing.passed and "ring_auc" in missing.detail
