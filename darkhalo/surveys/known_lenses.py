"""Known strong lenses and candidates, and the sky cross-match that flags hosts near one.

The bundled table is lenscat's community catalogue (``darkhalo/data/known_lenses.csv``, provenance
beside it). A spec may name another CSV with a name column and RA/DEC in degrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "known_lenses.csv"

#: Accepted header spellings (case-insensitive) for each needed column.
_ALIASES = {"name": ("name",), "ra": ("ra [deg]", "ra"), "dec": ("dec [deg]", "dec")}


def known_lens_path(source: str) -> Path:
    """The CSV a selection spec's ``known_lenses`` names: ``bundled`` or a path."""
    return BUNDLED if source == "bundled" else Path(source)


def load_known_lenses(path: Path) -> pd.DataFrame:
    """A known-lens CSV as columns name (str), ra, dec (float64, degrees); bad rows fail naming the row."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read the known-lens table ({exc})") from exc
    lower = {c.strip().lower(): c for c in raw.columns}
    picked = {}
    for key, aliases in _ALIASES.items():
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is None:
            raise ValueError(f"{path}: known-lens table needs a column {' or '.join(aliases)}; has {list(raw.columns)}")
        picked[key] = found
    table = pd.DataFrame({"name": raw[picked["name"]].str.strip()})
    for key in ("ra", "dec"):
        values = pd.to_numeric(raw[picked[key]], errors="coerce")
        bad = ~np.isfinite(values)
        if key == "ra":
            bad |= (values < 0) | (values >= 360)
        else:
            bad |= (values < -90) | (values > 90)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{path}: row {row + 2} ({table['name'].iloc[row]!r}): {picked[key]} = "
                f"{raw[picked[key]].iloc[row]!r} is not a valid {key.upper()} in degrees"
            )
        table[key] = values.astype(np.float64)
    return table


def flag_known_lenses(
    ra: np.ndarray, dec: np.ndarray, lenses: pd.DataFrame, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each host (deg): is a known lens within ``radius_arcsec``, and the nearest one's name ("" if none)."""
    n = len(ra)
    if n == 0 or lenses.empty:
        return np.zeros(n, dtype=bool), np.full(n, "", dtype=object)
    hosts = SkyCoord(np.asarray(ra, dtype=np.float64) * u.deg, np.asarray(dec, dtype=np.float64) * u.deg)
    known = SkyCoord(lenses["ra"].to_numpy() * u.deg, lenses["dec"].to_numpy() * u.deg)
    index, separation, _ = hosts.match_to_catalog_sky(known)
    matched = separation.arcsec <= radius_arcsec
    names = np.where(matched, lenses["name"].to_numpy(dtype=object)[index], "").astype(object)
    return matched, names


def with_known_lenses(hosts: pd.DataFrame, table: Path, radius_arcsec: float) -> pd.DataFrame:
    """``hosts`` (RA, DEC in degrees) with KNOWN_LENS (a lens of ``table`` within ``radius_arcsec``)
    and KNOWN_LENS_NAME (the nearest one's name, "" if none)."""
    matched, names = flag_known_lenses(
        hosts["RA"].to_numpy(), hosts["DEC"].to_numpy(), load_known_lenses(table), radius_arcsec
    )
    return hosts.assign(KNOWN_LENS=matched, KNOWN_LENS_NAME=names)
