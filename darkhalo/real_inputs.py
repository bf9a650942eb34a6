"""Real cutouts for ``darkhalo score``, read through a small YAML description of what the files lack.

Three kinds, each described by one YAML file (data paths relative to it); a bare folder stands for a
``cutout_folder`` with the defaults::

    kind: npz                 # one .npz: images (N, bands, H, W)
    path: lenses.npz
    bands: [g, r, z]          # channel order in the file
    pixel_scale: 0.25         # arcsec per pixel
    flux_to_nanomaggies: 1.0  # multiplies the file's values
    names_key: names          # optional: key of the (N,) names; else the index names an image
    max_filled_fraction: 0.1  # optional (default 0.05, at most 0.25): the share of a stamp that may be
                              # filled with sky, e.g. for cutouts narrower than the stamp

    kind: fits_cubes          # one FITS file per band, primary HDU (N, H, W)
    files: {g: g.fits, r: r.fits, z: z.fits}
    pixel_scale: 0.263
    flux_to_nanomaggies: 1.0e-3

    kind: cutout_folder       # every *.fits of a folder in the cutout service's layout (nanomaggies)
    dir: cutouts
    pixel_scale: 0.262        # optional: default each file's CD matrix or CDELT, else the survey's 0.262

A cutout folder's images are named by their file stems; a pixel whose INVVAR is 0 has no data (NaN, so
resampling fills and counts it). The host is where CRPIX puts it: a cutout whose CRPIX is not its centre
(e.g. 33 of a 64-pixel side, where darkhalo writes it) is padded with no-data pixels until it is; a CRPIX
off the grid of whole and half pixels is refused, as is a folder mixing shapes, host pixels or pixel scales.

Every error is a ``RealInputError`` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from astropy.io import fits
from astropy.wcs import WCS
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from darkhalo import strict_yaml
from darkhalo.resampling import Resampled, refusal_reasons, resample
from darkhalo.surveys.cutout_fits import CutoutFileError, read_cutout_fits
from data_contracts.real_scores import FILLED_FRACTION_CEILING, MAX_FILLED_FRACTION
from data_contracts.survey import BANDS, PIXEL_SCALE


class RealInputError(ValueError):
    """An input that cannot be read; the message names the file and the field."""


class _Description(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_filled_fraction: float = Field(
        MAX_FILLED_FRACTION,
        ge=0,
        le=FILLED_FRACTION_CEILING,
        description="the most of a stamp that may be filled with sky (cutouts narrower than the stamp need more)",
    )


class _Arrays(_Description):
    pixel_scale: float = Field(gt=0, description="arcsec per pixel")
    flux_to_nanomaggies: float = Field(gt=0, description="factor from the file's unit to nanomaggies")


class NpzInput(_Arrays):
    """One .npz holding ``images`` (N, bands, H, W) in the channel order ``bands``."""

    kind: Literal["npz"]
    path: str
    bands: list[str]
    images_key: str = "images"
    names_key: str | None = None


class FitsCubesInput(_Arrays):
    """One FITS file per band, each primary HDU a cube (N, H, W) of the same N images."""

    kind: Literal["fits_cubes"]
    files: dict[str, str]


class CutoutFolderInput(_Description):
    """A folder of cutout-service FITS files (darkhalo.surveys.cutout_fits), one image each, in nanomaggies."""

    kind: Literal["cutout_folder"]
    dir: str = "."
    pixel_scale: float | None = Field(None, gt=0, description="arcsec per pixel; default each file's WCS")


Description = Annotated[NpzInput | FitsCubesInput | CutoutFolderInput, Field(discriminator="kind")]


@dataclass(frozen=True)
class RealImages:
    """Images (N, 3, H, W) float64 nanomaggies in BANDS order (NaN where the file has no data), one name each,
    at ``pixel_scale`` arcsec per pixel; ``source`` is the description file, ``max_filled_fraction`` its limit."""

    source: Path
    images: np.ndarray
    names: list[str]
    pixel_scale: float
    max_filled_fraction: float

    def resampled(self, pixel_scale: float, size: int) -> tuple[Resampled, np.ndarray]:
        """The images on centred ``size`` x ``size`` stamps at ``pixel_scale`` (darkhalo.resampling.resample), and
        why each is refused under this input's ``max_filled_fraction`` ("" for an image kept)."""
        done = resample(self.images, self.pixel_scale, pixel_scale, size)
        return done, refusal_reasons(done.filled_fraction, self.max_filled_fraction)


