"""Real cutouts onto the model's stamps, flux-conserving, and the rule for pixels without data.

Each image is resampled onto the model's pixel grid with ``reproject_exact`` (exact pixel overlaps between
simple TAN WCSs) and cut to the stamp size. The cutout's centre (1-based ((W + 1) / 2, (H + 1) / 2), where the
cutout service puts the requested position) lands on the stamp's host pixel (0-based size // 2, as the mock's
stamps), so at equal pixel scales and parity the pixels are copied, their noise neither smoothed nor shifted.
A pixel without data (NaN in the file, or outside the cutout's field) takes its band's median (the
sky); the share of the stamp so filled is recorded, and an image above its limit is refused by name
(``refusal_reasons``). Used by ``darkhalo score`` and by the evaluation's real sets.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from reproject import reproject_exact


def tan_wcs(reference: tuple[float, float], pixel_scale: float) -> WCS:
    """A TAN WCS at ``pixel_scale`` arcsec, north up, (RA, Dec) = (180, 0) at the 1-based pixel ``reference`` (x, y)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [180.0, 0.0]
    wcs.wcs.crpix = list(reference)
    wcs.wcs.cdelt = [-pixel_scale / 3600, pixel_scale / 3600]
    return wcs


def _grid_side(n: int, scale_in: float, scale_out: float, size: int) -> int:
    """Pixels a side of an output grid that holds the whole input field and the stamp, centred alike."""
    field = math.ceil(n * scale_in / scale_out) + 1
    return size + 2 * math.ceil(max(0, field - size) / 2)


@dataclass(frozen=True)
class Resampled:
    """Stamps (N, 3, S, S) float32 nanomaggies, the filled share of each, and each band's flux ratio (N, 3)."""

    stamps: np.ndarray
    filled_fraction: np.ndarray
    flux_ratio: np.ndarray


def resample(images: np.ndarray, scale_in: float, scale_out: float, size: int) -> Resampled:
    """``images`` (N, 3, H, W) nanomaggies at ``scale_in`` arcsec/pix onto centred ``size`` x ``size`` stamps at
    ``scale_out``, conserving flux; pixels without data take their band's median (see the module)."""
    n, bands, h, w = images.shape
    valid = np.isfinite(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN band: its image is refused below
        median = np.nanmedian(images, axis=(2, 3), keepdims=True)
    filled = np.where(valid, images, median).reshape(-1, h, w)
    shape_out = (_grid_side(h, scale_in, scale_out, size), _grid_side(w, scale_in, scale_out, size))
    planes = np.concatenate([filled, valid.reshape(-1, h, w).astype(np.float64)])
    y0, x0 = (shape_out[0] - size) // 2, (shape_out[1] - size) // 2
    wcs_in = tan_wcs(((w + 1) / 2, (h + 1) / 2), scale_in)
    wcs_out = tan_wcs((x0 + size // 2 + 1, y0 + size // 2 + 1), scale_out)
    mean, footprint = reproject_exact((planes, wcs_in), wcs_out, shape_out)
    mean = mean.reshape(2, n, bands, *shape_out)
    footprint = footprint.reshape(2, n, bands, *shape_out)
    area = (scale_out / scale_in) ** 2
    flux = np.nan_to_num(mean[0]) * footprint[0] * area
    with np.errstate(divide="ignore", invalid="ignore"):
        flux_ratio = flux.sum(axis=(2, 3)) / filled.reshape(n, bands, -1).sum(axis=2)
    cut = (slice(None), slice(None), slice(y0, y0 + size), slice(x0, x0 + size))
    stamps = mean[0][cut] * area
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stamps = np.where(np.isnan(stamps), np.nanmedian(stamps, axis=(2, 3), keepdims=True), stamps)
    covered = (np.nan_to_num(mean[1]) * footprint[1])[cut].mean(axis=(1, 2, 3))
    return Resampled(stamps.astype(np.float32), np.clip(1.0 - covered, 0.0, 1.0), flux_ratio)


def refusal_reasons(filled_fraction: np.ndarray, limit: float) -> np.ndarray:
    """Why each image is refused ("" when it is scored): more than ``limit`` of its stamp filled with sky."""
    reasons = np.array([f"{f:.1%} of its stamp has no data (limit {limit:.0%})" for f in filled_fraction], dtype=object)
    return np.where(filled_fraction <= limit, "", reasons)
