"""``darkhalo score`` on real PS1 and DES cutouts (tests/data/real) with a small model trained here."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from stamps_factory import one_torch_thread, toy_stamps, write_shards
from typer.testing import CliRunner

from darkhalo.cli import app
from darkhalo.real_inputs import RealInputError, read_input
from darkhalo.resampling import resample
from darkhalo.spec import TrainSpec
from darkhalo.surveys.cutout_fits import read_cutout_fits, write_cutout_fits
from darkhalo.surveys.noise import sky_correlation
from darkhalo.training.loop import fit
from darkhalo.training.store import load_store
from data_contracts.real_scores import RealScores, RefusedImages
from data_contracts.survey import PIXEL_SCALE

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
REAL = Path(__file__).parent / "data" / "real"
PS1 = REAL / "ps1_sled_lenses" / "galaxies_sub6.yaml"
DES = REAL / "des_lrg_hosts" / "lrg_hosts_sub4.yaml"
SPECS = Path(__file__).parents[1] / "specs"
FLUX_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: the embedded spec (64x64 stamps) and a resnet18 trained one epoch on 32x32 toy stamps."""
    folder = tmp_path_factory.mktemp("run")
    images, labels = toy_stamps(96, 32, seed=0)
    write_shards(folder / "toy", images, labels, ["train"] * 64 + ["val"] * 32, rows_per_shard=50)
    cpu = torch.device("cpu")
    train, val = load_store(folder / "toy", "train", 32, cpu), load_store(folder / "toy", "val", 32, cpu)
    spec = TrainSpec(arch="resnet18", lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=1, precision="fp32")
    fit(train, val, spec, seed=0, checkpoint_dir=folder / "checkpoints", min_expected_fp=10.0)
    (folder / "train").mkdir()
    shutil.copy(folder / "checkpoints" / "epoch-001.pt", folder / "train" / "model.pt")
    shutil.copy(SPECS / "embedded.yaml", folder / "spec.yaml")
    return folder


def _point_source(n: int, dx: float, dy: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    image = np.exp(-((xx - (n - 1) / 2 - dx) ** 2 + (yy - (n - 1) / 2 - dy) ** 2) / (2 * sigma**2))
    return image / image.sum()


def test_a_resampled_point_source_keeps_its_flux_and_its_place() -> None:
    images = np.stack([_point_source(80, 3.3, -2.1, 1.5)] * 3)[None] * 7.0
    done = resample(images, 0.25, PIXEL_SCALE, 64)
    assert np.allclose(done.flux_ratio, 1, atol=FLUX_TOLERANCE)
    assert abs(done.stamps[0].sum(axis=(1, 2)) / 7.0 - 1).max() < FLUX_TOLERANCE
    yy, xx = np.mgrid[:64, :64]
    stamp = done.stamps[0, 1]
    centroid = np.array([(stamp * xx).sum(), (stamp * yy).sum()]) / stamp.sum() - 32
    assert np.allclose(centroid, np.array([3.3, -2.1]) * 0.25 / PIXEL_SCALE, atol=0.02)
    assert done.filled_fraction[0] == 0


def test_at_equal_pixel_scales_the_pixels_are_copied_onto_the_host_pixel() -> None:
    # an odd cutout's centre pixel is the stamp's pixel 32: the noise is neither smoothed nor shifted
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 3, 91, 91))
    done = resample(images, PIXEL_SCALE, PIXEL_SCALE, 64)
    assert np.allclose(done.stamps, images[:, :, 45 - 32 : 45 + 32, 45 - 32 : 45 + 32], atol=1e-5)
    assert np.abs(sky_correlation(done.stamps)["x"]).max() < 0.05


def test_resampled_real_cutouts_keep_their_flux() -> None:
    for source in (PS1, DES):
        real = read_input(source)
        done = resample(real.images, real.pixel_scale, PIXEL_SCALE, 64)
        assert np.abs(done.flux_ratio - 1).max() < FLUX_TOLERANCE, source
        assert done.stamps.shape == (len(real.images), 3, 64, 64) and np.isfinite(done.stamps).all()
    # the PS1 cutout with 3.8 % NaN pixels has about that share filled, the others (almost) none
    ps1 = resample(read_input(PS1).images, 0.25, PIXEL_SCALE, 64)
    assert 0.02 < ps1.filled_fraction[5] < 0.05 and ps1.filled_fraction[:4].max() < 1e-9


