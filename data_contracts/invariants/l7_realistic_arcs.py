"""L7 realistic, visible arcs (data_contracts.lessons): source brightness from a population prior,
every positive records its arc S/N, and the shares of invisible and of implausibly bright arcs
are bounded. Gen 1's host-relative brightness made arcs ~100x too bright."""

from __future__ import annotations

import numpy as np

from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS
from data_contracts.thresholds import L7Thresholds


def check(brightness: str, arc_snr: np.ndarray, thresholds: L7Thresholds) -> Finding:
    """``brightness`` is the spec's source.brightness; ``arc_snr`` the positives' recorded S/N."""
    snr = np.asarray(arc_snr, dtype=float)
    problems = []
    if brightness != "prior":
        problems.append(f"source brightness is '{brightness}', not drawn from a source-population prior")
    missing = int((~np.isfinite(snr)).sum())
    if missing or snr.size == 0:
        problems.append(f"{missing} of {snr.size} positives lack a finite arc S/N")
    finite = snr[np.isfinite(snr)]
    invisible = float((finite < thresholds.min_visible_snr).mean()) if finite.size else float("nan")
    bright = float((finite > thresholds.max_plausible_snr).mean()) if finite.size else float("nan")
    if invisible > thresholds.max_invisible_share:
        problems.append(f"{invisible:.1%} of arcs have S/N < {thresholds.min_visible_snr}")
    if bright > thresholds.max_bright_share:
        problems.append(f"{bright:.1%} of arcs have S/N > {thresholds.max_plausible_snr}")
    quantiles = np.quantile(finite, [0.1, 0.5, 0.9]).round(2).tolist() if finite.size else []
    return Finding(
        id="L7",
        title=LESSONS["L7"].title,
        passed=not problems,
        measured={
            "invisible_share": round(invisible, 4),
            "bright_share": round(bright, 4),
            "snr_p10_p50_p90": quantiles,
        },
        threshold={
            "max_invisible_share": thresholds.max_invisible_share,
            "max_bright_share": thresholds.max_bright_share,
        },
        detail="; ".join(problems) or f"arc S/N p10/p50/p90 = {quantiles}",
        n_offending=len(problems),
    )
