"""The trainer's parts on CPU: models, normalisation, the stamp store, augmentation, the loop, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from stamps_factory import one_torch_thread, toy_stamps, write_shards

from darkhalo.spec import TrainSpec
from darkhalo.training import store as store_module
from darkhalo.training.augment import augment, transform_table
from darkhalo.training.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from darkhalo.training.device import resolve_device
from darkhalo.training.loop import (
    EpochPickRule,
    ForwardInputs,
    Trainer,
    TrainStep,
    choose_best,
    epoch_metrics,
    fit,
    loss_function,
    pick_rule,
    uses_bf16,
)
from darkhalo.training.model import build_model
from darkhalo.training.store import CLIP, READ_COLUMNS, load_store, normalise
from data_contracts.invariants import l10_no_label_leakage
from data_contracts.thresholds import L10Thresholds

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
CPU = torch.device("cpu")
SIZE = 32
MIN_FP = 10.0  # the evaluate section's default resolvability rule


def _spec(**changes) -> TrainSpec:
    base = {"arch": "resnet18", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32, "epochs": 2}
    return TrainSpec(**{**base, "precision": "fp32", **changes})


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A separable toy set: 128 train and 64 val stamps (32x32), positives with a ring."""
    folder = tmp_path_factory.mktemp("toy")
    images, labels = toy_stamps(192, SIZE, seed=0)
    write_shards(folder, images, labels, ["train"] * 128 + ["val"] * 64, rows_per_shard=50)
    return folder


@pytest.fixture(scope="module")
def stores(toy: Path):
    return load_store(toy, "train", SIZE, CPU), load_store(toy, "val", SIZE, CPU)


# --- models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet18", "resnet18_64"])
def test_both_archs_give_one_logit_per_64x64_stamp(arch: str) -> None:
    model = build_model(arch).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_the_64_stem_keeps_full_resolution_and_unknown_archs_fail() -> None:
    stem = build_model("resnet18_64")
    assert (stem.conv1.kernel_size, stem.conv1.stride, stem.conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(stem.maxpool, torch.nn.Identity)
    assert build_model("resnet18").conv1.stride == (2, 2)
    with pytest.raises(ValueError, match="unknown arch 'resnet50'"):
        build_model("resnet50")


def test_the_device_follows_the_engine_setting() -> None:
    assert resolve_device("cpu") == CPU
    assert not uses_bf16(_spec(precision="bf16"), CPU)  # CPU trains in fp32 whatever the spec says
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"engine\.device is 'cuda' but torch sees no CUDA device"):
            resolve_device("cuda")


# --- normalisation and store ----------------------------------------------------------------------


def test_normalise_gives_sky_sigma_units_per_band_and_clips() -> None:
    gen = torch.Generator().manual_seed(0)
    sky = torch.randn(4, 3, 64, 64, generator=gen) * torch.tensor([0.002, 0.003, 0.008]).view(1, 3, 1, 1)
    images = sky + torch.tensor([1.0, -2.0, 5.0]).view(1, 3, 1, 1)  # per-band offsets
    images[:, :, 32, 32] += 10.0  # a bright core, thousands of sigma
    images[3, 1] = 0.25  # a blank band
    out = normalise(images)
    assert out.shape == images.shape and out.dtype == torch.float32
    flat = out[:3].flatten(2)
    sky_only = torch.cat([flat[:, :, : 32 * 64 + 32], flat[:, :, 32 * 64 + 33 :]], dim=2)
    assert flat.median(dim=2).values.abs().max() < 1e-3
    assert torch.allclose(sky_only.std(dim=2), torch.ones(3, 3), atol=0.05)
    assert out[:, :, 32, 32].max() == CLIP
    assert (out[3, 1] == 0).all()
    assert torch.allclose(normalise(3.0 * images[:3] + 0.5), out[:3], atol=1e-3)  # scale and offset free


