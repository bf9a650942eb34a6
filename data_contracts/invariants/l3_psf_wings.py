"""L3 realistic PSF wings (data_contracts.lessons): the injection PSF's light beyond 2 x PSFSIZE
and beyond 3" falls short of real DECam PSFs' by at most ``rel_tolerance``.

The reference is independent of the injection code: the encircled-energy deficits of the real
DECam PSFEx models in ``data_contracts/reference/decam_psfex_wings.csv``, each at its own PSFSIZE
(legacypipe's noise-equivalent FWHM). The injection PSF is measured at every reference model's band
and PSFSIZE; per band the median relative shortfall is judged, in the bands the spec names. Gen 1's Gaussian holds ~1e-5
of its light beyond 2 x PSFSIZE where the real PSFs hold ~5 %: it fails.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L3Thresholds

REFERENCE = Path(__file__).resolve().parent.parent / "reference" / "decam_psfex_wings.csv"
#: Per measure: (the injection PSF's column, the reference's column): 1 - EE at 2 x PSFSIZE and at 3".
MEASURES = {
    "2fwhm": ("psf_wing_2fwhm", "real_wing_2fwhm"),
    "3arcsec": ("psf_wing_3as", "real_wing_3as"),
}
#: Columns of the reference table (one row per real PSFEx model).
REFERENCE_COLUMNS = ["band", "model", "fwhm_arcsec", "real_wing_2fwhm", "real_wing_3as"]


@cache
def reference() -> pd.DataFrame:
    """The real DECam PSFEx models' wing deficits: band, model file, measured FWHM (arcsec), deficits."""
    return pd.read_csv(REFERENCE, comment="#")[REFERENCE_COLUMNS]


def shortfall(injection: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Relative shortfall of the injection PSF's wing light: max(0, real - injection) / real."""
    injection, real = np.asarray(injection, dtype=float), np.asarray(real, dtype=float)
    short = np.maximum(real - injection, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(short > 0, short / np.maximum(real, np.finfo(float).tiny), 0.0)


def check(measures: pd.DataFrame, thresholds: L3Thresholds) -> Finding:
    """``measures``: the reference rows with the injection PSF's deficits at each (``psf_wing_*``).

    Measured: per band and measure, the median shortfall over that band's real models; the bands in
    ``thresholds.bands`` must each be within ``rel_tolerance`` (the others are shown, not judged).
    """
    title = LESSONS["L3"].title
    needed = [c for pair in MEASURES.values() for c in pair]
    missing = [c for c in ["band", *needed] if c not in measures.columns]
    if missing or measures.empty:
        detail = f"missing column(s) {', '.join(missing)}" if missing else "no PSF measures to judge"
        return Finding(id="L3", title=title, passed=False, threshold=thresholds.rel_tolerance, detail=detail)
    table = measures.assign(
        **{f"shortfall_{name}": shortfall(measures[inj], measures[ref]) for name, (inj, ref) in MEASURES.items()}
    )
    medians = table.groupby("band")[[f"shortfall_{name}" for name in MEASURES]].median()
    measured = {
        band: {name: round(float(row[f"shortfall_{name}"]), 4) for name in MEASURES} for band, row in medians.iterrows()
    }
    finite = np.isfinite(table[needed].to_numpy(dtype=float)).all(axis=1)
    bad = [
        {"band": band, "measure": name, "median_shortfall": value}
        for band in thresholds.bands
        for name, value in measured.get(band, dict.fromkeys(MEASURES, float("nan"))).items()
        if not value <= thresholds.rel_tolerance
    ]
    if not finite.all():
        bad.append({"band": "any", "measure": "finite", "median_shortfall": float("nan")})
    judged = ", ".join(thresholds.bands)
    return Finding(
        id="L3",
        title=title,
        passed=not bad,
        measured=measured,
        threshold={"rel_tolerance": thresholds.rel_tolerance, "bands": list(thresholds.bands)},
        detail=(
            f"median shortfall of the injection PSF's light beyond 2 x PSFSIZE and 3\" against {len(table)} real "
            f"DECam PSFEx models at their PSFSIZE; judged in {judged}"
            + (f"; {len(bad)} (band, measure) over {thresholds.rel_tolerance:.0%}" if bad else "")
        ),
        evidence=tuple(bad),
        n_offending=len(bad),
    )
