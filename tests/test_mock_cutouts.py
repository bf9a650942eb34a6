"""Mock cutouts: deterministic per host, the survey PSF, and noise and PSF wings like real DR10 data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REAL

from darkhalo.lensing.pixelized import psfex_by_band
from darkhalo.lensing.psf import CORE_BETA_RANGE, psf_kernels
from darkhalo.spec import LegacySurvey, MockSurvey
from darkhalo.surveys import mock_cutouts
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import (
    HOST_COLUMNS,
    KERNEL_SIZE,
    PIXEL_SCALE,
    SKY_MAG,
    MockCutoutProvider,
)
from darkhalo.surveys.provider import Cutouts, provider_for
from data_contracts.confusers import CLASSES

SURVEY = MockSurvey(kind="mock", n_objects=20_000)
SEED = 5
RADII = (1.0, 2.0, 3.0, 5.0)


@pytest.fixture(scope="module")
def hosts() -> pd.DataFrame:
    catalog = mock_catalog(SURVEY, SEED, 0)
    return catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(24).reset_index(drop=True)


@pytest.fixture(scope="module")
def stamps(hosts) -> Cutouts:
    return provider_for(SURVEY, SEED).cutouts(hosts, 64)


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _ee(kernel: np.ndarray, radius: float) -> float:
    k = kernel.shape[-1]
    yy, xx = np.mgrid[:k, :k] - k // 2
    inside = (xx**2 + yy**2) * PIXEL_SCALE**2 <= radius**2
    return float(kernel[inside].sum() / kernel.sum())


def test_stamps_have_the_interface_shapes_and_the_host_at_the_centre(stamps, hosts) -> None:
    n = len(hosts)
    assert stamps.images.shape == (n, 3, 64, 64) and stamps.images.dtype == np.float32
    assert stamps.invvar.shape == (n, 3, 64, 64) and (stamps.invvar > 0).all()
    assert stamps.psf_fwhm.shape == (n, 3) and stamps.psf_beta.shape == (n, 3)
    assert np.allclose(stamps.psf_fwhm[:, 1], hosts["PSFSIZE_R"])
    low, high = np.array([CORE_BETA_RANGE[b] for b in "grz"]).T
    assert ((stamps.psf_beta >= low) & (stamps.psf_beta <= high)).all()
    stack = stamps.images.sum(axis=0)  # hosts add up, noise and neighbours average out
    for band in range(3):
        assert np.unravel_index(stack[band].argmax(), stack[band].shape) == (32, 32)


def test_a_stamp_does_not_depend_on_its_batch_and_reruns_bit_identically(stamps, hosts) -> None:
    provider = MockCutoutProvider(SURVEY, SEED)
    alone = provider.cutouts(hosts.iloc[[7, 3]], 64)
    assert np.array_equal(alone.images[0], stamps.images[7]) and np.array_equal(alone.images[1], stamps.images[3])
    assert np.array_equal(alone.invvar[0], stamps.invvar[7])
    other = MockCutoutProvider(SURVEY, SEED + 1).cutouts(hosts.iloc[[7]], 64)
    assert not np.array_equal(other.images[0], stamps.images[7])


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"confusers": dict.fromkeys(CLASSES, 0.12)},
        {"noise_correlation": {}},
        {"confusers": dict.fromkeys(CLASSES, 0.12), "field_galaxies": {}},
    ],
    ids=["smooth", "confusers", "correlated_noise", "confusers_and_field_galaxies"],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_stamps_are_bit_identical_in_batches_of_any_size_order_and_thread_count(threads: int, extra: dict) -> None:
    """The audit (L8) fetches cutouts again in other batches and wants controls bit-identical to them."""
    sky = {"ra_range": (150.0, 150.1), "dec_range": (0.0, 0.1), **extra}
    dense = MockSurvey(kind="mock", n_objects=2000, **sky)
    rows = mock_catalog(dense, SEED, 0).head(80).reset_index(drop=True)  # stars too, and ~16 neighbours each
    provider = MockCutoutProvider(dense, SEED)
    whole = provider.cutouts(rows, 48).images
    before = torch.get_num_threads()
    rng = np.random.default_rng(0)
    try:
        torch.set_num_threads(threads)
        for k in (1, 17, 65):
            chosen = rng.choice(len(rows), k, replace=False)
            assert np.array_equal(provider.cutouts(rows.iloc[chosen], 48).images, whole[chosen]), k
    finally:
        torch.set_num_threads(before)


def test_host_flux_lands_in_the_stamp(hosts) -> None:
    quiet = hosts.copy()
    for band in "GRZ":
        quiet[f"PSFDEPTH_{band}"] = 1e12  # noise 1e-6 x the depth's: the sum is the rendered light
    stamps = MockCutoutProvider(SURVEY, SEED).cutouts(quiet, 64)
    ratio = stamps.images.sum(axis=(2, 3)) / hosts[["FLUX_G", "FLUX_R", "FLUX_Z"]].to_numpy()
    assert np.all(np.abs(np.median(ratio, axis=0) - 1) < 0.05), ratio
    assert np.all(ratio > 0.8)  # big DEV hosts lose their outer light past the stamp edge


def test_supersampling_the_central_block_matches_supersampling_the_whole_stamp(hosts, monkeypatch) -> None:
    """Beyond SUPERSAMPLED_SIDE the pixel-centre light plus its curvature term holds the supersampled light."""
    catalog = mock_catalog(SURVEY, SEED, 0)
    galaxies = catalog[catalog["TYPE"] != "PSF"].head(200).copy()
    for band in "GRZ":
        galaxies[f"PSFDEPTH_{band}"] = 1e12  # noise 1e-6 x the depth's: the rendered light
    block = MockCutoutProvider(SURVEY, SEED).cutouts(galaxies, 64).images.astype(np.float64)
    monkeypatch.setattr(mock_cutouts, "SUPERSAMPLED_SIDE", 64)
    whole = MockCutoutProvider(SURVEY, SEED).cutouts(galaxies, 64).images.astype(np.float64)
    l1 = np.abs(block - whole).sum(axis=(2, 3)) / np.abs(whole).sum(axis=(2, 3))
    assert np.median(l1) < 1e-4 and l1.max() < 2e-3, (np.median(l1), l1.max())
    monkeypatch.setattr(mock_cutouts, "SUPERSAMPLED_SIDE", 3)  # too small a block: the cores fall outside it
    small = MockCutoutProvider(SURVEY, SEED).cutouts(galaxies, 64).images.astype(np.float64)
    assert (np.abs(small - whole).sum(axis=(2, 3)) / np.abs(whole).sum(axis=(2, 3))).max() > 1e-2


def test_a_point_source_is_the_survey_psf_kernel_times_its_flux(hosts) -> None:
    star = hosts.iloc[[0]].copy()
    star["SERSIC"], star["FLUX_R"], star["PSFDEPTH_R"] = 0.0, 1e6, 1e12  # SERSIC 0: a point source
    stamp = MockCutoutProvider(SURVEY, SEED).cutouts(star, 64)
    kernel = psf_kernels(
        "survey",
        torch.tensor(star["PSFSIZE_R"].to_numpy(np.float64)),
        KERNEL_SIZE,
        PIXEL_SCALE,
        torch.tensor(stamp.psf_beta[:, 1], dtype=torch.float64),
        "r",
    )[0].numpy()
    centre = stamp.images[0, 1, 32 - 31 : 32 + 32, 32 - 31 : 32 + 32]
    assert np.allclose(centre, 1e6 * kernel, rtol=1e-4, atol=1e-2)


def test_background_sigma_per_band_is_within_25_percent_of_real_dr10_cutouts() -> None:
    real = [np.load(p)["cutout"] for p in sorted((REAL / "cutouts").glob("*.npz"))]
    real_sigma = np.median([[_mad(c[..., b]) for b in range(3)] for c in real], axis=0)
    catalog = mock_catalog(SURVEY, SEED, 0)
    hosts = catalog[catalog["TYPE"].isin(["DEV", "SER"])].iloc[24:40]
    mock = MockCutoutProvider(SURVEY, SEED).cutouts(hosts, 101)  # the real cutouts are 101 x 101
    mock_sigma = np.median([[_mad(image[b]) for b in range(3)] for image in mock.images], axis=0)
    assert np.all(np.abs(mock_sigma / real_sigma - 1) < 0.25), (mock_sigma, real_sigma)
    # the invvar states the same noise: sigma of pure noise pixels = 1 / sqrt(invvar)
    assert np.allclose(np.median(1 / np.sqrt(mock.invvar[:, :, 0, 0]), axis=0), mock_sigma, rtol=0.25)


def _real_ee() -> dict[str, np.ndarray]:
    """Per band, EE (models, radii) of its real PSFEx models (the polynomial at its origin) on the stamp grid."""
    ee = {}
    for band, models in psfex_by_band(REAL / "psf" / "psfex").items():
        kernels = [m.kernel(*m.zero, KERNEL_SIZE, PIXEL_SCALE, dtype=torch.float64).numpy() for m in models]
        ee[band] = np.array([[_ee(k, r) for r in RADII] for k in kernels])
    return ee


def _mock_ee(stamps: Cutouts, model: str) -> dict[str, np.ndarray]:
    """Per band, EE (hosts, radii) of the mock stamps' PSF (their PSFSIZE and beta)."""
    ee = {}
    for j, band in enumerate("grz"):
        kernels = psf_kernels(
            model,
            torch.tensor(stamps.psf_fwhm[:, j], dtype=torch.float64),
            KERNEL_SIZE,
            PIXEL_SCALE,
            torch.tensor(stamps.psf_beta[:, j], dtype=torch.float64),
            band,
        ).numpy()
        ee[band] = np.array([[_ee(k, r) for r in RADII] for k in kernels])
    return ee


