"""Streaming evaluation: the test split is read a chunk at a time (``engine.memory_mb``), every number
is the one a one-chunk run gives, and the memory held stays bounded by the budget, far below the split.

Stamps are the toy set of stamps_factory (64 x 64, positives carry a ring) in shards of 64 rows, a
quarter of them train (skipped by the reader)."""

from __future__ import annotations

import multiprocessing
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from conftest import spec_data
from stamps_factory import SKY_SIGMA, toy_stamps, write_shards

from darkhalo.metrics.evaluation import ShardedSplit, chunk_rows, evaluate, load_test_stamps, model_scorer
from darkhalo.spec import GenerationSpec, spec_from_dict
from darkhalo.training.checkpoint import save_checkpoint
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION

SIZE = 64
STAMP_BYTES = 3 * SIZE * SIZE * 4
BUDGET_MB = 16  # the spec's smallest budget: 40 stamps a chunk at batch size 8
#: What evaluation holds beyond its chunks: the report's figures (about 23 MiB measured), and per test
#: stamp its metadata, score and core and ring pixels (under 1 KiB) with the pixel probes' float64 copies.
REPORT_FIGURES = 32 * 2**20
KEPT_PER_STAMP = 2 * 2**10
YY, XX = np.mgrid[:SIZE, :SIZE] - SIZE // 2
RING = np.abs(np.hypot(XX, YY) - SIZE / 5) < 1.5


