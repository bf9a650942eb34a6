"""The manifest contract: one row per stamp to make (pandera), as the manifest stage writes it.

Units: RA/DEC deg; theta_e, src_reff, src_x, src_y arcsec; angles rad; src_flux_* nanomaggies;
PSFSIZE_* FWHM arcsec. Injection columns are NaN on controls and finite on positives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

HOST_FLOATS = (
    *(f"{prefix}_{band}" for prefix in ("FLUX", "MW_TRANSMISSION", "PSFSIZE", "PSFDEPTH") for band in "GRZ"),
    "SHAPE_R",
    "SHAPE_E1",
    "SHAPE_E2",
    "SERSIC",
)
INJECTION_COLUMNS = (
    "theta_e",
    "src_reff",
    "src_e",
    "shear",
    "src_x",
    "src_y",
    "src_q",
    "src_phi",
    "g1",
    "g2",
    "lens_q",
    "lens_phi",
    "src_n",
    "src_mag_r",
    "src_flux_g",
    "src_flux_r",
    "src_flux_z",
)


def _injection_matches_label(frame: pd.DataFrame) -> pd.Series:
    """Positives carry finite injection parameters, controls none."""
    finite = np.isfinite(frame[list(INJECTION_COLUMNS)].to_numpy(dtype=float))
    positive = frame["label"].to_numpy() == 1
    return pd.Series(np.where(positive, finite.all(axis=1), ~finite.any(axis=1)), index=frame.index)


def _float(**checks: object) -> pa.Column:
    return pa.Column(float, nullable=True, **checks)


MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        "stamp_id": pa.Column(np.int64, unique=True),
        "label": pa.Column(np.int8, pa.Check.isin([0, 1])),
        "split": pa.Column(str, pa.Check.isin(["train", "val", "test"])),
        "role": pa.Column(str, pa.Check.isin(["positive", "control"])),
        "host_id": pa.Column(np.int64, pa.Check.ge(0)),
        "healpix": pa.Column(np.int64, pa.Check.ge(0)),
        "RELEASE": pa.Column(np.int16),
        "BRICKID": pa.Column(np.int32),
        "OBJID": pa.Column(np.int32),
        "RA": pa.Column(float, pa.Check.in_range(0, 360)),
        "DEC": pa.Column(float, pa.Check.in_range(-90, 90)),
        "TYPE": pa.Column(str),
        **{name: pa.Column(np.float32, nullable=True) for name in HOST_FLOATS},
        "PSFSIZE_R": pa.Column(np.float32, pa.Check.gt(0)),
        "config_id": pa.Column(np.int32, pa.Check.ge(-1)),
        "theta_e": _float(checks=pa.Check.gt(0, ignore_na=True)),
        "src_reff": _float(checks=pa.Check.gt(0, ignore_na=True)),
        "src_e": _float(),
        "shear": _float(),
        "src_dmag": _float(),
        **{name: _float() for name in INJECTION_COLUMNS[4:]},
    },
    checks=[
        pa.Check(_injection_matches_label, name="injection columns finite on positives, NaN on controls"),
        pa.Check(lambda f: (f["label"] == 1) == (f["role"] == "positive"), name="label matches role"),
    ],
    unique=["host_id", "config_id", "label"],
    strict=True,
    ordered=True,
    name="manifest",
)
