"""Pixelized PSFs from PSFEx models (the Legacy Surveys' per-CCD calibration files).

A PSFEx model is a stack of images (PSF_MASK) combined by a polynomial in the CCD position:
PSF(x, y) = sum_k C_k X^i Y^j with X = (x - POLZERO1) / POLSCAL1, Y = (y - POLZERO2) / POLSCAL2,
terms ordered 1, X, X^2, ..., Y, X Y, ..., Y^deg (PSFEx's order). The image is sampled every
PSF_SAMP CCD pixels and centred at pixel K // 2. The keywords sit in the table's header (PSFEx
output) or as columns of its one row (legacypipe's merged calibration files); both are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits

from data_contracts.survey import PIXEL_SCALE

#: DECam's pixel scale (arcsec per CCD pixel), the scale PSFEx models of DECam CCDs are sampled at.
DECAM_PIXEL_SCALE = 0.263
#: Lanczos order used to resample a PSFEx image onto the stamp's pixel grid.
LANCZOS_ORDER = 3


class PsfexError(ValueError):
    """A PSFEx file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class PsfexModel:
    """One PSFEx model: its polynomial components and where it came from."""

    path: Path
    components: np.ndarray  # (n_terms, K, K) float64
    degree: int
    zero: tuple[float, float]  # POLZERO1, POLZERO2 (CCD pixels)
    scale: tuple[float, float]  # POLSCAL1, POLSCAL2 (CCD pixels)
    sampling: float  # PSF_SAMP: CCD pixels per PSF pixel
    fwhm_pix: float | None  # PSF_FWHM the file records (CCD pixels), if any

    def image(self, x: float, y: float) -> np.ndarray:
        """The PSF image (K, K) at CCD position (x, y) (PSFEx's X_IMAGE, Y_IMAGE), native sampling, unnormalised."""
        dx = (x - self.zero[0]) / self.scale[0]
        dy = (y - self.zero[1]) / self.scale[1]
        terms = [dx**i * dy**j for j in range(self.degree + 1) for i in range(self.degree + 1 - j)]
        return np.tensordot(np.asarray(terms), self.components, axes=1)

    def kernel(
        self,
        x: float,
        y: float,
        size: int,
        pixel_scale: float = PIXEL_SCALE,
        detector_pixel_scale: float = DECAM_PIXEL_SCALE,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """A unit-sum kernel (size, size), size odd, at ``pixel_scale`` arcsec/pixel for CCD position (x, y).

        The PSF image is Lanczos-resampled from its own sampling (PSF_SAMP x ``detector_pixel_scale``)
        with the centres kept at pixel K // 2, then normalised to unit sum.
        """
        if size % 2 == 0:
            raise ValueError(f"kernel size must be odd, got {size}")
        native = self.image(x, y)
        step = pixel_scale / (self.sampling * detector_pixel_scale)  # output pixel in native pixels
        weights = _lanczos_matrix(size, native.shape[-1], step)
        resampled = weights @ native @ weights.T
        total = resampled.sum()
        if not np.isfinite(total) or total <= 0:
            raise PsfexError(f"{self.path}: PSF at ({x}, {y}) has no positive flux (sum {total})")
        return torch.as_tensor(resampled / total, dtype=dtype)


def read_psfex(path: str | Path) -> PsfexModel:
    """Read a PSFEx FITS file (first table HDU with PSF_MASK); raises PsfexError naming the file."""
    path = Path(path)
    try:
        with fits.open(path, memmap=False) as hdus:
            table = next((h for h in hdus[1:] if isinstance(h, fits.BinTableHDU)), None)
            if table is None:
                raise PsfexError(f"{path}: no binary table HDU (a PSFEx file has one with PSF_MASK)")
            columns = {name.lower(): name for name in table.columns.names}
            if "psf_mask" not in columns:
                raise PsfexError(f"{path}: table has no PSF_MASK column; columns: {', '.join(table.columns.names)}")
            header, row = table.header, table.data[0]
            mask = np.asarray(row[columns["psf_mask"]], dtype=np.float64)

            def value(key: str) -> object:
                if key.upper() in header:
                    return header[key.upper()]
                if key in columns:
                    return row[columns[key]]
                raise PsfexError(f"{path}: missing {key.upper()} (neither a header keyword nor a column)")

            names = (str(value("polname1")).strip(), str(value("polname2")).strip())
            degree = int(value("poldeg1"))
            zero = (float(value("polzero1")), float(value("polzero2")))
            scale = (float(value("polscal1")), float(value("polscal2")))
            sampling = float(value("psf_samp"))
            fwhm = float(value("psf_fwhm")) if "PSF_FWHM" in header or "psf_fwhm" in columns else None
    except OSError as exc:
        raise PsfexError(f"{path}: cannot read as FITS ({exc})") from exc
    if names != ("X_IMAGE", "Y_IMAGE"):
        raise PsfexError(f"{path}: polynomial in {names}, expected ('X_IMAGE', 'Y_IMAGE')")
    n_terms = (degree + 1) * (degree + 2) // 2
    if mask.ndim != 3 or mask.shape[0] != n_terms or mask.shape[1] != mask.shape[2] or mask.shape[1] % 2 == 0:
        raise PsfexError(
            f"{path}: PSF_MASK has shape {mask.shape}; expected ({n_terms}, K, K) with K odd for degree {degree}"
        )
    if not np.isfinite(mask).all() or sampling <= 0 or min(abs(s) for s in scale) == 0:
        raise PsfexError(f"{path}: non-finite PSF_MASK values, PSF_SAMP <= 0 or a zero POLSCAL")
    return PsfexModel(path, mask, degree, zero, scale, sampling, fwhm)


def _lanczos_matrix(n_out: int, n_in: int, step: float) -> np.ndarray:
    """(n_out, n_in) Lanczos weights: output pixel j sits at input coordinate n_in // 2 + (j - n_out // 2) step."""
    centres = n_in // 2 + (np.arange(n_out) - n_out // 2) * step
    offsets = centres[:, None] - np.arange(n_in)[None, :]
    a = LANCZOS_ORDER
    return np.where(np.abs(offsets) < a, np.sinc(offsets) * np.sinc(offsets / a), 0.0)