@pytest.mark.parametrize("band", list("grz"))
def test_mock_psf_encircled_energy_lies_in_the_range_of_the_bands_real_psfex_models(stamps, band: str) -> None:
    """Per band, the hosts' median EE at 1, 2, 3, 5" between the min and max of that band's real models."""
    real = _real_ee()[band]
    low, high = real.min(axis=0), real.max(axis=0)
    mock = _mock_ee(stamps, "survey")[band]
    median = np.median(mock, axis=0)
    q25, q75 = np.quantile(mock, [0.25, 0.75], axis=0)
    assert np.all((median >= low) & (median <= high)), (median, low, high)
    assert np.all((q75 >= low) & (q25 <= high))


def test_a_gaussian_psf_falls_outside_the_real_range(stamps) -> None:
    real, gaussian = _real_ee(), _mock_ee(stamps, "gaussian")
    for band in "grz":
        assert np.median(gaussian[band][:, 3]) > real[band][:, 3].max()  # too little light beyond 5"


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("PSFDEPTH_R", 0.0, "PSFDEPTH_R = 0.0 must be > 0"),
        ("PSFSIZE_G", -1.0, "PSFSIZE_G = -1.0 must be > 0"),
        ("FLUX_Z", np.nan, "FLUX_Z = nan must be finite"),
        ("SHAPE_R", -0.5, "SHAPE_R = -0.5 must be >= 0"),
    ],
)
def test_impossible_host_values_fail_naming_the_field_and_row(hosts, column: str, value: float, message: str) -> None:
    bad = hosts.head(3).copy()
    bad.loc[2, column] = value
    with pytest.raises(ValueError, match=message) as info:
        MockCutoutProvider(SURVEY, SEED).cutouts(bad, 32)
    assert "row 2" in str(info.value) and f"OBJID={bad.loc[2, 'OBJID']}" in str(info.value)


