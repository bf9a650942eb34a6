"""The selection SQL: same rows as the independent pandas cuts, thresholds bound, never spliced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from catalogs import synthetic_catalog
from conftest import REAL, spec_data

from darkhalo.sparkio import spark_schema
from darkhalo.spec import DesiLrg, SpecError, V3ColorRelaxed, spec_from_dict
from darkhalo.stages.select import SQL_DIR, SQL_FILES, select_rows, sql_parameters, sql_text
from darkhalo.surveys.columns import KEY, SWEEP_COLUMNS
from data_contracts.catalog import Catalog
from data_contracts.parent_sample import cuts_mask

pytestmark = pytest.mark.spark

SELECTIONS = {
    "v3_raw": V3ColorRelaxed(variant="v3_color_relaxed"),
    "v3_dered": V3ColorRelaxed(variant="v3_color_relaxed", extinction_corrected=True),
    "desi_south": DesiLrg(variant="desi_lrg_south"),
    "desi_north": DesiLrg(variant="desi_lrg_north"),
}


def _keys(frame: pd.DataFrame) -> set[tuple[int, ...]]:
    return set(map(tuple, frame[list(KEY)].to_numpy().tolist()))


def _sql_keys(spark, frame: pd.DataFrame, selection) -> set[tuple[int, ...]]:
    catalog = spark.createDataFrame(frame[list(SWEEP_COLUMNS)], schema=spark_schema(Catalog))
    return _keys(select_rows(spark, catalog, selection).toPandas())


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_catalog(20_000, seed=3)


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_sql_selects_exactly_the_pandas_cut_rows_on_synthetic_catalogs(spark, synthetic, name: str) -> None:
    selection = SELECTIONS[name]
    expected = _keys(synthetic[cuts_mask(synthetic, selection.model_dump())])
    assert 500 < len(expected) < len(synthetic) - 500  # the cuts both keep and reject
    assert _sql_keys(spark, synthetic, selection) == expected


def test_the_extinction_switch_changes_the_v3_sample(spark, synthetic) -> None:
    raw = _sql_keys(spark, synthetic, SELECTIONS["v3_raw"])
    dered = _sql_keys(spark, synthetic, SELECTIONS["v3_dered"])
    assert raw != dered


def test_south_and_north_numbers_differ_and_come_from_the_spec() -> None:
    south = sql_parameters(sql_text("desi_lrg_south"), SELECTIONS["desi_south"])
    north = sql_parameters(sql_text("desi_lrg_north"), SELECTIONS["desi_north"])
    assert (south["zfiber_mag_max"], north["zfiber_mag_max"]) == (21.6, 21.61)
    assert (south["r_minus_w1_highz"], north["r_minus_w1_highz"]) == (3.3, 3.4)
    assert south["maskbits_veto"] == (1 << 1) | (1 << 12) | (1 << 13)


def _real_rows() -> pd.DataFrame:
    """Real DR8 and DR9 photometry (sweep and tractor subsets, 37 rows); columns the cuts do not read
    (absent in DR8) are filled so the frame has the sweep schema."""
    frames = []
    for path in sorted((REAL / "catalogs").glob("*.fits")):
        table = Table.read(path, hdu=1)
        if "MASKBITS" not in table.colnames:
            continue  # targets.fits and the DR1 tractor file lack the quality columns
        data = {}
        for name, dtype in SWEEP_COLUMNS.items():
            if name not in table.colnames:
                data[name] = np.full(len(table), "", object) if dtype == "str" else np.ones(len(table), dtype=dtype)
            elif dtype == "str":
                data[name] = np.char.strip(np.asarray(table[name]).astype(str)).astype(object)
            else:
                data[name] = np.asarray(table[name]).astype(dtype)
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True)


def _targets_rows() -> pd.DataFrame:
    """desitarget's 1001 real DR8 target rows (fluxes, MW_TRANSMISSION) as v3 input; TYPE set resolved."""
    table = Table.read(REAL / "catalogs" / "targets.fits", hdu=1)
    data = {}
    for name, dtype in SWEEP_COLUMNS.items():
        if name in table.colnames:
            data[name] = np.asarray(table[name]).astype(dtype)
        elif dtype == "str":
            data[name] = np.full(len(table), "DEV" if name == "TYPE" else "", dtype=object)
        else:
            data[name] = np.ones(len(table), dtype=dtype)
    frame = pd.DataFrame(data)
    frame["OBJID"] = np.arange(len(frame), dtype=np.int32)
    return frame


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_sql_and_pandas_agree_on_real_sweep_and_tractor_rows(spark, name: str) -> None:
    frame = _real_rows()
    expected = _keys(frame[cuts_mask(frame, SELECTIONS[name].model_dump())])
    assert 0 < len(expected) < len(frame)
    assert _sql_keys(spark, frame, SELECTIONS[name]) == expected


@pytest.mark.parametrize("name", ["v3_raw", "v3_dered"])
def test_sql_and_pandas_agree_on_real_desitarget_rows(spark, name: str) -> None:
    frame = _targets_rows()
    expected = _keys(frame[cuts_mask(frame, SELECTIONS[name].model_dump())])
    assert 50 < len(expected) < len(frame) - 50
    assert _sql_keys(spark, frame, SELECTIONS[name]) == expected


