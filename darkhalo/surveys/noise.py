"""The spatial correlation of a cutout's sky noise: coadds are resampled, so neighbouring pixels share noise.

Measured on sky pixels only: per band, pixels more than ``SOURCE_SIGMA`` robust sigmas above the band's median,
and every pixel within ``MASK_GROW`` pixels of one, are masked as sources. The correlation at a lag (dy, dx) is
the mean product of the median-subtracted sky pixels over the unmasked pairs at that lag, over their mean square.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Pixels this many robust sigmas above the band's median are sources.
SOURCE_SIGMA = 3.0
#: Pixels within this many pixels of a source pixel are masked too (its wings).
MASK_GROW = 2
#: Lags (dy, dx) in pixels at which the correlation is measured: the neighbours along x, along y, diagonal.
LAGS: dict[str, tuple[int, int]] = {"x": (0, 1), "y": (1, 0), "diagonal": (1, 1)}


def sky_mask(plane: np.ndarray) -> np.ndarray:
    """True on the sky pixels of one (H, W) band: finite, and away from sources (see the module)."""
    finite = np.isfinite(plane)
    values = plane[finite]
    median = np.median(values)
    sigma = 1.4826 * np.median(np.abs(values - median))
    source = np.zeros_like(finite) if sigma == 0 else np.where(finite, plane, median) > median + SOURCE_SIGMA * sigma
    grown = ndimage.binary_dilation(source, iterations=MASK_GROW) if source.any() else source
    return finite & ~grown


def lag_correlation(plane: np.ndarray, mask: np.ndarray, lag: tuple[int, int]) -> float:
    """The sky noise's correlation at ``lag`` (dy, dx >= 0) in one (H, W) band over the pixels ``mask`` keeps;
    NaN when no pair at that lag is kept."""
    dy, dx = lag
    h, w = plane.shape
    centred = np.where(mask, plane - np.median(plane[mask]), 0.0) if mask.any() else np.zeros_like(plane)
    a, b = centred[: h - dy, : w - dx], centred[dy:, dx:]
    both = mask[: h - dy, : w - dx] & mask[dy:, dx:]
    if not both.any():
        return float("nan")
    return float(np.mean(a[both] * b[both]) / np.mean(centred[mask] ** 2))


def sky_correlation(images: np.ndarray) -> dict[str, np.ndarray]:
    """Lag name (LAGS) -> the sky noise's correlation (N, bands) of each of ``images`` (N, bands, H, W)."""
    images = np.asarray(images, dtype=np.float64)
    out = {name: np.full(images.shape[:2], np.nan) for name in LAGS}
    for i, image in enumerate(images):
        for j, plane in enumerate(image):
            mask = sky_mask(plane)
            for name, lag in LAGS.items():
                out[name][i, j] = lag_correlation(plane, mask, lag)
    return out
