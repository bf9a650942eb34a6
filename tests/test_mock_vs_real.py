"""The mock survey beside the real files: per band, the background sigma and the PSF's encircled
energy at 1", 2", 3", 5" (against that band's PSFEx models) sit inside the spread of the real files; and
each measure of what the sim-to-real gap is made of gives the known answer on synthetic stamps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import REAL

from darkhalo.spec import MockSurvey, V3ColorRelaxed
from darkhalo.surveys.host_profiles import NEIGHBOUR_RADIUS, NORM_RADIUS, PROFILE_EDGES, measure_hosts, radii
from darkhalo.surveys.realism import (
    MOCK_SET,
    comparison,
    gap_table,
    markdown,
    mock_hosts,
    mock_lrg_hosts,
    score_table,
)
from data_contracts.parent_sample import cuts_mask
from data_contracts.survey import PIXEL_SCALE

SURVEY = MockSurvey(kind="mock", n_objects=20_000)
SEED = 5
CHECKED_EE = ('PSF EE within 1"', 'PSF EE within 2"', 'PSF EE within 3"', 'PSF EE within 5"')


@pytest.fixture(scope="module")
def hosts() -> pd.DataFrame:
    return mock_hosts(SURVEY, SEED, 12)


def _checked(table: pd.DataFrame) -> pd.DataFrame:
    sigma = table["quantity"].str.startswith("background sigma")
    return table[sigma | table["quantity"].isin(CHECKED_EE)].set_index(["quantity", "band"])


def test_the_mock_sits_inside_the_real_spread(hosts) -> None:
    table = comparison(REAL, SURVEY, SEED, hosts)
    checked = _checked(table)
    assert len(checked) == 3 + 3 * len(CHECKED_EE) and checked["inside"].all(), markdown(table)
    assert (table.loc[table["quantity"].str.startswith("background"), "real_n"] == 6).all()
    psf_rows = table[table["quantity"].str.startswith("PSF")]
    assert psf_rows.groupby("band")["real_n"].first().to_dict() == {"g": 6, "r": 7, "z": 7}  # named by band


def test_a_sky_three_times_noisier_falls_outside_and_only_the_sigmas_fire(hosts) -> None:
    noisy = hosts.copy()
    for band in "GRZ":
        noisy[f"PSFDEPTH_{band}"] /= 9  # sigma x 3
    checked = _checked(comparison(REAL, SURVEY, SEED, noisy))
    outside = checked.index[~checked["inside"]].get_level_values("quantity")
    assert list(outside) == ["background sigma (nanomaggies)"] * 3


def test_a_psf_half_again_as_wide_falls_outside_and_only_the_encircled_energies_fire(hosts) -> None:
    wide = hosts.copy()
    for band in "GRZ":
        wide[f"PSFSIZE_{band}"] *= 1.5
        wide[f"PSFDEPTH_{band}"] /= 1.5**2  # pixel sigma = 1 / sqrt(depth x NEA), NEA ~ FWHM^2: the same sky
    checked = _checked(comparison(REAL, SURVEY, SEED, wide))
    outside = checked.index[~checked["inside"]]
    assert set(outside.get_level_values("quantity")) <= set(CHECKED_EE)
    assert set(outside.get_level_values("band")) == {"g", "r", "z"}  # every band's PSF fires


def test_the_cli_prints_the_table() -> None:
    from typer.testing import CliRunner

    from darkhalo.cli import app

    result = CliRunner().invoke(app, ["survey", "compare-real", str(REAL), "--hosts", "4", "--lrg-hosts", "4"])
    assert result.exit_code == 0, result.output
    background = result.output.split("\n\n")[1]
    assert background.startswith("| quantity | band |") and background.count("\n") == 1 + 3 + 12
    assert "## The gap" in result.output and "## Model scores" not in result.output  # no model, no scores


SIZE = 91
H = 1.5  # arcsec: scale length of the exponential (Sersic n = 1) test host


def _exponential(rng: np.random.Generator, n: int, band_factors: np.ndarray) -> np.ndarray:
    """``n`` stamps (n, 3, SIZE, SIZE) of exp(-r / H) nanomaggies per pixel times each band's factor (3, SIZE, SIZE),
    on a sky of 0.3 with white noise of 1e-4."""
    host = np.exp(-radii(SIZE, PIXEL_SCALE) / H)
    return 0.3 + host * band_factors + rng.normal(0, 1e-4, (n, 3, SIZE, SIZE))


def test_an_exponential_host_gives_its_profile() -> None:
    images = _exponential(np.random.default_rng(0), 2, np.array([0.5, 1.0, 2.0])[:, None, None])
    profiles = measure_hosts(images, PIXEL_SCALE).profiles
    r0, r1 = PROFILE_EDGES[:-1], PROFILE_EDGES[1:]
    # annulus mean of exp(-r / H) over the annulus' area, over the r flux within NORM_RADIUS (2 pi H^2 (1 - ...))
    mean = 2 * H**2 * ((1 + r0 / H) * np.exp(-r0 / H) - (1 + r1 / H) * np.exp(-r1 / H)) / (r1**2 - r0**2)
    x = NORM_RADIUS / H
    expected = mean / (2 * math.pi * H**2 * (1 - np.exp(-x) * (1 + x)))
    assert profiles.shape == (2, 3, len(PROFILE_EDGES) - 1)
    np.testing.assert_allclose(profiles[:, 1], np.broadcast_to(expected, (2, len(expected))), rtol=0.04)
    np.testing.assert_allclose(profiles[:, 0] / profiles[:, 1], 0.5, rtol=0.01)  # every band over the r flux
    np.testing.assert_allclose(profiles[:, 2] / profiles[:, 1], 2.0, rtol=0.01)


def test_a_host_redder_inside_gives_its_colour_gradients() -> None:
    inside = radii(SIZE, PIXEL_SCALE) < 1.0
    g = np.where(inside, 10 ** (-0.4 * 1.2), 10 ** (-0.4 * 0.9))  # g - r: 1.2 inside, 0.9 outside
    z = np.where(inside, 10 ** (0.4 * 0.8), 10 ** (0.4 * 0.6))  # r - z: 0.8 inside, 0.6 outside
    images = _exponential(np.random.default_rng(1), 3, np.stack([g, np.ones_like(g), z]))
    gradients = measure_hosts(images, PIXEL_SCALE).gradients
    np.testing.assert_allclose(gradients["g-r"], 0.3, atol=0.005)
    np.testing.assert_allclose(gradients["r-z"], 0.2, atol=0.005)


def _blob(peak: float, sigma_px: float, y: float, x: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma_px**2))


def test_injected_sources_beyond_4_arcsec_give_their_density_and_the_host_and_a_close_one_do_not_count() -> None:
    rng = np.random.default_rng(2)
    c = SIZE // 2
    outside = [(c + 25, c), (c - 30, c + 10), (c, c - 35), (c + 20, c + 30), (c - 25, c - 25), (c + 38, c - 38)]
    close = (c + 12, c)  # 3.1": a neighbour, but inside NEIGHBOUR_RADIUS
    light = _blob(50, 3.0, c, c) + sum(_blob(15, 1.2, y, x) for y, x in [*outside, close])
    images = np.stack([np.stack([light] * 3) + rng.normal(0, 1, (3, SIZE, SIZE)), rng.normal(0, 1, (3, SIZE, SIZE))])
    area = (radii(SIZE, PIXEL_SCALE) > NEIGHBOUR_RADIUS).sum() * (PIXEL_SCALE / 60) ** 2  # arcmin^2
    np.testing.assert_allclose(measure_hosts(images, PIXEL_SCALE).neighbours, [len(outside) / area, 0.0])


def test_white_noise_smoothed_along_x_gives_its_known_correlation_in_the_gap_table() -> None:
    white = np.random.default_rng(3).normal(0, 0.003, (12, 3, SIZE, SIZE + 1))
    smoothed = (white[..., :-1] + white[..., 1:]) / math.sqrt(2)  # pairs along x: 0.5 at lag x, 0 at y and diagonal
    table = gap_table({"smoothed": smoothed}).set_index("quantity")
    assert (table.loc["sky correlation, lag x", "n"] == 12).all()
    np.testing.assert_allclose(table.loc["sky correlation, lag x", "median"], 0.5, atol=0.02)
    np.testing.assert_allclose(table.loc["sky correlation, lag y", "median"], 0.0, atol=0.02)
    np.testing.assert_allclose(table.loc["sky correlation, lag diagonal", "median"], 0.0, atol=0.02)


def test_the_mock_lrg_hosts_are_inside_the_selection_cuts() -> None:
    cuts = V3ColorRelaxed(variant="v3_color_relaxed").model_dump()
    hosts = mock_lrg_hosts(SURVEY, SEED, 50, cuts)
    assert len(hosts) == 50 and cuts_mask(hosts, cuts).all()
    r, z = (22.5 - 2.5 * np.log10(hosts[f"FLUX_{b}"]) for b in "RZ")
    assert (z < cuts["z_mag_max"]).all() and (r - z > cuts["r_minus_z_min"]).all()


def test_scores_shifted_above_every_mock_score_are_all_flagged_and_the_ks_test_sees_it() -> None:
    mock = np.random.default_rng(4).normal(0, 1, 1000)
    table = score_table({MOCK_SET: mock, "same": mock[::-1].copy(), "shifted": mock + 10}).set_index("set")
    assert table.loc["same", "ks_statistic"] == 0 and table.loc["same", "real_flagged"] == pytest.approx(0.01)
    assert table.loc["shifted", "ks_statistic"] == 1 and table.loc["shifted", "real_flagged"] == 1
    assert table["resolved"].all() and (table["mock_flagged"] == 0.01).all()
    assert not score_table({MOCK_SET: mock[:500], "same": mock[:500]})["resolved"].any()  # 500 x 1 % < 10
