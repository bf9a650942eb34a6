"""The mock catalog: deterministic blocks, the real sweeps' names and dtypes, LRG cuts that work."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from conftest import REAL, spec_data
from scipy.spatial import cKDTree

from darkhalo.spec import MockSurvey, SpecError, spec_from_dict
from darkhalo.surveys.columns import KEY, SWEEP_COLUMNS
from darkhalo.surveys.mock import BLOCK_ROWS, brick_of, mock_catalog, n_blocks

SURVEY = MockSurvey(kind="mock", n_objects=30_000)


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return mock_catalog(SURVEY, 11, 0)


def _mag(flux: pd.Series) -> np.ndarray:
    return 22.5 - 2.5 * np.log10(np.clip(flux.to_numpy(np.float64), 1e-9, None))


def test_a_block_is_bit_identical_on_rerun_and_changes_with_the_seed(catalog) -> None:
    again = mock_catalog(SURVEY, 11, 0)
    pd.testing.assert_frame_equal(catalog, again, check_exact=True)
    other_seed = mock_catalog(SURVEY, 12, 0)
    assert not np.array_equal(other_seed["RA"], catalog["RA"])


def test_blocks_cover_the_rows_once_and_refuse_a_block_out_of_range() -> None:
    survey = MockSurvey(kind="mock", n_objects=BLOCK_ROWS + 7)
    assert n_blocks(survey) == 2
    last = mock_catalog(survey, 1, 1)
    assert len(last) == 7 and list(last["OBJID"]) == list(range(BLOCK_ROWS, BLOCK_ROWS + 7))
    with pytest.raises(ValueError, match="block 2 is outside"):
        mock_catalog(survey, 1, 2)


def test_columns_and_dtypes_are_the_sweep_columns(catalog) -> None:
    assert list(catalog.columns) == list(SWEEP_COLUMNS)
    for name, dtype in SWEEP_COLUMNS.items():
        expected = object if dtype == "str" else np.dtype(dtype)
        assert catalog[name].dtype == expected, name
        if dtype == "str":
            assert all(isinstance(v, str) for v in catalog[name]), name
    numeric = catalog.select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(np.float64)).all()


@pytest.mark.parametrize("name", ["tractor-1054p567.fits", "sweep-310m005-320p000.fits"])
def test_names_and_dtypes_match_the_real_catalogs(catalog, name: str) -> None:
    real = Table.read(REAL / "catalogs" / name)
    real.rename_columns(real.colnames, [c.upper() for c in real.colnames])
    shared = [c for c in SWEEP_COLUMNS if c in real.colnames]
    assert len(shared) >= 30
    for column in shared:
        kind = real[column].dtype
        ours = catalog[column].dtype
        if kind.kind == "S":
            assert ours.kind == "O", column
        elif column == "MASKBITS":  # DR10 widened MASKBITS to int32 (DR8/DR9 files: int16)
            assert kind.kind == "i" and ours == np.int32
        else:
            assert (ours.kind, ours.itemsize) == (kind.kind, kind.itemsize), column


def test_keys_are_unique_and_bricknames_follow_brickid(catalog) -> None:
    assert not catalog.duplicated(list(KEY)).any()
    ids, names = brick_of(catalog["RA"].to_numpy(), catalog["DEC"].to_numpy())
    assert np.array_equal(ids, catalog["BRICKID"]) and list(names) == list(catalog["BRICKNAME"])
    pairs = catalog.groupby("BRICKID")["BRICKNAME"].nunique()
    assert (pairs == 1).all()
    # the name is the brick centre: within a brick of the object (0.25 deg rows, RA columns)
    ra_c = catalog["BRICKNAME"].str[:4].astype(int) / 10
    dec_c = catalog["BRICKNAME"].str[5:].astype(int) / 10 * np.where(catalog["BRICKNAME"].str[4] == "p", 1, -1)
    assert (np.abs(catalog["DEC"] - dec_c) < 0.25).all()
    assert (np.abs(catalog["RA"] - ra_c) * np.cos(np.radians(catalog["DEC"])) < 0.3).all()


def test_the_real_brick_naming_convention_is_reproduced() -> None:
    _, names = brick_of(np.array([105.4898, 314.6468]), np.array([56.6693, -3.3728]))
    assert list(names) == ["1054p567", "3145m032"]


def test_gen1_cuts_pick_mostly_lrgs_with_some_contamination(catalog) -> None:
    r, z, w1 = (_mag(catalog[f"FLUX_{b}"]) for b in ("R", "Z", "W1"))
    positive = (catalog[["FLUX_R", "FLUX_Z", "FLUX_W1"]] > 0).all(axis=1)
    picked = (catalog["TYPE"] != "PSF") & positive & (z < 20.4) & (r - z > 0.4) & (z - w1 > 0.8)
    types = catalog.loc[picked, "TYPE"].value_counts(normalize=True)
    lrg_share = types.get("DEV", 0) + types.get("SER", 0)
    assert picked.sum() > 1000
    assert 0.85 < lrg_share < 0.995


def test_desi_lrg_south_cuts_pick_mostly_lrgs(catalog) -> None:
    g, r, z, w1 = (_mag(catalog[f"FLUX_{b}"] / catalog[f"MW_TRANSMISSION_{b}"]) for b in ("G", "R", "Z", "W1"))
    zfiber = _mag(catalog["FIBERFLUX_Z"] / catalog["MW_TRANSMISSION_Z"])
    picked = (
        (z - w1 > 0.8 * (r - z) - 0.6)
        & (zfiber < 21.6)
        & ((g - w1 > 2.9) | (r - w1 > 1.8))
        & ((((r - w1) > (w1 - 17.14) * 1.8) & ((r - w1) > (w1 - 16.33) * 1.0)) | (r - w1 > 3.3))
    )
    types = catalog.loc[picked, "TYPE"].value_counts(normalize=True)
    assert picked.sum() > 1000
    assert types.get("PSF", 0) < 0.01
    assert types.get("DEV", 0) + types.get("SER", 0) > 0.95


def test_psf_sizes_depths_and_shapes_look_like_dr10(catalog) -> None:
    for band, median in {"G": 1.5, "R": 1.3, "Z": 1.2}.items():
        size = catalog[f"PSFSIZE_{band}"]
        assert abs(size.median() - median) < 0.05
        assert 0.002 < (size > 2.0).mean() < 0.1
    assert np.corrcoef(catalog["PSFSIZE_G"], catalog["PSFSIZE_Z"])[0, 1] > 0.7
    depth_r = -2.5 * (np.log10(5 / np.sqrt(catalog["PSFDEPTH_R"])) - 9)
    assert 23.8 < depth_r.median() < 25.0
    assert (catalog["GALDEPTH_R"] < catalog["PSFDEPTH_R"]).all()
    assert (catalog[["NOBS_G", "NOBS_R", "NOBS_Z"]] >= 1).all().all()
    lrg = catalog[catalog["TYPE"].isin(["DEV", "SER"])]
    assert lrg["SHAPE_R"].quantile(0.1) > 0.5 and lrg["SHAPE_R"].quantile(0.9) < 3.0
    stars = catalog[catalog["TYPE"] == "PSF"]
    assert (stars["SHAPE_R"] == 0).all() and (stars["REF_CAT"].isin(["G2", ""])).all()
    assert (stars.loc[stars["REF_CAT"] == "G2", "GAIA_PHOT_G_MEAN_MAG"] > 10).all()
    assert ((catalog["MASKBITS"] & 2) > 0).mean() > 0


def test_extinction_is_a_smooth_field_and_transmission_follows_it(catalog) -> None:
    ebv = catalog["EBV"].to_numpy(np.float64)
    assert ebv.min() > 0.0 and ebv.max() < 0.15
    expected = 10 ** (-0.4 * 3.214 * ebv)
    assert np.allclose(catalog["MW_TRANSMISSION_G"], expected, rtol=1e-6)
    sky = catalog[["RA", "DEC"]].to_numpy()
    _, nearest = cKDTree(sky).query(sky, k=2)  # smooth: nearest neighbours differ far less than the field varies
    assert np.median(np.abs(ebv - ebv[nearest[:, 1]])) < 0.1 * ebv.std()


@pytest.mark.parametrize(
    ("survey", "field"),
    [
        ({"kind": "mock", "n_objects": -5}, "survey.n_objects"),
        ({"kind": "mock", "n_objects": 0}, "survey.n_objects"),
        ({"kind": "mock", "dec_range": [10, 5]}, "survey.dec_range"),
    ],
)
def test_impossible_mock_parameters_fail_naming_the_field(survey: dict, field: str) -> None:
    data = spec_data()
    data["survey"] = survey
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        spec_from_dict(data)
