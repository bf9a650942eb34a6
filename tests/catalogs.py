"""Synthetic sweep-column catalogs for the select tests and benchmark: broad colour and flux ranges
so every cut of every variant both keeps and rejects rows; seeded, so runs are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from darkhalo.surveys.columns import SWEEP_COLUMNS


def _flux(mag: np.ndarray) -> np.ndarray:
    return 10 ** (-0.4 * (mag - 22.5))


def synthetic_catalog(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows with exactly SWEEP_COLUMNS and their dtypes, all passing edge validation."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(16.5, 22.0, n)
    r = z + rng.uniform(-0.3, 2.4, n)
    g = r + rng.uniform(0.0, 2.5, n)
    w1 = z - rng.uniform(-0.5, 3.0, n)
    w2 = w1 + rng.uniform(-0.5, 0.5, n)
    mags = {"G": g, "R": r, "Z": z, "W1": w1, "W2": w2}
    data: dict[str, np.ndarray] = {
        "RELEASE": np.full(n, 10000),
        "BRICKID": rng.integers(300_000, 400_000, n),
        "BRICKNAME": np.array([f"{i % 3600:04d}p{i % 900:03d}" for i in range(n)], dtype=object),
        "OBJID": np.arange(n),
        "TYPE": rng.choice(["PSF", "REX", "DEV", "EXP", "SER"], n),
        "RA": rng.uniform(150.0, 160.0, n),
        "DEC": rng.uniform(0.0, 5.0, n),
        "EBV": rng.uniform(0.01, 0.1, n),
    }
    for band, mag in mags.items():
        flux = _flux(mag)
        flux[rng.random(n) < 0.03] *= -0.1  # a few negative (noise-dominated) fluxes
        data[f"FLUX_{band}"] = flux
        ivar_scale = (0.2, 40.0) if band in ("W1", "W2") else (20.0, 2000.0)
        data[f"FLUX_IVAR_{band}"] = rng.uniform(*ivar_scale, n)
        data[f"MW_TRANSMISSION_{band}"] = rng.uniform(0.75, 1.0, n)
    for band in ("G", "R", "Z"):
        data[f"NOBS_{band}"] = rng.choice([0, 1, 2, 3, 4], n, p=[0.03, 0.22, 0.25, 0.25, 0.25])
        data[f"PSFSIZE_{band}"] = rng.uniform(0.8, 2.2, n)
        data[f"PSFDEPTH_{band}"] = rng.uniform(50.0, 3000.0, n)
        data[f"GALDEPTH_{band}"] = rng.uniform(30.0, 2000.0, n)
        fiber = data[f"FLUX_{band}"] * rng.uniform(0.1, 0.8, n)
        data[f"FIBERFLUX_{band}"] = fiber
        data[f"FIBERTOTFLUX_{band}"] = fiber * rng.uniform(1.0, 20.0, n)
    data["SHAPE_R"] = rng.uniform(0.0, 3.0, n)
    data["SHAPE_E1"] = rng.uniform(-0.4, 0.4, n)
    data["SHAPE_E2"] = rng.uniform(-0.4, 0.4, n)
    data["SERSIC"] = rng.choice([0.0, 1.0, 4.0, 2.5], n)
    bits = rng.choice([0, 1 << 1, 1 << 5, 1 << 12, 1 << 13], n, p=[0.8, 0.05, 0.05, 0.05, 0.05])
    data["MASKBITS"] = bits
    data["FITBITS"] = np.zeros(n)
    gaia = np.where(rng.random(n) < 0.3, rng.uniform(12.0, 21.0, n), 0.0)
    data["GAIA_PHOT_G_MEAN_MAG"] = gaia
    data["REF_CAT"] = np.where(gaia > 0, "G2", "").astype(object)
    frame = pd.DataFrame({name: data[name] for name in SWEEP_COLUMNS})
    return frame.astype({c: (object if d == "str" else d) for c, d in SWEEP_COLUMNS.items()})


def write_catalog(frame: pd.DataFrame, folder: Path, parts: int = 2) -> list[Path]:
    """Write ``frame`` as ``folder/part-NNNNN.parquet`` in ``parts`` pieces, as the survey stage does."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, piece in enumerate(np.array_split(np.arange(len(frame)), parts)):
        path = folder / f"part-{index:05d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[piece], preserve_index=False), path)
        paths.append(path)
    return paths
