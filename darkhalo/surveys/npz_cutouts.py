"""Real cutouts turned into the folder provider's layout: cutout-service FITS and a catalog row for each object.

Two sources, one writer (``write_hosts``): real DR10 cutouts saved as .npz (101 x 101 x 3 (y, x, band) grz
nanomaggies + ``meta_*`` fields; ``convert_npz_folder``), and any input ``darkhalo.real_inputs.read_input``
reads (``convert_real_input``), each image resampled onto 0.262"/pix with ``darkhalo.resampling.resample`` over
its whole field, the host on pixel size // 2.

The FITS is the central ``size`` x ``size`` as a (band, y, x) cube with BANDS = 'grz' and an INVVAR
HDU (the files carry none: each band's sky 1 / sigma^2, measured on the whole cube),
named ``<RELEASE>_<BRICKID>_<OBJID>.fits`` as FolderCutoutProvider expects.

The files carry no catalog row, so one is built (sweep columns, ``host_row``): measured on the pixels -
FLUX_G/R/Z in a 3" radius aperture and FIBERFLUX in 0.75" (sky = median beyond 10"), their inverse
variances, PSFDEPTH/GALDEPTH from the sky sigma; PSFSIZE from the given per-band FWHM (``psfex_psfsize``: the
median of a folder of real PSFEx models). The identity columns come from an npz file's metadata (RA, DEC, TYPE,
BRICKNAME (BRICKID from the brick grid), OBJID, NOBS_Z). A ``read_input`` image has no coordinates darkhalo
reads (the DES cutouts have none at all), so each gets a PLACEHOLDER, not a sky position: RELEASE 0 (no survey
release), RA, Dec (180, 0) (the resampling frame's reference) and its brick, OBJID its index in the input, TYPE
REX, NOBS 1; its FITS carries OBJNAME (the input's name for it) and POSITION = 'placeholder' instead of RA, DEC.
What is not measured keeps the sweeps' "no data" values: W1/W2 flux and ivar 0, MW_TRANSMISSION 1, EBV 0,
round shape (SHAPE_E1/E2 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo.artifacts import atomic_file
from darkhalo.lensing.pixelized import model_psfsize, psfex_by_band
from darkhalo.real_inputs import read_input
from darkhalo.surveys.bricks import brick_id, brick_name
from darkhalo.surveys.columns import BANDS, SWEEP_COLUMNS
from darkhalo.surveys.cutout_fits import cutout_name, sky_invvar, sky_sigma, write_cutout_fits
from darkhalo.surveys.mock import PSF_MEDIAN
from data_contracts.survey import PIXEL_SCALE

RELEASE_DR10_SOUTH = 10000
APERTURE_ARCSEC = 3.0
FIBER_ARCSEC = 0.75  # radius of a 1.5" DESI fibre
SKY_ARCSEC = 10.0  # pixels beyond this radius set the sky level
GALAXY_REFF_ARCSEC = 0.45  # the REX size GALDEPTH is quoted for
SERSIC_OF_TYPE = {"PSF": 0.0, "REX": 1.0, "EXP": 1.0, "DEV": 4.0, "SER": 4.0}
#: Per-band PSFSIZE (arcsec) for files that come without a PSF: the mock survey's median seeing.
SURVEY_PSFSIZE = {band.lower(): fwhm for band, fwhm in PSF_MEDIAN.items()}
#: The placeholder identity of a ``read_input`` image (see the module docstring); OBJID is its index.
PLACEHOLDER_RELEASE = 0
PLACEHOLDER_RADEC = (180.0, 0.0)


@dataclass(frozen=True)
class RealHost:
    """One real cutout to write: ``cube`` (3, S, S) grz nanomaggies at 0.262"/pix, the host on pixel S // 2;
    ``identity`` its RELEASE, BRICKID, BRICKNAME, OBJID, TYPE, RA, DEC and NOBS_G/R/Z; ``header`` extra FITS
    cards; ``origin`` names it in errors."""

    origin: str
    cube: np.ndarray
    identity: dict[str, object]
    header: dict[str, object]


class NpzCutoutError(ValueError):
    """A real cutout that cannot be converted; the message names the file (or image) and the problem."""


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


def host_row(cube: np.ndarray, identity: dict[str, object], psf_fwhm: dict[str, float]) -> dict[str, object]:
    """The sweep-column row of a host (see the module docstring for each column): ``identity`` and what the
    (3, S, S) ``cube`` (0.262"/pix, host on pixel S // 2) and the per-band FWHM ``psf_fwhm`` give."""
    size = cube.shape[-1]
    yy, xx = np.mgrid[:size, :size] - size // 2
    outer = np.hypot(xx, yy) * PIXEL_SCALE > SKY_ARCSEC
    sky = np.median(cube[:, outer], axis=1)
    sigma = sky_sigma(cube)
    flux, n_pix = _aperture_flux(cube, APERTURE_ARCSEC, sky)
    fiber, _ = _aperture_flux(cube, FIBER_ARCSEC, sky)
    fwhm = np.array([psf_fwhm[b] for b in BANDS])
    kind = str(identity["TYPE"])
    row: dict[str, object] = {
        **identity,
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
    for band in ("W1", "W2"):
        row[f"FLUX_{band}"] = row[f"FLUX_IVAR_{band}"] = 0.0
    for band in ("G", "R", "Z", "W1", "W2"):
        row[f"MW_TRANSMISSION_{band}"] = 1.0
    return row


def write_hosts(
    hosts: Iterable[RealHost], out: Path, psf_fwhm: dict[str, float], size: int
) -> tuple[pd.DataFrame, list[Path]]:
    """Each host's central size x size as ``out/cutouts/<key>.fits`` and its ``host_row``; the rows are also
    written as ``out/hosts.parquet`` (sweep columns) for the survey stage."""
    rows, written = [], []
    for host in hosts:
        side = host.cube.shape[-1]
        if side < size:
            raise NpzCutoutError(f"{host.origin}: cutout {side}x{side} is smaller than {size}x{size}")
        row = host_row(host.cube, host.identity, psf_fwhm)
        y0 = side // 2 - size // 2
        centre = (slice(None), slice(y0, y0 + size), slice(y0, y0 + size))
        target = out / "cutouts" / cutout_name(pd.Series(row))
        write_cutout_fits(target, host.cube[centre], sky_invvar(host.cube)[centre], **host.header)
        rows.append(row)
        written.append(target)
    if not rows:
        raise NpzCutoutError(f"{out}: no host to write")
    frame = pd.DataFrame(rows)
    frame = frame.astype({c: (object if d == "str" else d) for c, d in SWEEP_COLUMNS.items()})[list(SWEEP_COLUMNS)]
    with atomic_file(out / "hosts.parquet", "wb") as handle:
        frame.to_parquet(handle, index=False)
    return frame, written


def npz_host(path: Path) -> RealHost:
    """An npz cutout (101 x 101, host at the centre) with the identity its metadata gives."""
    cube, meta = read_npz(path)
    ra, dec = float(meta["ra"]), float(meta["dec"])
    identity: dict[str, object] = {
        "RELEASE": RELEASE_DR10_SOUTH,
        "BRICKID": int(brick_id(np.array([ra]), np.array([dec]))[0]),
        "BRICKNAME": str(meta.get("brickname", "")),
        "OBJID": _objid(path, str(meta["galaxy_id"])),
        "TYPE": str(meta["match_type"]),
        "RA": ra,
        "DEC": dec,
    }
    for band in BANDS:
        identity[f"NOBS_{band.upper()}"] = int(meta.get(f"nobs_{band}", int(bool(meta.get(f"has_{band}", True)))))
    return RealHost(str(path), cube, identity, {"ra": ra, "dec": dec, "layer": meta.get("layer")})


def convert_npz_folder(
    folder: Path, out: Path, psf_fwhm: dict[str, float], size: int = 64
) -> tuple[pd.DataFrame, list[Path]]:
    """Every ``*.npz`` in ``folder`` written by ``write_hosts`` into ``out``."""
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise NpzCutoutError(f"{folder}: no .npz cutouts")
    return write_hosts(map(npz_host, paths), out, psf_fwhm, size)


def _placeholder(index: int) -> dict[str, object]:
    """The placeholder identity of image ``index`` of a ``read_input`` input (see the module docstring)."""
    ra, dec = (np.array([c]) for c in PLACEHOLDER_RADEC)
    identity: dict[str, object] = {
        "RELEASE": PLACEHOLDER_RELEASE,
        "BRICKID": int(brick_id(ra, dec)[0]),
        "BRICKNAME": str(brick_name(ra, dec)[0]),
        "OBJID": index,
        "TYPE": "REX",
        "RA": PLACEHOLDER_RADEC[0],
        "DEC": PLACEHOLDER_RADEC[1],
    }
    return identity | {f"NOBS_{band.upper()}": 1 for band in BANDS}


def convert_real_input(
    source: Path, out: Path, psf_fwhm: dict[str, float], size: int = 64
) -> tuple[pd.DataFrame, list[Path], list[str]]:
    """Every image of the ``read_input`` input ``source`` resampled over its whole field onto 0.262"/pix and
    written by ``write_hosts`` into ``out`` with a placeholder identity; an image with more of its field
    without data than the input allows is left out. Returns the rows, the files and each refusal's reason."""
    real = read_input(source)
    field = min(real.images.shape[2:]) * real.pixel_scale / PIXEL_SCALE
    done, reasons = real.resampled(PIXEL_SCALE, max(size, math.floor(field)))
    hosts = (
        RealHost(
            f"{source} [{i}] {name}",
            done.stamps[i],
            _placeholder(i),
            {"objname": name, "position": "placeholder: the input has no coordinates"},
        )
        for i, name in enumerate(real.names)
        if reasons[i] == ""
    )
    frame, written = write_hosts(hosts, out, psf_fwhm, size)
    refused = [f"{source} [{i}] {name}: {reasons[i]}" for i, name in enumerate(real.names) if reasons[i] != ""]
    return frame, written, refused
