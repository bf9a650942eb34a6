"""The survey PSF: pixel-integrated kernels, PSFSIZE as legacypipe defines it, and wings like the
real DECam PSFEx models' per band (each band's models at their own PSFSIZE, the same 63 x 63 box)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import REAL
from scipy.integrate import quad

from darkhalo.lensing.imaging import bin_pixels, pixel_grid
from darkhalo.lensing.pixelized import psfex_by_band
from darkhalo.lensing.psf import (
    CORE_BETA_RANGE,
    FWHM_PER_SIGMA,
    POWER_LAW_HALO,
    Z_HALO,
    encircled_energy,
    halo_flux_outside,
    moffat_sb,
    psf_kernels,
    psf_sb,
    psfsize,
    wing_deficits,
)

SCALE, KERNEL = 0.262, 63
RADII = (1.0, 2.0, 3.0, 5.0)
F64 = torch.float64


def _sampled(model: str, fwhm: float, beta: float, band: str, per_side: int) -> torch.Tensor:
    """The profile averaged over per_side x per_side points per pixel (1: its value at the centre), unit sum."""
    x, y = pixel_grid(KERNEL, SCALE, per_side, dtype=F64)
    sb = psf_sb(model, torch.sqrt(x**2 + y**2), torch.tensor(fwhm, dtype=F64), beta, band)
    kernel = bin_pixels(sb, per_side)
    return kernel / kernel.sum()


@pytest.mark.parametrize(
    ("model", "fwhm", "beta"), [("moffat", 0.8, 2.5), ("moffat", 1.3, 2.8), ("gaussian", 0.9, 2.8)]
)
def test_kernels_integrate_the_profile_over_each_pixel(model: str, fwhm: float, beta: float) -> None:
    """Against 41 x 41 points per pixel: within 0.3 % of the peak, where pixel-centre values are > 2 % off."""
    kernel = psf_kernels(model, torch.tensor([fwhm], dtype=F64), KERNEL, SCALE, beta)[0]
    exact = _sampled(model, fwhm, beta, "r", 41)
    peak = float(exact.max())
    assert float((kernel - exact).abs().max()) < 3e-3 * peak
    assert float((_sampled(model, fwhm, beta, "r", 1) - exact).abs().max()) > 2e-2 * peak


def test_survey_kernels_have_the_requested_psfsize_and_a_gaussian_its_fwhm() -> None:
    """PSFSIZE (legacypipe: the FWHM of the Gaussian of the same noise-equivalent area) within 0.5 %;
    a pixel-integrated Gaussian's is its FWHM with the pixel's variance (pixel^2 / 12) added."""
    fwhm = torch.linspace(0.8, 2.5, 12, dtype=F64)
    for band in "grz":
        for beta in CORE_BETA_RANGE[band]:
            kernels = psf_kernels("survey", fwhm, KERNEL, SCALE, beta, band)
            np.testing.assert_allclose(psfsize(kernels, SCALE).numpy(), fwhm.numpy(), rtol=5e-3)
    gaussian = psf_kernels("gaussian", fwhm, KERNEL, SCALE)
    widened = FWHM_PER_SIGMA * torch.sqrt((fwhm / FWHM_PER_SIGMA) ** 2 + SCALE**2 / 12)
    np.testing.assert_allclose(psfsize(gaussian, SCALE).numpy(), widened.numpy(), rtol=2e-3)


def _measures(kernels: torch.Tensor, fwhm: torch.Tensor) -> np.ndarray:
    """EE at RADII and the deficits beyond 2 x PSFSIZE and 3", (N, 6)."""
    ee = torch.stack([encircled_energy(kernels, SCALE, r) for r in RADII], dim=-1)
    return torch.cat([ee, wing_deficits(kernels, SCALE, fwhm)], dim=-1).numpy()


@pytest.mark.parametrize("band", list("grz"))
def test_the_survey_psf_lies_in_the_spread_of_the_bands_real_psfex_models(band: str) -> None:
    """At each real model's PSFSIZE and the middle of the band's beta range: the median EE at 1, 2, 3, 5"
    and the light beyond 2 x PSFSIZE and beyond 3" lie between the band's real min and max."""
    models = psfex_by_band(REAL / "psf" / "psfex")[band]
    real = torch.stack([m.kernel(*m.zero, KERNEL, SCALE, dtype=F64) for m in models])
    fwhm = psfsize(real, SCALE)
    truth = _measures(real, fwhm)
    mine = _measures(psf_kernels("survey", fwhm, KERNEL, SCALE, float(np.mean(CORE_BETA_RANGE[band])), band), fwhm)
    low, high = truth.min(axis=0), truth.max(axis=0)
    median = np.median(mine, axis=0)
    assert np.all((low <= median) & (median <= high)), (median, low, high)


@pytest.mark.parametrize("band", list("grz"))
def test_the_halo_left_outside_a_63_pixel_kernel_is_about_one_percent(band: str) -> None:
    """legacypipe's halo beyond the kernel's 8.25" half side, out to 400" (integrated numerically)."""
    if band == "z":
        fwhm = 2 * Z_HALO["alpha"] * math.sqrt(2 ** (1 / Z_HALO["beta"]) - 1)

        def sb(r: float) -> float:
            return Z_HALO["weight"] * float(moffat_sb(torch.tensor(r, dtype=F64), fwhm, Z_HALO["beta"]))
    else:

        def sb(r: float) -> float:
            return POWER_LAW_HALO[band] / r**2

    outside = quad(lambda r: 2 * math.pi * r * sb(r), KERNEL // 2 * SCALE, 400.0)[0]
    assert halo_flux_outside(band, KERNEL // 2 * SCALE) == pytest.approx(outside, rel=1e-6)
    assert {"g": 0.011, "r": 0.008, "z": 0.012}[band] == pytest.approx(outside, abs=6e-4)