def test_the_store_holds_one_split_sorted_by_stamp_id(tmp_path: Path) -> None:
    images, labels = toy_stamps(30, 16, seed=1)
    ids = np.random.default_rng(0).permutation(np.arange(100, 130))
    splits = np.array(["train", "val", "test"])[np.arange(30) % 3]
    write_shards(tmp_path, images, labels, splits, rows_per_shard=7, stamp_ids=ids)
    store = load_store(tmp_path, "val", 16, CPU)
    want = np.flatnonzero(splits == "val")
    order = np.argsort(ids[want])
    assert list(store.stamp_ids) == sorted(ids[want])
    assert torch.equal(store.images, normalise(torch.from_numpy(images[want][order])))
    assert store.labels.tolist() == labels[want][order].tolist()
    batch_images, batch_labels = store.batch(torch.tensor([2, 0]))
    assert torch.equal(batch_images, store.images[[2, 0]]) and torch.equal(batch_labels, store.labels[[2, 0]])


def test_the_store_never_reads_metadata_so_leaky_columns_change_nothing(tmp_path: Path) -> None:
    images, labels = toy_stamps(20, 16, seed=2)
    splits = ["train"] * 20
    write_shards(tmp_path / "plain", images, labels, splits)
    leaky = {"theta_e": np.where(labels == 1, 1.2, np.nan), "arc_snr": labels * 50.0, "label_copy": labels}
    write_shards(tmp_path / "leaky", images, labels, splits, extra=leaky)
    plain = load_store(tmp_path / "plain", "train", 16, CPU)
    with_metadata = load_store(tmp_path / "leaky", "train", 16, CPU)
    assert torch.equal(plain.images, with_metadata.images) and torch.equal(plain.labels, with_metadata.labels)
    assert READ_COLUMNS == ("stamp_id", "label", "split", "image")
    for store in (plain, with_metadata):  # what was read, as the tables read say
        assert store.columns_read == ("stamp_id", "label", "split", "image")
        assert store.input_columns == ("image",)


def test_the_store_records_the_columns_its_reads_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = toy_stamps(8, 16, seed=2)
    write_shards(tmp_path, images, labels, ["train"] * 8, extra={"arc_snr": labels * 50.0})
    monkeypatch.setattr(store_module, "READ_COLUMNS", (*READ_COLUMNS, "arc_snr"))  # a store that reads more
    store = load_store(tmp_path, "train", 16, CPU)
    assert store.columns_read == ("stamp_id", "label", "split", "arc_snr", "image")


def test_a_store_too_big_for_memory_is_memory_mapped_with_the_same_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = toy_stamps(24, 16, seed=4)
    write_shards(tmp_path, images, labels, ["train"] * 24, rows_per_shard=10)
    in_memory = load_store(tmp_path, "train", 16, CPU)
    monkeypatch.setattr(store_module, "HOST_SHARE", 0.0)  # as if the host had no room
    with pytest.raises(MemoryError, match=r"fit neither cpu nor host memory, and no spill file"):
        load_store(tmp_path, "train", 16, CPU)
    mapped = load_store(tmp_path, "train", 16, CPU, spill=tmp_path / "spill" / "train.npy")
    assert (tmp_path / "spill" / "train.npy").stat().st_size >= 24 * 3 * 16 * 16 * 4
    assert torch.equal(mapped.images, in_memory.images)
    index = torch.tensor([5, 1, 20])
    assert torch.equal(mapped.batch(index)[0], in_memory.batch(index)[0])


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        ("nan", r"part-00001.parquet: stamp_id 13 has non-finite pixels"),
        ("duplicate", r"stamp_id 3 appears more than once"),
        ("label", r"part-00000.parquet: stamp_id 4 has label 2, expected 0 or 1"),
        ("size", r"part-00000.parquet: stamp_id 0 image holds 3072 bytes, expected 768"),
        ("missing", r"part-00000.parquet: stamp shard lacks column\(s\) split"),
    ],
)
def test_bad_shards_are_refused_naming_file_and_stamp(tmp_path: Path, corrupt: str, message: str) -> None:
    images, labels = toy_stamps(20, 8, seed=3)
    ids = np.arange(20)
    if corrupt == "nan":
        images[13, 2, 1, 1] = np.nan
    if corrupt == "duplicate":
        ids[17] = 3
    if corrupt == "label":
        labels[4] = 2
    size = 16 if corrupt == "size" else 8
    if corrupt == "size":
        images, _ = toy_stamps(20, 16, seed=3)
    paths = write_shards(tmp_path, images, labels, ["train"] * 20, rows_per_shard=10, stamp_ids=ids)
    if corrupt == "missing":
        import pyarrow.parquet as pq

        pq.write_table(pq.read_table(paths[0]).drop_columns(["split"]), paths[0])
    if corrupt == "size":
        size = 8
    with pytest.raises(ValueError, match=message):
        load_store(tmp_path, "train", size, CPU)


