"""The manifest contract (pandera): one row per stamp to make, as the manifest stage writes it.

A manifest row is a stamp row and a host row plus the stamp's role, its host's id, sky pixel and
confuser class (data_contracts.confusers), its grid config and the per-stamp nuisance parameters.
Units: RA/DEC deg; theta_e, src_reff, src_x, src_y arcsec; angles rad; src_mag_r AB; src_flux_*
nanomaggies; PSFSIZE_* FWHM arcsec. Injection columns are NaN on controls and finite on positives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_contracts import confusers
from data_contracts.catalog import HostRow
from data_contracts.findings import Finding, evidence_rows
from data_contracts.stamps import StampRow


class Manifest(HostRow, StampRow):
    """One stamp to make. Columns run StampRow's, HostRow's (pandera orders bases last to first), then these."""

    RA: Series[np.float64] = pa.Field(in_range={"min_value": 0, "max_value": 360})
    DEC: Series[np.float64] = pa.Field(in_range={"min_value": -90, "max_value": 90})
    TYPE: Series[str]
    PSFSIZE_R: Series[np.float32] = pa.Field(gt=0)
    role: Series[str] = pa.Field(isin=["positive", "control"])
    confuser: Series[str] = pa.Field(isin=list(confusers.VALUES))
    host_id: Series[np.int64] = pa.Field(ge=0)
    healpix: Series[np.int64] = pa.Field(ge=0)
    config_id: Series[np.int32] = pa.Field(ge=-1)
    theta_e: Series[np.float64] = pa.Field(gt=0, nullable=True)
    src_reff: Series[np.float64] = pa.Field(gt=0, nullable=True)
    src_e: Series[np.float64] = pa.Field(nullable=True)
    shear: Series[np.float64] = pa.Field(nullable=True)
    src_dmag: Series[np.float64] = pa.Field(nullable=True)
    src_x: Series[np.float64] = pa.Field(nullable=True)
    src_y: Series[np.float64] = pa.Field(nullable=True)
    src_q: Series[np.float64] = pa.Field(nullable=True)
    src_phi: Series[np.float64] = pa.Field(nullable=True)
    g1: Series[np.float64] = pa.Field(nullable=True)
    g2: Series[np.float64] = pa.Field(nullable=True)
    lens_q: Series[np.float64] = pa.Field(nullable=True)
    lens_phi: Series[np.float64] = pa.Field(nullable=True)
    src_n: Series[np.float64] = pa.Field(nullable=True)
    src_mag_r: Series[np.float64] = pa.Field(nullable=True)
    src_flux_g: Series[np.float64] = pa.Field(nullable=True)
    src_flux_r: Series[np.float64] = pa.Field(nullable=True)
    src_flux_z: Series[np.float64] = pa.Field(nullable=True)

    @pa.dataframe_check(name="injection columns finite on positives, NaN on controls")
    def _injection_matches_label(cls, frame: pd.DataFrame) -> pd.Series:
        finite = np.isfinite(frame[list(INJECTION_COLUMNS)].to_numpy(dtype=float))
        positive = frame["label"].to_numpy() == 1
        return pd.Series(np.where(positive, finite.all(axis=1), ~finite.any(axis=1)), index=frame.index)

    @pa.dataframe_check(name="label matches role")
    def _label_matches_role(cls, frame: pd.DataFrame) -> pd.Series:
        return (frame["label"] == 1) == (frame["role"] == "positive")

    class Config:
        unique = ("host_id", "config_id", "label")
        strict = True
        ordered = True
        name = "manifest"


#: The grid's axes, one value per config (src_dmag is NaN unless the brightness is host-relative).
GRID_COLUMNS = (Manifest.theta_e, Manifest.src_reff, Manifest.src_e, Manifest.shear, Manifest.src_dmag)
#: The per-stamp nuisance parameters drawn for each positive (darkhalo.sources).
SOURCE_COLUMNS = (
    Manifest.src_x,
    Manifest.src_y,
    Manifest.src_q,
    Manifest.src_phi,
    Manifest.g1,
    Manifest.g2,
    Manifest.lens_q,
    Manifest.lens_phi,
    Manifest.src_n,
    Manifest.src_mag_r,
    Manifest.src_flux_g,
    Manifest.src_flux_r,
    Manifest.src_flux_z,
)
#: Finite on every positive, NaN on every control.
INJECTION_COLUMNS = (*(c for c in GRID_COLUMNS if c != Manifest.src_dmag), *SOURCE_COLUMNS)


def check_splits(frame: pd.DataFrame, splits: Sequence[str]) -> Finding:
    """Every split of ``splits`` holds positive and control stamps (``frame``: the manifest's split and label): the
    trainer needs both labels in train and val, the evaluation both in test, so a manifest without them is refused
    where it is written and not where the next stage fails."""
    present = set(zip(frame["split"], frame["label"], strict=True))
    rows = [
        {"split": split, "label": name}
        for split in splits
        for label, name in ((1, "positive"), (0, "control"))
        if (split, label) not in present
    ]
    evidence, n = evidence_rows(rows)
    return Finding(
        id="schema:manifest",
        title="manifest schema; positives and controls in every split",
        passed=not rows,
        measured=n,
        threshold=0,
        detail="; ".join(f"the {row['split']} split has no {row['label']} stamps" for row in rows),
        evidence=evidence,
        n_offending=n,
    )
