"""Shortcut probes (L9): what a lens finder must NOT be able to lean on.

- Core probe: a cross-validated logistic regression on the central ``core`` x ``core`` pixels
  (all bands) of the test stamps; if it separates positives from controls, the labels are
  readable from the host's core and the network need not look at arcs. The same regression on the
  ring around the core (the same folds) is what the arcs' own region gives; a paired bootstrap of the
  stamps bounds core AUC - ring AUC from below, so a small test split is not judged on its noise.
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
#: Draws of the probes' cross-validation folds whose out-of-fold scores are averaged.
CV_REPEATS = 5
#: Paired bootstrap resamples of the test stamps behind the core probe's lower bound, and its one-sided level.
PROBE_RESAMPLES = 1000
PROBE_CONFIDENCE = 0.95
#: Resample counts drawn at a time (resamples x stamps): 2 MiB an array, ~10 MiB in all whatever the split.
PROBE_BLOCK = 2**18


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


def probe_scores(
    features: np.ndarray, labels: np.ndarray, seed: int, folds: int = 5, repeats: int = CV_REPEATS
) -> np.ndarray:
    """Out-of-fold decision scores (N,) of a logistic regression on ``features`` (N, F), averaged over ``repeats``
    draws of the stratified folds (so a small split's probe does not hang on how one draw falls); the folds depend
    on ``labels`` and ``seed`` only, so every feature set of a split gets the same folds."""
    labels = np.asarray(labels).astype(int)
    smallest = int(min((labels == 1).sum(), (labels == 0).sum()))
    if smallest < 2:
        raise ValueError(f"the pixel probes need at least 2 stamps of each class, got {smallest}")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    features = features.astype(np.float64)
    scores = np.zeros(len(labels))
    for repeat in range(repeats):
        split = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=(seed + repeat) % 2**32)
        scores += cross_val_predict(model, features, labels, cv=split, method="decision_function")
    return scores / repeats


def _counted_auc(pos: np.ndarray, neg: np.ndarray, pos_counts: np.ndarray, neg_counts: np.ndarray) -> np.ndarray:
    """AUROC (B,) of ``pos`` (P,) against ``neg`` (M,) with each score counted as often as its column of
    ``pos_counts`` (B, P) and ``neg_counts`` (B, M) says; ties count one half (Mann-Whitney)."""
    order = np.argsort(neg, kind="stable")
    below = np.zeros((len(neg_counts), neg.size + 1))  # below[:, j]: controls among the j lowest
    np.cumsum(neg_counts[:, order], axis=1, out=below[:, 1:])
    ranked = neg[order]
    left, right = np.searchsorted(ranked, pos, side="left"), np.searchsorted(ranked, pos, side="right")
    wins = below[:, right]  # (B, P): controls at or below each positive
    if not np.array_equal(left, right):  # some tie: a tied control counts one half (skipped without ties: 1/3 faster)
        wins = (wins + below[:, left]) / 2
    return np.einsum("bp,bp->b", pos_counts, wins) / (pos_counts.sum(axis=1) * neg_counts.sum(axis=1))


def resampled_aucs(scores: np.ndarray, labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """AUROC of each score set in ``scores`` (K, N) on ``resamples`` bootstrap resamples of the N stamps (positives
    and controls each drawn with replacement), every set on the same resample: (resamples, K). Drawn about
    PROBE_BLOCK counts at a time, so a survey-scale test split stays small in memory; the draws are the same
    whatever the block."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n, n_pos = labels.size, int(labels.sum())
    # a resample is a row of n draws: n_pos among the positives (slots 0..n_pos-1), then among the controls
    first = np.arange(n) < n_pos
    high, offset = np.where(first, n_pos, n - n_pos), np.where(first, 0, n_pos)
    rng = np.random.default_rng(seed)
    block = max(1, PROBE_BLOCK // n)
    out = np.empty((resamples, len(scores)))
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        slots = rng.integers(0, high, (b, n), dtype=np.int64) + offset + n * np.arange(b)[:, None]
        counts = np.bincount(slots.ravel(), minlength=b * n).reshape(b, n)
        for k, s in enumerate(scores):
            out[start : start + b, k] = _counted_auc(s[labels], s[~labels], counts[:, :n_pos], counts[:, n_pos:])
    return out


def auc_difference_lower(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, seed: int, resamples: int = PROBE_RESAMPLES
) -> float:
    """One-sided PROBE_CONFIDENCE lower bound of AUROC(``first``) - AUROC(``second``), two score sets (N,) of
    the same stamps: the percentile of the difference over paired resamples (``resampled_aucs``)."""
    resampled = resampled_aucs(np.stack([first, second]), labels, resamples, seed)
    return float(np.quantile(resampled[:, 0] - resampled[:, 1], 1 - PROBE_CONFIDENCE))


def core_ring_probe(core: np.ndarray, ring: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """L9's pixel probes on the core and ring features (N, F) of the same stamps, on the same folds: each
    out-of-fold AUROC and the one-sided 95 % lower bound of core AUC - ring AUC (``auc_difference_lower``)."""
    core_scores, ring_scores = probe_scores(core, labels, seed), probe_scores(ring, labels, seed)
    return {
        "core_auc": float(roc_auc_score(labels, core_scores)),
        "ring_auc": float(roc_auc_score(labels, ring_scores)),
        "core_minus_ring_auc_lower": auc_difference_lower(core_scores, ring_scores, labels, seed),
    }


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
