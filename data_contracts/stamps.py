"""The stamp metadata contract (inject's shards without the image bytes; pandera).

Units: theta_e, psfsize_r arcsec; magnitudes AB; arc_flux_* nanomaggies; arc_snr the matched-filter
S/N over grz; deficits are 1 - encircled energy of the r-band kernel. Injection columns are finite
on positives and NaN on controls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

ARC_COLUMNS = ("theta_e", "src_mag_r", "arc_flux_g", "arc_flux_r", "arc_flux_z", "arc_snr", "magnification")


def _arc_matches_label(frame: pd.DataFrame) -> pd.Series:
    finite = np.isfinite(frame[list(ARC_COLUMNS)].to_numpy(dtype=float))
    positive = frame["label"].to_numpy() == 1
    return pd.Series(np.where(positive, finite.all(axis=1), ~finite.any(axis=1)), index=frame.index)


STAMP_METADATA_SCHEMA = pa.DataFrameSchema(
    {
        "stamp_id": pa.Column(np.int64, unique=True),
        "label": pa.Column(np.int8, pa.Check.isin([0, 1])),
        "split": pa.Column(str, pa.Check.isin(["train", "val", "test"])),
        "psfsize_r": pa.Column(float, pa.Check.gt(0)),
        "arc_snr": pa.Column(float, pa.Check.ge(0, ignore_na=True), nullable=True),
        "magnification": pa.Column(float, pa.Check.gt(0, ignore_na=True), nullable=True),
    },
    checks=[pa.Check(_arc_matches_label, name="arc columns finite on positives, NaN on controls")],
    strict=False,
    name="stamps",
)
