"""L6 host matching: positive and control hosts share one distribution of r magnitude, r - z colour,
PSFSIZE_R and PSFDEPTH_R, per split (two-sample KS statistics bounded; data_contracts.lessons).

The bound is the larger of the spec's ``max_ks`` and the KS critical value at the spec's family-wise
level ``family_alpha`` (Bonferroni over splits x properties), so small splits are not failed for
sampling noise; a larger ``family_alpha`` is a stricter test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from data_contracts import survey
from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS
from data_contracts.survey import flux_to_mag
from data_contracts.thresholds import L6Thresholds

KEY = list(survey.KEY)
#: Manifest columns this check reads.
NEEDS = ("FLUX_R", "FLUX_Z", "PSFSIZE_R", "PSFDEPTH_R")


def host_properties(hosts: pd.DataFrame) -> pd.DataFrame:
    """The matched properties of each host: r mag, r - z (raw fluxes), PSFSIZE_R, PSFDEPTH_R."""
    r, z = flux_to_mag(hosts["FLUX_R"].to_numpy()), flux_to_mag(hosts["FLUX_Z"].to_numpy())
    return pd.DataFrame(
        {
            "mag_r": r,
            "r_minus_z": r - z,
            "PSFSIZE_R": hosts["PSFSIZE_R"].to_numpy(dtype=float),
            "PSFDEPTH_R": hosts["PSFDEPTH_R"].to_numpy(dtype=float),
        },
        index=hosts.index,
    )


def ks_critical(n: int, m: int, alpha: float) -> float:
    """Asymptotic two-sample KS critical value at level ``alpha`` for sample sizes n, m."""
    return float(np.sqrt(-np.log(alpha / 2) / 2) * np.sqrt((n + m) / (n * m)))


def check(manifest: pd.DataFrame, thresholds: L6Thresholds) -> Finding:
    """KS statistic per split and property between unique positive hosts and unique control hosts."""
    hosts = manifest.drop_duplicates([*KEY, "label"])
    props = host_properties(hosts)
    splits = sorted(hosts["split"].unique())
    alpha = thresholds.family_alpha / max(1, len(splits) * props.shape[1])
    rows, worst = [], 0.0
    for split in splits:
        in_split = (hosts["split"] == split).to_numpy()
        pos = in_split & (hosts["label"] == 1).to_numpy()
        neg = in_split & (hosts["label"] == 0).to_numpy()
        if pos.sum() < 2 or neg.sum() < 2:
            continue
        bound = max(thresholds.max_ks, ks_critical(int(pos.sum()), int(neg.sum()), alpha))
        for name in props.columns:
            a, b = props[name].to_numpy()[pos], props[name].to_numpy()[neg]
            ks = float(stats.ks_2samp(a[np.isfinite(a)], b[np.isfinite(b)]).statistic)
            worst = max(worst, ks / bound)
            if ks > bound:
                rows.append({"split": split, "property": name, "ks": round(ks, 4), "bound": round(bound, 4)})
    return Finding(
        id="L6",
        title=LESSONS["L6"].title,
        passed=not rows,
        measured=round(worst, 4),
        threshold=1.0,
        detail="largest KS statistic / bound over splits and properties"
        + (f"; {len(rows)} (split, property) pairs exceed their bound" if rows else ""),
        evidence=tuple(rows),
        n_offending=len(rows),
    )