def test_every_sql_placeholder_is_bound_from_the_spec_and_none_is_spliced() -> None:
    for variant, file in SQL_FILES.items():
        text = (SQL_DIR / file).read_text()
        assert "{" not in text and "%s" not in text  # no Python formatting anywhere
        selection = V3ColorRelaxed(variant=variant) if variant == "v3_color_relaxed" else DesiLrg(variant=variant)
        params = sql_parameters(text, selection)
        dump = selection.model_dump()
        assert params and all(params[k] == dump[k] for k in params if k != "maskbits_veto")


def test_a_spec_value_cannot_carry_sql() -> None:
    data = spec_data()
    data["selection"]["z_mag_max"] = "20.4 OR 1 = 1"
    with pytest.raises(SpecError, match=r"selection\.z_mag_max"):
        spec_from_dict(data)


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_a_bound_value_is_a_value_even_if_it_looks_like_sql(spark, synthetic) -> None:
    hostile = V3ColorRelaxed.model_construct(**{**SELECTIONS["v3_raw"].model_dump(), "z_mag_max": "99 OR 1 = 1"})
    catalog = spark.createDataFrame(synthetic[list(SWEEP_COLUMNS)], schema=spark_schema(Catalog))
    with pytest.raises(Exception, match=r"CAST_INVALID_INPUT|cannot be cast"):
        select_rows(spark, catalog, hostile).count()


def test_a_parameter_the_spec_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="uses parameters the spec lacks: no_such_threshold"):
        sql_parameters("SELECT * FROM catalog WHERE FLUX_R > :no_such_threshold", SELECTIONS["v3_raw"])


def test_desi_numbers_default_per_variant_and_a_spec_value_overrides_them() -> None:
    data = spec_data()
    data["selection"] = {"variant": "desi_lrg_north", "zfiber_mag_max": 21.0}
    selection = spec_from_dict(data).selection
    assert (selection.zfiber_mag_max, selection.sliding_slope, selection.r_minus_w1_highz) == (21.0, 1.83, 3.4)
    data["selection"] = {"variant": "desi_lrg_south", "zfiber_mag": 21.0}
    with pytest.raises(SpecError, match=r"unknown key 'zfiber_mag'.*did you mean 'zfiber_mag_max'"):
        spec_from_dict(data)


def _mag_flux(mag: float) -> float:
    return 10 ** (-0.4 * (mag - 22.5))


#: One change to an LRG that passes desi_lrg_south, and whether it must still pass (desitarget's rules).
DESI_EDGES = {
    "unchanged": ({}, True),
    "gaia_no_match": ({"GAIA_PHOT_G_MEAN_MAG": 0.0}, True),
    "gaia_18": ({"GAIA_PHOT_G_MEAN_MAG": 18.0}, False),
    "gaia_17.9": ({"GAIA_PHOT_G_MEAN_MAG": 17.9}, False),
    "gaia_18.1": ({"GAIA_PHOT_G_MEAN_MAG": 18.1}, True),
    "maskbit_1": ({"MASKBITS": 1 << 1}, False),
    "maskbit_12": ({"MASKBITS": 1 << 12}, False),
    "maskbit_13": ({"MASKBITS": 1 << 13}, False),
    "maskbit_5_not_vetoed": ({"MASKBITS": 1 << 5}, True),
    "nobs_g_0": ({"NOBS_G": 0}, False),
    "nobs_z_0": ({"NOBS_Z": 0}, False),
    "g_negative_counts_as_red": ({"FLUX_G": -0.5}, True),
    "g_zero_counts_as_red": ({"FLUX_G": 0.0}, True),
    "zfiber_zero": ({"FIBERFLUX_Z": 0.0}, False),
    "r_ivar_zero": ({"FLUX_IVAR_R": 0.0}, False),
    "w1_snr_just_below_4": ({"w1_snr": 4 * (1 - 1e-4)}, False),
    "w1_snr_just_above_4": ({"w1_snr": 4 * (1 + 1e-4)}, True),
    "zfibertot_17.4": ({"zfibertot_mag": 17.4}, False),
}


def test_desi_quality_edges_follow_desitarget_in_sql_and_pandas(spark, synthetic) -> None:
    selection = SELECTIONS["desi_south"]
    inside = synthetic[cuts_mask(synthetic, selection.model_dump())]
    base = inside[(inside["GAIA_PHOT_G_MEAN_MAG"] == 0) & (inside["MASKBITS"] == 0)].iloc[0]
    rows = []
    for index, (changes, _) in enumerate(DESI_EDGES.values()):
        row = base.copy()
        row["OBJID"] = index
        for column, value in changes.items():
            if column == "w1_snr":
                row["FLUX_IVAR_W1"] = (value / float(row["FLUX_W1"])) ** 2
            elif column == "zfibertot_mag":
                row["FIBERTOTFLUX_Z"] = _mag_flux(value) * float(row["MW_TRANSMISSION_Z"])
            else:
                row[column] = value
        rows.append(row)
    frame = pd.DataFrame(rows).astype({c: (object if d == "str" else d) for c, d in SWEEP_COLUMNS.items()})
    expected = {name for name, (_, kept) in DESI_EDGES.items() if kept}
    names = list(DESI_EDGES)
    by_pandas = {names[i] for i in np.flatnonzero(cuts_mask(frame, selection.model_dump()))}
    by_sql = {names[key[2]] for key in _sql_keys(spark, frame, selection)}
    assert by_pandas == expected
    assert by_sql == expected