def _band_order(path: Path, field: str, bands: list[str]) -> list[int]:
    """The position in ``bands`` of each of BANDS; an unknown, repeated or missing band is named."""
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        raise RealInputError(f"{path}: {field}: unknown band {unknown[0]!r} (expected {', '.join(BANDS)})")
    if sorted(bands) != sorted(BANDS):
        raise RealInputError(f"{path}: {field}: needs each of {', '.join(BANDS)} once, got {', '.join(bands)}")
    return [bands.index(b) for b in BANDS]


def _existing(description: Path, relative: str) -> Path:
    path = description.parent / relative
    if not path.is_file():
        raise RealInputError(f"{path}: no such file (named in {description})")
    return path


def _read_npz(source: Path, spec: NpzInput) -> tuple[np.ndarray, list[str] | None]:
    path = _existing(source, spec.path)
    order = _band_order(source, "bands", spec.bands)
    with np.load(path, allow_pickle=False) as data:
        for key in filter(None, (spec.images_key, spec.names_key)):
            if key not in data.files:
                raise RealInputError(f"{path}: no key {key!r} (has {', '.join(data.files)})")
        images = data[spec.images_key]
        names = [str(n) for n in data[spec.names_key]] if spec.names_key else None
    if images.ndim != 4 or images.shape[1] != len(spec.bands):
        raise RealInputError(
            f"{path}: {spec.images_key}: expected shape (N, {len(spec.bands)}, H, W), got {tuple(images.shape)}"
        )
    if names is not None and len(names) != len(images):
        raise RealInputError(f"{path}: {spec.names_key}: {len(names)} names for {len(images)} images")
    return images[:, order], names


def _read_cubes(source: Path, spec: FitsCubesInput) -> np.ndarray:
    _band_order(source, "files", list(spec.files))
    cubes = []
    for band in BANDS:
        path = _existing(source, spec.files[band])
        with fits.open(path, memmap=False) as hdus:
            cube = hdus[0].data
        if cube is None or cube.ndim != 3:
            shape = None if cube is None else tuple(cube.shape)
            raise RealInputError(f"{path}: primary HDU: expected a cube (N, H, W), got shape {shape}")
        if cubes and cube.shape != cubes[0].shape:
            raise RealInputError(f"{path}: shape {tuple(cube.shape)} differs from band g's {tuple(cubes[0].shape)}")
        cubes.append(cube)
    return np.stack(cubes, axis=1)


#: WCS cards that give a file's pixel scale; without them a file is taken at the survey's.
_SCALE_CARDS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2")


def _file_pixel_scale(path: Path) -> float | None:
    """Arcsec per pixel from a cutout file's CD matrix or CDELT (None when it has neither); non-square pixels
    are refused."""
    header = fits.getheader(path)
    if not any(card in header for card in _SCALE_CARDS):
        return None
    scales = [float(np.asarray(s)) * 3600 for s in WCS(header, naxis=2).proj_plane_pixel_scales()]
    if not np.isclose(scales[0], scales[1], rtol=1e-4):
        raise RealInputError(f'{path}: pixels are not square ({scales[0]:.4f}" x {scales[1]:.4f}")')
    return scales[0]


