"""The Legacy Surveys brick grid: rows of 0.25 deg in Dec, an even number of bricks per row.

Row i is centred at Dec = -90 + 0.25 i; it holds ceil(360 cos(|Dec_c| - 0.125) / 0.25) bricks rounded
up to even (one at each pole), of equal RA width from RA 0. BRICKID counts bricks from 1 at the
south pole, row by row in increasing RA; BRICKNAME is RRRR[pm]DDD, the brick centre's RA and |Dec|
in 0.1 deg, truncated.
Used where a real file gives a position but no BRICKID (cutouts saved without their catalog row).
"""

from __future__ import annotations

import numpy as np

BRICK_SIZE = 0.25  # deg
_CENTRES = np.arange(-90.0, 90.0 + BRICK_SIZE / 2, BRICK_SIZE)
_NCOL = np.where(
    np.abs(_CENTRES) >= 90,
    1,
    (np.ceil(360 / BRICK_SIZE * np.cos(np.deg2rad(np.abs(_CENTRES) - BRICK_SIZE / 2)) / 2) * 2).astype(int),
)
_FIRST = np.concatenate([[0], np.cumsum(_NCOL)])


def _row_col(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.asarray(ra, dtype=np.float64) % 360
    row = ((np.asarray(dec, dtype=np.float64) + 90 + BRICK_SIZE / 2) / BRICK_SIZE).astype(int)
    return row, (ra / 360 * _NCOL[row]).astype(int)


def brick_id(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """BRICKID (int32) of the brick holding each position (degrees)."""
    row, col = _row_col(ra, dec)
    return (_FIRST[row] + col + 1).astype(np.int32)


def brick_name(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """BRICKNAME of the brick holding each position (degrees), e.g. '0001m040'."""
    row, col = _row_col(ra, dec)
    centre_ra = (col + 0.5) * 360 / _NCOL[row]
    centre_dec = _CENTRES[row]
    return np.array(
        [
            f"{round(r * 10000):07d}"[:4] + ("p" if d >= 0 else "m") + f"{round(abs(d) * 10000):06d}"[:3]
            for r, d in zip(centre_ra, centre_dec, strict=True)
        ],
        dtype=object,
    )