def test_a_folder_without_shards_or_without_the_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"stamps: no parquet parts \(did the inject stage run\?\)"):
        load_store(tmp_path, "train", 8, CPU)
    images, labels = toy_stamps(4, 8, seed=0)
    write_shards(tmp_path, images, labels, ["train"] * 4)
    with pytest.raises(ValueError, match="no 'val' stamps"):
        load_store(tmp_path, "val", 8, CPU)


# --- augmentation ---------------------------------------------------------------------------------


def _symmetries(image: torch.Tensor) -> list[torch.Tensor]:
    """The square's 8 symmetries of ``image`` (N, C, S, S), written with torch.flip and torch.rot90."""
    return [torch.rot90(image.flip(-1) if f else image, k, dims=(-2, -1)) for f in (0, 1) for k in range(4)]


@pytest.mark.parametrize(
    ("kinds", "allowed"),
    [
        (["flip", "rot90"], range(8)),
        (["rot90"], range(4)),
        (["flip"], (0, 2, 4, 6)),  # identity, rot180 = both mirrors, left-right mirror, up-down mirror
        ([], (0,)),
    ],
)
def test_augmentation_draws_exactly_the_allowed_symmetries(kinds: list[str], allowed) -> None:
    image = torch.arange(2 * 5 * 5, dtype=torch.float32).view(1, 2, 5, 5)
    expected = _symmetries(image)
    table = transform_table(5, kinds, CPU)
    assert table.shape[0] == len(allowed)
    batch = image.expand(200, -1, -1, -1)
    out = augment(batch, table, torch.Generator().manual_seed(0))
    seen = {next(i for i, want in enumerate(expected) if torch.equal(o[None], want)) for o in out}
    assert seen == set(allowed)
    assert torch.equal(out, augment(batch, table, torch.Generator().manual_seed(0)))  # reproducible from the seed


def test_an_unknown_augmentation_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown augmentation\(s\) \['blur'\]"):
        transform_table(5, ["flip", "blur"], CPU)


# --- best epoch -----------------------------------------------------------------------------------


def test_the_best_epoch_is_chosen_by_completeness_at_a_resolvable_fpr_not_by_auroc() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(100), np.zeros(1000)]
    # epoch 1: high AUROC, but 20 negatives outscore every positive, so nothing is found at FPR 1 %
    high_auroc = np.r_[rng.normal(3, 1, 100), rng.normal(0, 1, 980), np.full(20, 10.0)]
    # epoch 2: a lower AUROC, but a clean top end
    clean_top = np.r_[rng.normal(2.0, 1, 100), rng.normal(0, 1, 1000)]
    rule = pick_rule(0.01, 1000, MIN_FP)
    assert rule.fpr == 0.01
    rows = [
        {"epoch": e, "val_loss": 0.3, **epoch_metrics(s, labels, 0.01, rule)}
        for e, s in ((1, high_auroc), (2, clean_top))
    ]
    assert rows[0]["val_auroc"] > rows[1]["val_auroc"]
    assert rows[0]["select_completeness"] == 0 < rows[1]["select_completeness"]
    assert rows[0]["val_completeness_resolved"] and rows[1]["val_completeness_resolved"]
    epoch, why = choose_best(rows, rule)
    assert epoch == 2 and "AUROC not used" in why and "FPR 0.01" in why


def test_an_unresolvable_target_falls_back_to_the_lowest_resolvable_fpr_then_to_val_loss() -> None:
    fallback = pick_rule(1e-3, 200, MIN_FP)
    assert fallback.fpr == pytest.approx(0.05) and "target 0.001 needs 10000 negatives" in fallback.why
    none = pick_rule(1e-3, 5, MIN_FP)
    assert none.fpr is None
    rows = [
        {"epoch": 1, "val_loss": 0.5, "select_completeness": math.nan, "val_auroc": 0.99},
        {"epoch": 2, "val_loss": 0.4, "select_completeness": math.nan, "val_auroc": 0.6},
    ]
    epoch, why = choose_best(rows, none)
    assert epoch == 2 and why.startswith("lowest val loss")
    assert choose_best(rows, EpochPickRule(0.1, MIN_FP, "x"))[0] == 2


