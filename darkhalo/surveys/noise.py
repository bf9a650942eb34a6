"""The spatial correlation of a cutout's sky noise: coadds are resampled, so neighbouring pixels share noise.

Made (``correlation_kernels``): white unit noise convolved with a separable 3x3 kernel outer(k_y, k_x), k = [a, 1, a]
normalised to a unit sum of squares, keeps unit variance and correlates neighbours at rho = 2a / (1 + 2a^2) along
each axis, rho_x rho_y diagonally.

Measured on sky pixels only: per band, pixels more than ``SOURCE_SIGMA`` robust sigmas above the band's median,
and every pixel within ``MASK_GROW`` pixels of one, are masked as sources. The correlation at a lag (dy, dx) is
the mean product of the median-subtracted sky pixels over the unmasked pairs at that lag, over their mean square.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Pixels this many robust sigmas above the band's median are sources.
SOURCE_SIGMA = 3.0
#: Pixels within this many pixels of a source pixel are masked too (its wings).
MASK_GROW = 2
#: Lags (dy, dx) in pixels at which the correlation is measured: the neighbours along x, along y, diagonal.
LAGS: dict[str, tuple[int, int]] = {"x": (0, 1), "y": (1, 0), "diagonal": (1, 1)}
#: The lag-1 correlation of a kernel [a, 1, a] is below this (its bound as a -> 1/sqrt(2)).
MAX_CORRELATION = 1 / math.sqrt(2)


def kernel_taps(rho: float) -> np.ndarray:
    """The taps [a, 1, a] / norm (unit sum of squares) whose output from white noise has lag-1 correlation ``rho``:
    a = (1 - sqrt(1 - 2 rho^2)) / (2 rho), the root of rho = 2a / (1 + 2a^2) with |a| < 1/sqrt(2)."""
    if not abs(rho) < MAX_CORRELATION:
        raise ValueError(f"a lag-1 correlation of {rho:g} is out of reach of a kernel [a, 1, a] (|rho| < 1/sqrt(2))")
    a = (1 - math.sqrt(1 - 2 * rho**2)) / (2 * rho) if rho else 0.0
    taps = np.array([a, 1.0, a])
    return taps / np.linalg.norm(taps)


def correlation_kernels(rho_x: Sequence[float], rho_y: Sequence[float]) -> np.ndarray:
    """Per band, the 3x3 kernel (bands, 3, 3) outer(k_y, k_x) that turns white unit noise into unit-variance noise
    correlated at ``rho_x`` between neighbours along x (columns), ``rho_y`` along y (rows)."""
    return np.stack([np.outer(kernel_taps(y), kernel_taps(x)) for x, y in zip(rho_x, rho_y, strict=True)])


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


def sky_level_and_sigma(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's sky level and sky noise sigma per band (N, bands) each, nanomaggies: the median of its sky pixels
    (sky_mask) and 1.4826 x their MAD."""
    level, sigma = np.empty(images.shape[:2]), np.empty(images.shape[:2])
    for index in np.ndindex(*level.shape):
        plane = np.asarray(images[index], dtype=np.float64)
        sky = plane[sky_mask(plane)]
        level[index] = np.median(sky)
        sigma[index] = 1.4826 * np.median(np.abs(sky - level[index]))
    return level, sigma


def sky_noise_sigma(images: np.ndarray) -> np.ndarray:
    """Each image's sky noise sigma per band (N, bands), nanomaggies (``sky_level_and_sigma``)."""
    return sky_level_and_sigma(images)[1]
