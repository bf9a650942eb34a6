"""Everything after the model: the test stamps streamed from their shards, the model as a scorer, the
operating points (L4), the shortcut probes (L9: core and ring pixels, blobs, the PSF swap), the real sets
at the operating thresholds (L12, darkhalo.metrics.real_recall) with the test positives at each real lens set's
depth, and the report.

Written into one folder: ``scores.parquet`` (stamp_id, label, split, score = the model's logit,
metadata), ``metrics.json`` (with the probes' measurements and the real sets' rates), ``report.html``, ``report.md`` and
``plots/``. The evaluate stage and ``darkhalo compare`` both call ``evaluate``; the verdicts on what
it writes come from darkhalo.audit.judges.judge_metrics.

The test split is never held whole: ``ShardedSplit`` keeps its metadata and reads its stamps a chunk
at a time (``chunk_rows``, from the engine's ``memory_mb``); a pass over the chunks keeps only
scores, the probes' core and ring pixels, the blob probe's scores and the positives' scores at each real lens
set's depth (``SplitPass``), and the galleries read back just their few stamps. Stamps reach the scorer in fixed
blocks, so every number is the one a one-chunk run gives. The pass can also run one shard per Spark task
(``SplitPass.shards``, darkhalo.task_scoring), where its scores come back equal to float rounding (a shard's blocks
start at the shard). The real sets, the PSF-swap probe and the galleries run in the calling process: the PSF swap
re-injects a sample of the test positives from their manifest rows with a Gaussian PSF and reports the
completeness change at each operating threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch

from darkhalo import layout, tables
from darkhalo.artifacts import atomic_file, write_json
from darkhalo.injection import Rendering, inject_batch
from darkhalo.lensing.psf import PSF_MODELS
from darkhalo.metrics.probes import (
    blob_images,
    core_pixels,
    core_ring_probe,
    flag_rates,
    psf_swap_completeness,
    ring_pixels,
)
from darkhalo.metrics.real_recall import (
    AtDepth,
    DepthNoise,
    ScoredSet,
    depth_noise,
    real_galleries,
    score_set,
    set_result,
)
from darkhalo.metrics.report import Gallery, write_report
from darkhalo.metrics.summary import evaluation_metrics
from darkhalo.spec import EngineSpec, GenerationSpec, SurveySpec
from darkhalo.stamps import N_BANDS, decode_checked, decode_images
from darkhalo.surveys.noise import sky_noise_sigma
from darkhalo.surveys.provider import provider_for
from darkhalo.training.checkpoint import load_model
from darkhalo.training.loop import predict_logits
from darkhalo.training.store import StampStore, normalise
from data_contracts.confusers import VALUES
from data_contracts.stamps import IMAGE

Scorer = Callable[[np.ndarray], np.ndarray]
ARC_FLUX = ("arc_flux_g", "arc_flux_r", "arc_flux_z")
GALLERY_SIZE = 12
#: Stamps normalised and scored per step (bounds device memory at any test-set size).
SCORE_CHUNK = 8192
#: Controls given a blob for the blob probe (a seeded sample; ~5 ms of CPU per blob).
BLOB_MAX = 20_000
#: Test positives re-injected with a Gaussian PSF for the PSF-swap probe (a seeded sample).
PSF_SWAP_MAX = 2000
#: Copies of a chunk of stamps held at once at the peak: the parquet batch and its test rows, their decoded
#: stamps, the scoring block and the scorer's normalised copy, the chosen controls, their blobs and the blob block.
HELD_COPIES = 8
#: Bytes read from a shard at a time: its pages stream in, not the whole column chunk of a row group.
READ_BUFFER = 1 << 20


def chunk_rows(memory_mb: int, size: int, batch_size: int) -> int:
    """Stamps of ``size`` x ``size`` pixels read and scored per chunk so that ``HELD_COPIES`` chunks fit in
    ``memory_mb`` MiB: a multiple of the scorer's ``batch_size`` (one batch at least), so every stamp is scored
    in the batch it has in a one-chunk run."""
    rows = memory_mb * 2**20 // (HELD_COPIES * N_BANDS * size * size * 4)
    return max(1, rows // batch_size) * batch_size


@dataclass(frozen=True)
class ShardedSplit:
    """The test split of an inject stage's stamp shards: its metadata (every column but ``image``, sorted by
    stamp_id) in memory, its stamps (3, ``size``, ``size``) read from the shards a chunk at a time.

    ``shard_of`` is the index in ``files`` of each metadata row's shard; ``folder`` is named in errors.
    """

    folder: Path
    files: tuple[Path, ...]
    meta: pd.DataFrame
    shard_of: np.ndarray
    size: int

    @classmethod
    def open(cls, inject_dir: Path, size: int) -> ShardedSplit:
        """Read the test split's metadata; an unreadable shard is refused naming its file, a stamp_id seen
        twice naming it."""
        folder = inject_dir / layout.STAMPS
        files = tuple(layout.parts(inject_dir, layout.STAMPS))
        parts = []
        for index, path in enumerate(files):
            columns = [name for name in tables.read_schema(path).names if name != IMAGE]
            table = tables.read_table(path, columns)
            table = table.filter(pc.equal(table["split"], "test"))
            parts.append(table.append_column("shard", pa.array(np.full(table.num_rows, index, dtype=np.int32))))
        table = pa.concat_tables(parts).sort_by("stamp_id")
        if table.num_rows == 0:
            raise ValueError(f"{folder}: no stamps in the test split")
        ids = table["stamp_id"].to_numpy()
        twice = ids[1:][np.diff(ids) == 0]
        if twice.size:
            raise ValueError(f"{folder}: stamp_id {twice[0]} appears more than once in the test split")
        shard_of = table["shard"].to_numpy()
        return cls(folder, files, table.drop(["shard"]).to_pandas(), shard_of, size)

    def __len__(self) -> int:
        return len(self.meta)

    def rows_of(self, shard: int) -> np.ndarray:
        """The rows of ``meta`` (ascending) whose stamps are in ``files[shard]``."""
        return np.flatnonzero(self.shard_of == shard)

    def shard(self, shard: int) -> ShardedSplit:
        """The split of ``files[shard]`` alone: its rows of ``meta`` (``rows_of``), renumbered from 0."""
        rows = self.rows_of(shard)
        meta = self.meta.iloc[rows].reset_index(drop=True)
        return ShardedSplit(self.folder, (self.files[shard],), meta, np.zeros(len(rows), dtype=np.int32), self.size)

    def pieces(self, rows: int, wanted: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The test stamps (or the ``wanted`` rows of ``meta`` only) in shard order, up to ``rows`` at a time:
        (their rows in ``meta``, stamps (n, 3, S, S) float32 nanomaggies). A stamp of the wrong byte length
        or with non-finite pixels is refused naming its stamp_id."""
        ids = self.meta["stamp_id"].to_numpy()
        shards = range(len(self.files)) if wanted is None else np.unique(self.shard_of[wanted])
        keep = None if wanted is None else pa.array(ids[wanted])
        for shard in shards:
            reader = pq.ParquetFile(self.files[shard], buffer_size=READ_BUFFER)
            for batch in reader.iter_batches(rows, columns=["stamp_id", "split", IMAGE]):
                mask = pc.equal(batch["split"], "test")
                if keep is not None:
                    mask = pc.and_(mask, pc.is_in(batch["stamp_id"], keep))
                batch = batch.filter(mask)
                if batch.num_rows:
                    found = batch["stamp_id"].to_numpy()
                    yield np.searchsorted(ids, found), decode_checked(batch[IMAGE], found, self.size, self.folder)

    def take(self, rows: np.ndarray, chunk: int) -> np.ndarray:
        """The stamps of ``rows`` of ``meta`` (N, 3, S, S), in that order, read ``chunk`` at a time from the
        shards that hold them."""
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        images = np.empty((len(unique), N_BANDS, self.size, self.size), dtype=np.float32)
        for found, piece in self.pieces(chunk, unique):
            images[np.searchsorted(unique, found)] = piece
        return images[inverse]


