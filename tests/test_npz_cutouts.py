"""Real DR10 .npz cutouts to cutout-service FITS and catalog rows; the brick grid against real catalogs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from darkhalo.cli import app
from darkhalo.surveys.bricks import brick_id, brick_name
from darkhalo.surveys.columns import SWEEP_COLUMNS
from darkhalo.surveys.cutout_fits import FolderCutoutProvider, read_cutout_fits
from darkhalo.surveys.legacy import read_catalog
from darkhalo.surveys.npz_cutouts import NpzCutoutError, convert_npz_folder, psfex_psfsize, read_npz


@pytest.mark.parametrize("name", ["sweep-310m005-320p000.fits", "sweep-330m005-340p000.fits", "tractor-1054p567.fits"])
def test_brick_id_and_name_match_real_catalog_rows(real_dir: Path, name: str) -> None:
    table = Table.read(real_dir / "catalogs" / name)
    cols = {c.upper(): c for c in table.colnames}
    ra, dec = np.asarray(table[cols["RA"]]), np.asarray(table[cols["DEC"]])
    assert np.array_equal(brick_id(ra, dec), np.asarray(table[cols["BRICKID"]]))
    names = np.char.strip(np.asarray(table[cols["BRICKNAME"]]).astype(str))
    assert list(brick_name(ra, dec)) == list(names)


@pytest.fixture(scope="module")
def converted(real_dir: Path, tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("npz")
    hosts, written = convert_npz_folder(real_dir / "cutouts", out, psfex_psfsize(real_dir / "psf" / "psfex"))
    return out, hosts, written


def test_every_npz_becomes_a_centred_64_pixel_fits_the_folder_provider_reads(real_dir: Path, converted) -> None:
    out, hosts, written = converted
    npz = sorted((real_dir / "cutouts").glob("*.npz"))
    assert len(written) == len(npz) == len(hosts) == 6
    for path, fits_path in zip(npz, written, strict=True):
        cube, meta = read_npz(path)
        cut = read_cutout_fits(fits_path)
        assert cut.image.shape == (3, 64, 64)
        assert np.array_equal(cut.image, cube[:, 18:82, 18:82])  # pixel (32, 32) is the npz's centre (50, 50)
        assert fits_path.name == f"10000_{brick_id(np.array([meta['ra']]), np.array([meta['dec']]))[0]}_" + (
            f"{meta['galaxy_id'].split('_')[1]}.fits"
        )
    stamps = FolderCutoutProvider(out / "cutouts").cutouts(hosts, 64)
    assert stamps.images.shape == (6, 3, 64, 64) and (stamps.invvar > 0).all()


def test_the_catalog_rows_have_the_sweep_columns_and_measured_grz_fluxes(real_dir: Path, converted) -> None:
    out, hosts, _ = converted
    again = read_catalog(out / "hosts.parquet")  # what the legacy survey stage ingests
    assert list(again.columns) == list(SWEEP_COLUMNS)
    assert list(hosts["BRICKNAME"]) == ["0001m040", "0001m060", "0001m372", "0003m005", "0006p270", "3598m030"]
    assert (hosts[["FLUX_G", "FLUX_R", "FLUX_Z"]] > 0).all().all()
    assert (hosts["FLUX_Z"] > hosts["FLUX_G"]).all()  # red lens galaxies
    assert (hosts["FIBERFLUX_R"] < hosts["FLUX_R"]).all()
    assert np.allclose(hosts["PSFSIZE_R"], psfex_psfsize(real_dir / "psf" / "psfex")["r"])
    assert (hosts[["FLUX_W1", "FLUX_IVAR_W1"]] == 0).all().all()  # not measured: the sweeps' "no data"


def test_a_bad_npz_is_refused_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, cutout=np.zeros((101, 101, 2), np.float32), meta_ra=1.0)
    with pytest.raises(NpzCutoutError, match=r"bad\.npz: cutout must be \(S, S, 3\)"):
        read_npz(bad)
    nan = tmp_path / "nan.npz"
    cube = np.zeros((101, 101, 3), np.float32)
    cube[3, 4, 1] = np.nan
    np.savez(nan, cutout=cube)
    with pytest.raises(NpzCutoutError, match=r"nan\.npz: 1 non-finite pixels"):
        read_npz(nan)


def test_the_cli_converts_a_folder_and_exits_2_on_an_empty_one(real_dir: Path, tmp_path: Path) -> None:
    psfex = str(real_dir / "psf" / "psfex")
    done = CliRunner().invoke(
        app, ["survey", "cutouts-from-npz", str(real_dir / "cutouts"), "--out", str(tmp_path), "--psfex-dir", psfex]
    )
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "cutouts").glob("*.fits"))) == 6 and (tmp_path / "hosts.parquet").is_file()
    args = ["survey", "cutouts-from-npz", str(tmp_path / "cutouts"), "--out", str(tmp_path / "x")]
    empty = CliRunner().invoke(app, [*args, "--psfex-dir", psfex])
    assert empty.exit_code == 2 and "no .npz cutouts" in empty.output
