"""L3 realistic PSF wings: the injection PSF's encircled-energy deficit beyond 2 x FWHM and beyond
3" falls short of the survey PSF's by at most ``rel_tolerance`` (data_contracts.lessons).

Gen 1's Gaussian holds ~1e-5 of its light beyond 2 x FWHM where the Legacy Surveys PSF (Moffat
core + outer wing) holds ~5 %: it fails. The stage records both measures per stamp (the
injection kernel's and the survey PSF's, same band and FWHM); this check compares numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L3Thresholds

#: (injection column, survey column) per measure: 1 - EE at 2 x FWHM and at 3".
MEASURES = {
    "2fwhm": ("psf_wing_2fwhm", "survey_wing_2fwhm"),
    "3arcsec": ("psf_wing_3as", "survey_wing_3as"),
}
NEEDS = [column for pair in MEASURES.values() for column in pair]


def shortfall(injection: np.ndarray, survey: np.ndarray) -> np.ndarray:
    """Relative shortfall of the injection PSF's wing light: max(0, survey - injection) / survey.

    A survey deficit <= 0 (no wing light to match) gives 0 unless the injection has even less.
    """
    injection, survey = np.asarray(injection, dtype=float), np.asarray(survey, dtype=float)
    short = np.maximum(survey - injection, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(short > 0, short / np.maximum(survey, np.finfo(float).tiny), 0.0)


def check(stamps: pd.DataFrame, thresholds: L3Thresholds) -> Finding:
    """``stamps`` has one row per injected stamp with the ``NEEDS`` columns (deficits, 0..1)."""
    title = LESSONS["L3"].title
    missing = [c for c in NEEDS if c not in stamps.columns]
    if missing or stamps.empty:
        detail = f"missing column(s) {', '.join(missing)}" if missing else "no stamps to judge"
        return Finding(id="L3", title=title, passed=False, threshold=thresholds.rel_tolerance, detail=detail)
    values = stamps[NEEDS].to_numpy(dtype=float)
    finite = np.isfinite(values).all(axis=1)
    shortfalls = {name: shortfall(stamps[inj], stamps[sur]) for name, (inj, sur) in MEASURES.items()}
    worst = np.maximum.reduce(list(shortfalls.values()))
    bad = ~finite | (worst > thresholds.rel_tolerance)
    rows = [
        {
            "row": int(i),
            **{c: float(stamps[c].iloc[i]) for c in NEEDS},
            **{f"shortfall_{name}": round(float(s[i]), 4) for name, s in shortfalls.items()},
        }
        for i in np.flatnonzero(bad)
    ]
    evidence, count = evidence_rows(rows)
    measured = {
        name: round(float(np.max(s[finite])) if finite.any() else float("nan"), 4) for name, s in shortfalls.items()
    }
    return Finding(
        id="L3",
        title=title,
        passed=not bad.any(),
        measured=measured,
        threshold=thresholds.rel_tolerance,
        detail=(
            f'{count} of {len(stamps)} stamps have an injection PSF whose wing light (beyond 2 x FWHM or 3") '
            f"falls short of the survey PSF's by more than {thresholds.rel_tolerance:.0%} (or is not finite)"
        ),
        evidence=evidence,
        n_offending=count,
    )
