"""Published lens tables as one shape (name, ra, dec in degrees, theta_e in arcsec or NaN, table) and
the recall of a scored sample against them.

Formats: lenscat's CSV (darkhalo.surveys.known_lenses), the SLACS table (whitespace columns under a
``# name RA dec ... theta_Ein ...`` header; theta_E in arcsec) and Stein et al. (2021)'s TSVs (ra, dec,
grade; rows named ``<file stem>-<row>``). The recall report says, per table: how many of its lenses
fall in the sample (within the match radius), how many of those were scored, and how many were
flagged at the threshold, with a Clopper-Pearson interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo.metrics.intervals import clopper_pearson
from darkhalo.surveys.known_lenses import flag_known_lenses, load_known_lenses

LENS_COLUMNS = ("name", "ra", "dec", "theta_e", "table")


def _checked(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    for key, low, high in (("ra", 0, 360), ("dec", -90, 90)):
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) | (values < low) | (values > high)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: row {row + 1} ({table['name'].iloc[row]!r}): {key} is not a valid position")
        table[key] = values
    table["theta_e"] = pd.to_numeric(table["theta_e"], errors="coerce").astype(np.float64)
    table["table"] = path.stem
    return table.loc[:, list(LENS_COLUMNS)].reset_index(drop=True)


def load_slacs(path: Path) -> pd.DataFrame:
    """The SLACS table: name, RA, dec (deg) and theta_Ein (arcsec) from its ``#`` header's columns."""
    with path.open() as handle:
        header = handle.readline().lstrip("#").split()
    try:
        raw = pd.read_csv(path, sep=r"\s+", comment="#", header=None, names=header, dtype=str)
    except (OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read the SLACS table ({exc})") from exc
    missing = [c for c in ("name", "RA", "dec", "theta_Ein") if c not in raw]
    if missing:
        raise ValueError(f"{path}: SLACS header lacks {', '.join(missing)}; has {header}")
    return _checked(path, raw.rename(columns={"RA": "ra", "theta_Ein": "theta_e"}))


def load_stein(path: Path) -> pd.DataFrame:
    """A Stein et al. (2021) TSV (ra, dec in deg; no theta_E); rows named ``<stem>-<row>``."""
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str)
    except (OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read the lens table ({exc})") from exc
    if not {"ra", "dec"} <= set(raw.columns):
        raise ValueError(f"{path}: needs ra and dec columns; has {list(raw.columns)}")
    names = [f"{path.stem}-{i}" for i in range(len(raw))]
    return _checked(path, raw.assign(name=names, theta_e=np.nan))


def load_lens_table(path: Path) -> pd.DataFrame:
    """Any of the three formats, by suffix: .csv lenscat, .cat SLACS, .tsv Stein et al."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _checked(path, load_known_lenses(path).assign(theta_e=np.nan))
    if suffix == ".cat":
        return load_slacs(path)
    if suffix == ".tsv":
        return load_stein(path)
    raise ValueError(f"{path}: unknown lens-table format (expected .csv lenscat, .cat SLACS or .tsv Stein et al.)")


def recall_report(
    sample: pd.DataFrame, tables: list[pd.DataFrame], radius_arcsec: float, threshold: float, confidence: float = 0.95
) -> pd.DataFrame:
    """Per lens table: lenses in the sample (RA, DEC within ``radius_arcsec``), scored, flagged (score >=
    ``threshold``), the recall flagged / scored and its interval; ``sample`` needs RA, DEC, score (NaN: unscored)."""
    rows = []
    for table in tables:
        name = table["table"].iloc[0] if len(table) else "empty"
        matched, _ = flag_known_lenses(sample["RA"].to_numpy(), sample["DEC"].to_numpy(), table, radius_arcsec)
        scores = sample.loc[matched, "score"].to_numpy(np.float64)
        scored = int(np.isfinite(scores).sum())
        flagged = int((scores[np.isfinite(scores)] >= threshold).sum())
        low, high = clopper_pearson(flagged, scored, confidence) if scored else (np.nan, np.nan)
        rows.append(
            {
                "table": name,
                "lenses": len(table),
                "in_sample": int(matched.sum()),
                "scored": scored,
                "flagged": flagged,
                "recall": flagged / scored if scored else np.nan,
                "recall_low": low,
                "recall_high": high,
            }
        )
    return pd.DataFrame(rows)
