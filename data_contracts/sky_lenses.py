"""The mock sky's truth table (pandera): ``survey/sky_lenses.parquet``, one row per catalog galaxy that the mock
renders as a strong lens (darkhalo.surveys.sky_lenses), in catalog order. No training stage reads it.

The lens is an SIE + external shear about the host's centre, the source an elliptical Sersic, as the injection
physics takes them (darkhalo.lensing.render.ArcParams). Units: RA/DEC deg; theta_e, src_x, src_y (the source's
offset from the lens), src_reff arcsec; angles rad from the cutout's +x towards +y; src_mag_r the unlensed,
intrinsic r (AB); src_flux_* the unlensed total flux per band, MW-dimmed (nanomaggies). ``check_keys`` judges
that every truth row is a catalog row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.findings import Finding, offending_finding
from data_contracts.survey import KEY


class SkyLensTruth(pa.DataFrameModel):
    """A catalog galaxy that is a lens in the mock sky: its key, position and type, then its lens and source."""

    RELEASE: Series[np.int16]
    BRICKID: Series[np.int32]
    OBJID: Series[np.int32]
    RA: Series[np.float64] = pa.Field(in_range={"min_value": 0, "max_value": 360})
    DEC: Series[np.float64] = pa.Field(in_range={"min_value": -90, "max_value": 90})
    TYPE: Series[str] = pa.Field(ne="PSF")
    theta_e: Series[np.float64] = pa.Field(gt=0)
    lens_q: Series[np.float64] = pa.Field(gt=0, le=1)
    lens_phi: Series[np.float64]
    g1: Series[np.float64]
    g2: Series[np.float64]
    src_x: Series[np.float64]
    src_y: Series[np.float64]
    src_reff: Series[np.float64] = pa.Field(gt=0)
    src_n: Series[np.float64] = pa.Field(gt=0.2, le=10)
    src_q: Series[np.float64] = pa.Field(gt=0, le=1)
    src_phi: Series[np.float64]
    src_mag_r: Series[np.float64]
    src_flux_g: Series[np.float64] = pa.Field(ge=0)
    src_flux_r: Series[np.float64] = pa.Field(ge=0)
    src_flux_z: Series[np.float64] = pa.Field(ge=0)

    class Config:
        unique = KEY
        strict = True
        ordered = True
        name = "sky_lenses"


def check_keys(truth: pd.DataFrame, catalog_keys: pd.DataFrame) -> Finding:
    """Every truth row's (RELEASE, BRICKID, OBJID) is a row of the catalog (``catalog_keys``: the key columns of every
    part): a lens the catalog does not hold could never be scanned."""
    key = list(KEY)
    joined = (
        truth[key]
        .astype(np.int64)
        .merge(catalog_keys[key].astype(np.int64).drop_duplicates(), on=key, how="left", indicator=True)
    )
    stray = joined.loc[joined["_merge"] == "left_only", key]
    return offending_finding(
        "schema:sky_lenses:key",
        "every sky lens is a catalog row",
        stray.astype(object).to_dict("records"),
        f"{len(truth)} truth row(s) joined on {', '.join(key)}",
    )
