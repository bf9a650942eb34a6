"""The mock sky's correlated pixel noise: the kernel's correlations, the mock stamps' measured ones, and the
white-noise stamps left as they were."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import spec_data
from scipy import signal

from darkhalo.spec import MockSurvey, NoiseCorrelation, SpecError, spec_from_dict
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import MockCutoutProvider
from darkhalo.surveys.noise import correlation_kernels, kernel_taps, sky_correlation, sky_mask

SEED = 5
WHITE = MockSurvey(kind="mock", n_objects=20_000)
CORRELATED = MockSurvey(kind="mock", n_objects=20_000, noise_correlation={})


@pytest.fixture(scope="module")
def hosts() -> pd.DataFrame:
    catalog = mock_catalog(WHITE, SEED, 0)
    return catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(20).reset_index(drop=True)


@pytest.fixture(scope="module")
def white(hosts) -> np.ndarray:
    return MockCutoutProvider(WHITE, SEED).cutouts(hosts, 64).images


def _median(correlation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {lag: np.median(values, axis=0) for lag, values in correlation.items()}


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.3, 0.7])
def test_the_taps_have_unit_norm_and_the_asked_lag_1_correlation(rho: float) -> None:
    taps = kernel_taps(rho)
    assert np.isclose((taps**2).sum(), 1) and np.isclose(taps[0] * taps[1] + taps[1] * taps[2], rho)


def test_white_noise_through_the_kernel_correlates_as_asked_and_keeps_unit_variance() -> None:
    rho_x, rho_y = (0.1, 0.25, 0.4), (0.3, 0.2, 0.05)
    kernels = correlation_kernels(rho_x, rho_y)
    white = np.random.default_rng(0).standard_normal((3, 402, 402))
    field = np.stack([signal.convolve2d(w, k, mode="valid") for w, k in zip(white, kernels, strict=True)])
    assert np.allclose(field.var(axis=(1, 2)), 1, atol=0.01)
    measured = {lag: values[0] for lag, values in sky_correlation(field[None]).items()}
    assert np.allclose(measured["x"], rho_x, atol=0.01) and np.allclose(measured["y"], rho_y, atol=0.01)
    assert np.allclose(measured["diagonal"], np.multiply(rho_x, rho_y), atol=0.01)


def test_a_target_out_of_the_kernels_reach_is_refused_naming_the_field_and_band() -> None:
    with pytest.raises(ValueError, match=r"0\.71 is out of reach"):
        kernel_taps(0.71)
    data = spec_data()
    data["survey"]["noise_correlation"] = {"y": [0.3, 1 / np.sqrt(2), 0.2]}
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, source="specs/x.yaml")
    assert "survey.noise_correlation.y" in str(info.value) and "r band" in str(info.value)


def test_mock_stamps_correlate_as_the_defaults_and_keep_the_invvar_sigma(hosts) -> None:
    stamps = MockCutoutProvider(CORRELATED, SEED).cutouts(hosts, 64)
    measured = _median(sky_correlation(stamps.images))
    target = NoiseCorrelation()
    assert np.allclose(measured["x"], target.x, atol=0.03), measured
    assert np.allclose(measured["y"], target.y, atol=0.03), measured
    assert np.allclose(measured["diagonal"], np.multiply(target.x, target.y), atol=0.03), measured
    sky_sigma = [[plane[sky_mask(plane)].std() for plane in image] for image in stamps.images]
    stated = 1 / np.sqrt(stamps.invvar[:, :, 0, 0])
    assert np.allclose(np.median(sky_sigma / stated, axis=0), 1, atol=0.03)


def test_without_the_field_the_noise_is_white(white) -> None:
    measured = _median(sky_correlation(white))
    assert all(np.abs(values).max() < 0.03 for values in measured.values()), measured
