"""Distributed training: the train stage with ``engine.train_processes: 2`` runs two torchrun ranks (gloo on CPU)
with DistributedDataParallel, each on its own shard of the stamps; it matches the single-process stage within the
tolerance below and resumes from its checkpoints bitwise.

Tolerance (documented in the README): two ranks draw other shuffles and augmentations and normalise each half
batch by its own statistics, so they train like another seed; on this toy set the chosen epoch is the same and
its val AUROC and completeness at the selection FPR agree within ``AUROC_TOLERANCE`` and
``COMPLETENESS_TOLERANCE``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import spec_data
from stamps_factory import one_torch_thread, toy_stamps, write_shards

from darkhalo.spec import GenerationSpec, SpecError, spec_from_dict
from darkhalo.spec_view import SpecView
from darkhalo.stages import STAGES, StageContext, StageResult
from darkhalo.stages import train as train_stage
from darkhalo.training.checkpoint import checkpoint_name, load_checkpoint
from darkhalo.training.distributed import DistributedTrainingError
from darkhalo.training.loop import rank_batch
from darkhalo.training.store import Shard, load_store
from data_contracts.invariants import l10_no_label_leakage

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
TRAIN = next(s for s in STAGES if s.name == "train")
SIZE = 32
N_TRAIN, N_VAL = 256, 192
AUROC_TOLERANCE = 0.02
COMPLETENESS_TOLERANCE = 0.05


def _spec(processes: int) -> GenerationSpec:
    data = spec_data()
    data["stamps"] = {"size": SIZE}
    data["train"].update(arch="resnet18", epochs=3, batch_size=32, lr=1e-3, select_at_fpr=0.1)
    data["engine"] = {"device": "cpu", "train_processes": processes}
    return spec_from_dict(data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder whose inject stage holds a toy set that takes three epochs to learn (a faint ring)."""
    run = tmp_path_factory.mktemp("ddp")
    images, labels = toy_stamps(N_TRAIN + N_VAL, SIZE, seed=0, ring_snr=4.0)
    write_shards(run / "inject", images, labels, ["train"] * N_TRAIN + ["val"] * N_VAL, rows_per_shard=100)
    return run


def _train(spec: GenerationSpec, run_dir: Path, out: Path, scratch: Path) -> StageResult:
    """The stage as the runner calls it, seeing only the spec sections it declares."""
    out.mkdir(parents=True)
    view = SpecView.of(spec, TRAIN.sections, "stage 'train'")
    return train_stage.run(StageContext(view, run_dir, out, scratch, engine=spec.engine))


@pytest.fixture(scope="module")
def both(run_dir: Path, tmp_path_factory) -> dict[int, tuple[StageResult, Path, Path]]:
    """The stage's result, output folder and scratch in one process and in two."""
    root = tmp_path_factory.mktemp("trained")
    done = {}
    for processes in (1, 2):
        out, scratch = root / f"out-{processes}", root / f"scratch-{processes}"
        done[processes] = (_train(_spec(processes), run_dir, out, scratch), out, scratch)
    return done


def test_the_shards_are_disjoint_cover_the_split_and_mix_the_classes(run_dir: Path) -> None:
    cpu = torch.device("cpu")
    whole = load_store(run_dir / "inject", "train", SIZE, cpu)
    shards = [load_store(run_dir / "inject", "train", SIZE, cpu, shard=Shard(r, 3)) for r in range(3)]
    positions = np.concatenate([s.split_positions for s in shards])
    assert np.array_equal(np.sort(positions), np.arange(N_TRAIN))  # each stamp in exactly one shard
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
    for shard in shards:
        assert torch.equal(shard.images, whole.images[shard.split_positions])
        assert torch.equal(shard.labels, whole.labels[shard.split_positions])
        assert shard.digest() == whole.digest() and shard.split_size == N_TRAIN
        # toy stamp ids alternate the classes: a plain stride would give one shard only positives
        assert abs(float(shard.labels.mean()) - float(whole.labels.mean())) < 0.15


