"""Real DR10 .npz cutouts and `darkhalo score` inputs to cutout-service FITS and catalog rows; the brick grid
against real catalogs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

from darkhalo.cli import app
from darkhalo.real_inputs import read_input
from darkhalo.resampling import resample
from darkhalo.surveys.bricks import brick_id, brick_name
from darkhalo.surveys.columns import SWEEP_COLUMNS
from darkhalo.surveys.cutout_fits import FolderCutoutProvider, read_cutout_fits
from darkhalo.surveys.legacy import read_catalog
from darkhalo.surveys.npz_cutouts import (
    PLACEHOLDER_RADEC,
    NpzCutoutError,
    convert_npz_folder,
    convert_real_input,
    psfex_psfsize,
    read_npz,
)


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


def test_a_real_input_becomes_resampled_cutouts_with_placeholder_rows(real_dir: Path, tmp_path: Path) -> None:
    source = real_dir / "des_lrg_hosts" / "lrg_hosts_sub4.yaml"  # 91 x 91 at 0.263"/pix, no coordinates
    hosts, written, refused = convert_real_input(source, tmp_path, psfex_psfsize(real_dir / "psf" / "psfex"))
    assert len(hosts) == len(written) == 4 and not refused
    assert hosts["OBJID"].tolist() == [0, 1, 2, 3] and (hosts[["RA", "DEC"]] == PLACEHOLDER_RADEC).all().all()
    assert [p.name for p in written] == [f"0_{hosts['BRICKID'][0]}_{i}.fits" for i in range(4)]
    real = read_input(source)
    whole = resample(real.images, real.pixel_scale, 0.262, 91).stamps  # the whole field, host on pixel 45
    for i, path in enumerate(written):
        assert np.array_equal(read_cutout_fits(path).image, whole[i, :, 13:77, 13:77])
        header = fits.getheader(path)
        assert header["OBJNAME"] == str(i) and header["POSITION"].startswith("placeholder") and "RA" not in header
    again = read_catalog(tmp_path / "hosts.parquet")
    assert list(again.columns) == list(SWEEP_COLUMNS) and (again["FLUX_Z"] > again["FLUX_R"]).all()
    stamps = FolderCutoutProvider(tmp_path / "cutouts").cutouts(hosts, 64)
    assert (stamps.invvar > 0).all() and np.array_equal(stamps.images[0], read_cutout_fits(written[0]).image)


def test_a_real_image_without_enough_data_is_left_out_by_name(real_dir: Path, tmp_path: Path) -> None:
    ps1 = real_dir / "ps1_sled_lenses"
    with np.load(ps1 / "ps1_sled_lensed_galaxies_sub6.npz") as data:
        arrays = dict(data)
    arrays["images"][4, :, :30] = np.nan
    np.savez(tmp_path / "holes.npz", **arrays)
    (tmp_path / "holes.yaml").write_text(
        (ps1 / "galaxies_sub6.yaml").read_text().replace("ps1_sled_lensed_galaxies_sub6", "holes")
    )
    hosts, _, refused = convert_real_input(tmp_path / "holes.yaml", tmp_path / "out", {"g": 1.4, "r": 1.3, "z": 1.2})
    assert hosts["OBJID"].tolist() == [0, 1, 2, 3, 5]
    assert len(refused) == 1 and refused[0].startswith(f"{tmp_path / 'holes.yaml'} [4] {arrays['names'][4]}: ")