@pytest.mark.parametrize(
    ("min_expected_fp", "fpr", "resolved_at_target"),
    [(10.0, 0.05, False), (2.0, 0.01, True), (500.0, None, False)],
)
def test_the_resolvability_rule_decides_which_fpr_picks_the_epoch(
    min_expected_fp: float, fpr: float | None, resolved_at_target: bool
) -> None:
    rule = pick_rule(0.01, 200, min_expected_fp)  # 200 val negatives
    assert rule.fpr == (pytest.approx(fpr) if fpr else None) and rule.min_expected_fp == min_expected_fp
    labels = np.r_[np.ones(50), np.zeros(200)]
    logits = np.r_[np.linspace(1, 3, 50), np.linspace(-3, 2, 200)]
    assert epoch_metrics(logits, labels, 0.01, rule)["val_completeness_resolved"] is resolved_at_target


# --- the loop -------------------------------------------------------------------------------------


def test_focal_loss_is_bce_at_gamma_zero_and_down_weights_easy_stamps() -> None:
    logits = torch.tensor([4.0, -4.0, 0.3, -0.2])
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0])
    bce = loss_function(_spec())(logits, targets)
    assert torch.allclose(loss_function(_spec(loss="focal", focal_gamma=0.0))(logits, targets), bce)
    easy, hard = logits[:2], logits[2:]
    focal = loss_function(_spec(loss="focal", focal_gamma=2.0))
    ratio_easy = focal(easy, targets[:2]) / loss_function(_spec())(easy, targets[:2])
    ratio_hard = focal(hard, targets[2:]) / loss_function(_spec())(hard, targets[2:])
    assert ratio_easy < 0.001 < 0.2 < ratio_hard < 1


@pytest.mark.parametrize(("schedule", "factors"), [("cosine", [0.5, 0.0]), ("constant", [1.0, 1.0])])
def test_the_schedule_steps_per_batch(schedule: str, factors: list[float]) -> None:
    trainer = Trainer.build(_spec(schedule=schedule, lr=0.01), CPU, seed=0, total_steps=2)
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([0.0, 1.0])
    seen = []
    for _ in range(2):
        trainer.step(images, labels)
        seen.append(trainer.scheduler.get_last_lr()[0])
    assert seen == pytest.approx([0.01 * f for f in factors], abs=1e-12)


def test_loss_falls_on_a_separable_toy_set(stores, tmp_path: Path) -> None:
    train, val = stores
    result = fit(train, val, _spec(epochs=3), seed=1, checkpoint_dir=tmp_path, min_expected_fp=MIN_FP)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["val_auroc"] > 0.9
    assert result.device == "cpu" and result.precision == "fp32"
    assert [p.name for p in sorted(tmp_path.glob("*.pt"))] == ["epoch-001.pt", "epoch-002.pt", "epoch-003.pt"]
    calls = 3 * (128 // 32 + 64 // 32)  # per epoch: 4 train steps and 2 val batches
    pixels_only = {"n_args": 1, "n_tensors": 1, "kwargs": [], "shape": [3, SIZE, SIZE], "channels": 3, "calls": calls}
    assert result.model_inputs == {
        "columns_read": ["stamp_id", "label", "split", "image"],
        "input_columns": ["image"],
        "forward_inputs": [pixels_only],
    }
    assert l10_no_label_leakage.check(result.model_inputs, L10Thresholds()).passed


class Interrupted(Exception):
    """Stands in for a kill in the middle of an epoch."""


def test_resume_after_an_interruption_matches_an_uninterrupted_run_bitwise(stores, tmp_path: Path) -> None:
    train, val = stores
    spec = _spec(epochs=2, augment=["flip", "rot90"], loss="focal")
    whole = fit(train, val, spec, seed=3, checkpoint_dir=tmp_path / "whole", min_expected_fp=MIN_FP)

    def kill_in_epoch_two(step: TrainStep) -> None:
        if step.epoch == 2 and step.step == step.steps - 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(
            train, val, spec, seed=3, checkpoint_dir=tmp_path / "cut", min_expected_fp=MIN_FP, on_step=kill_in_epoch_two
        )
    assert [p.name for p in (tmp_path / "cut").glob("*.pt")] == ["epoch-001.pt"]
    resumed = fit(train, val, spec, seed=3, checkpoint_dir=tmp_path / "cut", min_expected_fp=MIN_FP)
    assert resumed.resumed_from == 1
    for key in ("train_loss", "val_loss", "val_auroc", "select_completeness", "lr"):
        assert [r[key] for r in resumed.history] == [r[key] for r in whole.history], key
    a = load_checkpoint(tmp_path / "whole" / "epoch-002.pt")
    b = load_checkpoint(tmp_path / "cut" / "epoch-002.pt")
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])
    assert resumed.model_inputs == whole.model_inputs  # the record spans the epochs of both attempts

    with pytest.raises(CheckpointError, match=r"made for another run \(lr: 0.001 there, 0.002 here\)"):
        fit(
            train,
            val,
            spec.model_copy(update={"lr": 2e-3}),
            seed=3,
            checkpoint_dir=tmp_path / "cut",
            min_expected_fp=MIN_FP,
        )
    with pytest.raises(CheckpointError, match=r"\(min_expected_fp: 10.0 there, 20.0 here\)"):
        fit(train, val, spec, seed=3, checkpoint_dir=tmp_path / "cut", min_expected_fp=20.0)