def _centred(path: Path, image: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """``image`` (3, H, W) padded with NaN (no data) until the host at 0-based ``centre`` (x, y) is its centre."""
    pads = []
    for axis, c in ((1, centre[1]), (2, centre[0])):
        n = image.shape[axis]
        if not float(2 * c).is_integer() or not 0 <= c <= n - 1:
            raise RealInputError(
                f"{path}: CRPIX puts the host at 0-based pixel {c:g} of {n}, not on a whole or half pixel inside "
                "the cutout; it cannot be centred without interpolating"
            )
        half = max(c, n - 1 - c)
        pads.append((int(half - c), int(half - (n - 1 - c))))
    return np.pad(image, [(0, 0), *pads], constant_values=np.nan)


def _read_folder(source: Path, folder: Path, spec: CutoutFolderInput) -> tuple[np.ndarray, list[str], float]:
    """The folder's images (N, 3, H, W) (NaN where INVVAR is 0), their file stems and their common pixel scale."""
    if not folder.is_dir():
        raise RealInputError(f"{folder}: no such folder (named in {source})")
    paths = sorted(folder.glob("*.fits"))
    if not paths:
        raise RealInputError(f"{folder}: no *.fits cutouts")
    images, layout = [], None
    for path in paths:
        try:
            cut = read_cutout_fits(path)
        except CutoutFileError as exc:
            raise RealInputError(str(exc)) from None
        image = cut.image.astype(np.float64)
        if cut.invvar is not None:
            image[cut.invvar == 0] = np.nan
        images.append(_centred(path, image, cut.centre))
        scale = spec.pixel_scale or _file_pixel_scale(path) or PIXEL_SCALE
        (h, w), (x, y) = cut.image.shape[1:], cut.centre
        this = f'{w}x{h} pixels, the host at 0-based ({x:g}, {y:g}), {scale:.4g}"/pix'
        if layout is not None and this != layout:
            raise RealInputError(f"{path}: {this}, unlike {paths[0].name}'s {layout} (one folder holds one layout)")
        layout = this
    return np.stack(images), [p.stem for p in paths], scale


def _description(source: Path) -> Description:
    """The validated description in ``source``; a folder is a ``cutout_folder`` with the defaults."""
    if source.is_dir():
        return CutoutFolderInput(kind="cutout_folder")
    if not source.is_file():
        raise RealInputError(f"{source}: no such file")
    try:
        return TypeAdapter(Description).validate_python(strict_yaml.read(source))
    except yaml.YAMLError as exc:
        raise RealInputError(f"{source}: not YAML ({exc})".replace("\n", " ")) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RealInputError(f"{source}: {field}: {first['msg']}") from None


def input_files(source: Path) -> list[Path]:
    """What ``read_input`` reads: a bare folder, or the description and the npz, FITS cubes or cutout folder it
    names (relative to it); the files a stage that scores real inputs declares for its lineage."""
    if source.is_dir():
        return [source]
    described = _description(source)
    if isinstance(described, NpzInput):
        named = [described.path]
    elif isinstance(described, FitsCubesInput):
        named = list(described.files.values())
    else:
        named = [described.dir]
    return [source, *(source.parent / name for name in named)]


def read_input(source: Path) -> RealImages:
    """The images that the description file (or cutout folder) ``source`` names, in nanomaggies and BANDS order."""
    spec = _description(source)
    if isinstance(spec, CutoutFolderInput):
        folder = source if source.is_dir() else source.parent / spec.dir
        images, names, pixel_scale = _read_folder(source, folder, spec)
        return RealImages(source, images, names, pixel_scale, spec.max_filled_fraction)
    if isinstance(spec, NpzInput):
        images, names = _read_npz(source, spec)
    else:
        images, names = _read_cubes(source, spec), None
    if len(images) == 0:
        raise RealInputError(f"{source}: no images")
    nanomaggies = images.astype(np.float64) * spec.flux_to_nanomaggies
    names = names or [str(i) for i in range(len(images))]
    return RealImages(source, nanomaggies, names, spec.pixel_scale, spec.max_filled_fraction)
