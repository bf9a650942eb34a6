"""Phase 6: score the test split with the trained model, then the operating points (L4), the
shortcut probes (L9), the report.

Reads ``inject/stamps/`` (test split) and ``train/model.pt``; writes ``evaluate/scores.parquet``
(stamp_id, label, split, score = the model's logit, metadata), ``metrics.json``, ``report.html``,
``report.md`` and ``plots/``. Findings: the scores schema, L4 on metrics.json, L9 when probes run.
The PSF-swap probe needs the arcs re-rendered with a Gaussian PSF (issue 6's renderer); until it is
wired in, metrics.json says so under ``psf_swap``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from darkhalo import tables
from darkhalo.artifacts import atomic_file, write_json
from darkhalo.lensing.psf import PSF_MODELS
from darkhalo.metrics.probes import blob_images, core_probe_auc, flag_rates
from darkhalo.metrics.report import Gallery, write_report
from darkhalo.metrics.summary import evaluation_metrics, resolved_points
from darkhalo.spec import GenerationSpec
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.stamps import N_BANDS, decode_images, stamp_dataset
from data_contracts.invariants import l4_operational_reporting, l9_no_shortcut
from data_contracts.schema import schema_finding
from data_contracts.scores import SCORES_SCHEMA

Scorer = Callable[[np.ndarray], np.ndarray]
ARC_FLUX = ("arc_flux_g", "arc_flux_r", "arc_flux_z")
GALLERY_SIZE = 12


def load_test_stamps(inject_dir: Path, size: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The test split's metadata (every column but ``image``) and images (N, 3, S, S), by stamp_id.

    ``size`` is the stamp side in pixels (None: from the first stamp). A stamp of the wrong byte
    length or with non-finite pixels is refused naming its stamp_id; an unreadable shard, its file.
    """
    dataset = stamp_dataset(inject_dir)
    if not dataset.files:
        raise FileNotFoundError(f"{inject_dir / 'stamps'}: no part-*.parquet shards (did the inject stage run?)")
    for path in dataset.files:
        tables.read_schema(Path(path))
    table = dataset.to_table(filter=pc.field("split") == "test").sort_by("stamp_id")
    if table.num_rows == 0:
        raise ValueError(f"{inject_dir / 'stamps'}: no stamps in the test split")
    ids = table.column("stamp_id").to_numpy()
    if size is None:
        size = math.isqrt(len(table.column("image")[0].as_py()) // (4 * N_BANDS))
    expected = 4 * N_BANDS * size * size
    lengths = pc.binary_length(table.column("image")).fill_null(0).to_numpy()
    if (lengths != expected).any():
        bad = int(np.flatnonzero(lengths != expected)[0])
        raise ValueError(
            f"{inject_dir / 'stamps'}: stamp_id {ids[bad]} image holds {lengths[bad]} bytes, "
            f"expected {expected} ({N_BANDS} x {size} x {size} float32)"
        )
    images = decode_images(table.column("image"), size)
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"{inject_dir / 'stamps'}: stamp_id {ids[np.flatnonzero(~finite)[0]]} has non-finite pixels")
    return table.drop(["image"]).to_pandas(), images


def device_for(spec: GenerationSpec) -> torch.device:
    """The engine's device: ``auto`` picks CUDA when present."""
    if spec.engine.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.engine.device)


def model_scorer(model_path: Path, device: torch.device, batch_size: int) -> Scorer:
    """A scorer from ``train/model.pt``: the trainer's ``normalise`` then the model's logit, in batches.

    The file is read by the trainer's ``load_model`` (weights_only=True; a pickled object, a torn
    file or another normalisation is refused naming the file).
    """
    from darkhalo.training.checkpoint import load_model
    from darkhalo.training.store import normalise

    model = load_model(model_path, device)

    @torch.inference_mode()
    def score(images: np.ndarray) -> np.ndarray:
        out = [
            model(normalise(torch.from_numpy(images[i : i + batch_size]).to(device))).float().reshape(-1).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out).numpy().astype(np.float64) if out else np.empty(0)

    return score


def blob_probe(
    spec: GenerationSpec, meta: pd.DataFrame, images: np.ndarray, score: Scorer, thresholds: dict[str, float]
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Controls plus a central blob carrying a random test positive's arc flux (per band): flag rates
    at each threshold, the blob stamps and their scores. The blob goes through the injection PSF model
    at the control's r-band FWHM in every band (stamps record only PSFSIZE_R)."""
    positive = meta["label"].to_numpy() == 1
    missing = [c for c in (*ARC_FLUX, "psfsize_r") if c not in meta]
    if missing:
        raise ValueError(f"inject stamps lack column(s) {', '.join(missing)} that the blob probe needs")
    fluxes = meta.loc[positive, list(ARC_FLUX)].to_numpy(np.float64)
    fluxes = fluxes[np.isfinite(fluxes).all(axis=1)]
    if len(fluxes) == 0:
        raise ValueError("no test positive has finite arc_flux_g/r/z for the blob probe")
    rng = np.random.default_rng([spec.seed, 9])
    controls = images[~positive]
    fwhm = meta.loc[~positive, "psfsize_r"].to_numpy(np.float64)
    fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, np.nanmedian(meta["psfsize_r"]))
    model = spec.psf.model if spec.psf.model in PSF_MODELS else "survey"
    blobs = controls + blob_images(
        fluxes[rng.integers(0, len(fluxes), len(controls))],
        fwhm,
        controls.shape[-1],
        spec.stamps.pixel_scale,
        model,
        spec.psf.moffat_beta,
        spec.psf.kernel_size_pix,
    )
    blob_scores = score(blobs)
    return flag_rates(blob_scores, thresholds), blobs, blob_scores


