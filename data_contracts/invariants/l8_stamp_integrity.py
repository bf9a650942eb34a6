"""L8 stamp integrity (data_contracts.lessons): byte length and finite pixels; controls
bit-identical to their cutouts; positives equal to cutout + their arc (band by band, so a stamp in
another band order or on another host's cutout fails); every manifest row stamped; a point source
sent through the injection lands where intended and keeps its flux; arcs rendered again at twice the
resolution agree with the injected ones (converged numerics); no duplicated (host, config) rows.

Each part is a check of its own; ``check`` merges the parts' findings into the one L8 verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.survey import KEY
from data_contracts.thresholds import L8Thresholds

HOST_CONFIG_KEY = [*KEY, "config_id"]


def _finding(passed: bool, detail: str, rows: list[dict], measured: object = None, threshold: object = None) -> Finding:
    evidence, count = evidence_rows(rows)
    return Finding(
        id="L8",
        title=LESSONS["L8"].title,
        passed=passed,
        measured=measured,
        threshold=threshold,
        detail=detail,
        evidence=evidence,
        n_offending=count,
    )


#: An arc rendered again (in another batch) agrees with the one injected to float32 rounding of
#: the FFT, ~1e-8 of its brightest pixel; this share of that pixel is allowed on top of the sum's rounding.
ARC_REPEAT_RTOL = 1e-5


def stamp_problems(images: np.ndarray, cutouts: np.ndarray, arcs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per stamp, what is wrong with it ("" when nothing): stamps, cutouts and arcs (N, 3, S, S).

    Pixels must be finite; controls (label 0) bit-identical to their cutouts; positives must differ
    from theirs by the arc, band by band, up to float32 rounding of the sum and ``ARC_REPEAT_RTOL``
    of the arc's brightest pixel in that band. The judge runs it on stamps decoded from the written
    shards, against cutouts fetched again and arcs rendered again.
    """
    labels = np.asarray(labels)
    problems = np.full(len(labels), "", dtype=object)
    controls = labels == 0
    same_bits = (images.view(np.uint32) == cutouts.view(np.uint32)).all(axis=(1, 2, 3))
    cut64, arc64 = cutouts.astype(np.float64), arcs.astype(np.float64)
    residual = np.abs(images.astype(np.float64) - cut64 - arc64)
    peak = np.abs(arc64).max(axis=(2, 3), keepdims=True)
    allowed = np.finfo(np.float32).eps * (np.abs(cut64) + np.abs(arc64)) + ARC_REPEAT_RTOL * peak
    exact = (residual <= allowed).all(axis=(1, 2, 3))
    problems[~controls & ~exact] = "stamp - cutout != arc"
    problems[controls & ~same_bits] = "control differs from its cutout"
    finite = finite_problems(images)
    return np.where(finite != "", finite, problems)


def finite_problems(images: np.ndarray) -> np.ndarray:
    """Per stamp (N, 3, S, S) "non-finite pixels" or ""."""
    finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    return np.where(finite, "", "non-finite pixels").astype(object)


def check_recorded(
    stamp_ids: np.ndarray, problems: np.ndarray, checked: str = "finite, controls untouched, positives = cutout + arc"
) -> Finding:
    """An L8 stamp part from per-stamp problems ("" when none), ``checked`` saying what was checked."""
    problems = np.asarray(problems, dtype=object)
    bad = np.flatnonzero(problems != "")
    rows = [{"stamp_id": int(stamp_ids[i]), "problem": str(problems[i])} for i in bad]
    return _finding(not rows, f"{len(rows)} problem(s) in {len(problems)} stamps ({checked})", rows)


