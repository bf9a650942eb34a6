"""One cutout interface for the mock and the real survey: grz stamps, their inverse variance and PSF.

A provider turns host rows (sweep columns) into stamps (N, 3, S, S) float32 in nanomaggies, bands
g, r, z, with the host at pixel (S // 2, S // 2) up to a recorded sub-pixel offset (the cutout
service centres an even-sized cutout between pixels), plus each stamp's per-pixel inverse variance
(1/nanomaggy^2) and the survey PSF per band (core FWHM in arcsec, Moffat beta of the core).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from darkhalo.spec import MockSurvey, SurveySpec

#: The most a host may sit from pixel (S // 2, S // 2), per axis (pixels): a crop puts it nearest.
MAX_HOST_OFFSET = 0.5


@dataclass(frozen=True)
class Cutouts:
    """A batch of stamps: images and invvar (N, 3, S, S), psf_fwhm and psf_beta (N, 3), all float32;
    host_offset (N, 2) float32 is each host's (x, y) position in pixels from pixel (S // 2, S // 2)
    (zeros when not given), where the lens is drawn."""

    images: np.ndarray
    invvar: np.ndarray
    psf_fwhm: np.ndarray
    psf_beta: np.ndarray
    host_offset: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.host_offset is None:
            object.__setattr__(self, "host_offset", np.zeros((n, 2), np.float32))
        offset = self.host_offset
        if offset.shape != (n, 2) or offset.dtype != np.float32:
            raise ValueError(f"host_offset must be ({n}, 2) float32, got {offset.shape} {offset.dtype}")
        if not (np.abs(offset) <= MAX_HOST_OFFSET).all():  # also refuses NaN
            row = int(np.flatnonzero(~(np.abs(offset) <= MAX_HOST_OFFSET).all(axis=1))[0])
            raise ValueError(
                f"host_offset row {row} is {offset[row].tolist()} pixels; must be within +-{MAX_HOST_OFFSET}"
            )
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be (N, 3, S, S), got {self.images.shape}")
        if self.invvar.shape != self.images.shape:
            raise ValueError(f"invvar shape {self.invvar.shape} differs from images shape {self.images.shape}")
        for name in ("psf_fwhm", "psf_beta"):
            if getattr(self, name).shape != (n, 3):
                raise ValueError(f"{name} must be ({n}, 3), got {getattr(self, name).shape}")
        for name in ("images", "invvar", "psf_fwhm", "psf_beta"):
            if getattr(self, name).dtype != np.float32:
                raise ValueError(f"{name} must be float32, got {getattr(self, name).dtype}")

    def take(self, index: np.ndarray) -> Cutouts:
        """The stamps at ``index`` (integer positions or a boolean mask), every field alike."""
        return Cutouts(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


class CutoutProvider(Protocol):
    """Anything that can cut stamps of side ``size`` pixels around host rows."""

    def cutouts(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        """Stamps for ``hosts`` (rows with sweep columns), in the rows' order."""
        ...


def provider_for(survey: SurveySpec, seed: int) -> CutoutProvider:
    """The provider of a spec's survey: the mock renderer, the cutout service (``url``), or a folder of FITS."""
    if isinstance(survey, MockSurvey):
        from darkhalo.surveys.mock_cutouts import MockCutoutProvider

        return MockCutoutProvider(survey, seed)
    if survey.cutouts is not None and survey.cutouts.url is not None:
        from darkhalo.surveys.http_cutouts import HttpCutoutProvider

        return HttpCutoutProvider(survey.cutouts)
    if survey.cutouts is None or survey.cutouts.dir is None:
        raise ValueError("survey.cutouts.dir or .url: the legacy survey needs a folder of cutout FITS or the service")
    from darkhalo.surveys.cutout_fits import FolderCutoutProvider

    return FolderCutoutProvider(survey.cutouts.dir)