def test_the_interface_columns_are_enough(stamps, hosts) -> None:
    """The manifest carries host columns but not TYPE: SERSIC alone sets the profile."""
    minimal = hosts[[*HOST_COLUMNS, "RA", "DEC"]]
    assert "TYPE" not in minimal and "MW_TRANSMISSION_R" not in minimal
    again = MockCutoutProvider(SURVEY, SEED).cutouts(minimal, 64)
    assert np.array_equal(again.invvar, stamps.invvar)
    centre = np.s_[:, :, 28:37, 28:37]  # the host, where neighbours (unreddened here) hardly reach
    assert np.allclose(again.images[centre], stamps.images[centre], rtol=0.01, atol=1e-3)


def test_a_negative_key_is_named(hosts) -> None:
    bad = hosts.head(2).copy()
    bad.loc[1, "OBJID"] = -3
    with pytest.raises(ValueError, match="row 1: OBJID = -3 must be >= 0"):
        MockCutoutProvider(SURVEY, SEED).cutouts(bad, 32)


def test_a_missing_column_is_named(hosts) -> None:
    with pytest.raises(ValueError, match="PSFDEPTH_G"):
        MockCutoutProvider(SURVEY, SEED).cutouts(hosts.drop(columns="PSFDEPTH_G"), 32)


