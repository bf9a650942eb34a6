"""Shortcut probes (L9): what a lens finder must NOT be able to lean on.

- Core probe: a cross-validated logistic regression on the central ``core`` x ``core`` pixels
  (all bands) of the test stamps; if it separates positives from controls, the labels are
  readable from the host's core and the network need not look at arcs.
- Blob probe: an unlensed, round, compact blob (Sersic n=1, R_eff 0.1") carrying an arc's flux per
  band, convolved with the host's PSF and added at the centre of a control. A finder that flags
  these more often than plain controls is keying on "extra central light", not on lensing.
- PSF-swap probe: the completeness change when the arcs are rendered with a Gaussian PSF instead
  of the survey PSF (``psf_swap_completeness`` of the two scores; the stage re-injects the same positives).

The pixel probes see features, not stamps (``core_pixels``, ``ring_pixels``: 3 core^2 and 9 core^2
values a stamp), so the stage gathers them chunk by chunk and never holds the test split.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from darkhalo.lensing.imaging import bin_pixels, fft_convolve, pixel_grid
from darkhalo.lensing.psf import psf_kernels
from darkhalo.lensing.sersic import sersic_sb
from data_contracts.survey import BANDS

#: The blob: a round exponential (Sersic n = 1) of this half-light radius (arcsec), far below the PSF.
BLOB_REFF = 0.1
BLOB_SUPERSAMPLE = 8


def core_pixels(images: np.ndarray, core: int) -> np.ndarray:
    """The central ``core`` x ``core`` pixels of every band, flattened: (N, 3 * core^2)."""
    size = images.shape[-1]
    start = size // 2 - core // 2
    return images[:, :, start : start + core, start : start + core].reshape(len(images), -1)


def ring_pixels(images: np.ndarray, core: int) -> np.ndarray:
    """The pixels of every band between the central ``core`` box and the ``2 core`` box around it,
    where arcs with theta_E of one to two PSF widths put most of their light: (N, 3 * 3 core^2)."""
    size = images.shape[-1]
    start, outer = size // 2 - core // 2, size // 2 - core
    box = images[:, :, outer : outer + 2 * core, outer : outer + 2 * core]
    keep = np.ones((2 * core, 2 * core), dtype=bool)
    keep[start - outer : start - outer + core, start - outer : start - outer + core] = False
    return box[:, :, keep].reshape(len(images), -1)


def probe_auc(features: np.ndarray, labels: np.ndarray, seed: int, folds: int = 5) -> float:
    """Out-of-fold AUROC of a logistic regression on ``features`` (N, F)."""
    labels = np.asarray(labels).astype(int)
    smallest = int(min((labels == 1).sum(), (labels == 0).sum()))
    if smallest < 2:
        raise ValueError(f"the pixel probes need at least 2 stamps of each class, got {smallest}")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    split = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed % 2**32)
    scores = cross_val_predict(model, features.astype(np.float64), labels, cv=split, method="decision_function")
    return float(roc_auc_score(labels, scores))


@functools.cache
def blob_profile(size: int, pixel_scale: float) -> torch.Tensor:
    """The blob before the PSF, unit sum on the (size, size) stamp grid (float64; computed once per grid, as
    the stage adds blobs chunk by chunk; not to be modified)."""
    x, y = pixel_grid(size, pixel_scale, BLOB_SUPERSAMPLE, dtype=torch.float64)
    one = torch.ones((), dtype=torch.float64)
    blob = bin_pixels(sersic_sb(x, y, one, one * BLOB_REFF, one, one, 0 * one), BLOB_SUPERSAMPLE)
    return blob / blob.sum()


def blob_images(
    flux: np.ndarray,
    psf_fwhm: np.ndarray,
    size: int,
    pixel_scale: float,
    psf_model: str = "survey",
    beta: float = 2.8,
    kernel_size: int = 63,
    chunk: int = 256,
) -> np.ndarray:
    """Unlensed central blobs (N, 3, size, size) in nanomaggies: ``flux`` (N, 3) per band g, r, z,
    each band convolved with the PSF model at ``psf_fwhm`` (N,) arcsec (the host's r-band FWHM)."""
    blob = blob_profile(size, pixel_scale)
    flux = torch.as_tensor(np.asarray(flux, dtype=np.float64))
    fwhm = torch.as_tensor(np.asarray(psf_fwhm, dtype=np.float64))
    kernel_size = min(kernel_size, 2 * size - 1)
    out = np.empty((len(fwhm), len(BANDS), size, size), dtype=np.float32)
    for start in range(0, len(fwhm), chunk):
        part = slice(start, start + chunk)
        kernels = torch.stack(
            [psf_kernels(psf_model, fwhm[part], kernel_size, pixel_scale, beta, band) for band in BANDS], dim=1
        )  # (n, 3, K, K), unit sum
        out[part] = (fft_convolve(blob, kernels) * flux[part, :, None, None]).numpy()
    return out


def flag_rates(scores: np.ndarray, thresholds: Mapping[str, float]) -> dict[str, float]:
    """Share of ``scores`` flagged (score >= threshold) at each named threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    return {name: float((scores >= t).mean()) for name, t in thresholds.items()}


def psf_swap_completeness(
    survey_scores: np.ndarray, gaussian_scores: np.ndarray, thresholds: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Completeness at each threshold of positives as made (``survey_scores``: survey-PSF arcs) and of the
    same positives with their arcs rendered through a Gaussian PSF instead (``gaussian_scores``), and the
    change (Gaussian - survey)."""
    survey = flag_rates(survey_scores, thresholds)
    gaussian = flag_rates(gaussian_scores, thresholds)
    return {
        name: {"survey": survey[name], "gaussian": gaussian[name], "change": gaussian[name] - survey[name]}
        for name in thresholds
    }
