"""Real sets scored at the thresholds the simulated test split fixed: the sim-to-real gap (L12).

Each set of ``evaluate.real_sets`` is read as ``darkhalo score`` reads its inputs (darkhalo.real_inputs), resampled
onto the spec's stamps as ``darkhalo score`` resamples them (darkhalo.resampling), images with too much of
their stamp filled with sky refused by name, and scored by the evaluation's scorer. At each
resolved point of ``REAL_POINTS`` an image is flagged when its score (logit) >= the point's threshold: a lens set's
flagged share is its recall, a non-lens set's its flag rate, each k of n with its exact (Clopper-Pearson) interval,
on every scored image and on the visible subset where one is declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo.metrics.intervals import clopper_pearson
from darkhalo.metrics.report import Gallery
from darkhalo.real_inputs import RealInputError, read_input
from darkhalo.resampling import refusal_reasons, resample
from darkhalo.spec import RealSet, RealVisibility
from data_contracts.metrics import REAL_POINTS, RealRate, RealRates, RealSetResult, RefusedReal, ReportedPoint

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
    done = resample(real.images, real.pixel_scale, pixel_scale, size)
    reasons = refusal_reasons(done.filled_fraction, real.max_filled_fraction)
    keep = reasons == ""
    names = [n for n, k in zip(real.names, keep, strict=True) if k]
    refused = [RefusedReal(name=n, reason=r) for n, r in zip(real.names, reasons, strict=True) if r]
    scores = np.asarray(score(done.stamps[keep]), dtype=np.float64) if keep.any() else np.zeros(0)
    shown = None if visible is None else visible[keep]
    return ScoredSet(real_set, names, scores, done.stamps[keep], shown, refused, len(real.names))


def real_rate(flagged: np.ndarray, confidence: float) -> RealRate | None:
    """The share of ``flagged`` (bool per image) with its exact interval; None for no image."""
    n, k = len(flagged), int(np.count_nonzero(flagged))
    if not n:
        return None
    return RealRate(n=n, n_flagged=k, rate=k / n, interval=list(clopper_pearson(k, n, confidence)))


def set_result(scored: ScoredSet, points: Mapping[str, ReportedPoint], confidence: float) -> RealSetResult:
    """``scored``'s rates at each point of ``points`` that is one of REAL_POINTS (resolved points by name)."""
    at_points = {}
    if len(scored.scores):
        for name in (n for n in REAL_POINTS if n in points):
            flagged = scored.scores >= points[name].threshold
            visible = None if scored.visible is None else real_rate(flagged[scored.visible], confidence)
            at_points[name] = RealRates(all=real_rate(flagged, confidence), visible=visible)
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
    )


def real_galleries(scored: ScoredSet) -> list[Gallery]:
    """``scored``'s top-scored and lowest-scored stamps, captioned with name and score (logit)."""
    order = np.argsort(-scored.scores, kind="stable")

    def gallery(title: str, rows: np.ndarray) -> Gallery:
        captions = [f"s={scored.scores[i]:.2f}\n{scored.names[i]}" for i in rows]
        return Gallery(f"{scored.spec.name}: {title}", scored.stamps[rows], captions)

    return [gallery("top-scored", order[:GALLERY_SIZE]), gallery("lowest-scored", order[::-1][:GALLERY_SIZE])]