def test_legacy_survey_without_a_cutout_folder_is_refused() -> None:
    survey = LegacySurvey(kind="legacy", catalogs=["x.fits"])
    with pytest.raises(ValueError, match=r"survey\.cutouts\.dir"):
        provider_for(survey, 0)


def test_neighbours_come_at_the_catalog_density(hosts) -> None:
    """A dense sky (~0.015 objects per arcsec^2) puts light around the hosts; the default sky hardly any."""
    quiet = hosts.head(8).copy()
    for band in "GRZ":
        quiet[f"PSFDEPTH_{band}"] = 1e12
    dense = MockSurvey(kind="mock", n_objects=2000, ra_range=(150.0, 150.1), dec_range=(0.0, 0.1))
    outer = np.ones((64, 64), bool)
    outer[16:48, 16:48] = False  # away from the host
    light = {
        name: MockCutoutProvider(survey, SEED).cutouts(quiet, 64).images[:, 1][:, outer].sum(axis=1)
        for name, survey in (("dense", dense), ("sparse", SURVEY))
    }
    assert np.median(light["dense"]) > 3 * np.median(light["sparse"])
    assert np.mean(light["dense"] > light["sparse"]) >= 0.75


def test_bright_host_cores_carry_their_own_photon_noise(hosts) -> None:
    """Noise = sigma_sky sqrt(1 + m / f_sky): above the sky's in a bright core, the sky's far out."""
    provider = MockCutoutProvider(SURVEY, SEED)
    bright = hosts.copy()
    bright["FLUX_R"] *= 20  # r ~ 17.5: cores brighter than the sky per pixel
    quiet = bright.copy()
    quiet["PSFDEPTH_R"] = 1e12  # same draws, noise ~1e-6 of the real one: the noiseless model
    model = provider.cutouts(quiet, 64).images[:, 1].astype(np.float64)
    noisy = provider.cutouts(bright, 64)
    sigma = 1 / np.sqrt(noisy.invvar[:, 1].astype(np.float64))
    sky = 10 ** ((22.5 - SKY_MAG["r"]) / 2.5) * PIXEL_SCALE**2
    residual = noisy.images[:, 1] - model
    core = model > sky  # source photons at least double the variance here
    assert core.sum() > 100
    assert np.std(residual[core] / sigma[core]) > 1.3
    assert abs(np.std(residual[core] / (sigma * np.sqrt(1 + model / sky))[core]) - 1) < 0.1
    far = model < 0.01 * sky
    assert abs(np.std(residual[far] / sigma[far]) - 1) < 0.05
