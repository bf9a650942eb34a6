"""Real sweep/tractor files to sweep-column parquet: every real file is read or refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import REAL

from darkhalo.surveys.columns import SWEEP_COLUMNS
from darkhalo.surveys.legacy import CatalogError, catalog_paths, ingest_catalogs, read_catalog

CATALOGS = REAL / "catalogs"
DR9 = CATALOGS / "tractor-1054p567.fits"
DR8_MISSING = "PSFSIZE_G, PSFSIZE_R, PSFSIZE_Z, SHAPE_R, SHAPE_E1, SHAPE_E2, SERSIC"

#: What each real file must give: None (accepted) or a pattern its refusal must match.
EXPECTED: dict[str, str | None] = {
    "tractor-1054p567.fits": None,  # DR9 north tractor: the full schema
    "sweep-310m005-320p000.fits": f"DR8-era catalog.*: {DR8_MISSING}$",
    "sweep-320m005-330p000.fits": f"DR8-era catalog.*: {DR8_MISSING}$",
    "sweep-330m005-340p000.fits": f"DR8-era catalog.*: {DR8_MISSING}$",
    "tractor-3301m002.fits": f"DR8-era catalog.*: {DR8_MISSING}$",
    "tractor-3301m007.fits": f"DR8-era catalog.*: {DR8_MISSING}$",
    "tractor-3303p000.fits": f"DR8-era catalog.*: {DR8_MISSING}$",
    "targets.fits": r"missing columns darkhalo needs: BRICKID, OBJID, TYPE, PSFSIZE_G, .*BRICKNAME, EBV, .*GAIA_PHOT",
    "tractor-1816p325-sub.fits": r"DECAM_FLUX are not supported\): RELEASE, FLUX_G, ",
}


def _sweep_dtype(dtype: str) -> str:
    return "object" if dtype == "str" else dtype


def test_every_real_catalog_file_has_an_expected_outcome() -> None:
    assert sorted(p.name for p in CATALOGS.glob("*.fits")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_real_file_is_read_or_refused_naming_file_and_columns(name: str) -> None:
    path = CATALOGS / name
    if EXPECTED[name] is None:
        frame = read_catalog(path)
        assert list(frame.columns) == list(SWEEP_COLUMNS)
        assert {c: str(frame[c].dtype) for c in frame} == {c: _sweep_dtype(d) for c, d in SWEEP_COLUMNS.items()}
        return
    with pytest.raises(CatalogError, match=EXPECTED[name]) as caught:
        read_catalog(path)
    assert str(caught.value).startswith(str(path))


def test_dr9_values_are_native_stripped_and_equal_to_the_fits() -> None:
    frame = read_catalog(DR9)
    raw = fits.getdata(DR9, 1)
    assert raw["FLUX_R"].dtype.byteorder == ">"  # FITS is big-endian ...
    for column in ("FLUX_R", "FLUX_IVAR_W1", "PSFSIZE_R", "RA", "NOBS_G", "MASKBITS"):
        assert frame[column].dtype.byteorder in "=|"  # ... the frame is native
        np.testing.assert_array_equal(frame[column].to_numpy(), raw[column].astype(frame[column].dtype))
    assert frame.loc[0, "TYPE"] == "REX" and frame.loc[0, "BRICKNAME"] == "1054p567"
    assert frame.loc[0, "PSFSIZE_R"] == pytest.approx(1.70693, rel=1e-5)


def _dr9_table() -> Table:
    return Table.read(DR9, hdu=1)


def test_lower_case_tractor_names_and_padded_strings_are_mapped(tmp_path: Path) -> None:
    table = _dr9_table()
    keep = [c for c in table.colnames if table[c].ndim == 1]
    table = table[keep]
    table["TYPE"] = ["REX "]  # padded, as in DR8 files
    table.rename_columns(table.colnames, [c.lower() for c in table.colnames])
    path = tmp_path / "tractor-lower.fits"
    table.write(path)
    frame = read_catalog(path)
    assert frame.loc[0, "TYPE"] == "REX"
    assert frame.loc[0, "OBJID"] == 2657


def test_optional_columns_get_their_documented_defaults(tmp_path: Path) -> None:
    table = _dr9_table()
    table.remove_columns(["FITBITS", "REF_CAT"])
    path = tmp_path / "no-fitbits.fits"
    table.write(path)
    frame = read_catalog(path)
    assert frame.loc[0, "FITBITS"] == 0 and frame.loc[0, "REF_CAT"] == ""
    assert frame["FITBITS"].dtype == np.int16


def test_only_brick_primary_tractor_rows_are_kept(tmp_path: Path) -> None:
    table = _dr9_table()
    table.add_row(table[0])
    table["OBJID"][1] = 2658
    table["BRICK_PRIMARY"][1] = False
    path = tmp_path / "tractor-two.fits"
    table.write(path)
    assert read_catalog(path)["OBJID"].tolist() == [2657]


def test_an_integer_that_does_not_fit_is_refused_naming_the_column(tmp_path: Path) -> None:
    table = _dr9_table()
    table["NOBS_G"] = np.array([70000], dtype=np.int32)
    path = tmp_path / "wide.fits"
    table.write(path)
    with pytest.raises(CatalogError, match="column NOBS_G has values outside int16"):
        read_catalog(path)


def test_ingest_writes_one_part_per_file_and_parquet_reads_back_as_is(tmp_path: Path) -> None:
    counts = ingest_catalogs([DR9, DR9], tmp_path / "catalog")
    assert counts == {str(DR9): 1}
    parts = sorted((tmp_path / "catalog").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    again = ingest_catalogs([parts[0]], tmp_path / "again")
    assert again == {str(parts[0]): 1}
    pd.testing.assert_frame_equal(read_catalog(parts[0]), read_catalog(DR9))
    assert not list((tmp_path / "catalog").glob(".*"))  # no temporary files left


def test_a_bad_file_among_good_ones_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"sweep-310m005-320p000\.fits: missing columns"):
        ingest_catalogs([DR9, CATALOGS / "sweep-310m005-320p000.fits"], tmp_path / "catalog")
    assert not (tmp_path / "catalog").exists()


def test_parquet_with_a_wrong_dtype_is_refused_naming_the_column(tmp_path: Path) -> None:
    frame = read_catalog(DR9)
    frame["FLUX_R"] = frame["FLUX_R"].astype("float64")
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    with pytest.raises(CatalogError, match=r"bad.parquet: not a sweep-column parquet file: FLUX_R is double, expected"):
        read_catalog(path)


def test_catalog_paths_expand_globs_and_refuse_a_pattern_matching_nothing() -> None:
    assert catalog_paths([str(CATALOGS / "sweep-3*.fits")]) == sorted(CATALOGS.glob("sweep-3*.fits"))
    with pytest.raises(CatalogError, match="no catalog file matches"):
        catalog_paths([str(CATALOGS / "nothing-*.fits")])
