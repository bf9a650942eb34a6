"""The parent-sample contract: at least one host, unique hosts, a usable r-band PSF size, every row inside its cuts.

The cuts are recomputed here in pandas, independently of the stage's Spark SQL, from the spec's
``selection`` section given as plain data (``model_dump()``): a row the SQL let through that the
cuts reject is a contract failure. Magnitudes are AB (data_contracts.survey.flux_to_mag).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

from data_contracts.catalog import Catalog
from data_contracts.findings import Finding, evidence_rows
from data_contracts.survey import KEY, flux_to_mag

FINDING_ID = "schema:parent_sample"
#: desitarget clips fluxes here before taking magnitudes (nanomaggies).
FLUX_FLOOR = 1e-7


class ParentSample(Catalog):
    """A catalog row inside the selection's cuts, with a usable r-band PSF size and its known-lens flag
    (the name of the known lens within the spec's radius, or "")."""

    PSFSIZE_R: Series[np.float32] = pa.Field(gt=0)
    KNOWN_LENS: Series[bool]
    KNOWN_LENS_NAME: Series[str]

    class Config:
        unique = KEY
        name = "parent_sample"


def _mag(flux: pd.Series | np.ndarray, floor: float | None = None) -> np.ndarray:
    flux = np.asarray(flux, dtype=np.float64)
    return flux_to_mag(flux if floor is None else np.maximum(flux, floor))


def _flux(frame: pd.DataFrame, column: str, band: str, dered: bool) -> np.ndarray:
    flux = frame[column].to_numpy(np.float64)
    return flux / frame[f"MW_TRANSMISSION_{band}"].to_numpy(np.float64) if dered else flux


def v3_color_relaxed_mask(frame: pd.DataFrame, cuts: Mapping[str, Any]) -> np.ndarray:
    """Gen 1: TYPE != PSF, r, z, W1 flux > 0, z < z_mag_max, r - z and z - W1 above their minima."""
    dered = bool(cuts["extinction_corrected"])
    r = _mag(_flux(frame, "FLUX_R", "R", dered))
    z = _mag(_flux(frame, "FLUX_Z", "Z", dered))
    w1 = _mag(_flux(frame, "FLUX_W1", "W1", dered))
    positive = (frame["FLUX_R"].to_numpy() > 0) & (frame["FLUX_Z"].to_numpy() > 0) & (frame["FLUX_W1"].to_numpy() > 0)
    return (
        (frame["TYPE"].to_numpy() != "PSF")
        & positive
        & (z < cuts["z_mag_max"])
        & (r - z > cuts["r_minus_z_min"])
        & (z - w1 > cuts["z_minus_w1_min"])
    )


def desi_lrg_mask(frame: pd.DataFrame, cuts: Mapping[str, Any]) -> np.ndarray:
    """desitarget's main-survey LRG quality and colour cuts (extinction-corrected), numbers from ``cuts``."""
    g = _mag(_flux(frame, "FLUX_G", "G", True), FLUX_FLOOR)
    r = _mag(_flux(frame, "FLUX_R", "R", True), FLUX_FLOOR)
    z = _mag(_flux(frame, "FLUX_Z", "Z", True), FLUX_FLOOR)
    w1 = _mag(_flux(frame, "FLUX_W1", "W1", True), FLUX_FLOOR)
    zfiber = _mag(_flux(frame, "FIBERFLUX_Z", "Z", True), FLUX_FLOOR)
    zfibertot = _mag(_flux(frame, "FIBERTOTFLUX_Z", "Z", True), FLUX_FLOOR)

    def col(name: str) -> np.ndarray:
        return frame[name].to_numpy()

    def snr(band: str) -> np.ndarray:
        return col(f"FLUX_{band}").astype(np.float64) * np.sqrt(col(f"FLUX_IVAR_{band}").astype(np.float64))

    veto = sum(1 << int(bit) for bit in cuts["maskbits_veto"])
    gaia = col("GAIA_PHOT_G_MEAN_MAG")
    quality = (
        (col("FLUX_R") > 0)
        & (col("FLUX_Z") > 0)
        & (col("FLUX_W1") > 0)
        & (col("FIBERFLUX_Z") > 0)
        & (snr("R") > cuts["r_snr_min"])
        & (snr("Z") > cuts["z_snr_min"])
        & (snr("W1") > cuts["w1_snr_min"])
        & (col("NOBS_G") > 0)
        & (col("NOBS_R") > 0)
        & (col("NOBS_Z") > 0)
        & ((col("MASKBITS").astype(np.int64) & veto) == 0)
        & ((gaia == 0) | (gaia > cuts["gaia_g_min"]))
        & (zfibertot > cuts["zfibertot_mag_min"])
    )
    rw1 = r - w1
    colours = (
        (z - w1 > cuts["nonstellar_slope"] * (r - z) + cuts["nonstellar_offset"])
        & (zfiber < cuts["zfiber_mag_max"])
        & ((g - w1 > cuts["g_minus_w1_min"]) | (rw1 > cuts["r_minus_w1_lowz"]))
        & (
            (
                (rw1 > (w1 - cuts["sliding_w1_pivot"]) * cuts["sliding_slope"])
                & (rw1 > (w1 - cuts["lowz_w1_pivot"]) * cuts["lowz_slope"])
            )
            | (rw1 > cuts["r_minus_w1_highz"])
        )
    )
    return quality & colours


def cuts_mask(frame: pd.DataFrame, selection: Mapping[str, Any]) -> np.ndarray:
    """True for each row inside the cuts of ``selection`` (a spec selection section as plain data)."""
    variant = selection["variant"]
    if variant == "v3_color_relaxed":
        return v3_color_relaxed_mask(frame, selection)
    if variant in ("desi_lrg_south", "desi_lrg_north"):
        return desi_lrg_mask(frame, selection)
    raise ValueError(f"unknown selection variant {variant!r}")


def schema(selection: Mapping[str, Any]) -> pa.DataFrameSchema:
    """The parent sample's pandera schema for this selection: ParentSample and every row inside the cuts."""
    selected = copy.deepcopy(ParentSample.to_schema())
    selected.checks = [
        *selected.checks,
        pa.Check(lambda df: pd.Series(cuts_mask(df, selection), index=df.index), name="inside_cuts"),
    ]
    return selected


def check(frame: pd.DataFrame, selection: Mapping[str, Any]) -> Finding:
    """Validate a parent sample; the finding's evidence lists the offending rows and checks. An empty one fails: the
    manifest stage would have no host to expand."""
    title = f"parent sample: hosts, unique key, PSFSIZE_R > 0, every row inside the {selection['variant']} cuts"
    if frame.empty:
        detail = f"no rows: the {selection['variant']} cuts kept no host"
        return Finding(FINDING_ID, title, passed=False, measured=0, threshold=1, detail=detail)
    try:
        schema(selection).validate(frame, lazy=True)
    except SchemaErrors as exc:
        # a frame-wide check lists every column of a failing row: keep one case per (check, row)
        cases = exc.failure_cases.drop_duplicates(["check", "index"])
        rows = [
            {
                "check": str(case["check"]),
                "column": str(case["column"]) if case["schema_context"] == "Column" else None,
                "index": None if pd.isna(case["index"]) else int(case["index"]),
                "failure_case": str(case["failure_case"]),
            }
            for case in cases.to_dict("records")
        ]
        kept, n = evidence_rows(rows)
        return Finding(FINDING_ID, title, passed=False, measured=n, threshold=0, evidence=kept, n_offending=n)
    return Finding(FINDING_ID, title, passed=True, measured=0, threshold=0, detail=f"{len(frame)} rows")
