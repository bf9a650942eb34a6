"""`darkhalo survey mock`: the catalog parquet and cutout FITS a user can open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from darkhalo.cli import app
from darkhalo.spec import MockSurvey
from darkhalo.surveys.columns import SWEEP_COLUMNS
from darkhalo.surveys.cutout_fits import cutout_name, read_cutout_fits
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import MockCutoutProvider

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
