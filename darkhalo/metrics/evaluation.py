"""Everything after the model: the test stamps read back, the model as a scorer, the operating points
(L4), the shortcut probes (L9: core and ring pixels, blobs, the PSF swap) and the report.

Written into one folder: ``scores.parquet`` (stamp_id, label, split, score = the model's logit,
metadata), ``metrics.json`` (with the probes' measurements), ``report.html``, ``report.md`` and
``plots/``. The evaluate stage and ``darkhalo compare`` both call ``evaluate``; the verdicts on what
it writes come from darkhalo.audit.judges.judge_metrics.
The PSF-swap probe re-injects a sample of the test positives from their manifest rows with a
Gaussian PSF and reports the completeness change at each operating threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch

from darkhalo import layout, tables
from darkhalo.artifacts import atomic_file, write_json
from darkhalo.injection import Rendering, inject_batch
from darkhalo.lensing.psf import PSF_MODELS
from darkhalo.metrics.probes import blob_images, core_probe_auc, flag_rates, psf_swap_completeness, ring_probe_auc
from darkhalo.metrics.report import Gallery, write_report
from darkhalo.metrics.summary import evaluation_metrics
from darkhalo.spec import GenerationSpec, SurveySpec
from darkhalo.stamps import N_BANDS, decode_checked, decode_images, stamp_dataset
from darkhalo.surveys.provider import provider_for
from darkhalo.training.checkpoint import load_model
from darkhalo.training.loop import predict_logits
from darkhalo.training.store import StampStore, normalise

Scorer = Callable[[np.ndarray], np.ndarray]
ARC_FLUX = ("arc_flux_g", "arc_flux_r", "arc_flux_z")
GALLERY_SIZE = 12
#: Stamps normalised and scored per step (bounds device memory at any test-set size).
SCORE_CHUNK = 8192
#: Controls given a blob for the blob probe (a seeded sample; ~5 ms of CPU per blob).
BLOB_MAX = 20_000
#: Test positives re-injected with a Gaussian PSF for the PSF-swap probe (a seeded sample).
PSF_SWAP_MAX = 2000


def load_test_stamps(inject_dir: Path, size: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The test split's metadata (every column but ``image``) and images (N, 3, S, S), by stamp_id.

    ``size`` is the stamp side in pixels (None: from the first stamp). A stamp of the wrong byte
    length or with non-finite pixels is refused naming its stamp_id; an unreadable shard, its file.
    """
    dataset = stamp_dataset(inject_dir)
    for path in dataset.files:
        tables.read_schema(Path(path))
    table = dataset.to_table(filter=pc.field("split") == "test").sort_by("stamp_id")
    if table.num_rows == 0:
        raise ValueError(f"{inject_dir / layout.STAMPS}: no stamps in the test split")
    ids = table.column("stamp_id").to_numpy()
    if size is None:
        size = math.isqrt(len(table.column("image")[0].as_py()) // (4 * N_BANDS))
    images = decode_checked(table.column("image"), ids, size, inject_dir / layout.STAMPS)
    return table.drop(["image"]).to_pandas(), images


def model_scorer(model_path: Path, device: torch.device, batch_size: int) -> Scorer:
    """The trained model as a scorer of raw stamps: the trainer's ``normalise``, then its logit (fp32,
    no bf16, so the low-FPR tail is not rounded into ties), ``SCORE_CHUNK`` stamps on the device at a time."""
    model = load_model(model_path, device)

    def score(images: np.ndarray) -> np.ndarray:
        out = [np.empty(0, dtype=np.float32)]
        for start in range(0, len(images), SCORE_CHUNK):
            chunk = normalise(torch.from_numpy(np.ascontiguousarray(images[start : start + SCORE_CHUNK])).to(device))
            store = StampStore(chunk, torch.zeros(len(chunk), device=device), np.arange(len(chunk)), device)
            out.append(predict_logits(model, store, batch_size))
        return np.concatenate(out).astype(np.float64)

    return score


def blob_probe(
    meta: pd.DataFrame, images: np.ndarray, score: Scorer, thresholds: dict[str, float], *, rendering: Rendering
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Controls (up to BLOB_MAX, a seeded sample) plus a central blob carrying a random test positive's
    arc flux (per band): flag rates at each threshold, the blob stamps and their scores. The blob goes
    through the injection PSF model at the control's r-band FWHM in every band (stamps record only
    PSFSIZE_R)."""
    positive = meta["label"].to_numpy() == 1
    missing = [c for c in (*ARC_FLUX, "psfsize_r") if c not in meta]
    if missing:
        raise ValueError(f"inject stamps lack column(s) {', '.join(missing)} that the blob probe needs")
    fluxes = meta.loc[positive, list(ARC_FLUX)].to_numpy(np.float64)
    fluxes = fluxes[np.isfinite(fluxes).all(axis=1)]
    if len(fluxes) == 0:
        raise ValueError("no test positive has finite arc_flux_g/r/z for the blob probe")
    psf = rendering.psf
    rng = np.random.default_rng([rendering.seed, 9])
    chosen = np.flatnonzero(~positive)
    chosen = np.sort(rng.choice(chosen, min(BLOB_MAX, chosen.size), replace=False))
    controls = images[chosen]
    fwhm = meta["psfsize_r"].to_numpy(np.float64)[chosen]
    fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, np.nanmedian(meta["psfsize_r"]))
    model = psf.model if psf.model in PSF_MODELS else "survey"
    blobs = controls + blob_images(
        fluxes[rng.integers(0, len(fluxes), len(controls))],
        fwhm,
        controls.shape[-1],
        rendering.stamps.pixel_scale,
        model,
        psf.moffat_beta,
        psf.kernel_size_pix,
    )
    blob_scores = score(blobs)
    return flag_rates(blob_scores, thresholds), blobs, blob_scores


def psf_swap(
    manifest_dir: Path,
    meta: pd.DataFrame,
    images: np.ndarray,
    score: Scorer,
    thresholds: dict[str, float],
    *,
    rendering: Rendering,
    survey: SurveySpec,
) -> dict[str, Any]:
    """Completeness of up to PSF_SWAP_MAX test positives (seeded sample) as injected and re-injected
    (same manifest rows, same cutouts from ``survey``, inject's own ``inject_batch``) with a Gaussian PSF of
    the same FWHM."""
    positive = np.flatnonzero(meta["label"].to_numpy() == 1)
    rng = np.random.default_rng([rendering.seed, 11])
    chosen = np.sort(rng.choice(positive, min(PSF_SWAP_MAX, positive.size), replace=False))
    ids = meta["stamp_id"].to_numpy()[chosen]
    files = layout.parts(manifest_dir, layout.MANIFEST)
    rows = ds.dataset(files, format="parquet").to_table(filter=pc.field("stamp_id").isin(ids)).to_pandas()
    rows = rows.sort_values("stamp_id", ignore_index=True)
    if not np.array_equal(rows["stamp_id"].to_numpy(), ids):
        raise ValueError(f"{manifest_dir / layout.MANIFEST}: test positives missing from the manifest")
    gaussian = replace(rendering, psf=rendering.psf.model_copy(update={"model": "gaussian"}))
    provider = provider_for(survey, rendering.seed)
    step = rendering.injection.batch_size
    swapped = [
        decode_images(
            inject_batch(rows.iloc[i : i + step], provider, rendering=gaussian)["image"].tolist(), images.shape[-1]
        )
        for i in range(0, len(rows), step)
    ]
    return {
        "n_positives": len(chosen),
        "injection_psf": rendering.psf.model,
        "completeness": psf_swap_completeness(score, images[chosen], np.concatenate(swapped), thresholds),
    }


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


def _report_links(run_dir: Path) -> list[tuple[str, str]]:
    """Links from the report (relative to evaluate/): the select stage's Great Expectations Data
    Docs (its top index.html) and the generation's audit (every invariant, written after evaluate)."""
    docs = run_dir / "select" / layout.VALIDATION
    pages = sorted(docs.rglob("index.html"), key=lambda p: (len(p.parts), p)) if docs.is_dir() else []
    title = "Great Expectations Data Docs (select)"
    links = [(title, f"../select/{layout.VALIDATION}/{page.relative_to(docs)}") for page in pages[:1]]
    return [*links, ("Audit: every invariant of this generation", "../audit/audit.md")]


def evaluate(
    spec: GenerationSpec,
    meta: pd.DataFrame,
    images: np.ndarray,
    score: Scorer,
    out: Path,
    run_dir: Path,
    manifest: Path | None = None,
) -> dict[str, Any]:
    """Everything after the model: scores, metrics with the probes' measurements, and the report,
    written into ``out`` (judged afterwards by darkhalo.audit.judges.judge_metrics). Returns the
    metrics as written to metrics.json.

    ``run_dir`` holds the select stage the report links to; with ``manifest`` (the manifest stage's
    folder) the probes include the PSF swap."""
    settings = spec.evaluate
    scores = meta.assign(score=np.asarray(score(images), dtype=np.float64))
    with atomic_file(out / layout.SCORES, "wb") as handle:
        scores.to_parquet(handle, index=False)
    summary = evaluation_metrics(
        scores,
        min_expected_fp=settings.min_expected_false_positives,
        confidence=settings.confidence,
        bootstrap_samples=settings.bootstrap_samples,
        seed=spec.seed,
        survey_hosts=settings.survey_hosts,
        prevalence=settings.lens_prevalence,
    )
    metrics = summary.model_dump(mode="json")
    blobs = blob_scores = None
    if settings.probes:
        points = summary.resolved_points()
        thresholds = {name: p.threshold for name, p in points.items()}
        core_size = spec.invariants.L9.core_size_pix
        labels = scores["label"].to_numpy()
        rendering = Rendering.of(spec)
        rates, blobs, blob_scores = blob_probe(meta, images, score, thresholds, rendering=rendering)
        metrics["probes"] = {
            "core_size_pix": core_size,
            "core_auc": core_probe_auc(images, labels, core_size, spec.seed),
            "ring_auc": ring_probe_auc(images, labels, core_size, spec.seed),
            "n_blobs": len(blobs),
            "fpr_floor": 1 / summary.n_neg,
            "blob_flag_rates": rates,
            "fpr_at_thresholds": {name: p.fpr for name, p in points.items()},
        }
        if manifest is not None:
            metrics["probes"]["psf_swap"] = psf_swap(
                manifest, meta, images, score, thresholds, rendering=rendering, survey=spec.survey
            )
    write_json(out / layout.METRICS, metrics)
    write_report(
        out,
        scores,
        _galleries(scores, images, blobs, blob_scores),
        _report_links(run_dir),
        title=f"darkhalo evaluation: {spec.generation}",
    )
    return metrics