def test_two_processes_match_one_within_the_documented_tolerance(both) -> None:
    (one, one_out, _), (two, two_out, _) = both[1], both[2]
    assert two.measured["processes"] == 2 and one.measured["processes"] == 1
    assert two.rows == one.rows == {"train_stamps": N_TRAIN, "val_stamps": N_VAL, "epochs": 3}
    assert two.measured["best_epoch"] == one.measured["best_epoch"]
    best = one.measured["best_epoch"]
    rows = {n: pd.read_parquet(out / "history.parquet").iloc[best - 1] for n, out in ((1, one_out), (2, two_out))}
    assert abs(rows[2]["val_auroc"] - rows[1]["val_auroc"]) <= AUROC_TOLERANCE
    assert abs(rows[2]["select_completeness"] - rows[1]["select_completeness"]) <= COMPLETENESS_TOLERANCE
    assert rows[2]["select_fpr"] == rows[1]["select_fpr"]  # the whole val split picks the epoch on every rank
    assert sorted(p.name for p in (two_out / "checkpoints").iterdir()) == [checkpoint_name(e) for e in (1, 2, 3)]
    model = load_checkpoint(two_out / "model.pt")
    assert model["epoch"] == best and not any(k.startswith("module.") for k in model["state_dict"])
    record = json.loads((two_out / "model_inputs.json").read_text())
    assert l10_no_label_leakage.check(record, _spec(2).invariants.L10).passed


def test_distributed_training_resumes_from_its_checkpoints_bitwise(both, run_dir: Path, tmp_path: Path) -> None:
    _, out, scratch = both[2]
    resumed_scratch = tmp_path / "scratch"
    (resumed_scratch / "checkpoints").mkdir(parents=True)
    shutil.copy2(scratch / "checkpoints" / checkpoint_name(1), resumed_scratch / "checkpoints")  # killed in epoch 2
    result = _train(_spec(2), run_dir, tmp_path / "out", resumed_scratch)
    assert result.measured["resumed_from_epoch"] == 1
    whole, redone = (
        load_checkpoint(out / "checkpoints" / "epoch-003.pt"),
        load_checkpoint(tmp_path / "out" / "checkpoints" / "epoch-003.pt"),
    )
    for name, tensor in whole["state_dict"].items():
        assert torch.equal(tensor, redone["state_dict"][name]), name
    for a, b in zip(whole["rng"]["rank_generators"], redone["rng"]["rank_generators"], strict=True):
        assert torch.equal(a, b)
    assert [r["train_loss"] for r in whole["history"]] == [r["train_loss"] for r in redone["history"]]


def test_a_checkpoint_of_another_process_count_is_not_resumed(both, run_dir: Path, tmp_path: Path) -> None:
    _, _, scratch = both[1]
    copied = tmp_path / "scratch" / "checkpoints"
    copied.mkdir(parents=True)
    shutil.copy2(scratch / "checkpoints" / checkpoint_name(3), copied)
    refused = r"rank \d of 2: CheckpointError: .*epoch-003.pt: made for another run \(processes: 1 there, 2 here\)"
    with pytest.raises(DistributedTrainingError, match=refused):
        _train(_spec(2), run_dir, tmp_path / "out", tmp_path / "scratch")


def test_a_batch_that_does_not_split_over_the_processes_is_refused() -> None:
    assert rank_batch(32, 1000, 4) == 8 and rank_batch(32, 20, 1) == 20
    with pytest.raises(ValueError, match=r"train.batch_size 30 does not split over engine.train_processes 4"):
        rank_batch(30, 1000, 4)
    data = spec_data()
    data["engine"] = {"train_processes": 3}
    with pytest.raises(SpecError, match=r"train.batch_size \(128\) must be a multiple of engine.train_processes \(3\)"):
        spec_from_dict(data)