def load_test_stamps(inject_dir: Path, size: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The whole test split in memory: its metadata (every column but ``image``) and stamps (N, 3, S, S),
    by stamp_id; for small splits (the stage streams a ``ShardedSplit``). Errors as ``ShardedSplit``'s."""
    split = ShardedSplit.open(inject_dir, size)
    return split.meta, split.take(np.arange(len(split)), SCORE_CHUNK)


def model_scorer(model_path: Path, device: torch.device, batch_size: int) -> Scorer:
    """The trained model as a scorer of raw stamps: the trainer's ``normalise``, then its logit (fp32,
    no bf16, so the low-FPR tail is not rounded into ties), ``SCORE_CHUNK`` stamps (rounded to whole
    batches, so batches start at multiples of ``batch_size``) on the device at a time."""
    model = load_model(model_path, device)
    step = max(1, SCORE_CHUNK // batch_size) * batch_size

    def score(images: np.ndarray) -> np.ndarray:
        out = [np.empty(0, dtype=np.float32)]
        for start in range(0, len(images), step):
            chunk = normalise(torch.from_numpy(np.ascontiguousarray(images[start : start + step])).to(device))
            store = StampStore(chunk, torch.zeros(len(chunk), device=device), np.arange(len(chunk)), device)
            out.append(predict_logits(model, store, batch_size))
        return np.concatenate(out).astype(np.float64)

    return score


class BlockScorer:
    """Scores ``n`` stamps that arrive in pieces of any size in fixed blocks of ``block``, so each stamp meets
    the scorer in the batch it has in a one-block run (a network's logit moves in its last bits with its
    batch). Holds one block; ``on_scored(k)`` after each block; ``result()`` the scores by row."""

    def __init__(self, score: Scorer, block: int, n: int, size: int, on_scored: Callable[[int], object]) -> None:
        self._score, self._on_scored = score, on_scored
        self._shape = (min(block, n), N_BANDS, size, size)
        self._buffer, self._rows = np.empty(self._shape, dtype=np.float32), np.empty(self._shape[0], dtype=np.int64)
        self._filled = 0
        self._scores = np.full(n, np.nan)

    def add(self, rows: np.ndarray, images: np.ndarray) -> None:
        """Queue ``images`` (k, 3, S, S), the stamps of ``rows``; scores every block that fills."""
        done = 0
        while done < len(rows):
            k = min(len(rows) - done, len(self._buffer) - self._filled)
            self._buffer[self._filled : self._filled + k] = images[done : done + k]
            self._rows[self._filled : self._filled + k] = rows[done : done + k]
            self._filled, done = self._filled + k, done + k
            if self._filled == len(self._buffer):
                self._flush()

    def _flush(self) -> None:
        if self._filled:
            scored = np.asarray(self._score(self._buffer[: self._filled]), dtype=np.float64)
            self._scores[self._rows[: self._filled]] = scored
            self._on_scored(self._filled)
            self._buffer, self._filled = np.empty(self._shape, dtype=np.float32), 0  # the scorer may keep the last

    def result(self) -> np.ndarray:
        """Every row's score, once the last (partial) block is scored."""
        self._flush()
        return self._scores


@dataclass(frozen=True)
class BlobPlan:
    """The blob probe's seeded sample, drawn from the metadata before any stamp is read: the controls (rows of
    the split's ``meta``, up to BLOB_MAX, ascending) that get a blob, and each blob's arc flux (nanomaggies g, r,
    z: a random test positive's) and PSF FWHM (arcsec: the control's r band, in every band; stamps record
    only PSFSIZE_R). The blob goes through the injection PSF model."""

    rows: np.ndarray
    flux: np.ndarray
    fwhm: np.ndarray
    rendering: Rendering

    @classmethod
    def of(cls, meta: pd.DataFrame, rendering: Rendering) -> BlobPlan:
        positive = meta["label"].to_numpy() == 1
        missing = [c for c in (*ARC_FLUX, "psfsize_r") if c not in meta]
        if missing:
            raise ValueError(f"inject stamps lack column(s) {', '.join(missing)} that the blob probe needs")
        fluxes = meta.loc[positive, list(ARC_FLUX)].to_numpy(np.float64)
        fluxes = fluxes[np.isfinite(fluxes).all(axis=1)]
        if len(fluxes) == 0:
            raise ValueError("no test positive has finite arc_flux_g/r/z for the blob probe")
        rng = np.random.default_rng([rendering.seed, 9])
        controls = np.flatnonzero(~positive)
        rows = np.sort(rng.choice(controls, min(BLOB_MAX, controls.size), replace=False))
        fwhm = meta["psfsize_r"].to_numpy(np.float64)[rows]
        fwhm = np.where(np.isfinite(fwhm) & (fwhm > 0), fwhm, np.nanmedian(meta["psfsize_r"]))
        return cls(rows, fluxes[rng.integers(0, len(fluxes), len(rows))], fwhm, rendering)

    def among(self, rows: np.ndarray) -> BlobPlan:
        """The plan's blobs on the controls among ``rows`` (ascending rows of meta), their rows renumbered as
        positions in ``rows`` (a shard's plan: ``ShardedSplit.shard``)."""
        kept = np.isin(self.rows, rows)
        return BlobPlan(np.searchsorted(rows, self.rows[kept]), self.flux[kept], self.fwhm[kept], self.rendering)

    def blobs(self, controls: np.ndarray, which: np.ndarray) -> np.ndarray:
        """``controls`` (k, 3, S, S), the stamps of ``rows[which]``, each with its blob added at the centre."""
        psf = self.rendering.psf
        model = psf.model if psf.model in PSF_MODELS else "survey"
        blobs = blob_images(
            self.flux[which],
            self.fwhm[which],
            controls.shape[-1],
            self.rendering.stamps.pixel_scale,
            model,
            psf.moffat_beta,
            psf.kernel_size_pix,
        )
        blobs += controls
        return blobs


@dataclass(frozen=True)
class Streamed:
    """What one pass over the test split keeps: each stamp's score, its core and ring pixels (for the pixel
    probes; None without probes), each planned blob's score, and each real lens set's name -> its positives at
    the set's depth."""

    scores: np.ndarray
    core: np.ndarray | None
    ring: np.ndarray | None
    blob_scores: np.ndarray | None
    depth: dict[str, AtDepth]


class DepthPass:
    """The test positives scored again at each real lens set's depth (``noises``) within the pass over the split:
    each positive's own sky sigma measured once, then per set its noised copy scored in blocks of ``block`` (whole
    batches, so every number is a one-chunk run's); one block held per set."""

    def __init__(self, noises: list[DepthNoise], meta: pd.DataFrame, score: Scorer, block: int, size: int) -> None:
        self._noises = noises
        self._positive = np.flatnonzero(meta["label"].to_numpy() == 1)
        self._ids = meta["stamp_id"].to_numpy()
        self._own = np.full((len(self._positive), N_BANDS), np.nan)
        n = len(self._positive)
        self._scorers = [BlockScorer(score, block, n, size, lambda k: None) for _ in noises]

    def add(self, found: np.ndarray, images: np.ndarray) -> None:
        """Noise and queue the positives among ``images`` (k, 3, S, S), the stamps of rows ``found`` of the meta."""
        chosen = np.isin(found, self._positive) if self._noises else np.zeros(0, dtype=bool)
        if not chosen.any():
            return
        rows, positives = np.searchsorted(self._positive, found[chosen]), images[chosen]
        own = self._own[rows] = sky_noise_sigma(positives)
        for noise, scorer in zip(self._noises, self._scorers, strict=True):
            scorer.add(rows, noise.apply(positives, self._ids[found[chosen]], own))

    def result(self) -> dict[str, AtDepth]:
        """Each lens set's name -> its positives' own sky sigma and scores at its depth, once the pass is done."""
        return {n.name: AtDepth(n, self._own, s.result()) for n, s in zip(self._noises, self._scorers, strict=True)}


def _by_row(rows: list[np.ndarray], values: list[np.ndarray]) -> np.ndarray:
    """Per-row values gathered in pieces, put back in row order (the rows cover 0..n-1 once)."""
    gathered = np.concatenate(values)
    placed = np.empty_like(gathered)
    placed[np.concatenate(rows)] = gathered
    return placed


@dataclass(frozen=True)
class SplitPass:
    """One pass over the test split ``split``: every stamp scored ``chunk`` at a time; with ``core`` its core and ring
    pixels kept, with ``plan`` its planned controls scored with their blobs, with ``noises`` its positives scored at
    each real lens set's depth (in blocks of ``batch_size``, the scorer's batch). ``shards()`` cuts it into one pass
    per shard (a Spark task each) and ``merged`` puts their results back together."""

    split: ShardedSplit
    chunk: int
    batch_size: int
    core: int | None
    plan: BlobPlan | None
    noises: tuple[DepthNoise, ...]

    def run(self, score: Scorer, on_scored: Callable[[int], object] = lambda k: None) -> Streamed:
        """The pass with ``score``; ``on_scored(k)`` after each block of test stamps is scored."""
        split, plan, core = self.split, self.plan, self.core
        stamps = BlockScorer(score, self.chunk, len(split), split.size, on_scored)
        blobs = None if plan is None else BlockScorer(score, self.chunk, len(plan.rows), split.size, lambda k: None)
        depth = DepthPass(list(self.noises), split.meta, score, self.batch_size, split.size)
        rows, cores, rings = [], [], []
        for found, images in split.pieces(self.chunk):
            stamps.add(found, images)
            if core is not None:
                rows.append(found)
                cores.append(core_pixels(images, core))
                rings.append(ring_pixels(images, core))
            if blobs is not None:
                chosen = np.isin(found, plan.rows)
                which = np.searchsorted(plan.rows, found[chosen])
                blobs.add(which, plan.blobs(images[chosen], which))
            depth.add(found, images)
        return Streamed(
            stamps.result(),
            None if core is None else _by_row(rows, cores),
            None if core is None else _by_row(rows, rings),
            None if blobs is None else blobs.result(),
            depth.result(),
        )

    def _shard_indices(self) -> list[int]:
        """The shards that hold test stamps, in file order."""
        return np.unique(self.split.shard_of).tolist()

    def shards(self) -> list[SplitPass]:
        """The pass cut into one pass per shard that holds test stamps, each over its shard's rows only."""
        parts = []
        for i in self._shard_indices():
            plan = None if self.plan is None else self.plan.among(self.split.rows_of(i))
            parts.append(replace(self, split=self.split.shard(i), plan=plan))
        return parts

    def merged(self, parts: Sequence[Streamed]) -> Streamed:
        """What ``run`` keeps, from the results of ``shards()``'s passes (in their order): each row's values put
        back at its row of the split, each blob's at its place in the plan, each positive's at its place among
        the positives."""
        rows = [self.split.rows_of(i) for i in self._shard_indices()]
        positives = np.flatnonzero(self.split.meta["label"].to_numpy() == 1)
        at_positives = [np.flatnonzero(np.isin(positives, r)) for r in rows]
        depth = {
            noise.name: AtDepth(
                noise,
                _by_row(at_positives, [p.depth[noise.name].own_sigma for p in parts]),
                _by_row(at_positives, [p.depth[noise.name].scores for p in parts]),
            )
            for noise in self.noises
        }
        blobs = None
        if self.plan is not None:
            blobs = _by_row([np.flatnonzero(np.isin(self.plan.rows, r)) for r in rows], [p.blob_scores for p in parts])
        return Streamed(
            _by_row(rows, [p.scores for p in parts]),
            None if self.core is None else _by_row(rows, [p.core for p in parts]),
            None if self.core is None else _by_row(rows, [p.ring for p in parts]),
            blobs,
            depth,
        )


#: Runs the passes of ``SplitPass.shards()`` elsewhere (each with its own scorer) and returns their results in order.
ShardRunner = Callable[[list[SplitPass]], list[Streamed]]


def psf_swap(
    manifest_dir: Path,
    scores: pd.DataFrame,
    score: Scorer,
    thresholds: dict[str, float],
    *,
    rendering: Rendering,
    survey: SurveySpec,
    block: int,
) -> dict[str, Any]:
    """Completeness of up to PSF_SWAP_MAX test positives (seeded sample of the rows of ``scores``: stamp_id,
    label, score) as injected and re-injected (same manifest rows, same cutouts from ``survey``, inject's own
    ``inject_batch``, ``injection.batch_size`` at a time) with a Gaussian PSF of the same FWHM; the re-injected
    stamps are scored in blocks of ``block`` and dropped."""
    positive = np.flatnonzero(scores["label"].to_numpy() == 1)
    rng = np.random.default_rng([rendering.seed, 11])
    chosen = np.sort(rng.choice(positive, min(PSF_SWAP_MAX, positive.size), replace=False))
    ids = scores["stamp_id"].to_numpy()[chosen]
    files = layout.parts(manifest_dir, layout.MANIFEST)
    rows = ds.dataset(files, format="parquet").to_table(filter=pc.field("stamp_id").isin(ids)).to_pandas()
    rows = rows.sort_values("stamp_id", ignore_index=True)
    if not np.array_equal(rows["stamp_id"].to_numpy(), ids):
        raise ValueError(f"{manifest_dir / layout.MANIFEST}: test positives missing from the manifest")
    gaussian = replace(rendering, psf=rendering.psf.model_copy(update={"model": "gaussian"}))
    provider = provider_for(survey, rendering.seed)
    size, step = rendering.stamps.size, rendering.injection.batch_size
    swapped = BlockScorer(score, block, len(rows), size, lambda k: None)
    for start in range(0, len(rows), step):
        stamps = inject_batch(rows.iloc[start : start + step], provider, rendering=gaussian)
        swapped.add(np.arange(start, start + len(stamps)), decode_images(stamps["image"], size))
    return {
        "n_positives": len(chosen),
        "injection_psf": rendering.psf.model,
        "completeness": psf_swap_completeness(
            scores["score"].to_numpy(np.float64)[chosen], swapped.result(), thresholds
        ),
    }


def _caption(row: pd.Series) -> str:
    """A gallery stamp's stamp_id, score (logit) and host's confuser class, and θE (arcsec) for a positive."""
    theta = row.get("theta_e")
    text = f"s={row['score']:.2f} {row['confuser']}"
    text += f" θE={theta:.2f}" if theta is not None and np.isfinite(theta) else ""
    return f"{text}\n#{row['stamp_id']}"


def _galleries(
    split: ShardedSplit, scores: pd.DataFrame, plan: BlobPlan | None, blob_scores: np.ndarray | None, chunk: int
) -> tuple[list[Gallery], dict[str, Gallery]]:
    """The top-scored controls, the lowest-scored positives and the top-scored blobs, and each confuser class's
    top-scored controls (by class, in VALUES order): their few stamps read back from the shards in one pass (the
    blobs added again)."""
    order = np.argsort(scores["score"].to_numpy())
    labels, classes = scores["label"].to_numpy(), scores["confuser"].to_numpy()
    controls = order[::-1][labels[order[::-1]] == 0]  # highest score first
    by_class = {value: controls[classes[controls] == value][:GALLERY_SIZE] for value in VALUES}
    by_class = {value: rows for value, rows in by_class.items() if rows.size}
    low_positives = order[labels[order] == 1][:GALLERY_SIZE]
    top_blobs = np.argsort(blob_scores)[::-1][:GALLERY_SIZE] if plan is not None else np.empty(0, dtype=np.int64)
    picked = [controls[:GALLERY_SIZE], low_positives, plan.rows[top_blobs] if plan is not None else top_blobs]
    picked += by_class.values()
    images = split.take(np.concatenate(picked).astype(np.int64), chunk)
    shown = np.split(images, np.cumsum([len(rows) for rows in picked])[:-1])

    def gallery(title: str, index: int) -> Gallery:
        return Gallery(title, shown[index], [_caption(scores.iloc[i]) for i in picked[index]])

    galleries = [gallery("top-scored controls", 0), gallery("lowest-scored positives", 1)]
    if plan is not None:
        blobs = plan.blobs(shown[2], top_blobs)
        galleries.append(Gallery("blob probe: top-scored", blobs, [f"s={blob_scores[i]:.2f}" for i in top_blobs]))
    classes_shown = {value: gallery(f"top-scored controls: {value}", 3 + i) for i, value in enumerate(by_class)}
    return galleries, classes_shown


def _real_curves(scored: ScoredSet, depth: AtDepth | None) -> dict[str, np.ndarray]:
    """A real set's scores for the report's histogram, with the test positives' at its depth for a lens set."""
    curves = {f"real {'lenses' if scored.spec.label == 'lens' else 'non-lenses'}": scored.scores}
    return curves if depth is None else {**curves, "test positives at the set's depth": depth.scores}


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
    split: ShardedSplit,
    score: Scorer,
    out: Path,
    run_dir: Path,
    manifest: Path | None = None,
    on_scored: Callable[[int], object] = lambda k: None,
    memory_mb: int = EngineSpec().memory_mb,
    run_shards: ShardRunner | None = None,
) -> dict[str, Any]:
    """Everything after the model: scores, metrics with the probes' measurements and the real sets' rates at the
    operating thresholds, and the report, written into ``out`` (judged afterwards by
    darkhalo.audit.judges.judge_metrics). Returns the metrics as written to metrics.json.

    The split is read ``chunk_rows`` stamps at a time (``memory_mb``: engine.memory_mb, ``evaluate.batch_size``);
    ``on_scored(k)`` is told each time k more test stamps are scored (a progress bar). With ``run_shards`` the pass
    over the split runs there, one pass per shard (Spark tasks with their own scorer:
    darkhalo.task_scoring.score_on_executors), and ``on_scored`` is not told; ``score`` still scores the real sets
    and the PSF swap. ``run_dir`` holds the select stage the report links to; with ``manifest`` (the manifest
    stage's folder) the probes include the PSF swap."""
    settings = spec.evaluate
    chunk = chunk_rows(memory_mb, split.size, settings.batch_size)
    rendering = Rendering.of(spec)
    core_size = spec.invariants.L9.core_size_pix
    plan = BlobPlan.of(split.meta, rendering) if settings.probes else None
    real = [score_set(s, score, spec.stamps.size, spec.stamps.pixel_scale) for s in settings.real_sets]
    noises = [noise for r in real if (noise := depth_noise(r, spec.seed)) is not None]
    core = core_size if settings.probes else None
    work = SplitPass(split, chunk, settings.batch_size, core, plan, tuple(noises))
    streamed = work.run(score, on_scored) if run_shards is None else work.merged(run_shards(work.shards()))
    scores = split.meta.assign(score=streamed.scores)
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
    points = summary.resolved_points()
    at_depth, controls = streamed.depth, streamed.scores[scores["label"].to_numpy() == 0]
    confidence = settings.confidence
    metrics["real_sets"] = {
        r.spec.name: set_result(r, points, confidence, controls, at_depth.get(r.spec.name)).model_dump(mode="json")
        for r in real
    }
    if plan is not None:
        thresholds = {name: p.threshold for name, p in points.items()}
        labels = scores["label"].to_numpy()
        metrics["probes"] = {
            "core_size_pix": core_size,
            **core_ring_probe(streamed.core, streamed.ring, labels, spec.seed),
            "n_blobs": len(plan.rows),
            "fpr_floor": 1 / summary.n_neg,
            "blob_flag_rates": flag_rates(streamed.blob_scores, thresholds),
            "fpr_at_thresholds": {name: p.fpr for name, p in points.items()},
        }
        if manifest is not None:
            metrics["probes"]["psf_swap"] = psf_swap(
                manifest, scores, score, thresholds, rendering=rendering, survey=spec.survey, block=chunk
            )
    write_json(out / layout.METRICS, metrics)
    galleries, class_galleries = _galleries(split, scores, plan, streamed.blob_scores, chunk)
    title = f"darkhalo evaluation: {spec.generation}"
    write_report(
        out,
        scores,
        galleries,
        _report_links(run_dir),
        title=title,
        class_galleries=class_galleries,
        real_galleries=[g for r in real for g in real_galleries(r)],
        real_scores={r.spec.name: _real_curves(r, at_depth.get(r.spec.name)) for r in real},
    )
    return metrics
