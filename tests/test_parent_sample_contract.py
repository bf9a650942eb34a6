"""The parent-sample contract: a valid sample passes; each single corruption fires only its own check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from catalogs import synthetic_catalog

from darkhalo.spec import DesiLrg, V3ColorRelaxed
from data_contracts.parent_sample import FINDING_ID, check, cuts_mask

V3 = V3ColorRelaxed(variant="v3_color_relaxed").model_dump()
SOUTH = DesiLrg(variant="desi_lrg_south").model_dump()


def _sample(selection: dict) -> pd.DataFrame:
    catalog = synthetic_catalog(4000, seed=11)
    sample = catalog[cuts_mask(catalog, selection)].reset_index(drop=True)
    return sample.assign(KNOWN_LENS=False, KNOWN_LENS_NAME="")


def _checks(finding) -> set[str]:
    return {row["check"] for row in finding.evidence}


@pytest.mark.parametrize("selection", [V3, SOUTH], ids=["v3", "desi_south"])
def test_a_valid_parent_sample_passes(selection: dict) -> None:
    sample = _sample(selection)
    assert len(sample) > 50
    finding = check(sample, selection)
    assert finding.passed and finding.id == FINDING_ID


def test_a_duplicated_key_fires_only_the_uniqueness_check() -> None:
    sample = _sample(V3)
    sample.loc[1, ["BRICKID", "OBJID"]] = sample.loc[0, ["BRICKID", "OBJID"]].to_numpy()
    finding = check(sample, V3)
    assert not finding.passed
    assert _checks(finding) == {"multiple_fields_uniqueness"}
    assert finding.n_offending == 2


@pytest.mark.parametrize("value", [0.0, -1.0, np.nan])
def test_a_non_positive_or_missing_psfsize_r_fires_only_its_check(value: float) -> None:
    sample = _sample(V3)
    sample.loc[4, "PSFSIZE_R"] = np.float32(value)
    finding = check(sample, V3)
    assert not finding.passed
    expected = {"not_nullable"} if np.isnan(value) else {"greater_than(0)"}
    assert _checks(finding) == expected
    assert {row["column"] for row in finding.evidence} == {"PSFSIZE_R"}


def test_a_missing_psfsize_r_column_fails() -> None:
    finding = check(_sample(V3).drop(columns=["PSFSIZE_R"]), V3)
    assert not finding.passed and _checks(finding) == {"column_in_dataframe"}


def test_a_v3_row_outside_its_cuts_fires_only_the_cuts_check() -> None:
    sample = _sample(V3)
    sample.loc[2, "FLUX_Z"] = np.float32(10 ** (-0.4 * (20.5 - 22.5)))  # z = 20.5, fainter than 20.4
    finding = check(sample, V3)
    assert not finding.passed and _checks(finding) == {"inside_cuts"}
    assert [row["index"] for row in finding.evidence] == [2]


@pytest.mark.parametrize(
    ("column", "value"),
    [("MASKBITS", 1 << 12), ("NOBS_G", 0), ("GAIA_PHOT_G_MEAN_MAG", 17.0), ("FLUX_IVAR_W1", 1e-6)],
)
def test_a_desi_row_failing_one_quality_cut_fires_only_the_cuts_check(column: str, value: float) -> None:
    sample = _sample(SOUTH)
    sample.loc[3, column] = np.asarray(value).astype(sample[column].dtype)
    finding = check(sample, SOUTH)
    assert not finding.passed and _checks(finding) == {"inside_cuts"}
    assert [row["index"] for row in finding.evidence] == [3]
