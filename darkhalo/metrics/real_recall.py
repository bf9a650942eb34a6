"""Real sets scored at the thresholds the simulated test split fixed: the sim-to-real gap (L12).

Each set of ``evaluate.real_sets`` is read as ``darkhalo score`` reads its inputs (darkhalo.real_inputs), resampled
onto the spec's stamps as ``darkhalo score`` resamples them (darkhalo.resampling), images with too much of
their stamp filled with sky refused by name, and scored by the evaluation's scorer. At each
resolved point of ``REAL_POINTS`` an image is flagged when its score (logit) >= the point's threshold: a lens set's
flagged share is its recall, a non-lens set's its flag rate, each k of n with its exact (Clopper-Pearson) interval,
on every scored image and on the visible subset where one is declared.

Beside each lens set's recall, the simulated test positives at its depth: per band, a stamp's sky sigma is 1.4826 x
the MAD of its sky pixels (darkhalo.surveys.noise.sky_noise_sigma), the one rule for real and simulated stamps; each
positive gets Gaussian pixel noise of sqrt(max(sigma_set^2 - sigma_own^2, 0)) (sigma_set: the median over the set's
scored stamps), seeded per stamp_id, and is scored again. White noise: it matches the set's pixel sigma, not its
correlation. Beside each non-lens set's flag rate, a two-sample Kolmogorov-Smirnov test of its scores against the
test controls'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from darkhalo.hashing import stream_id
from darkhalo.metrics.intervals import clopper_pearson
from darkhalo.metrics.report import Gallery
from darkhalo.real_inputs import RealInputError, read_input
from darkhalo.spec import RealSet, RealVisibility
from darkhalo.surveys.noise import sky_noise_sigma
from data_contracts.metrics import (
    REAL_POINTS,
    RealAtDepth,
    RealRate,
    RealRates,
    RealSetResult,
    RealVersusControls,
    RefusedReal,
    ReportedPoint,
)

#: Stamps of each real set in each of its two galleries (top-scored, lowest-scored).
GALLERY_SIZE = 6


def visible_rows(visibility: RealVisibility, names: Sequence[str]) -> np.ndarray:
    """Which of the images ``names`` (in their file's order) the index marks visible (its column >= min; a blank
    cell is not). The index has a row per image in that order; where it has a ``name`` column, it must agree."""
    path = Path(visibility.index)
    if not path.is_file():
        raise RealInputError(f"{path}: no such file (evaluate.real_sets visible.index)")
    index = pd.read_csv(path)
    if visibility.column not in index:
        raise RealInputError(f"{path}: no column {visibility.column!r} (has {', '.join(index.columns)})")
    if len(index) != len(names):
        raise RealInputError(f"{path}: {len(index)} rows for {len(names)} images")
    if "name" in index:
        differ = np.flatnonzero(index["name"].astype(str).to_numpy() != np.asarray(names, dtype=str))
        if differ.size:
            row = int(differ[0])
            raise RealInputError(f"{path}: row {row} names {index['name'].iloc[row]!r}, the images' {names[row]!r}")
    values = pd.to_numeric(index[visibility.column], errors="coerce")
    bad = np.flatnonzero(values.isna() & index[visibility.column].notna())
    if bad.size:
        raise RealInputError(f"{path}: row {int(bad[0])}: {visibility.column} is not a number")
    return (values >= visibility.min).to_numpy()


@dataclass(frozen=True)
class ScoredSet:
    """One real set as scored: its scored images' names, scores (logits), stamps (N, 3, S, S) nanomaggies and
    visibility (None without a visible rule), and each refused image's name and reason."""

    spec: RealSet
    names: list[str]
    scores: np.ndarray
    stamps: np.ndarray
    visible: np.ndarray | None
    refused: list[RefusedReal]
    n_images: int


def score_set(real_set: RealSet, score: Callable[[np.ndarray], np.ndarray], size: int, pixel_scale: float) -> ScoredSet:
    """``real_set``'s images resampled onto ``size`` x ``size`` stamps at ``pixel_scale`` arcsec and scored by
    ``score``; an image above its input's ``max_filled_fraction`` is refused. Errors name the set and the file."""
    try:
        real = read_input(Path(real_set.input))
        visible = None if real_set.visible is None else visible_rows(real_set.visible, real.names)
    except RealInputError as exc:
        raise RealInputError(f"evaluate.real_sets {real_set.name}: {exc}") from None
    done, reasons = real.resampled(pixel_scale, size)
    keep = reasons == ""
    names = [n for n, k in zip(real.names, keep, strict=True) if k]
    refused = [RefusedReal(name=n, reason=r) for n, r in zip(real.names, reasons, strict=True) if r]
    scores = np.asarray(score(done.stamps[keep]), dtype=np.float64) if keep.any() else np.zeros(0)
    shown = None if visible is None else visible[keep]
    return ScoredSet(real_set, names, scores, done.stamps[keep], shown, refused, len(real.names))


