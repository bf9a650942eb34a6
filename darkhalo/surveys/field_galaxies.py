"""Faint field galaxies: the sky's faint galaxies that no catalog row holds, as pre-PSF light on a host's canvas.

Real stamps hold tens of faint galaxies per arcmin^2 (the spec's ``survey.field_galaxies``,
darkhalo.spec.FieldGalaxies); the mock catalog's rows alone put ~0.2 there. Per host, from its own generator seeded by
(seed, RELEASE, BRICKID, OBJID) on ``STREAM``: a Poisson number of galaxies at the spec's density over the canvas,
positions uniform over its pixels, r magnitudes from the number counts (``magnitudes_from_counts``), g - r and r - z
uniform in the spec's ranges, round Gaussians of uniform sigma, dimmed by the host's MW transmission. Light in
nanomaggies per pixel on a (3, canvas, canvas) g, r, z grid centred on the host at pixel (canvas // 2, canvas // 2),
integrated over each pixel (darkhalo.surveys.confusers.add_gaussians), so it goes through the host's kernels and
noise like its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from darkhalo.spec import FieldGalaxies
from darkhalo.surveys.confusers import add_gaussians
from darkhalo.surveys.mock import magnitudes_from_counts
from data_contracts.survey import PIXEL_SCALE, mag_to_flux

#: The hosts' field-galaxy stream (spawn key), after confusers.STREAM (3).
STREAM = 4


@dataclass(frozen=True)
class FieldDraw:
    """One host's field galaxies: centres ``x``, ``y`` (K,) arcsec from the canvas centre (x along columns), round
    Gaussian ``sigma`` (K,) arcsec, and total ``flux`` (K, 3) g, r, z nanomaggies, MW-dimmed."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    flux: np.ndarray


def draw(seed: int, key: Sequence[int], field: FieldGalaxies, transmission: np.ndarray, canvas: int) -> FieldDraw:
    """The field galaxies of the host ``key`` (RELEASE, BRICKID, OBJID) on a ``canvas`` x ``canvas`` pixel grid,
    dimmed by its ``transmission`` (3,): deterministic per (seed, key), independent of its batch."""
    if canvas < 1:
        raise ValueError(f"canvas must be a positive number of pixels, got {canvas}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM, *(int(k) for k in key))))
    k = int(rng.poisson(field.density * (canvas * PIXEL_SCALE / 60) ** 2))
    x, y = (rng.uniform(0, canvas, (2, k)) - 0.5 - canvas // 2) * PIXEL_SCALE  # over the canvas pixels
    r = magnitudes_from_counts(rng, k, field.r_min, field.r_max, field.slope)
    g_r, r_z = rng.uniform(field.g_r.min, field.g_r.max, k), rng.uniform(field.r_z.min, field.r_z.max, k)
    flux = mag_to_flux(np.stack([r + g_r, r, r - r_z], axis=1)) * np.asarray(transmission, dtype=np.float64)
    return FieldDraw(x, y, rng.uniform(field.sigma.min, field.sigma.max, k), flux)


def light(galaxies: FieldDraw, canvas: int) -> np.ndarray:
    """The galaxies' light (3, canvas, canvas) nanomaggies per pixel before the PSF; light off the canvas is lost."""
    out = np.zeros((3, canvas, canvas))
    if len(galaxies.x):
        add_gaussians(out, galaxies.x, galaxies.y, galaxies.sigma, galaxies.flux)
    return out
