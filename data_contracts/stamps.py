"""The stamp contracts (pandera): the columns that name a stamp, and the record of each stamp that the
inject stage writes beside its pixels.

Units: RA/DEC deg; theta_e, psfsize_r arcsec (psfsize_r the host's r-band PSF FWHM); magnitudes AB;
arc_flux_* nanomaggies; arc_snr the matched-filter S/N over grz. Arc columns are finite on positives
and NaN on controls; host_mag_r is NaN where the host's FLUX_R is not positive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from data_contracts import confusers
from data_contracts.schema import arrow_schema

#: The shard column of each stamp's pixels: (3, size, size) float32 as bytes (darkhalo.stamps), after ``split``.
IMAGE = "image"


class StampRow(pa.DataFrameModel):
    """What names a stamp in every artifact about it: its id, label (1: lensed) and split."""

    stamp_id: Series[np.int64] = pa.Field(unique=True)
    label: Series[np.int8] = pa.Field(isin=[0, 1])
    split: Series[str] = pa.Field(isin=["train", "val", "test"])


class StampRecord(StampRow):
    """A stamp shard's columns but the image: host, config, the host's confuser class, arc and the injection
    PSF's model."""

    RELEASE: Series[np.int16]
    BRICKID: Series[np.int32]
    OBJID: Series[np.int32]
    host_id: Series[np.int64]
    RA: Series[np.float64]
    DEC: Series[np.float64]
    config_id: Series[np.int32]
    confuser: Series[str] = pa.Field(isin=list(confusers.VALUES))
    theta_e: Series[np.float64] = pa.Field(nullable=True)
    psfsize_r: Series[np.float64] = pa.Field(gt=0)
    src_mag_r: Series[np.float64] = pa.Field(nullable=True)
    host_mag_r: Series[np.float64] = pa.Field(nullable=True)
    arc_flux_g: Series[np.float64] = pa.Field(nullable=True)
    arc_flux_r: Series[np.float64] = pa.Field(nullable=True)
    arc_flux_z: Series[np.float64] = pa.Field(nullable=True)
    arc_snr: Series[np.float64] = pa.Field(ge=0, nullable=True)
    magnification: Series[np.float64] = pa.Field(gt=0, nullable=True)
    psf_model: Series[str]

    @pa.dataframe_check(name="arc columns finite on positives, NaN on controls")
    def _arc_matches_label(cls, frame: pd.DataFrame) -> pd.Series:
        finite = np.isfinite(frame[list(ARC_COLUMNS)].to_numpy(dtype=float))
        positive = frame["label"].to_numpy() == 1
        return pd.Series(np.where(positive, finite.all(axis=1), ~finite.any(axis=1)), index=frame.index)

    class Config:
        strict = True
        ordered = True
        name = "stamps"


ARC_COLUMNS = (
    StampRecord.theta_e,
    StampRecord.src_mag_r,
    StampRecord.arc_flux_g,
    StampRecord.arc_flux_r,
    StampRecord.arc_flux_z,
    StampRecord.arc_snr,
    StampRecord.magnification,
)


def shard_schema() -> pyarrow.Schema:
    """The Arrow schema of a stamp shard: the record's columns with ``image`` (binary) after ``split``."""
    record = arrow_schema(StampRecord)
    return record.insert(record.get_field_index(StampRecord.split) + 1, pyarrow.field(IMAGE, pyarrow.binary()))
