"""``darkhalo score``: a trained model's scores of real cutouts (see darkhalo.real_inputs for the inputs).

Each image is resampled onto the model's stamps (darkhalo.resampling: flux-conserving, pixels without data
filled with the sky and counted, an image with too many refused by name) and scored by ``model_scorer``
(the trainer's normalisation). Writes ``scores.parquet`` (RealScores, ranked), ``refused.csv``
(RefusedImages) and a self-contained ``gallery.html`` into the output folder.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo import layout
from darkhalo.artifacts import atomic_file, write_text
from darkhalo.metrics.evaluation import model_scorer
from darkhalo.metrics.report import Gallery, gallery_plot
from darkhalo.real_inputs import RealImages, RealInputError
from darkhalo.spec import SpecError, StampsSpec, load_spec
from darkhalo.training.device import resolve_device
from data_contracts.real_scores import RealScores, RefusedImages
from data_contracts.survey import BANDS, PIXEL_SCALE

#: Top-ranked stamps shown in the gallery.
GALLERY_SIZE = 36
#: Scoring batch for a bare model file (a run folder's spec gives its own).
BATCH_SIZE = 256
FLUX_RATIO = tuple(f"flux_ratio_{band}" for band in BANDS)


@dataclass(frozen=True)
class Target:
    """The model to score with and the stamps it takes: ``size`` pixels a side at ``pixel_scale`` arcsec."""

    model: Path
    size: int
    pixel_scale: float
    batch_size: int
    device: str


def target_of(model_or_run: Path, size: int | None, device: str | None) -> Target:
    """A model file (``size`` or the default stamp size, the survey's pixel scale, device ``auto``) or a run
    folder (its train/model.pt with its spec's stamp size, pixel scale, evaluate batch size and device);
    ``size`` and ``device`` override either."""
    if model_or_run.is_file():
        return Target(model_or_run, size or StampsSpec().size, PIXEL_SCALE, BATCH_SIZE, device or "auto")
    spec_path, model = model_or_run / "spec.yaml", layout.artifact(model_or_run / "train", layout.MODEL)
    for path in (spec_path, model):
        if not path.is_file():
            raise RealInputError(f"{path}: no such file ({model_or_run} is neither a model file nor a run folder)")
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise RealInputError(str(exc)) from None
    return Target(
        model, size or spec.stamps.size, spec.stamps.pixel_scale, spec.evaluate.batch_size, device or spec.engine.device
    )


def score_inputs(target: Target, inputs: list[RealImages]) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Every image of ``inputs`` scored or refused: (RealScores frame, RefusedImages frame, the scored stamps
    (N, 3, S, S) in rank order)."""
    score = model_scorer(target.model, resolve_device(target.device), target.batch_size)
    rows, refused, stamps = [], [], []
    for real in inputs:
        done, reasons = real.resampled(target.pixel_scale, target.size)
        ids = pd.DataFrame({"input": str(real.source), "name": real.names, "index": np.arange(len(real.names))})
        keep = reasons == ""
        refused.append(ids[~keep].assign(reason=reasons[~keep]))
        scored = ids[keep].assign(score=score(done.stamps[keep]), filled_fraction=done.filled_fraction[keep])
        rows.append(scored.assign(**dict(zip(FLUX_RATIO, done.flux_ratio[keep].T, strict=True))))
        stamps.append(done.stamps[keep])
    frame = pd.concat(rows, ignore_index=True)
    order = np.argsort(-frame["score"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(4, "rank", np.arange(1, len(frame) + 1, dtype=np.int64))
    refusals = pd.concat(refused, ignore_index=True)
    return RealScores.validate(frame), RefusedImages.validate(refusals), np.concatenate(stamps)[order]


def gallery_html(scores: pd.DataFrame, refused: pd.DataFrame, stamps: np.ndarray, model: Path) -> str:
    """A self-contained page: the top-ranked stamps (an embedded PNG), the ranked table and the refusals."""
    top = min(GALLERY_SIZE, len(scores))
    captions = [f"#{r.rank} {r.name} {r.score:.2f}" for r in scores.head(top).itertuples()]
    png = base64.b64encode(gallery_plot(Gallery(f"top {top} of {len(scores)}", stamps[:top], captions))).decode()
    title = f"darkhalo score: {html.escape(str(model))}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><img alt='top-ranked stamps' src='data:image/png;base64,{png}'>"
        f"<h2>scores ({len(scores)})</h2>{scores.to_html(index=False, float_format='{:.4f}'.format)}"
        f"<h2>refused ({len(refused)})</h2>{refused.to_html(index=False)}</body></html>\n"
    )


def write_scores(out_dir: Path, target: Target, inputs: list[RealImages]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score ``inputs`` and write scores.parquet, refused.csv and gallery.html into ``out_dir``, each atomically."""
    scores, refused, stamps = score_inputs(target, inputs)
    with atomic_file(out_dir / "scores.parquet", "wb") as handle:
        scores.to_parquet(handle, index=False)
    with atomic_file(out_dir / "refused.csv") as handle:
        refused.to_csv(handle, index=False)
    write_text(out_dir / "gallery.html", gallery_html(scores, refused, stamps, target.model))
    return scores, refused
