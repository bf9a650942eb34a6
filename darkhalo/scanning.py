"""The search's batch work, one Spark task per slice of the parent sample: its hosts cut out from the survey provider
and scored by the trained model where the task runs, so no pixel passes through the JVM or back to the driver.

A host without a usable cutout (a file or fetch that fails, non-finite pixels, a band with no data) is returned with
its reason instead of a score. The driver (darkhalo.stages.scan) ranks what the tasks return.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo import tables
from darkhalo.spec import SurveySpec
from darkhalo.surveys.cutout_fits import CutoutFileError
from darkhalo.surveys.http_cutouts import CutoutFetchError
from darkhalo.surveys.provider import CutoutProvider, provider_for
from darkhalo.task_scoring import worker_scorer
from data_contracts.survey import BANDS, KEY

#: What a provider raises for one host's cutout: the host is listed unscored with the message, the scan goes on.
CUTOUT_ERRORS = (CutoutFileError, CutoutFetchError, OSError)


@dataclass(frozen=True)
class ScanSettings:
    """What a scan task needs: the survey and seed (for the provider), the stamp side (pixels), the model file, its
    device choice and scoring batch."""

    survey: SurveySpec
    seed: int
    size: int
    model: Path
    device: str
    batch_size: int


def host_slices(parts: list[Path], rows: int) -> list[tuple[Path, int, int]]:
    """The parent sample's parts cut into (part, first row, end row) slices of at most ``rows`` hosts."""
    return [
        (part, start, min(start + rows, n))
        for part in parts
        for n in (tables.num_rows(part),)
        for start in range(0, n, rows)
    ]


def usable_cutouts(provider: CutoutProvider, hosts: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stamps (N, 3, size, size) of ``hosts`` and each host's reason for being unusable ("" when usable): a cutout
    the provider refuses (tried host by host once the batch fails), non-finite pixels, or a band with no data."""
    images = np.zeros((len(hosts), len(BANDS), size, size), np.float32)
    reasons = np.full(len(hosts), "", dtype=object)
    try:
        cut = provider.cutouts(hosts, size)
        images[:], invvar = cut.images, cut.invvar
    except CUTOUT_ERRORS:
        invvar = np.ones_like(images)
        for i in range(len(hosts)):
            try:
                one = provider.cutouts(hosts.iloc[i : i + 1], size)
                images[i], invvar[i] = one.images[0], one.invvar[0]
            except CUTOUT_ERRORS as exc:
                reasons[i] = str(exc)
    finite = np.isfinite(images).all(axis=(2, 3))
    no_data = ~(invvar > 0).any(axis=(2, 3))
    for i in np.flatnonzero(reasons == ""):
        bad = [b for b, ok, empty in zip(BANDS, finite[i], no_data[i], strict=True) if not ok or empty]
        if bad:
            what = "non-finite pixels" if not finite[i].all() else "no data (inverse variance 0)"
            reasons[i] = f"{what} in band {', '.join(bad)}"
    return images, reasons


def scan_slice(piece: tuple[Path, int, int], settings: ScanSettings) -> pd.DataFrame:
    """One task: the slice's hosts cut out and scored, in the slice's order: each host's key, its score (NaN when
    unscored) and the reason ("" when scored)."""
    part, start, end = piece
    hosts = tables.read_table(part).slice(start, end - start).to_pandas()
    provider = provider_for(settings.survey, settings.seed)
    images, reasons = usable_cutouts(provider, hosts, settings.size)
    scores = np.full(len(hosts), np.nan)
    usable = reasons == ""
    if usable.any():
        scores[usable] = worker_scorer(settings.model, settings.device, settings.batch_size)(images[usable])
    return hosts[list(KEY)].assign(score=scores, reason=reasons.astype(str))
