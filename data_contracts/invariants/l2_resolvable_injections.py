"""L2 resolvable injections: the share of positives with theta_E / PSFSIZE_R(host) >= min_ratio
meets the spec's minimum, from each host's own r-band PSF FWHM (data_contracts.lessons)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L2Thresholds


def resolved_mask(theta_e: np.ndarray, psfsize_r: np.ndarray, min_ratio: float) -> np.ndarray:
    """True where theta_E (arcsec) / host r-band PSF FWHM (arcsec) reaches ``min_ratio``."""
    return np.asarray(theta_e, dtype=float) / np.asarray(psfsize_r, dtype=float) >= min_ratio


def check(positives: pd.DataFrame, thresholds: L2Thresholds) -> Finding:
    """``positives`` has one row per injected stamp with ``theta_e`` and the host's ``PSFSIZE_R``."""
    if positives.empty:
        return Finding(
            id="L2",
            title=LESSONS["L2"].title,
            passed=False,
            measured=None,
            threshold=thresholds.min_share,
            detail="no positives to judge",
        )
    resolved = resolved_mask(positives["theta_e"], positives["PSFSIZE_R"], thresholds.min_ratio)
    share = float(resolved.mean())
    by_theta = (
        pd.DataFrame({"theta_e": positives["theta_e"].to_numpy(), "resolved": resolved})
        .groupby("theta_e")["resolved"]
        .agg(["mean", "size"])
    )
    evidence = tuple(
        {"theta_e": float(t), "resolved_share": round(float(r["mean"]), 4), "positives": int(r["size"])}
        for t, r in by_theta.iterrows()
    )
    return Finding(
        id="L2",
        title=LESSONS["L2"].title,
        passed=share >= thresholds.min_share,
        measured=round(share, 4),
        threshold=thresholds.min_share,
        detail=f"{share:.1%} of {len(resolved)} positives have theta_E / PSFSIZE_R >= {thresholds.min_ratio}",
        evidence=evidence,
        n_offending=int((~resolved).sum()),
    )
