"""What a host looks like around the stamp's centre (pixel size // 2): its radial profile, colour gradient and
neighbours, measured alike on real and mock stamps (N, 3, S, S) nanomaggies in BANDS order.

Each band is sky-subtracted by the median of its sky pixels (``darkhalo.surveys.noise.sky_level_and_sigma``), and a
pixel belongs to the annulus that holds its centre. Radial profile: the azimuthal mean surface brightness in the
``PROFILE_EDGES`` annuli (nanomaggies / arcsec^2) over the host's r flux within ``NORM_RADIUS`` (nanomaggies),
so arcsec^-2. Colour gradient: the colour (mag) within ``INNER_RADIUS`` minus the colour in the annulus
``INNER_RADIUS``-``NORM_RADIUS``. Neighbours: in r, groups of at least ``DETECT_PIXELS`` connected pixels
(4-connectivity, ``scipy.ndimage.label``) above ``DETECT_SNR`` sky sigmas (1.4826 MAD of the sky pixels),
counted when their flux-weighted centroid lies beyond ``NEIGHBOUR_RADIUS``, per arcmin^2 of stamp beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from darkhalo.surveys.noise import sky_level_and_sigma
from data_contracts.survey import BANDS

#: Annulus edges of the radial profile (arcsec).
PROFILE_EDGES = np.arange(0.0, 6.01, 0.5)
#: The profiles are normalised to the r flux within this radius (arcsec); the outer colour annulus ends here.
NORM_RADIUS = 3.0
#: The inner colour is measured within this radius (arcsec).
INNER_RADIUS = 1.0
#: Colours whose gradients are measured, as (blue band, red band).
COLOURS = (("g", "r"), ("r", "z"))
#: Detection: pixels this many sky sigmas above the sky, in groups of at least this many.
DETECT_SNR = 3.0
DETECT_PIXELS = 5
#: Sources whose centroid lies beyond this radius (arcsec) are neighbours, not the host.
NEIGHBOUR_RADIUS = 4.0
R = BANDS.index("r")


def radii(size: int, pixel_scale: float) -> np.ndarray:
    """Each pixel centre's distance (S, S) in arcsec from the stamp's centre pixel (size // 2, size // 2)."""
    offsets = (np.arange(size) - size // 2) * pixel_scale
    return np.hypot(offsets[:, None], offsets[None, :])


def sky_subtracted(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (N, 3, S, S) minus each band's sky level, and each band's sky sigma (N, 3), nanomaggies."""
    images = np.asarray(images, dtype=np.float64)
    level, sigma = sky_level_and_sigma(images)
    return images - level[:, :, None, None], sigma


@dataclass(frozen=True)
class HostMeasures:
    """Per host: radial profiles (N, 3, len(PROFILE_EDGES) - 1) arcsec^-2, colour gradients by name ("g-r",
    "r-z") (N,) mag (NaN where a flux is not positive), neighbour density (N,) per arcmin^2."""

    profiles: np.ndarray
    gradients: dict[str, np.ndarray]
    neighbours: np.ndarray


def measure_hosts(images: np.ndarray, pixel_scale: float) -> HostMeasures:
    """The module's measures of ``images`` (N, 3, S, S) nanomaggies at ``pixel_scale`` arcsec per pixel."""
    light, sigma = sky_subtracted(images)
    r = radii(light.shape[-1], pixel_scale)
    return HostMeasures(
        _profiles(light, r, pixel_scale), _gradients(light, r), _neighbours(light, sigma[:, R], r, pixel_scale)
    )


def _profiles(light: np.ndarray, r: np.ndarray, pixel_scale: float) -> np.ndarray:
    annulus = np.digitize(r, PROFILE_EDGES) - 1
    means = np.stack([light[..., annulus == k].mean(axis=-1) for k in range(len(PROFILE_EDGES) - 1)], axis=-1)
    norm = light[:, R][:, r < NORM_RADIUS].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return means / pixel_scale**2 / np.where(norm > 0, norm, np.nan)[:, None, None]


def _gradients(light: np.ndarray, r: np.ndarray) -> dict[str, np.ndarray]:
    inner = light[..., r < INNER_RADIUS].sum(axis=-1)
    outer = light[..., (r >= INNER_RADIUS) & (r < NORM_RADIUS)].sum(axis=-1)

    def colour(flux: np.ndarray, blue: str, red: str) -> np.ndarray:
        b, d = flux[:, BANDS.index(blue)], flux[:, BANDS.index(red)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((b > 0) & (d > 0), -2.5 * np.log10(b / d), np.nan)

    return {f"{b}-{d}": colour(inner, b, d) - colour(outer, b, d) for b, d in COLOURS}


def _neighbours(light: np.ndarray, sigma: np.ndarray, r: np.ndarray, pixel_scale: float) -> np.ndarray:
    centre = light.shape[-1] // 2
    counts = np.zeros(len(light))
    for i, plane in enumerate(light[:, R]):
        labels, n = ndimage.label(plane > DETECT_SNR * sigma[i])
        index = np.arange(1, n + 1)
        big = index[ndimage.sum_labels(np.ones_like(plane), labels, index) >= DETECT_PIXELS]
        centroids = np.array(ndimage.center_of_mass(plane, labels, big)).reshape(-1, 2)
        counts[i] = (np.hypot(*(centroids - centre).T) * pixel_scale > NEIGHBOUR_RADIUS).sum()
    return counts / ((r > NEIGHBOUR_RADIUS).sum() * (pixel_scale / 60) ** 2)
