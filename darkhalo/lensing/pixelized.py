"""Pixelized injection PSFs from real PSFEx models (spec ``psf: {model: pixelized, psfex_dir: ...}``).

A cutout comes with its host's PSFSIZE per band but not with the CCDs it was stacked from, so each
band's kernel is the real PSFEx model of that band whose PSFSIZE is nearest the host's, at its
polynomial origin, stretched so that the kernel's PSFSIZE is the host's: the real core and wing
shape at the host's seeing. PSFSIZE is measured as legacypipe defines it (``psf.psfsize``) on the
kernels themselves; the header's PSF_FWHM (0.93-0.98 x PSFSIZE on the real DECam models) plays no
part. The stretch widens the model's pixel too, which leaves the kernel's PSFSIZE within 1 % of
the host's (0.8-2.4"). A model's band comes from its file name (``..._ooi_<band>_...``, DECam's).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from darkhalo.lensing.psf import psfsize
from darkhalo.lensing.psfex import DECAM_PIXEL_SCALE, PsfexError, PsfexModel, read_psfex
from data_contracts.survey import BANDS, PIXEL_SCALE

_BAND_IN_NAME = re.compile(r"_ooi_([grz])_")


@lru_cache(maxsize=8)
def psfex_by_band(folder: Path) -> dict[str, tuple[PsfexModel, ...]]:
    """The PSFEx models (with a PSF_FWHM) in ``folder`` by band; every band must have one."""
    found: dict[str, list[PsfexModel]] = {b: [] for b in BANDS}
    for path in sorted(Path(folder).glob("*.fits")):
        match = _BAND_IN_NAME.search(path.name)
        if match:
            model = read_psfex(path)
            if model.fwhm_pix is not None:
                found[match.group(1)].append(model)
    missing = [b for b in BANDS if not found[b]]
    if missing:
        named = ", ".join(missing)
        raise PsfexError(f"{folder}: no PSFEx file (named *_ooi_<band>_*, with PSF_FWHM) for band(s) {named}")
    return {b: tuple(models) for b, models in found.items()}


def model_psfsize(model: PsfexModel, pixel_scale: float = PIXEL_SCALE) -> float:
    """A model's PSFSIZE (arcsec) at its polynomial origin, on a kernel of its own side at ``pixel_scale``
    (on the native 0.263" pixels it differs by < 0.2 %)."""
    side = model.components.shape[-1]
    return float(psfsize(model.kernel(*model.zero, side, pixel_scale, dtype=torch.float64), pixel_scale))


def pixelized_kernels(
    models: dict[str, tuple[PsfexModel, ...]], fwhm: np.ndarray, size: int, pixel_scale: float
) -> torch.Tensor:
    """Unit-sum kernels (N, 3, size, size) float64 for per-stamp, per-band PSFSIZE (N, 3) arcsec."""
    fwhm = np.asarray(fwhm, dtype=np.float64)
    if fwhm.ndim != 2 or fwhm.shape[1] != len(BANDS) or not (np.isfinite(fwhm) & (fwhm > 0)).all():
        raise ValueError(f"fwhm must be (N, 3) finite and > 0 arcsec, got shape {fwhm.shape}")
    kernels = torch.empty((len(fwhm), len(BANDS), size, size), dtype=torch.float64)
    for j, band in enumerate(BANDS):
        own = np.array([model_psfsize(m, pixel_scale) for m in models[band]])
        for i, target in enumerate(fwhm[:, j]):
            nearest = int(np.argmin(np.abs(own - target)))
            model = models[band][nearest]
            stretch = target / own[nearest]  # each native pixel spans stretch x its arcsec on the sky
            kernels[i, j] = model.kernel(
                *model.zero, size, pixel_scale, DECAM_PIXEL_SCALE * stretch, dtype=torch.float64
            )
    return kernels
