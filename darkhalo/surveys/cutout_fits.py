"""Cutout-service FITS files: a float32 (band, y, x) cube in the primary HDU, bands named by the
BANDS header (e.g. 'grz'), and an optional INVVAR extension of the same shape (1/nanomaggy^2).

Reading checks what a stamp needs and names the file in every error: each of g, r, z present,
a 3-D cube, an INVVAR of the same shape, finite pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from astropy.io import fits

from darkhalo.artifacts import atomic_file
from darkhalo.surveys.columns import BANDS, KEY
from darkhalo.surveys.provider import Cutouts

#: Moffat beta reported for real cutouts whose PSF is known only by its FWHM (PSFSIZE).
DEFAULT_BETA = 2.8


class CutoutFileError(ValueError):
    """A cutout FITS file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class CutoutFile:
    """One cutout: image and invvar (3, H, W) float32 in g, r, z order (invvar None if absent)."""

    image: np.ndarray
    invvar: np.ndarray | None


def cutout_name(row: pd.Series) -> str:
    """File name of a host's cutout: ``<RELEASE>_<BRICKID>_<OBJID>.fits``."""
    return "_".join(str(int(row[k])) for k in KEY) + ".fits"


def write_cutout_fits(path: Path, image: np.ndarray, invvar: np.ndarray | None = None, **header: object) -> None:
    """Write a (3, H, W) grz cube (and its invvar) atomically; ``header`` cards go to the primary HDU."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] != len(BANDS):
        raise ValueError(f"{path}: image must be ({len(BANDS)}, H, W), got {image.shape}")
    primary = fits.PrimaryHDU(image)
    primary.header["BANDS"] = ("".join(BANDS), "band of each plane, in order")
    primary.header["BUNIT"] = "nanomaggy"
    for name, value in header.items():
        primary.header[name.upper()] = value
    hdus = [primary]
    if invvar is not None:
        invvar = np.asarray(invvar, dtype=np.float32)
        if invvar.shape != image.shape:
            raise ValueError(f"{path}: invvar shape {invvar.shape} differs from image shape {image.shape}")
        hdus.append(fits.ImageHDU(invvar, name="INVVAR"))
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())


def read_cutout_fits(path: Path | IO[bytes]) -> CutoutFile:
    """Read a cutout file (or an open binary buffer) into g, r, z order; raises CutoutFileError naming the file."""
    try:
        with fits.open(path, memmap=False) as hdus:
            data = hdus[0].data
            bands = str(hdus[0].header.get("BANDS", "")).strip().lower()
            invvar = hdus["INVVAR"].data if "INVVAR" in hdus else None
    except (OSError, ValueError, TypeError) as exc:  # astropy raises TypeError on a cut-short data unit
        raise CutoutFileError(f"{path}: not a readable FITS file ({exc})") from exc
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise CutoutFileError(f"{path}: primary HDU must be a (band, y, x) cube, got shape {shape}")
    if len(bands) != data.shape[0]:
        raise CutoutFileError(f"{path}: BANDS header {bands!r} does not name the cube's {data.shape[0]} planes")
    missing = [b for b in BANDS if b not in bands]
    if missing:
        raise CutoutFileError(f"{path}: missing band(s) {', '.join(missing)} (BANDS = {bands!r})")
    order = [bands.index(b) for b in BANDS]
    image = np.ascontiguousarray(data[order], dtype=np.float32)
    if not np.isfinite(image).all():
        plane = BANDS[int(np.flatnonzero(~np.isfinite(image).all(axis=(1, 2)))[0])]
        raise CutoutFileError(f"{path}: band {plane} has non-finite pixels ({(~np.isfinite(image)).sum()} in all)")
    if invvar is not None:
        if invvar.shape != data.shape:
            raise CutoutFileError(f"{path}: INVVAR shape {invvar.shape} differs from image shape {data.shape}")
        invvar = np.ascontiguousarray(invvar[order], dtype=np.float32)
        if not np.isfinite(invvar).all() or (invvar < 0).any():
            raise CutoutFileError(f"{path}: INVVAR has negative or non-finite values")
    return CutoutFile(image, invvar)


def sky_sigma(image: np.ndarray) -> np.ndarray:
    """Robust per-band background sigma (3,) of a (3, H, W) stamp, nanomaggies: 1.4826 x MAD over all pixels."""
    flat = np.asarray(image, dtype=np.float64).reshape(len(image), -1)
    return 1.4826 * np.median(np.abs(flat - np.median(flat, axis=1, keepdims=True)), axis=1)


def sky_invvar(image: np.ndarray) -> np.ndarray:
    """A (3, H, W) float32 invvar for a cutout that came without one: each band's 1 / sky_sigma^2."""
    sigma = sky_sigma(image)
    if not (sigma > 0).all():
        raise CutoutFileError(f"cutout has a band with no pixel noise (sky sigma {sigma}); cannot estimate INVVAR")
    return np.broadcast_to((1 / sigma**2).astype(np.float32)[:, None, None], image.shape).copy()


def survey_psf(hosts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The survey PSF of real cutouts (N, 3) each: FWHM from PSFSIZE_G/R/Z (arcsec), beta DEFAULT_BETA."""
    fwhm = np.stack([hosts[f"PSFSIZE_{b.upper()}"].to_numpy(np.float32) for b in BANDS], axis=1)
    return fwhm.reshape(-1, len(BANDS)), np.full((len(hosts), len(BANDS)), DEFAULT_BETA, np.float32)


class FolderCutoutProvider:
    """Real cutouts from a folder of cutout-service FITS files named by ``cutout_name``.

    The stamp is the central size x size of each file; the PSF is the survey model at the host's
    PSFSIZE with beta = DEFAULT_BETA (a folder of cutouts carries no PSF shape).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def cutouts(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        """Stamps for ``hosts`` read from the folder, in the rows' order."""
        images = np.zeros((len(hosts), 3, size, size), np.float32)
        invvar = np.zeros_like(images)
        for i in range(len(hosts)):
            path = self.folder / cutout_name(hosts.iloc[i])
            cut = read_cutout_fits(path)
            h, w = cut.image.shape[1:]
            if h < size or w < size:
                raise CutoutFileError(f"{path}: cutout {h}x{w} is smaller than the {size}x{size} stamp")
            if cut.invvar is None:
                raise CutoutFileError(f"{path}: no INVVAR extension")
            y0, x0 = h // 2 - size // 2, w // 2 - size // 2
            images[i] = cut.image[:, y0 : y0 + size, x0 : x0 + size]
            invvar[i] = cut.invvar[:, y0 : y0 + size, x0 : x0 + size]
        return Cutouts(images, invvar, *survey_psf(hosts))
