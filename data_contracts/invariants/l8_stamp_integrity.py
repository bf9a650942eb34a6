"""L8 stamp integrity (data_contracts.lessons): shape and band order, finite pixels, controls
bit-identical to their cutouts, positives equal to cutout + the recorded arc, a point source
through the injection PSF landing where intended with its flux, no duplicated (host, config) rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L8Thresholds

#: Largest |stamp - cutout - arc| in float32 ulps of the stamp's brightest pixel.
MAX_RESIDUAL_ULPS = 4.0


def check(
    stamps: pd.DataFrame,
    point_source: dict[str, float],
    thresholds: L8Thresholds,
    expected_bytes: int,
    image_bytes: np.ndarray,
) -> Finding:
    """``stamps``: stamp_id, host_id, config_id, label, l8_residual per stamp; ``image_bytes`` the
    stored length of each image; ``point_source``: offset_pix and flux_ratio of the injection test."""
    rows = []
    residual = stamps["l8_residual"].to_numpy(dtype=float)
    control = stamps["label"].to_numpy() == 0
    for mask, why in (
        (~np.isfinite(residual), "non-finite pixel"),
        (control & (residual != 0), "control differs from its cutout"),
        (~control & (residual > MAX_RESIDUAL_ULPS), "positive differs from cutout + arc"),
        (np.asarray(image_bytes) != expected_bytes, f"image is not {expected_bytes} bytes (3 x H x W float32)"),
        (stamps.duplicated(["host_id", "config_id", "label"]).to_numpy(), "duplicated (host, config) row"),
    ):
        rows += [{"stamp_id": int(s), "problem": why} for s in stamps.loc[mask, "stamp_id"]]
    offset, ratio = point_source["offset_pix"], point_source["flux_ratio"]
    if not offset <= thresholds.position_tolerance_pix:
        rows.append({"stamp_id": None, "problem": f"point source lands {offset:.3g} pix from its position"})
    if not abs(ratio - 1) <= thresholds.flux_rel_tolerance:
        rows.append({"stamp_id": None, "problem": f"point source keeps {ratio:.6f} of its flux"})
    evidence, n = evidence_rows(rows)
    return Finding(
        id="L8",
        title=LESSONS["L8"].title,
        passed=n == 0,
        measured={"offending": n, "point_offset_pix": round(offset, 5), "point_flux_ratio": round(ratio, 6)},
        threshold={
            "position_tolerance_pix": thresholds.position_tolerance_pix,
            "flux_rel_tolerance": thresholds.flux_rel_tolerance,
            "max_residual_ulps": MAX_RESIDUAL_ULPS,
        },
        detail=f"{n} integrity problem(s)" + (f"; first: {rows[0]['problem']}" if rows else ""),
        evidence=evidence,
        n_offending=n,
    )
