"""Sky regions: HEALPix pixels of hosts and the split each pixel is hashed to (lesson L5).

A split is a function of the pixel alone, so every host in a region lands in the same split and
nothing downstream re-shuffles them.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy_healpix import HEALPix

from darkhalo.hashing import uniform

SPLITS = ("train", "val", "test")


def healpix_of(ra_deg: np.ndarray, dec_deg: np.ndarray, nside: int) -> np.ndarray:
    """Nested-scheme HEALPix pixel (int64) of each position (degrees)."""
    grid = HEALPix(nside=nside, order="nested")
    pixels = grid.lonlat_to_healpix(np.asarray(ra_deg, dtype=float) * u.deg, np.asarray(dec_deg, dtype=float) * u.deg)
    return np.asarray(pixels, dtype=np.int64)


def split_of_pixels(pixels: np.ndarray, seed: int, fractions: dict[str, float]) -> np.ndarray:
    """The split name of each pixel: a hash of (seed, pixel) against the cumulative fractions."""
    draw = uniform(seed, pixels, stream="split")
    edges = np.cumsum([fractions[name] for name in SPLITS])
    index = np.minimum(np.searchsorted(edges, draw, side="right"), len(SPLITS) - 1)
    return np.asarray(SPLITS, dtype=object)[index]
