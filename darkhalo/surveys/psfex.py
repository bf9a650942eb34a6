"""Real PSF models: the constant term of a PSFEx file (DECam calibration files of legacypipe).

A PSFEx model is a polynomial in the CCD position; component 0 of PSF_MASK is its value at the
polynomial's origin (the CCD centre). It is sampled every PSF_SAMP image pixels; we resample it to
the image pixel grid when PSF_SAMP != 1 and normalise it to unit sum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.ndimage import map_coordinates


@dataclass(frozen=True)
class PsfexModel:
    """A PSFEx constant term on the image pixel grid (odd square, unit sum), its FWHM and band."""

    kernel: np.ndarray
    fwhm_arcsec: float
    band: str | None


def read_psfex(path: Path, pixel_scale: float = 0.262) -> PsfexModel:
    """The constant term of a PSFEx file; errors name the file. FWHM from PSF_FWHM (pixels)."""
    try:
        with fits.open(path, memmap=False) as hdus:
            table = hdus[1]
            header, data = table.header, table.data
            names = [n.lower() for n in data.columns.names]

            def value(key: str) -> float:
                return float(data[key][0]) if key in names else float(header[key.upper()])

            mask = np.asarray(data["psf_mask"][0], dtype=np.float64)
            samp, fwhm_pix = value("psf_samp"), value("psf_fwhm")
    except (OSError, KeyError, IndexError) as exc:
        raise ValueError(f"{path}: not a PSFEx model with PSF_MASK, PSF_SAMP and PSF_FWHM ({exc})") from exc
    if mask.ndim != 3 or mask.shape[1] != mask.shape[2] or mask.shape[1] % 2 == 0:
        raise ValueError(f"{path}: PSF_MASK must be (components, K, K) with odd K, got {mask.shape}")
    kernel = mask[0]
    if samp != 1:
        k = kernel.shape[0]
        centre = k // 2
        offsets = (np.arange(k) - centre) / samp + centre
        yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
        kernel = map_coordinates(kernel, [yy, xx], order=3, mode="constant")
    match = re.search(r"_ooi_([grzi])_", Path(path).name)
    return PsfexModel(kernel / kernel.sum(), fwhm_pix * pixel_scale, match.group(1) if match else None)
