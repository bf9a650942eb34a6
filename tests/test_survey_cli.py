"""`darkhalo survey mock`: the catalog parquet and cutout FITS a user can open; `darkhalo survey compare-real`:
the mock beside the repo's real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from darkhalo.cli import app
from darkhalo.spec import MockSurvey
from darkhalo.surveys.columns import SWEEP_COLUMNS
from darkhalo.surveys.cutout_fits import cutout_name, read_cutout_fits
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import MockCutoutProvider
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION

runner = CliRunner()


def test_survey_mock_writes_the_catalog_and_cutouts_of_its_first_galaxies(tmp_path: Path) -> None:
    args = ["survey", "mock", "--n", "600", "--seed", "4", "--out", str(tmp_path), "--cutouts", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    catalog = pd.read_parquet(tmp_path / "catalog")
    assert len(catalog) == 600 and list(catalog.columns) == list(SWEEP_COLUMNS)
    survey = MockSurvey(kind="mock", n_objects=600)
    galaxies = mock_catalog(survey, 4, 0).query("TYPE != 'PSF'").head(2)
    files = sorted((tmp_path / "cutouts").glob("*.fits"))
    assert sorted(p.name for p in files) == sorted(cutout_name(galaxies.iloc[i]) for i in range(2))
    expected = MockCutoutProvider(survey, 4).cutouts(galaxies, 64)
    cut = read_cutout_fits(tmp_path / "cutouts" / cutout_name(galaxies.iloc[1]))
    assert np.array_equal(cut.image, expected.images[1]) and np.array_equal(cut.invvar, expected.invvar[1])


def test_survey_mock_refuses_an_impossible_count(tmp_path: Path) -> None:
    result = runner.invoke(app, ["survey", "mock", "--n", "-5", "--seed", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--n" in result.output
    assert not (tmp_path / "catalog").exists()


REAL = Path(__file__).parent / "data" / "real"
DES_HOSTS = REAL / "des_lrg_hosts" / "lrg_hosts_sub4.yaml"  # 4 of data/real's 46 DES LRG cutouts


def _compare_real(tmp_path: Path, *extra: str) -> object:
    args = ["survey", "compare-real", str(REAL), "--hosts", "4", "--lrg-hosts", "20", "--hosts-input", str(DES_HOSTS)]
    return runner.invoke(app, [*args, "--out", str(tmp_path / "out"), *extra])


def test_compare_real_writes_its_three_files_and_prints_the_gap_and_the_ks_test_of_real_against_mock_hosts(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.pt"
    state = build_model("resnet18").state_dict()
    torch.save({"arch": "resnet18", "state_dict": state, "normalisation": NORMALISATION}, model)
    result = _compare_real(tmp_path, "--model", str(model))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["compare_real.json", "compare_real.md", "compare_real.png"]
    assert (out / "compare_real.md").read_text() == result.output
    assert (out / "compare_real.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| quantity | band | mock (20) | dr10_cutouts (6) | des_lrg_hosts (4) |" in result.output
    data = json.loads((out / "compare_real.json").read_text())
    assert "v3_color_relaxed cuts" in data["mock_hosts"]
    gap = pd.DataFrame(data["gap"])
    assert set(gap["set"]) == {"mock", "dr10_cutouts", "des_lrg_hosts"}
    assert set(gap["measure"]) == {"correlation", "profile", "gradient", "neighbours"}
    x = gap[gap["quantity"] == "sky correlation, lag x"].set_index(["set", "band"])["median"]
    assert (x["des_lrg_hosts"] > 0.15).all() and (x["mock"] < 0.05).all()  # resampled coadds vs white noise
    rows = [line for line in result.output.splitlines() if line.startswith("| des_lrg_hosts | 4 |")]
    assert len(rows) == 1 and "unresolved (20 mock hosts, needs 1000)" in rows[0]
    assert [s["set"] for s in data["scores"]] == ["dr10_cutouts", "des_lrg_hosts"]
    assert all(0 <= s["ks_statistic"] <= 1 and 0 <= s["ks_pvalue"] <= 1 and s["n_mock"] == 20 for s in data["scores"])


def test_compare_real_refuses_a_spec_without_a_mock_survey_and_a_missing_model(tmp_path: Path) -> None:
    legacy = Path(__file__).parents[1] / "specs" / "real_dr10_smoke.yaml"
    result = _compare_real(tmp_path, "--spec", str(legacy))
    assert result.exit_code == 2 and "compare-real needs a mock" in result.output
    result = _compare_real(tmp_path, "--model", str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "nothing" in result.output
    assert not (tmp_path / "out").exists()


def test_survey_cutouts_from_real_converts_an_input_and_exits_2_naming_a_bad_one(
    real_dir: Path, tmp_path: Path
) -> None:
    source = real_dir / "des_lrg_hosts" / "lrg_hosts_sub4.yaml"
    result = runner.invoke(app, ["survey", "cutouts-from-real", str(source), "--out", str(tmp_path), "--size", "48"])
    assert result.exit_code == 0, result.output
    hosts = pd.read_parquet(tmp_path / "hosts.parquet")
    files = sorted((tmp_path / "cutouts").glob("*.fits"))
    assert [p.name for p in files] == sorted(cutout_name(hosts.iloc[i]) for i in range(4))
    assert read_cutout_fits(files[0]).image.shape == (3, 48, 48)
    assert np.allclose(hosts["PSFSIZE_R"], 1.3)  # no --psfex-dir: the survey's median seeing
    bad = tmp_path / "bad.yaml"
    bad.write_text(source.read_text().replace("0.263", "-1"))
    refused = runner.invoke(app, ["survey", "cutouts-from-real", str(bad), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2
    assert "bad.yaml: fits_cubes.pixel_scale: Input should be greater than 0" in refused.output
    assert not (tmp_path / "x").exists()