def check_point_source(offsets_pix: np.ndarray, flux_ratios: np.ndarray, thresholds: L8Thresholds) -> Finding:
    """Point sources rendered through the injection: centroid offsets from the intended positions
    (pixels) and recovered / injected flux, against the spec's tolerances."""
    offsets = np.asarray(offsets_pix, dtype=float)
    ratios = np.asarray(flux_ratios, dtype=float)
    if offsets.size == 0 or offsets.shape != ratios.shape:
        return _finding(False, f"need equal, non-empty offsets and flux ratios, got {offsets.shape} {ratios.shape}", [])
    bad_pos = ~(offsets <= thresholds.position_tolerance_pix)
    bad_flux = ~(np.abs(ratios - 1) <= thresholds.flux_rel_tolerance)
    rows = [
        {"point_source": int(i), "offset_pix": float(offsets[i]), "flux_ratio": float(ratios[i])}
        for i in np.flatnonzero(bad_pos | bad_flux)
    ]
    return _finding(
        not rows,
        f"{len(rows)} of {offsets.size} point sources off by more than {thresholds.position_tolerance_pix} pix "
        f"or {thresholds.flux_rel_tolerance:.1e} in flux",
        rows,
        measured={"max_offset_pix": float(np.nanmax(offsets)), "max_flux_error": float(np.nanmax(np.abs(ratios - 1)))},
        threshold={"position_pix": thresholds.position_tolerance_pix, "flux_rel": thresholds.flux_rel_tolerance},
    )


def check_convergence(
    stamp_ids: np.ndarray, l1: np.ndarray, magnification_ratio: np.ndarray, thresholds: L8Thresholds
) -> Finding:
    """Arcs of a seeded sample of positives rendered at the spec's numerics and again at twice the
    resolution: per stamp the L1 difference over the arc's flux (worst band) and the ratio of the
    two magnifications, against the spec's tolerances."""
    l1, ratio = np.asarray(l1, dtype=float), np.asarray(magnification_ratio, dtype=float)
    if l1.ndim != 1 or l1.shape != ratio.shape or l1.shape != np.shape(stamp_ids):
        return _finding(
            False, f"need one L1 and magnification ratio per sampled stamp, got {l1.shape} {ratio.shape}", []
        )
    if l1.size == 0:
        return _finding(True, "no positive to render again", [])
    bad = ~(l1 <= thresholds.convergence_l1) | ~(np.abs(ratio - 1) <= thresholds.convergence_magnification)
    rows = [
        {"stamp_id": int(stamp_ids[i]), "l1": float(l1[i]), "magnification_ratio": float(ratio[i])}
        for i in np.flatnonzero(bad)
    ]
    return _finding(
        not rows,
        f"{len(rows)} of {l1.size} sampled arcs change by more than {thresholds.convergence_l1:.1%} L1 or "
        f"{thresholds.convergence_magnification:.1%} in magnification at twice the resolution",
        rows,
        measured={"max_l1": float(np.nanmax(l1)), "max_magnification_change": float(np.nanmax(np.abs(ratio - 1)))},
        threshold={"l1": thresholds.convergence_l1, "magnification": thresholds.convergence_magnification},
    )


def check_unique_rows(stamps: pd.DataFrame) -> Finding:
    """No (host, config) pair is injected twice: positives' (RELEASE, BRICKID, OBJID, config_id) unique."""
    positives = stamps[stamps["label"] == 1]
    duplicated = positives[positives.duplicated(HOST_CONFIG_KEY, keep=False)]
    rows = duplicated[HOST_CONFIG_KEY].drop_duplicates().astype(object).to_dict("records")
    return _finding(not rows, f"{len(rows)} (host, config) pairs appear more than once among positives", rows)


def check(parts: Sequence[Finding]) -> Finding:
    """The one L8 finding from its parts' findings (e.g. one per stamp batch, the point-source test)."""
    if not parts:
        return _finding(False, "no L8 part was checked", [])
    rows = [row for part in parts for row in part.evidence]
    failed = [part.detail for part in parts if not part.passed]
    evidence, _ = evidence_rows(rows)
    return Finding(
        id="L8",
        title=LESSONS["L8"].title,
        passed=not failed,
        measured=_merged(part.measured for part in parts),
        threshold=_merged(part.threshold for part in parts),
        detail="; ".join(failed) if failed else f"{len(parts)} part(s) passed",
        evidence=evidence,
        n_offending=sum(part.n_offending for part in parts),
    )


def _merged(values: Iterable[object]) -> dict | None:
    """The parts' measured (or threshold) dicts as one dict; None when no part has one."""
    merged = {key: value for part in values if isinstance(part, dict) for key, value in part.items()}
    return merged or None