def _write_split(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` toy stamps with the metadata evaluation reads (host, PSF, arc flux on positives)."""
    images, labels = toy_stamps(n, SIZE, seed)
    rng = np.random.default_rng(seed)
    positive = labels == 1
    ring_flux = 10 * SKY_SIGMA * np.exp(-0.5 * ((np.hypot(XX, YY) - SIZE / 5) / 0.7) ** 2).sum()
    extra = {
        "host_id": np.arange(n, dtype=np.int64),
        "confuser": np.full(n, "none"),
        "psfsize_r": rng.uniform(1.0, 1.5, n),
        "theta_e": np.where(positive, rng.uniform(0.6, 2.0, n), np.nan),
        **{f"arc_flux_{b}": np.where(positive, ring_flux[i], np.nan) for i, b in enumerate("grz")},
    }
    write_shards(folder, images, labels, np.where(np.arange(n) % 4 == 3, "train", "test"), 64, extra=extra)


def _spec() -> GenerationSpec:
    data = spec_data()
    data["stamps"] = {"size": SIZE}
    data["psf"] = {"model": "moffat", "moffat_beta": 3.5, "kernel_size_pix": 31}
    data.setdefault("evaluate", {}).update(bootstrap_samples=50, batch_size=8, real_sets=[])  # the test split alone
    return spec_from_dict(data)


def _ring_light(images: np.ndarray) -> np.ndarray:
    """A cheap honest scorer: r-band light on the ring where the toy arcs are."""
    return images[:, 1][:, RING].sum(axis=1).astype(np.float64)


def test_the_chunk_is_the_budget_over_the_copies_held_in_whole_batches() -> None:
    assert chunk_rows(BUDGET_MB, SIZE, 8) == 40  # 16 MiB / (8 copies x 48 KiB) = 42 stamps
    assert chunk_rows(2048, SIZE, 1024) == 5120
    assert chunk_rows(BUDGET_MB, SIZE, 1024) == 1024  # at least one batch


def test_a_stamp_id_in_two_shards_is_refused_naming_it(tmp_path: Path) -> None:
    images, labels = toy_stamps(4, 8, seed=0)
    write_shards(tmp_path, images, labels, ["test"] * 4, rows_per_shard=2, stamp_ids=np.array([1, 5, 5, 9]))
    with pytest.raises(ValueError, match=r"stamps: stamp_id 5 appears more than once in the test split"):
        ShardedSplit.open(tmp_path, 8)


def test_a_streamed_evaluation_gives_the_numbers_of_a_one_chunk_run(tmp_path: Path) -> None:
    """The real scorer (an untrained ResNet18, whose logits move in their last bits with the batch) on 180
    test stamps: 40 at a time and all at once give the same scores, metrics and galleries, and the scores
    are those of the whole split scored in memory."""
    inject = tmp_path / "inject"
    _write_split(inject, 240)
    torch.manual_seed(0)
    payload = {"format": 1, "arch": "resnet18", "normalisation": NORMALISATION}
    save_checkpoint(tmp_path / "model.pt", {**payload, "state_dict": build_model("resnet18").state_dict()})
    model = model_scorer(tmp_path / "model.pt", torch.device("cpu"), 8)
    blocks: list[int] = []

    def scorer(images: np.ndarray) -> np.ndarray:
        blocks.append(len(images))
        return model(images)

    runs = {}
    for memory_mb in (BUDGET_MB, 4096):
        out = tmp_path / f"out-{memory_mb}"
        out.mkdir()
        blocks.clear()
        evaluate(_spec(), ShardedSplit.open(inject, SIZE), scorer, out, tmp_path, memory_mb=memory_mb)
        runs[memory_mb] = out, list(blocks)
    (streamed, streamed_blocks), (whole, whole_blocks) = runs[BUDGET_MB], runs[4096]
    pd.testing.assert_frame_equal(
        pd.read_parquet(streamed / "scores.parquet"), pd.read_parquet(whole / "scores.parquet"), check_exact=True
    )
    assert (streamed / "metrics.json").read_text() == (whole / "metrics.json").read_text()
    for gallery in ("gallery_0", "gallery_1", "gallery_2"):
        assert (streamed / "plots" / f"{gallery}.png").read_bytes() == (whole / "plots" / f"{gallery}.png").read_bytes()
    meta, images = load_test_stamps(inject, SIZE)
    scores = pd.read_parquet(streamed / "scores.parquet")
    assert scores["stamp_id"].tolist() == meta["stamp_id"].tolist() and len(scores) == 180
    assert np.array_equal(scores["score"].to_numpy(), model(images))
    assert max(streamed_blocks) == 40 and len(streamed_blocks) > 5 and max(whole_blocks) == 180


def _peak_bytes(inject: str, out: str, streamed: bool) -> dict[str, int]:
    """In a fresh process: the peak bytes traced by tracemalloc (numpy arrays and Python objects) and the
    peak of arrow's memory pool while the test split is evaluated streamed or loaded whole."""
    tracemalloc.start()
    if streamed:
        split = ShardedSplit.open(Path(inject), SIZE)
        evaluate(_spec(), split, _ring_light, Path(out), Path(out), memory_mb=BUDGET_MB)
    else:
        load_test_stamps(Path(inject), SIZE)
    return {"traced": tracemalloc.get_traced_memory()[1], "arrow": pa.default_memory_pool().max_memory()}


def test_a_test_split_larger_than_the_budget_is_evaluated_in_bounded_memory(tmp_path: Path) -> None:
    """3,200 stamps, 2,400 of them test (113 MiB of pixels), under a 16 MiB budget: what the evaluation holds
    at its peak is the budget, the report's figures and a few KiB a stamp, under half the pixels, while the
    same measurement of the split loaded whole sees all its pixels."""
    inject = tmp_path / "inject"
    _write_split(inject, 3200)
    n_test = 2400
    pixels = n_test * STAMP_BYTES
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        streamed = pool.submit(_peak_bytes, str(inject), str(tmp_path), True).result()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        whole = pool.submit(_peak_bytes, str(inject), str(tmp_path), False).result()
    budget = BUDGET_MB * 2**20
    assert streamed["traced"] < budget + REPORT_FIGURES + n_test * KEPT_PER_STAMP < pixels / 2, streamed
    assert streamed["arrow"] < budget, streamed
    assert whole["traced"] > pixels, whole
