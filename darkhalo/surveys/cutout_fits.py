"""Cutout-service FITS files: a float32 (band, y, x) cube in the primary HDU, bands named by the
BANDS header (e.g. 'grz'), and an optional INVVAR extension of the same shape (1/nanomaggy^2).

The host sits at the WCS reference pixel (CRPIX1, CRPIX2; the service puts the requested RA, Dec
there, at ((W + 1) / 2, (H + 1) / 2) in FITS's 1-based pixels, so an even-sized cutout is centred
between pixels); a file without CRPIX is read by that same convention. Files written here carry
CRPIX at the host and a north-up, east-left CD matrix.

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
from darkhalo.lensing.psf import CORE_BETA_RANGE
from darkhalo.surveys.columns import BANDS, KEY
from darkhalo.surveys.provider import Cutouts
from data_contracts.survey import PIXEL_SCALE

#: Moffat core beta per band reported for real cutouts whose PSF is known only by its PSFSIZE: the
#: middle of the real DECam models' fitted range.
DEFAULT_BETA = {band: sum(CORE_BETA_RANGE[band]) / 2 for band in BANDS}


class CutoutFileError(ValueError):
    """A cutout FITS file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class CutoutFile:
    """One cutout: image and invvar (3, H, W) float32 in g, r, z order (invvar None if absent) and
    the host's (x, y) position in 0-based pixels of the file."""

    image: np.ndarray
    invvar: np.ndarray | None
    centre: tuple[float, float]


def cutout_name(row: pd.Series) -> str:
    """File name of a host's cutout: ``<RELEASE>_<BRICKID>_<OBJID>.fits``."""
    return "_".join(str(int(row[k])) for k in KEY) + ".fits"


def write_cutout_fits(
    path: Path,
    image: np.ndarray,
    invvar: np.ndarray | None = None,
    centre: tuple[float, float] | None = None,
    **header: object,
) -> None:
    """Write a (3, H, W) grz cube (and its invvar) atomically, the host at 0-based pixel ``centre``
    (x, y; default (W // 2, H // 2), where darkhalo's stamps hold it); ``header`` cards go to the primary HDU."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] != len(BANDS):
        raise ValueError(f"{path}: image must be ({len(BANDS)}, H, W), got {image.shape}")
    x, y = centre if centre is not None else (image.shape[2] // 2, image.shape[1] // 2)
    primary = fits.PrimaryHDU(image)
    primary.header["BANDS"] = ("".join(BANDS), "band of each plane, in order")
    primary.header["BUNIT"] = "nanomaggy"
    primary.header["CRPIX1"] = (float(x) + 1, "host x (1-based pixels)")
    primary.header["CRPIX2"] = (float(y) + 1, "host y (1-based pixels)")
    primary.header["CD1_1"] = (-PIXEL_SCALE / 3600, "deg per pixel: east left")
    primary.header["CD2_2"] = (PIXEL_SCALE / 3600, "deg per pixel: north up")
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
            reference = (hdus[0].header.get("CRPIX1"), hdus[0].header.get("CRPIX2"))
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
    if None in reference:
        centre = ((data.shape[2] - 1) / 2, (data.shape[1] - 1) / 2)
    else:
        try:
            centre = (float(reference[0]) - 1, float(reference[1]) - 1)
        except (TypeError, ValueError):
            raise CutoutFileError(f"{path}: CRPIX1/CRPIX2 {reference} are not numbers") from None
        if not np.isfinite(centre).all():
            raise CutoutFileError(f"{path}: CRPIX1/CRPIX2 {reference} are not finite")
    return CutoutFile(image, invvar, centre)


def crop_at(cut: CutoutFile, size: int, path: object) -> tuple[slice, slice, np.ndarray]:
    """The (y, x) slices of the size x size stamp whose pixel size // 2 is nearest the host, and
    the host's (x, y) offset from that pixel (float32, within half a pixel); names ``path`` when
    the host is too near the edge for such a stamp."""
    h, w = cut.image.shape[1:]
    corner = [int(np.floor(c + 0.5)) - size // 2 for c in cut.centre]
    if min(corner) < 0 or corner[0] + size > w or corner[1] + size > h:
        raise CutoutFileError(
            f"{path}: the host at pixel ({cut.centre[0]:g}, {cut.centre[1]:g}) of a {h}x{w} cutout is too near "
            f"the edge for a {size}x{size} stamp"
        )
    offset = np.array([c - k - size // 2 for c, k in zip(cut.centre, corner, strict=True)], np.float32)
    return slice(corner[1], corner[1] + size), slice(corner[0], corner[0] + size), offset


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
    """The survey PSF of real cutouts (N, 3) each: PSFSIZE_G/R/Z (arcsec) and each band's DEFAULT_BETA."""
    fwhm = np.stack([hosts[f"PSFSIZE_{b.upper()}"].to_numpy(np.float32) for b in BANDS], axis=1)
    return fwhm.reshape(-1, len(BANDS)), np.tile(
        np.array([DEFAULT_BETA[b] for b in BANDS], np.float32), (len(hosts), 1)
    )


class FolderCutoutProvider:
    """Real cutouts from a folder of cutout-service FITS files named by ``cutout_name``.

    The stamp is the size x size of each file that holds the host nearest its pixel size // 2
    (the offset left is recorded, and the lens drawn there); the PSF is the survey model at the host's
    PSFSIZE with each band's DEFAULT_BETA (a folder of cutouts carries no PSF shape).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def cutouts(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        """Stamps for ``hosts`` read from the folder, in the rows' order."""
        images = np.zeros((len(hosts), 3, size, size), np.float32)
        invvar = np.zeros_like(images)
        offset = np.zeros((len(hosts), 2), np.float32)
        for i in range(len(hosts)):
            path = self.folder / cutout_name(hosts.iloc[i])
            cut = read_cutout_fits(path)
            h, w = cut.image.shape[1:]
            if h < size or w < size:
                raise CutoutFileError(f"{path}: cutout {h}x{w} is smaller than the {size}x{size} stamp")
            if cut.invvar is None:
                raise CutoutFileError(f"{path}: no INVVAR extension")
            rows, cols, offset[i] = crop_at(cut, size, path)
            images[i] = cut.image[:, rows, cols]
            invvar[i] = cut.invvar[:, rows, cols]
        return Cutouts(images, invvar, *survey_psf(hosts), offset)
