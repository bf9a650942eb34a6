"""Real cutouts for ``darkhalo score``, read through a small YAML description of what the files lack.

Two kinds, each described by one YAML file (data paths relative to it)::

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

Every error is a ``RealInputError`` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from astropy.io import fits
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from data_contracts.real_scores import FILLED_FRACTION_CEILING, MAX_FILLED_FRACTION
from data_contracts.survey import BANDS


class RealInputError(ValueError):
    """An input that cannot be read; the message names the file and the field."""


class _Description(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel_scale: float = Field(gt=0, description="arcsec per pixel")
    flux_to_nanomaggies: float = Field(gt=0, description="factor from the file's unit to nanomaggies")
    max_filled_fraction: float = Field(
        MAX_FILLED_FRACTION,
        ge=0,
        le=FILLED_FRACTION_CEILING,
        description="the most of a stamp that may be filled with sky (cutouts narrower than the stamp need more)",
    )


class NpzInput(_Description):
    """One .npz holding ``images`` (N, bands, H, W) in the channel order ``bands``."""

    kind: Literal["npz"]
    path: str
    bands: list[str]
    images_key: str = "images"
    names_key: str | None = None


class FitsCubesInput(_Description):
    """One FITS file per band, each primary HDU a cube (N, H, W) of the same N images."""

    kind: Literal["fits_cubes"]
    files: dict[str, str]


Description = Annotated[NpzInput | FitsCubesInput, Field(discriminator="kind")]


@dataclass(frozen=True)
class RealImages:
    """Images (N, 3, H, W) float64 nanomaggies in BANDS order (NaN where the file has no data), one name each,
    at ``pixel_scale`` arcsec per pixel; ``source`` is the description file, ``max_filled_fraction`` its limit."""

    source: Path
    images: np.ndarray
    names: list[str]
    pixel_scale: float
    max_filled_fraction: float


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


def read_input(source: Path) -> RealImages:
    """The images that the description file ``source`` names, in nanomaggies and BANDS order."""
    if not source.is_file():
        raise RealInputError(f"{source}: no such file")
    try:
        spec = TypeAdapter(Description).validate_python(yaml.safe_load(source.read_text()))
    except yaml.YAMLError as exc:
        raise RealInputError(f"{source}: not YAML ({exc})".replace("\n", " ")) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RealInputError(f"{source}: {field}: {first['msg']}") from None
    if isinstance(spec, NpzInput):
        images, names = _read_npz(source, spec)
    else:
        images, names = _read_cubes(source, spec), None
    if len(images) == 0:
        raise RealInputError(f"{source}: no images")
    nanomaggies = images.astype(np.float64) * spec.flux_to_nanomaggies
    names = names or [str(i) for i in range(len(images))]
    return RealImages(source, nanomaggies, names, spec.pixel_scale, spec.max_filled_fraction)
