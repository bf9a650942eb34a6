"""Synthetic parent samples (the select stage's output) for tests of the manifest and beyond."""

from __future__ import annotations

import numpy as np
import pandas as pd

from darkhalo.expansion import PARENT_COLUMNS
from darkhalo.surveys.columns import SWEEP_COLUMNS


def synthetic_parent(n: int = 400, seed: int = 0, known_lenses: int = 0, patch_deg: float = 8.0) -> pd.DataFrame:
    """``n`` LRG-like hosts in a ``patch_deg`` square patch with sweep dtypes; the first
    ``known_lenses`` rows are flagged KNOWN_LENS."""
    rng = np.random.default_rng(seed)
    mag_r = rng.uniform(18.5, 21.0, n)
    frame = pd.DataFrame(
        {
            "RELEASE": np.full(n, 10000),
            "BRICKID": rng.integers(100_000, 400_000, n),
            "OBJID": np.arange(n),
            "RA": 150 + rng.uniform(0, patch_deg, n),
            "DEC": rng.uniform(0, patch_deg, n),
            "TYPE": rng.choice(["DEV", "SER", "EXP"], n),
            "SHAPE_R": rng.uniform(0.5, 3.0, n),
            "SHAPE_E1": rng.normal(0, 0.15, n),
            "SHAPE_E2": rng.normal(0, 0.15, n),
            "SERSIC": rng.uniform(1, 6, n),
            "KNOWN_LENS": np.arange(n) < known_lenses,
        }
    )
    colour = {"G": 1.6, "R": 0.0, "Z": -0.9}
    for band in "GRZ":
        frame[f"FLUX_{band}"] = 10 ** ((22.5 - mag_r - colour[band]) / 2.5)
        frame[f"MW_TRANSMISSION_{band}"] = rng.uniform(0.85, 0.99, n)
        frame[f"PSFSIZE_{band}"] = np.clip(rng.lognormal(np.log(1.3), 0.18, n), 0.7, 3.0)
        frame[f"PSFDEPTH_{band}"] = rng.lognormal(np.log(2000.0), 0.3, n)
    for column in PARENT_COLUMNS:
        dtype = SWEEP_COLUMNS.get(column)
        if dtype and dtype != "str":
            frame[column] = frame[column].astype(dtype)
    return frame.loc[:, list(PARENT_COLUMNS)]
