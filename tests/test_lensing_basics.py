"""PSF profiles, Sersic light and FFT convolution against closed forms and exact identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import gammaincinv

from darkhalo.lensing.imaging import bin_pixels, fft_convolve, pixel_grid, pixel_offsets
from darkhalo.lensing.psf import (
    encircled_energy,
    gaussian_ee,
    moffat_ee,
    psf_kernels,
    psfsize,
)
from darkhalo.lensing.sersic import (
    ellipticity_to_q_phi,
    q_phi_to_ellipticity,
    sersic_b,
    sersic_sb,
)

SCALE = 0.262


def test_the_stamp_centre_is_pixel_size_over_two() -> None:
    axis = pixel_offsets(64, SCALE, dtype=torch.float64)
    assert axis[32] == 0 and axis[33] == pytest.approx(SCALE)
    sub = pixel_offsets(3, 1.0, supersample=2, dtype=torch.float64)
    assert sub.tolist() == [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25]


@pytest.mark.parametrize("fwhm", [0.9, 1.3, 2.2])
@pytest.mark.parametrize("radius", [1.0, 2.0, 3.0])
def test_gaussian_kernel_encircled_energy_matches_the_closed_form(fwhm: float, radius: float) -> None:
    size, scale = 255, SCALE / 4
    kernel = psf_kernels("gaussian", torch.tensor([fwhm], dtype=torch.float64), size, scale)
    measured = encircled_energy(kernel, scale, radius)
    assert float(measured) == pytest.approx(float(gaussian_ee(radius, fwhm)), abs=5e-3)


@pytest.mark.parametrize(("fwhm", "beta"), [(1.0, 2.0), (1.3, 2.8), (1.6, 4.5)])
@pytest.mark.parametrize("radius", [1.0, 2.0, 3.0])
def test_moffat_kernel_encircled_energy_matches_the_closed_form(fwhm: float, beta: float, radius: float) -> None:
    size, scale = 255, SCALE / 2
    kernel = psf_kernels("moffat", torch.tensor([fwhm], dtype=torch.float64), size, scale, beta)
    truncation = moffat_ee(size // 2 * scale, fwhm, beta)  # the kernel is normalised inside its box
    expected = float(moffat_ee(radius, fwhm, beta) / truncation)
    assert float(encircled_energy(kernel, scale, radius)) == pytest.approx(expected, abs=5e-3)


def test_the_gen1_gaussian_has_almost_no_light_beyond_2_arcsec_and_the_survey_psf_has_some() -> None:
    gauss = 1 - float(gaussian_ee(2.0, 1.3))
    assert gauss == pytest.approx(0.0014, abs=2e-4)  # ~0.14 % (docs/conventions.md)
    assert 1 - float(moffat_ee(2.0, 1.3, 3.5)) == pytest.approx(0.06, abs=0.005)  # ~6 % (docs/conventions.md)
    for band in "grz":
        moffat = psf_kernels("moffat", torch.tensor([1.3], dtype=torch.float64), 63, SCALE, 2.8)
        survey = psf_kernels("survey", psfsize(moffat, SCALE), 63, SCALE, 2.8, band)  # at the same PSFSIZE
        wing_light = 1 - encircled_energy(survey, SCALE, 5.0)
        assert float(wing_light) > float(1 - encircled_energy(moffat, SCALE, 5.0))


def test_kernels_have_unit_sum_per_row_and_take_one_beta_per_row() -> None:
    fwhm = torch.tensor([1.0, 1.5], dtype=torch.float64)
    kernels = psf_kernels("survey", fwhm, 33, SCALE, torch.tensor([2.2, 3.8], dtype=torch.float64), "g")
    assert kernels.shape == (2, 33, 33)
    assert torch.allclose(kernels.sum(dim=(-2, -1)), torch.ones(2, dtype=torch.float64))
    assert torch.argmax(kernels[0]).item() == 16 * 33 + 16
    with pytest.raises(ValueError, match="odd"):
        psf_kernels("gaussian", fwhm, 32, SCALE)
    with pytest.raises(ValueError, match="unknown PSF model"):
        psf_kernels("airy", fwhm, 33, SCALE)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0, 6.0])
def test_sersic_b_makes_r_eff_the_half_light_radius(n: float) -> None:
    assert float(sersic_b(torch.tensor(n, dtype=torch.float64))) == pytest.approx(gammaincinv(2 * n, 0.5), rel=1e-9)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.5, 4.0, 6.0])
def test_a_round_sersic_integrates_to_its_total_flux(n: float) -> None:
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731

    def ring(r: float) -> float:
        return 2 * math.pi * r * float(sersic_sb(t(r), t(0.0), t(7.0), t(0.4), t(n), t(1.0), t(0.0)))

    total = sum(quad(ring, lo, hi, limit=200)[0] for lo, hi in [(0, 0.4), (0.4, 40), (40, np.inf)])
    assert total == pytest.approx(7.0, rel=1e-6)


@settings(max_examples=20, deadline=None)
@given(n=st.floats(0.5, 2.0), r_eff=st.floats(0.15, 0.6), q=st.floats(0.3, 1.0), phi=st.floats(0, math.pi))
def test_an_elliptical_sersic_keeps_its_total_flux_whatever_its_shape(
    n: float, r_eff: float, q: float, phi: float
) -> None:
    scale = r_eff / 6
    x, y = pixel_grid(int(30 * r_eff / (scale * q)) | 1, scale, supersample=4, dtype=torch.float64)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    sb = sersic_sb(x, y, t(7.0), t(r_eff), t(n), t(q), t(phi))
    assert float(sb.sum()) * (scale / 4) ** 2 == pytest.approx(7.0, rel=0.01)


def test_ellipticity_round_trip_and_modulus() -> None:
    q, phi = torch.tensor([0.5, 0.9]), torch.tensor([0.3, -1.0])
    e1, e2 = q_phi_to_ellipticity(q, phi)
    assert torch.allclose(torch.sqrt(e1**2 + e2**2), (1 - q) / (1 + q))
    q2, phi2 = ellipticity_to_q_phi(e1, e2)
    assert torch.allclose(q2, q) and torch.allclose(torch.cos(2 * phi2), torch.cos(2 * phi))


@settings(max_examples=30, deadline=None)
@given(i=st.integers(0, 39), j=st.integers(0, 39))
def test_convolving_a_delta_centres_the_kernel_on_it(i: int, j: int) -> None:
    image = torch.zeros(1, 40, 40, dtype=torch.float64)
    image[0, i, j] = 3.0
    kernel = psf_kernels("moffat", torch.tensor([1.2], dtype=torch.float64), 21, SCALE, 3.0)
    out = fft_convolve(image, kernel)
    expected = torch.zeros(1, 40 + 20, 40 + 20, dtype=torch.float64)
    expected[0, i : i + 21, j : j + 21] = 3.0 * kernel[0]
    assert torch.allclose(out, expected[:, 10:50, 10:50], atol=1e-12)


def test_convolution_matches_direct_summation_and_conserves_interior_flux() -> None:
    rng = np.random.default_rng(1)
    image = torch.tensor(rng.normal(size=(2, 3, 24, 24)))
    kernel = torch.tensor(rng.random(size=(2, 3, 7, 7)))
    out = fft_convolve(image, kernel)
    padded = torch.nn.functional.pad(image, (3, 3, 3, 3))
    direct = torch.zeros_like(image)
    for dy in range(7):
        for dx in range(7):
            direct += kernel[..., 6 - dy, 6 - dx, None, None] * padded[..., dy : dy + 24, dx : dx + 24]
    assert torch.allclose(out, direct, atol=1e-10)


def test_binning_sums_blocks() -> None:
    image = torch.arange(16.0).reshape(1, 4, 4)
    assert bin_pixels(image, 2).tolist() == [[[10.0, 18.0], [42.0, 50.0]]]
    assert bin_pixels(image, 1) is image