def test_the_cli_scores_real_ps1_and_des_cutouts_end_to_end(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["score", str(run_dir), str(PS1), str(DES), "--out", str(tmp_path), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    scores = RealScores.validate(pd.read_parquet(tmp_path / "scores.parquet"))
    assert len(scores) == 10 and set(scores["input"]) == {str(PS1), str(DES)}
    des = scores[scores["input"] == str(DES)]
    assert "J1150+1016" in set(scores["name"]) and sorted(des["name"]) == ["0", "1", "2", "3"]
    assert (des["name"].to_numpy() == des["index"].astype(str).to_numpy()).all()
    assert RefusedImages.validate(pd.read_csv(tmp_path / "refused.csv", dtype={"name": str, "index": np.int64})).empty
    page = (tmp_path / "gallery.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and scores["name"].iloc[0] in page


def test_an_image_with_too_many_nan_pixels_is_refused_by_name(run_dir: Path, tmp_path: Path) -> None:
    with np.load(REAL / "ps1_sled_lenses" / "ps1_sled_lensed_galaxies_sub6.npz") as data:
        arrays = dict(data)
    arrays["images"][2, 1, :20] = np.nan  # 25 % of band r, 8 % of the image
    np.savez(tmp_path / "holes.npz", **arrays)
    (tmp_path / "holes.yaml").write_text(PS1.read_text().replace("ps1_sled_lensed_galaxies_sub6", "holes"))
    result = CliRunner().invoke(
        app, ["score", str(run_dir), str(tmp_path / "holes.yaml"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    refused = pd.read_csv(tmp_path / "out" / "refused.csv")
    assert refused[["name", "index"]].values.tolist() == [["ACSJ130042.73+280523.3", 2]]
    assert "has no data (limit 5%)" in refused["reason"].iloc[0]
    assert "refused:" in result.output and "ACSJ130042.73+280523.3" in result.output
    assert len(pd.read_parquet(tmp_path / "out" / "scores.parquet")) == 5


def test_a_cutout_narrower_than_the_stamp_is_scored_only_where_its_input_allows_the_fill(
    run_dir: Path, tmp_path: Path
) -> None:
    """A 64-pixel crop at 0.25" (16", as the PS1 lensed quasars) leaves ~9 % of a 64 x 0.262" stamp without data."""
    with np.load(REAL / "ps1_sled_lenses" / "ps1_sled_lensed_galaxies_sub6.npz") as data:
        arrays = dict(data)
    arrays["images"] = arrays["images"][:, :, 8:72, 8:72]
    np.savez(tmp_path / "narrow.npz", **arrays)
    text = PS1.read_text().replace("ps1_sled_lensed_galaxies_sub6", "narrow")
    (tmp_path / "strict.yaml").write_text(text)
    (tmp_path / "lenient.yaml").write_text(text + "max_filled_fraction: 0.12\n")
    inputs = [str(tmp_path / "strict.yaml"), str(tmp_path / "lenient.yaml")]
    result = CliRunner().invoke(app, ["score", str(run_dir), *inputs, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    scores, refused = (
        pd.read_parquet(tmp_path / "out" / "scores.parquet"),
        pd.read_csv(tmp_path / "out" / "refused.csv"),
    )
    assert (refused["input"] == inputs[0]).sum() == 6 and (scores["input"] == inputs[1]).sum() == 6
    assert scores["filled_fraction"].between(0.05, 0.12).all()
    (tmp_path / "greedy.yaml").write_text(text + "max_filled_fraction: 0.5\n")
    with pytest.raises(
        RealInputError, match=r"greedy\.yaml: npz\.max_filled_fraction: Input should be less than or equal to 0\.25"
    ):
        read_input(tmp_path / "greedy.yaml")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.replace("ps1_sled_lensed_galaxies_sub6.npz", "absent.npz"), r"absent\.npz: no such file"),
        (lambda d: d.replace("[g, r, z]", "[g, r, i]"), r"bands: unknown band 'i'"),
        (lambda d: d + "images_key: ra\n", r"sub6\.npz: ra: expected shape \(N, 3, H, W\), got \(6,\)"),
        (lambda d: d.replace("[g, r, z]", "[g, r]"), r"input\.yaml: bands: needs each of g, r, z once, got g, r"),
        (lambda d: d.replace("pixel_scale: 0.25", "pixel_scale: -1"), r"pixel_scale: Input should be greater than 0"),
    ],
)
def test_a_bad_input_exits_2_naming_the_file_and_field(tmp_path: Path, run_dir: Path, edit, message: str) -> None:
    shutil.copy(PS1.parent / "ps1_sled_lensed_galaxies_sub6.npz", tmp_path)
    description = tmp_path / "input.yaml"
    description.write_text(edit(PS1.read_text()))
    result = CliRunner().invoke(app, ["score", str(run_dir), str(description), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.output
    assert not (tmp_path / "out").exists()


def test_a_missing_description_or_a_flat_cube_is_named(tmp_path: Path) -> None:
    with pytest.raises(RealInputError, match=r"nowhere\.yaml: no such file"):
        read_input(tmp_path / "nowhere.yaml")
    for name in ("g_sub4.fits", "r_sub4.fits"):
        shutil.copy(DES.parent / name, tmp_path)
    fits.PrimaryHDU(np.zeros((4, 91), dtype=np.float32)).writeto(tmp_path / "z_sub4.fits", overwrite=True)
    shutil.copy(DES, tmp_path)
    with pytest.raises(
        RealInputError, match=r"z_sub4\.fits: primary HDU: expected a cube \(N, H, W\), got shape \(4, 91\)"
    ):
        read_input(tmp_path / DES.name)


@pytest.fixture(scope="module")
def mock_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 64 x 64 cutout FITS of mock galaxies as ``darkhalo survey mock --cutouts`` writes them (host on 32)."""
    out = tmp_path_factory.mktemp("mock")
    done = CliRunner().invoke(app, ["survey", "mock", "--n", "600", "--seed", "4", "--out", str(out), "--cutouts", "4"])
    assert done.exit_code == 0, done.output
    return out / "cutouts"


def _copy(folder: Path, target: Path) -> list[Path]:
    target.mkdir()
    return [Path(shutil.copy(path, target)) for path in sorted(folder.glob("*.fits"))]


def test_a_cutout_folder_is_read_with_its_hosts_on_the_stamps_host_pixel(mock_folder: Path) -> None:
    real = read_input(mock_folder)
    files = sorted(mock_folder.glob("*.fits"))
    assert real.names == [p.stem for p in files] and real.pixel_scale == pytest.approx(PIXEL_SCALE)
    assert real.images.shape == (4, 3, 65, 65)  # padded until the host (CRPIX 33 of 64) is the centre
    done = resample(real.images, real.pixel_scale, PIXEL_SCALE, 64)
    assert np.array_equal(done.stamps, np.stack([read_cutout_fits(p).image for p in files]))
    assert (done.filled_fraction == 0).all()


def test_the_cli_scores_a_bare_cutout_folder_and_a_described_one(
    run_dir: Path, mock_folder: Path, tmp_path: Path
) -> None:
    described = tmp_path / "folder.yaml"
    described.write_text(f"kind: cutout_folder\ndir: {mock_folder}\n")
    inputs = [str(mock_folder), str(described)]
    result = CliRunner().invoke(
        app, ["score", str(run_dir), *inputs, "--out", str(tmp_path / "out"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    scores = RealScores.validate(pd.read_parquet(tmp_path / "out" / "scores.parquet"))
    stems = sorted(p.stem for p in mock_folder.glob("*.fits"))
    for source in inputs:
        assert sorted(scores.loc[scores["input"] == source, "name"]) == stems
    by_name = scores.groupby("name")["score"].agg(["min", "max"])
    assert (by_name["min"] == by_name["max"]).all()  # both inputs read the same pixels
    assert (scores["filled_fraction"] == 0).all()


def test_a_file_with_too_much_zero_invvar_is_refused_by_name(run_dir: Path, mock_folder: Path, tmp_path: Path) -> None:
    files = _copy(mock_folder, tmp_path / "cutouts")
    cut = read_cutout_fits(files[1])
    invvar = cut.invvar.copy()
    invvar[:, :8] = 0  # 12.5 % of the stamp without data
    write_cutout_fits(files[1], cut.image, invvar)
    result = CliRunner().invoke(app, ["score", str(run_dir), str(tmp_path / "cutouts"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    refused = pd.read_csv(tmp_path / "out" / "refused.csv")
    assert refused["name"].tolist() == [files[1].stem] and "12.5% of its stamp has no data" in refused["reason"][0]
    assert f"refused: {tmp_path / 'cutouts'} [1] {files[1].stem}" in result.output
    assert len(pd.read_parquet(tmp_path / "out" / "scores.parquet")) == 3


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_a_bad_file_in_a_cutout_folder_exits_2_naming_it(run_dir: Path, mock_folder: Path, tmp_path: Path) -> None:
    files = _copy(mock_folder, tmp_path / "cutouts")
    files[2].write_bytes(files[2].read_bytes()[:3000])
    result = CliRunner().invoke(app, ["score", str(run_dir), str(tmp_path / "cutouts"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"{files[2]}: not a readable FITS file" in result.output
    assert not (tmp_path / "out").exists()


def test_a_cutout_folder_of_mixed_layouts_or_an_off_grid_host_is_refused_naming_the_file(
    mock_folder: Path, tmp_path: Path
) -> None:
    files = _copy(mock_folder, tmp_path / "cutouts")
    first = read_cutout_fits(files[0])
    write_cutout_fits(files[3], first.image[:, 1:, 1:], first.invvar[:, 1:, 1:])
    with pytest.raises(
        RealInputError,
        match=rf"{files[3].name}: 63x63 pixels, the host at 0-based \(31, 31\), .* unlike {files[0].name}'s 64x64",
    ):
        read_input(tmp_path / "cutouts")
    write_cutout_fits(files[3], first.image, first.invvar, centre=(31.25, 32))
    with pytest.raises(RealInputError, match=rf"{files[3].name}: CRPIX puts the host at 0-based pixel 31.25 of 64"):
        read_input(tmp_path / "cutouts")
    files[3].unlink()
    with fits.open(files[2], mode="update") as hdus:  # another survey's pixels: 0.25"
        hdus[0].header["CD1_1"], hdus[0].header["CD2_2"] = -0.25 / 3600, 0.25 / 3600
    with pytest.raises(RealInputError, match=rf'{files[2].name}: .* 0.25"/pix, unlike {files[0].name}'):
        read_input(tmp_path / "cutouts")
    (tmp_path / "declared.yaml").write_text("kind: cutout_folder\ndir: cutouts\npixel_scale: 0.262\n")
    assert read_input(tmp_path / "declared.yaml").pixel_scale == 0.262  # a declared scale holds for every file