class TakesAnything(torch.nn.Module):
    """A module whose forward accepts any inputs, so the hook sees whatever a caller passes."""

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        return args[0]


def test_the_forward_hook_records_each_distinct_call_and_is_removed_afterwards() -> None:
    module, inputs = TakesAnything(), ForwardInputs()
    images = torch.zeros(4, 3, 8, 8)
    with pytest.raises(Interrupted), inputs.recording(module):
        module(images)
        module(images[:1])  # another batch size: the same call per stamp
        module(images, torch.zeros(4, 2))  # a second tensor
        module(torch.zeros(4, 4, 8, 8), psf=torch.ones(4))  # a 4th channel and a keyword tensor
        raise Interrupted
    assert not module._forward_pre_hooks
    module(images)  # not recorded any more
    assert inputs.rows() == [
        {"n_args": 1, "n_tensors": 1, "kwargs": [], "shape": [3, 8, 8], "channels": 3, "calls": 2},
        {"n_args": 2, "n_tensors": 2, "kwargs": [], "shape": [3, 8, 8], "channels": 3, "calls": 1},
        {"n_args": 1, "n_tensors": 2, "kwargs": ["psf"], "shape": [4, 8, 8], "channels": 4, "calls": 1},
    ]
    assert ForwardInputs(inputs.rows()).rows() == inputs.rows()  # it round-trips through a checkpoint


# --- checkpoints ----------------------------------------------------------------------------------


class NotATensor:
    """An arbitrary object: a checkpoint holding it needs unpickling, which is refused."""


def test_checkpoints_load_with_weights_only_and_pickled_objects_are_refused(stores, tmp_path: Path) -> None:
    train, val = stores
    fit(train, val, _spec(epochs=1), seed=0, checkpoint_dir=tmp_path, min_expected_fp=MIN_FP)
    state = torch.load(tmp_path / "epoch-001.pt", weights_only=True)
    assert state["epoch"] == 1 and state["arch"] == "resnet18" and isinstance(state["rng"]["generator"], torch.Tensor)
    assert state["args"]["seed"] == 0 and state["args"]["min_expected_fp"] == MIN_FP
    assert state["history"][0]["epoch"] == 1
    model = load_model(tmp_path / "epoch-001.pt")
    assert not model.training and model(train.images[:3]).shape == (3, 1)

    save_checkpoint(tmp_path / "evil.pt", {**state, "extra": NotATensor()})
    with pytest.raises(CheckpointError, match=r"evil.pt: refused, it holds pickled objects"):
        load_checkpoint(tmp_path / "evil.pt")
    save_checkpoint(tmp_path / "other.pt", {**state, "normalisation": "asinh"})
    with pytest.raises(CheckpointError, match="trained with normalisation 'asinh'"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "torn.pt").write_bytes((tmp_path / "epoch-001.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"torn\.pt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "torn.pt")
