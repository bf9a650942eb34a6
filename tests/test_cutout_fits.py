"""Cutout-service FITS: round trip, band order from the BANDS header, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.spec import LegacySurvey
from darkhalo.surveys.cutout_fits import (
    CutoutFileError,
    cutout_name,
    read_cutout_fits,
    write_cutout_fits,
)
from darkhalo.surveys.provider import provider_for


def _cube(seed: int = 0, shape: tuple[int, ...] = (3, 20, 20)) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.003, shape).astype(np.float32)


def test_round_trip_keeps_pixels_invvar_and_header(tmp_path: Path) -> None:
    image, invvar = _cube(1), np.abs(_cube(2)) + 1e4
    path = tmp_path / "a.fits"
    write_cutout_fits(path, image, invvar, ra=150.5, dec=2.25)
    cut = read_cutout_fits(path)
    assert np.array_equal(cut.image, image) and np.array_equal(cut.invvar, invvar)
    header = fits.getheader(path)
    assert header["BANDS"] == "grz" and header["RA"] == 150.5 and header["NAXIS3"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.fits"]  # no temporary left behind


def test_planes_are_put_in_grz_order_from_the_bands_header(tmp_path: Path) -> None:
    image = _cube(3)
    path = tmp_path / "zgr.fits"
    hdu = fits.PrimaryHDU(image[[2, 0, 1]])
    hdu.header["BANDS"] = "zgr"
    hdu.writeto(path)
    cut = read_cutout_fits(path)
    assert np.array_equal(cut.image, image) and cut.invvar is None


def _write_raw(path: Path, data: np.ndarray, bands: str, invvar: np.ndarray | None = None) -> Path:
    hdu = fits.PrimaryHDU(data)
    hdu.header["BANDS"] = bands
    hdus = [hdu] + ([fits.ImageHDU(invvar, name="INVVAR")] if invvar is not None else [])
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.mark.parametrize(
    ("data", "bands", "invvar", "message"),
    [
        (_cube(shape=(3, 8, 8)), "grr", None, "missing band"),
        (_cube(shape=(2, 8, 8)), "gr", None, "missing band"),
        (_cube(shape=(8, 8)), "g", None, "cube"),
        (_cube(shape=(3, 8, 8)), "gr", None, "does not name"),
        (_cube(shape=(3, 8, 8)), "grz", np.ones((3, 4, 4), np.float32), "INVVAR shape"),
        (np.where(np.eye(8, dtype=bool), np.nan, _cube(shape=(3, 8, 8))).astype(np.float32), "grz", None, "non-finite"),
        (_cube(shape=(3, 8, 8)), "grz", -np.ones((3, 8, 8), np.float32), "INVVAR has negative"),
    ],
    ids=["repeated-band", "two-bands", "2-D", "bands-mismatch", "invvar-shape", "nan", "negative-invvar"],
)
def test_bad_files_fail_naming_the_file(tmp_path: Path, data, bands: str, invvar, message: str) -> None:
    path = _write_raw(tmp_path / "bad.fits", data, bands, invvar)
    with pytest.raises(CutoutFileError, match=message) as info:
        read_cutout_fits(path)
    assert str(path) in str(info.value)


def test_a_file_that_is_not_fits_is_named(tmp_path: Path) -> None:
    path = tmp_path / "junk.fits"
    path.write_text("not fits")
    with pytest.raises(CutoutFileError, match=r"junk\.fits"):
        read_cutout_fits(path)


def test_the_folder_provider_serves_the_central_stamp_of_each_host(tmp_path: Path) -> None:
    import pandas as pd

    hosts = pd.DataFrame(
        {"RELEASE": [10000, 10000], "BRICKID": [5, 6], "OBJID": [1, 2]}
        | {"PSFSIZE_G": [1.5, 1.6], "PSFSIZE_R": [1.3, 1.2], "PSFSIZE_Z": [1.1, 1.0]}
    )
    cubes = [_cube(10, (3, 40, 40)), _cube(11, (3, 40, 40))]
    for i, cube in enumerate(cubes):
        write_cutout_fits(tmp_path / cutout_name(hosts.iloc[i]), cube, np.full_like(cube, 9e4))
    survey = LegacySurvey(kind="legacy", catalogs=["x.fits"], cutouts={"dir": tmp_path})
    stamps = provider_for(survey, 0).cutouts(hosts, 16)
    assert np.array_equal(stamps.images[1], cubes[1][:, 12:28, 12:28])
    assert np.allclose(stamps.psf_fwhm[0], [1.5, 1.3, 1.1]) and (stamps.invvar == 9e4).all()
    with pytest.raises(CutoutFileError, match="smaller than the 64x64"):
        provider_for(survey, 0).cutouts(hosts, 64)
    with pytest.raises(CutoutFileError, match=r"10000_7_3\.fits"):
        provider_for(survey, 0).cutouts(pd.DataFrame({"RELEASE": [10000], "BRICKID": [7], "OBJID": [3]}), 16)


@settings(max_examples=25, deadline=None)
@given(
    order=st.permutations("grz"),
    side=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_band_order_reads_back_as_grz(tmp_path_factory, order: list[str], side: int, seed: int) -> None:
    image = _cube(seed, (3, side, side))
    path = tmp_path_factory.mktemp("fits") / "c.fits"
    planes = ["grz".index(b) for b in order]
    _write_raw(path, image[planes], "".join(order), np.abs(image[planes]))
    cut = read_cutout_fits(path)
    assert np.array_equal(cut.image, image) and np.array_equal(cut.invvar, np.abs(image))