@dataclass(frozen=True)
class DepthNoise:
    """Gaussian pixel noise that brings simulated stamps to a real lens set's sky sigma ``sigma`` (3,) nanomaggies;
    each stamp's draw is seeded by (``seed``, the set's ``name``, its stamp_id), so it is the same in any chunking."""

    name: str
    sigma: np.ndarray
    seed: int

    def added(self, own: np.ndarray) -> np.ndarray:
        """The sigma (N, 3) to add to stamps whose own sky sigma is ``own`` (N, 3): sqrt(max(sigma^2 - own^2, 0))."""
        return np.sqrt(np.maximum(self.sigma**2 - own**2, 0.0))

    def apply(self, images: np.ndarray, stamp_ids: np.ndarray, own: np.ndarray) -> np.ndarray:
        """``images`` (N, 3, S, S) float32 with the noise added (a new array), given their own sky sigma ``own``."""
        stream = stream_id(f"depth:{self.name}")
        noised = np.array(images, dtype=np.float32)
        for image, stamp_id, sigma in zip(noised, stamp_ids, self.added(own), strict=True):
            draw = np.random.default_rng([self.seed, stream, int(stamp_id)]).standard_normal(image.shape, np.float32)
            image += draw * sigma.astype(np.float32)[:, None, None]
        return noised


def depth_noise(scored: ScoredSet, seed: int) -> DepthNoise | None:
    """The noise that puts simulated stamps at ``scored``'s depth (its stamps' median sky sigma); None for a non-lens
    set or one with no scored image."""
    if scored.spec.label != "lens" or not len(scored.scores):
        return None
    return DepthNoise(scored.spec.name, np.median(sky_noise_sigma(scored.stamps), axis=0), seed)


@dataclass(frozen=True)
class AtDepth:
    """The simulated test positives as scored at a lens set's depth: their own sky sigma (N, 3) before the noise
    and their scores (logits) after it."""

    noise: DepthNoise
    own_sigma: np.ndarray
    scores: np.ndarray


def real_rate(flagged: np.ndarray, confidence: float) -> RealRate | None:
    """The share of ``flagged`` (bool per image) with its exact interval; None for no image."""
    n, k = len(flagged), int(np.count_nonzero(flagged))
    if not n:
        return None
    return RealRate(n=n, n_flagged=k, rate=k / n, interval=list(clopper_pearson(k, n, confidence)))


def depth_result(depth: AtDepth, points: Mapping[str, ReportedPoint], confidence: float) -> RealAtDepth:
    """The noised positives' completeness at each point of ``points`` that is one of REAL_POINTS, and the sigmas
    (medians per band over the stamps, nanomaggies)."""
    return RealAtDepth(
        sky_sigma_real=depth.noise.sigma.tolist(),
        sky_sigma_simulated=np.median(depth.own_sigma, axis=0).tolist(),
        added_sigma=np.median(depth.noise.added(depth.own_sigma), axis=0).tolist(),
        at_points={
            name: real_rate(depth.scores >= points[name].threshold, confidence)
            for name in REAL_POINTS
            if name in points
        },
    )


def versus_controls(real: np.ndarray, controls: np.ndarray) -> RealVersusControls:
    """A non-lens set's scores ``real`` against the test controls' ``controls`` (logits): scipy's two-sided
    two-sample Kolmogorov-Smirnov test, and both medians."""
    test = ks_2samp(real, controls)
    return RealVersusControls(
        test="ks_2samp",
        statistic=float(test.statistic),
        p_value=float(test.pvalue),
        n_real=len(real),
        n_controls=len(controls),
        median_real=float(np.median(real)),
        median_controls=float(np.median(controls)),
    )


def set_result(
    scored: ScoredSet,
    points: Mapping[str, ReportedPoint],
    confidence: float,
    controls: np.ndarray,
    depth: AtDepth | None = None,
) -> RealSetResult:
    """``scored``'s rates at each point of ``points`` that is one of REAL_POINTS (resolved points by name); a lens
    set's ``depth`` (the simulated positives at its depth) beside them, a non-lens set's scores against the test
    ``controls``' scores (logits)."""
    at_points = {}
    if len(scored.scores):
        for name in (n for n in REAL_POINTS if n in points):
            flagged = scored.scores >= points[name].threshold
            visible = None if scored.visible is None else real_rate(flagged[scored.visible], confidence)
            at_points[name] = RealRates(all=real_rate(flagged, confidence), visible=visible)
    negatives = scored.spec.label == "non_lens" and len(scored.scores) > 0
    rule = scored.spec.visible
    return RealSetResult(
        label=scored.spec.label,
        input=scored.spec.input,
        n_images=scored.n_images,
        n_scored=len(scored.scores),
        refused=scored.refused,
        visible=None if rule is None else f"{rule.column} >= {rule.min:g}",
        n_visible=None if scored.visible is None else int(np.count_nonzero(scored.visible)),
        at_points=at_points,
        at_depth=None if depth is None else depth_result(depth, points, confidence),
        versus_controls=versus_controls(scored.scores, controls) if negatives else None,
    )


def real_galleries(scored: ScoredSet) -> list[Gallery]:
    """``scored``'s top-scored and lowest-scored stamps, captioned with name and score (logit)."""
    order = np.argsort(-scored.scores, kind="stable")

    def gallery(title: str, rows: np.ndarray) -> Gallery:
        captions = [f"s={scored.scores[i]:.2f}\n{scored.names[i]}" for i in rows]
        return Gallery(f"{scored.spec.name}: {title}", scored.stamps[rows], captions)

    return [gallery("top-scored", order[:GALLERY_SIZE]), gallery("lowest-scored", order[::-1][:GALLERY_SIZE])]
