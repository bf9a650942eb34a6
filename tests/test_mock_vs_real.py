"""The mock survey beside the real files: per band, the background sigma and the PSF's encircled
energy at 1", 2", 3", 5" (against that band's PSFEx models) sit inside the spread of the real files."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REAL

from darkhalo.spec import MockSurvey
from darkhalo.surveys.realism import comparison, markdown, mock_hosts

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

    result = CliRunner().invoke(app, ["survey", "compare-real", str(REAL), "--hosts", "4"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("| quantity | band |") and result.output.count("\n") == 2 + 3 + 12
