"""Real DR10 cutouts saved as .npz (101 x 101 x 3 (y, x, band) grz nanomaggies + ``meta_*`` fields)
turned into the cutout service's FITS layout and into catalog rows for their objects.

The FITS is the central ``size`` x ``size`` as a (band, y, x) cube with BANDS = 'grz' and an INVVAR
HDU (the npz files carry none: each band's sky 1 / sigma^2, measured on the whole 101 x 101),
named ``<RELEASE>_<BRICKID>_<OBJID>.fits`` as FolderCutoutProvider expects.

The npz files carry no catalog row, so one is built (sweep columns) from what they hold:
measured on the pixels - FLUX_G/R/Z in a 3" radius aperture and FIBERFLUX in 0.75" (sky = median
beyond 10"), their inverse variances, PSFDEPTH/GALDEPTH from the sky sigma; from the metadata -
RA, DEC, TYPE, BRICKNAME (BRICKID from the brick grid), OBJID, NOBS_Z; PSFSIZE from the given
per-band FWHM (``psfex_psfsize``: the median of a folder of real PSFEx models). What is not
measured keeps the sweeps' "no data" values: W1/W2 flux and ivar 0, MW_TRANSMISSION 1, EBV 0,
round shape (SHAPE_E1/E2 0).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo.artifacts import atomic_file
from darkhalo.lensing.pixelized import model_psfsize, psfex_by_band
from darkhalo.surveys.bricks import brick_id
from darkhalo.surveys.columns import BANDS, SWEEP_COLUMNS
from darkhalo.surveys.cutout_fits import cutout_name, sky_invvar, sky_sigma, write_cutout_fits

PIXEL_SCALE = 0.262  # arcsec
RELEASE_DR10_SOUTH = 10000
APERTURE_ARCSEC = 3.0
FIBER_ARCSEC = 0.75  # radius of a 1.5" DESI fibre
SKY_ARCSEC = 10.0  # pixels beyond this radius set the sky level
GALAXY_REFF_ARCSEC = 0.45  # the REX size GALDEPTH is quoted for
SERSIC_OF_TYPE = {"PSF": 0.0, "REX": 1.0, "EXP": 1.0, "DEV": 4.0, "SER": 4.0}


class NpzCutoutError(ValueError):
    """An npz cutout that cannot be used; the message names the file and the problem."""


def read_npz(path: Path) -> tuple[np.ndarray, dict[str, object]]:
    """The (3, H, W) float32 grz cube and the ``meta_*`` fields (without the prefix) of one npz file."""
    with np.load(path, allow_pickle=False) as data:
        if "cutout" not in data.files:
            raise NpzCutoutError(f"{path}: no 'cutout' array (has {', '.join(data.files)})")
        cube = np.asarray(data["cutout"], dtype=np.float32)
        meta = {k.removeprefix("meta_"): data[k].item() for k in data.files if k.startswith("meta_")}
    if cube.ndim != 3 or cube.shape[2] != len(BANDS) or cube.shape[0] != cube.shape[1]:
        raise NpzCutoutError(f"{path}: cutout must be (S, S, 3) (y, x, band), got {cube.shape}")
    if meta.get("bands_requested", "grz") != "grz":
        raise NpzCutoutError(f"{path}: bands {meta['bands_requested']!r}, expected 'grz'")
    if not np.isfinite(cube).all():
        raise NpzCutoutError(f"{path}: {(~np.isfinite(cube)).sum()} non-finite pixels")
    for key in ("ra", "dec", "galaxy_id", "match_type"):
        if key not in meta:
            raise NpzCutoutError(f"{path}: no meta_{key}")
    return np.ascontiguousarray(cube.transpose(2, 0, 1)), meta


def psfex_psfsize(folder: Path) -> dict[str, float]:
    """Median PSFSIZE (arcsec, legacypipe's measure: darkhalo.lensing.psf.psfsize) per band of the
    PSFEx files in ``folder``."""
    return {
        band: float(np.median([model_psfsize(m) for m in models])) for band, models in psfex_by_band(folder).items()
    }


def _objid(path: Path, galaxy_id: str) -> int:
    match = re.fullmatch(r"\d{4}[pm]\d{3}_(\d+)", galaxy_id)
    if match is None:
        raise NpzCutoutError(f"{path}: meta_galaxy_id {galaxy_id!r} is not <brickname>_<objid>")
    return int(match.group(1))


def _aperture_flux(cube: np.ndarray, radius: float, sky: np.ndarray) -> tuple[np.ndarray, int]:
    size = cube.shape[-1]
    yy, xx = np.mgrid[:size, :size] - size // 2
    inside = np.hypot(xx, yy) * PIXEL_SCALE <= radius
    return (cube[:, inside] - sky[:, None]).sum(axis=1), int(inside.sum())


def _depth(sigma: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Point-source depth as an inverse variance (1/nanomaggy^2): 1 / (sigma^2 NEA), Gaussian NEA."""
    nea = 4 * np.pi * (fwhm / 2.3548 / PIXEL_SCALE) ** 2
    return 1 / (sigma**2 * nea)


def host_row(path: Path, cube: np.ndarray, meta: dict[str, object], psf_fwhm: dict[str, float]) -> dict[str, object]:
    """The sweep-column row of an npz cutout's object (see the module docstring for each column)."""
    ra, dec = float(meta["ra"]), float(meta["dec"])
    size = cube.shape[-1]
    yy, xx = np.mgrid[:size, :size] - size // 2
    outer = np.hypot(xx, yy) * PIXEL_SCALE > SKY_ARCSEC
    sky = np.median(cube[:, outer], axis=1)
    sigma = sky_sigma(cube)
    flux, n_pix = _aperture_flux(cube, APERTURE_ARCSEC, sky)
    fiber, _ = _aperture_flux(cube, FIBER_ARCSEC, sky)
    fwhm = np.array([psf_fwhm[b] for b in BANDS])
    kind = str(meta["match_type"])
    row: dict[str, object] = {
        "RELEASE": RELEASE_DR10_SOUTH,
        "BRICKID": int(brick_id(np.array([ra]), np.array([dec]))[0]),
        "BRICKNAME": str(meta.get("brickname", "")),
        "OBJID": _objid(path, str(meta["galaxy_id"])),
        "TYPE": kind,
        "RA": ra,
        "DEC": dec,
        "EBV": 0.0,
        "SHAPE_R": 0.0 if kind == "PSF" else GALAXY_REFF_ARCSEC,
        "SHAPE_E1": 0.0,
        "SHAPE_E2": 0.0,
        "SERSIC": SERSIC_OF_TYPE.get(kind, 1.0),
        "MASKBITS": 0,
        "FITBITS": 0,
        "REF_CAT": "",
        "GAIA_PHOT_G_MEAN_MAG": 0.0,
    }
    for i, band in enumerate(b.upper() for b in BANDS):
        row[f"FLUX_{band}"] = flux[i]
        row[f"FLUX_IVAR_{band}"] = 1 / (sigma[i] ** 2 * n_pix)
        row[f"FIBERFLUX_{band}"] = row[f"FIBERTOTFLUX_{band}"] = fiber[i]
        row[f"PSFSIZE_{band}"] = fwhm[i]
        row[f"PSFDEPTH_{band}"] = _depth(sigma[i], fwhm[i])
        row[f"GALDEPTH_{band}"] = _depth(sigma[i], np.hypot(fwhm[i], 2 * GALAXY_REFF_ARCSEC))
        row[f"NOBS_{band}"] = int(meta.get(f"nobs_{band.lower()}", int(bool(meta.get(f"has_{band.lower()}", True)))))
    for band in ("W1", "W2"):
        row[f"FLUX_{band}"] = row[f"FLUX_IVAR_{band}"] = 0.0
    for band in ("G", "R", "Z", "W1", "W2"):
        row[f"MW_TRANSMISSION_{band}"] = 1.0
    return row


def convert_npz_folder(
    folder: Path, out: Path, psf_fwhm: dict[str, float], size: int = 64
) -> tuple[pd.DataFrame, list[Path]]:
    """Every ``*.npz`` in ``folder`` as ``out/cutouts/<key>.fits`` (central size x size) and one catalog
    row each; the rows are also written as ``out/hosts.parquet`` (sweep columns) for the survey stage."""
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise NpzCutoutError(f"{folder}: no .npz cutouts")
    rows, written = [], []
    for path in paths:
        cube, meta = read_npz(path)
        side = cube.shape[-1]
        if side < size:
            raise NpzCutoutError(f"{path}: cutout {side}x{side} is smaller than {size}x{size}")
        row = host_row(path, cube, meta, psf_fwhm)
        y0 = side // 2 - size // 2
        centre = (slice(None), slice(y0, y0 + size), slice(y0, y0 + size))
        invvar = sky_invvar(cube)
        target = out / "cutouts" / cutout_name(pd.Series(row))
        write_cutout_fits(target, cube[centre], invvar[centre], ra=row["RA"], dec=row["DEC"], layer=meta.get("layer"))
        rows.append(row)
        written.append(target)
    hosts = pd.DataFrame(rows)
    hosts = hosts.astype({c: (object if d == "str" else d) for c, d in SWEEP_COLUMNS.items()})[list(SWEEP_COLUMNS)]
    with atomic_file(out / "hosts.parquet", "wb") as handle:
        hosts.to_parquet(handle, index=False)
    return hosts, written