def _caption(row: pd.Series) -> str:
    text = f"#{row['stamp_id']} s={row['score']:.2f}"
    theta = row.get("theta_e")
    return text + (f" θE={theta:.2f}" if theta is not None and np.isfinite(theta) else "")


def _galleries(scores: pd.DataFrame, images: np.ndarray, blobs: np.ndarray | None, blob_scores: Any) -> list[Gallery]:
    order = np.argsort(scores["score"].to_numpy())
    labels = scores["label"].to_numpy()
    top_controls = [i for i in order[::-1] if labels[i] == 0][:GALLERY_SIZE]
    low_positives = [i for i in order if labels[i] == 1][:GALLERY_SIZE]
    galleries = [
        Gallery("top-scored controls", images[top_controls], [_caption(scores.iloc[i]) for i in top_controls]),
        Gallery("lowest-scored positives", images[low_positives], [_caption(scores.iloc[i]) for i in low_positives]),
    ]
    if blobs is not None:
        top = np.argsort(blob_scores)[::-1][:GALLERY_SIZE]
        galleries.append(Gallery("blob probe: top-scored", blobs[top], [f"s={blob_scores[i]:.2f}" for i in top]))
    return galleries


def _data_docs_links(run_dir: Path) -> list[tuple[str, str]]:
    """The select stage's Great Expectations Data Docs (its top index.html), relative to evaluate/."""
    docs = run_dir / "select" / "validation"
    pages = sorted(docs.rglob("index.html"), key=lambda p: (len(p.parts), p)) if docs.is_dir() else []
    return (
        [("Great Expectations Data Docs (select)", f"../select/validation/{pages[0].relative_to(docs)}")]
        if pages
        else []
    )


def evaluate(
    spec: GenerationSpec, meta: pd.DataFrame, images: np.ndarray, score: Scorer, out: Path, run_dir: Path
) -> StageResult:
    """Everything after the model: scores, metrics, probes, findings and the report, written into ``out``."""
    settings = spec.evaluate
    scores = meta.assign(score=np.asarray(score(images), dtype=np.float64))
    with atomic_file(out / "scores.parquet", "wb") as handle:
        scores.to_parquet(handle, index=False)
    metrics = evaluation_metrics(
        scores,
        min_expected_fp=settings.min_expected_false_positives,
        confidence=settings.confidence,
        bootstrap_samples=settings.bootstrap_samples,
        seed=spec.seed,
        survey_hosts=settings.survey_hosts,
        prevalence=settings.lens_prevalence,
    )
    findings = [schema_finding(SCORES_SCHEMA, scores, "scores")]
    blobs = blob_scores = None
    metrics["psf_swap"] = {"status": "not run", "reason": "needs the injection renderer (issue 6) wired in"}
    if settings.probes:
        points = dict(resolved_points(metrics))
        thresholds = {name: p["threshold"] for name, p in points.items()}
        limits = spec.invariants.L9
        core_auc = core_probe_auc(images, scores["label"].to_numpy(), limits.core_size_pix, spec.seed)
        rates, blobs, blob_scores = blob_probe(spec, meta, images, score, thresholds)
        fprs = {name: p["fpr"] for name, p in points.items()}
        findings.append(l9_no_shortcut.check(core_auc, rates, fprs, limits, fpr_floor=1 / metrics["n_neg"]))
        metrics["probes"] = {"core_auc": core_auc, "blob_flag_rates": rates, "fpr_at_thresholds": fprs}
    write_json(out / "metrics.json", metrics)
    findings.insert(
        1, l4_operational_reporting.check(json.loads((out / "metrics.json").read_text()), spec.invariants.L4)
    )
    write_report(
        out,
        metrics,
        scores,
        _galleries(scores, images, blobs, blob_scores),
        findings,
        _data_docs_links(run_dir),
        title=f"darkhalo evaluation: {spec.generation}",
    )
    n_pos = int((scores["label"] == 1).sum())
    return StageResult(
        rows={"scores": len(scores)},
        findings=findings,
        measured={"n_pos": n_pos, "n_neg": len(scores) - n_pos, "auroc": metrics["auroc"]},
    )


def run(ctx: StageContext) -> StageResult:
    meta, images = load_test_stamps(ctx.input("inject"), ctx.spec.stamps.size)
    settings = ctx.spec.evaluate
    score = model_scorer(ctx.input("train") / "model.pt", device_for(ctx.spec), settings.batch_size)
    return evaluate(ctx.spec, meta, images, score, ctx.out, ctx.run_dir)
