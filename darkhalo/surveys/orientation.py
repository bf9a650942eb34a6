"""Which way a catalogue ellipse points on a stamp: Tractor's shape angle is on the sky, the lens's
and the mock's light are on the pixel grid.

Tractor's SHAPE_E1/E2 (tractor/ellipses.py, ``EllipseE.getRaDecBasis``) put the major axis at
theta = atan2(E2, E1) / 2 east of north, i.e. along (dRA, dDec) = (sin theta, cos theta) in the
tangent plane. A pixel direction d maps to the tangent plane by the WCS's CD matrix, so the major
axis on the pixel grid is CD^-1 (sin theta, cos theta). Legacy Surveys cutouts and coadds have north
up and east left (CD1_1 < 0, CD2_2 > 0, no rotation; ``CUTOUT_CD``) in FITS array order (row 0 is
the first FITS row, the south edge), so there the angle from +x towards +y is theta + pi/2 and the
pixel-frame ellipticity is (-E1, -E2).
"""

from __future__ import annotations

import numpy as np

#: The CD matrix of a Legacy Surveys cutout up to its pixel scale: x grows westward, y northward.
CUTOUT_CD = np.array([[-1.0, 0.0], [0.0, 1.0]])


def pixel_angle(e1: np.ndarray, e2: np.ndarray, cd: np.ndarray = CUTOUT_CD) -> np.ndarray:
    """Major-axis angle (radians in [0, pi), from +x towards +y) on a pixel grid with WCS ``cd``
    of ellipses with Tractor shape (e1, e2); a round shape (0, 0) gets the angle of theta = 0."""
    theta = 0.5 * np.arctan2(np.asarray(e2, dtype=np.float64), np.asarray(e1, dtype=np.float64))
    sky = np.stack([np.sin(theta), np.cos(theta)])  # (dRA, dDec) along the major axis
    dx, dy = np.linalg.solve(np.asarray(cd, dtype=np.float64), sky.reshape(2, -1)).reshape(sky.shape)
    return np.mod(np.arctan2(dy, dx), np.pi)


def pixel_ellipticity(e1: np.ndarray, e2: np.ndarray, cd: np.ndarray = CUTOUT_CD) -> tuple[np.ndarray, np.ndarray]:
    """The pixel-frame (e1, e2) (darkhalo.lensing.sersic's convention, angle from +x) of Tractor
    shapes (e1, e2): the same modulus at ``pixel_angle``."""
    modulus = np.hypot(e1, e2)
    phi = pixel_angle(e1, e2, cd)
    return modulus * np.cos(2 * phi), modulus * np.sin(2 * phi)
