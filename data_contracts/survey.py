"""The Legacy Surveys conventions every stage and contract shares: the bands, the sweep key, the pixel
scale and AB magnitudes of nanomaggy fluxes (mag = 22.5 - 2.5 log10(flux))."""

from __future__ import annotations

import numpy as np

#: The stamps' bands, in channel order (band, y, x).
BANDS = ("g", "r", "z")
#: The sweep catalog's unique key of an object.
KEY = ("RELEASE", "BRICKID", "OBJID")
#: Arcsec per pixel of the Legacy Surveys coadds and of every stamp.
PIXEL_SCALE = 0.262


def mag_to_flux(mag: np.ndarray | float) -> np.ndarray:
    """AB magnitude -> nanomaggies."""
    return 10.0 ** ((22.5 - np.asarray(mag, dtype=float)) / 2.5)


def flux_to_mag(flux: np.ndarray | float) -> np.ndarray:
    """Nanomaggies -> AB magnitude (NaN for non-positive or NaN flux)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
