"""The training loop, in the shape of torchvision's classification reference: ``train_one_epoch``,
``evaluate``, and ``fit`` looping over the epochs with a saved training state.

Every epoch ends with a checkpoint in ``checkpoint_dir`` holding the whole training state (model,
optimizer, scheduler, RNG states, epoch, history, the run's args); a later call with the same args
continues from the newest one and produces the same weights and losses as a run that was never
interrupted (bitwise on CPU in fp32). The best epoch is the one with the highest val completeness
at a resolvable FPR, never the one with the best AUROC (L4). A forward pre-hook records what every
forward call received, so L10 judges what the model was actually fed.

Given sharded stores (darkhalo.training.store.Shard, one per torchrun rank) the same loop trains with
DistributedDataParallel: each rank steps on its share of every global batch, val logits are gathered so
every rank computes the same metrics, and rank 0 alone writes the checkpoints (darkhalo.training.distributed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from darkhalo.metrics.operating_points import completeness_at_fpr
from darkhalo.spec import TrainSpec
from darkhalo.training.augment import augment, transform_table
from darkhalo.training.checkpoint import (
    CheckpointError,
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION, ONE_PROCESS, Shard, StampStore
from data_contracts.metrics import sample_needed

FORMAT = 2
#: The optimizer classes a spec's ``train.optimizer`` names.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adamw": torch.optim.AdamW}


@dataclass(frozen=True)
class TrainStep:
    """Where training stands after an optimizer step, for a progress display: step ``step`` of ``steps``
    in epoch ``epoch``, ``batch`` stamps a step."""

    epoch: int
    step: int
    steps: int
    batch: int
    loss_sum: torch.Tensor  # the epoch's batch losses summed so far, on the device

    def running_loss(self) -> float:
        """The epoch's mean batch loss so far; reading it waits for the device, so a display reads it sparingly."""
        return float(self.loss_sum) / self.step


StepCallback = Callable[[TrainStep], None]
EpochCallback = Callable[[dict[str, Any]], None]


# --- choosing the best epoch ----------------------------------------------------------------------


@dataclass(frozen=True)
class EpochPickRule:
    """How the best epoch is picked: val completeness at ``fpr`` (None: val resolves no FPR), and why.

    An FPR is resolved when the val negatives expect at least ``min_expected_fp`` false positives at it.
    """

    fpr: float | None
    min_expected_fp: float
    why: str


def pick_rule(target: float, n_neg: int, min_expected_fp: float) -> EpochPickRule:
    """``target`` when ``n_neg`` negatives resolve it (data_contracts.metrics.sample_needed), else the
    lowest FPR they do resolve."""
    needed = sample_needed(min_expected_fp, target)
    if n_neg >= needed:
        why = f"FPR {target:g} (resolved: {n_neg} val negatives x {target:g} >= {min_expected_fp:g})"
        return EpochPickRule(target, min_expected_fp, why)
    if n_neg >= min_expected_fp:
        lowest = min_expected_fp / n_neg
        why = f"FPR {lowest:.4g}, the lowest {n_neg} val negatives resolve (target {target:g} needs {needed} negatives)"
        return EpochPickRule(lowest, min_expected_fp, why)
    why = f"no FPR is resolvable with {n_neg} val negatives (need {min_expected_fp:g})"
    return EpochPickRule(None, min_expected_fp, why)


def epoch_metrics(logits: np.ndarray, labels: np.ndarray, target_fpr: float, rule: EpochPickRule) -> dict[str, Any]:
    """Val AUROC (reported, never used to choose) and completeness at ``target_fpr`` and at the rule's FPR."""
    pos, neg = logits[labels == 1], logits[labels == 0]
    both = pos.size > 0 and neg.size > 0
    at_target = completeness_at_fpr(pos, neg, target_fpr, rule.min_expected_fp) if both else None
    at_select = completeness_at_fpr(pos, neg, rule.fpr, rule.min_expected_fp) if both and rule.fpr else None
    return {
        "val_auroc": float(roc_auc_score(labels, logits)) if both else math.nan,
        "val_completeness": at_target.completeness if at_target else math.nan,
        "val_completeness_fpr": target_fpr,
        "val_completeness_resolved": bool(at_target and at_target.resolved),
        "select_fpr": rule.fpr if rule.fpr is not None else math.nan,
        "select_completeness": at_select.completeness if at_select else math.nan,
    }


def choose_best(history: list[dict[str, Any]], rule: EpochPickRule) -> tuple[int, str]:
    """(best epoch, why): highest ``select_completeness``, ties to the lower val loss, then the earlier epoch.

    With no resolvable FPR it falls back to the lowest val loss. AUROC is never consulted.
    """
    scored = [r for r in history if math.isfinite(r["select_completeness"])]
    if rule.fpr is not None and scored:
        best = min(scored, key=lambda r: (-r["select_completeness"], r["val_loss"], r["epoch"]))
        return best["epoch"], (
            f"highest val completeness {best['select_completeness']:.4f} at {rule.why}; "
            f"ties to lower val loss; AUROC not used"
        )
    best = min(history, key=lambda r: (r["val_loss"], r["epoch"]))
    return best["epoch"], f"lowest val loss {best['val_loss']:.4g}: {rule.why}"


# --- what the model was fed (L10) -----------------------------------------------------------------


@dataclass(frozen=True)
class ForwardCall:
    """What one forward call received: positional arguments, tensors (positional and keyword), keyword
    names, and the first argument's per-stamp shape (batch axis dropped; None when it is no tensor)."""

    n_args: int
    n_tensors: int
    kwargs: tuple[str, ...]
    shape: tuple[int, ...] | None

    def to_dict(self, calls: int) -> dict[str, Any]:
        """A JSON-ready row, with the input's channel count and ``calls``, how often it was received."""
        return {
            "n_args": self.n_args,
            "n_tensors": self.n_tensors,
            "kwargs": list(self.kwargs),
            "shape": None if self.shape is None else list(self.shape),
            "channels": self.shape[0] if self.shape else None,
            "calls": calls,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> ForwardCall:
        shape = None if row["shape"] is None else tuple(row["shape"])
        return cls(row["n_args"], row["n_tensors"], tuple(row["kwargs"]), shape)


class ForwardInputs:
    """A forward pre-hook counting the distinct ``ForwardCall``s a module receives, in the order first seen
    (a resumed run continues the count of the epochs already done, so its record equals an uninterrupted one's)."""

    def __init__(self, rows: Iterable[dict[str, Any]] = ()) -> None:
        self.calls: Counter[ForwardCall] = Counter({ForwardCall.from_dict(row): row["calls"] for row in rows})

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = args[0] if args else None
        self.calls[
            ForwardCall(
                n_args=len(args),
                n_tensors=sum(isinstance(a, torch.Tensor) for a in (*args, *kwargs.values())),
                kwargs=tuple(sorted(kwargs)),
                shape=tuple(first.shape[1:]) if isinstance(first, torch.Tensor) else None,
            )
        ] += 1

    @contextmanager
    def recording(self, module: nn.Module) -> Iterator[None]:
        """Record every forward call of ``module`` inside the block; the hook is removed after it."""
        handle = module.register_forward_pre_hook(self, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per distinct call, with its number of calls."""
        return [call.to_dict(n) for call, n in self.calls.items()]


# --- model, optimizer, loss -----------------------------------------------------------------------


def loss_function(spec: TrainSpec) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean BCE-with-logits, or the binary focal loss (1 - p_t)^gamma x BCE."""
    if spec.loss == "bce":
        return F.binary_cross_entropy_with_logits
    return partial(_focal, gamma=spec.focal_gamma)


def _focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return ((1 - torch.exp(-bce)) ** gamma * bce).mean()


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def _constant(step: int) -> float:
    return 1.0


def uses_bf16(spec: TrainSpec, device: torch.device) -> bool:
    """bf16 autocast only on CUDA (on CPU it is far slower): CPU always trains in fp32."""
    return spec.precision == "bf16" and device.type == "cuda"


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder joins later epochs' shuffles; at least one batch)."""
    return max(1, n_train // batch_size)


@dataclass
class Trainer:
    """A model with its optimizer, per-step schedule, loss and data-order generator (fit and the benchmark)."""

    spec: TrainSpec
    device: torch.device
    model: nn.Module
    forward: nn.Module  # the model, compiled when the spec asks: every call to it is recorded for L10
    step_forward: nn.Module  # what a training step calls: ``forward``, wrapped in DDP across ranks
    shard: Shard  # this process's rank among the training processes
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: torch.Generator  # shuffles and augmentation draws
    bf16: bool
    memory_format: torch.memory_format

    @classmethod
    def build(
        cls, spec: TrainSpec, device: torch.device, seed: int, total_steps: int, shard: Shard = ONE_PROCESS
    ) -> Trainer:
        """A fresh model (initialised from ``seed``), the spec's optimizer and the per-step schedule over
        ``total_steps``; across ranks (``shard.world`` > 1) the model is wrapped in DDP and each rank draws its
        shuffles and augmentations from ``seed + rank``."""
        torch.manual_seed(seed)
        memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
        model = build_model(spec.arch).to(device).to(memory_format=memory_format)
        optimizer = OPTIMIZERS[spec.optimizer](
            model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, fused=device.type == "cuda"
        )
        schedule = partial(_cosine, total=total_steps) if spec.schedule == "cosine" else _constant
        forward = torch.compile(model) if spec.compile else model
        if shard.world > 1:
            step_forward: nn.Module = DistributedDataParallel(
                forward, device_ids=[device.index] if device.type == "cuda" else None
            )
        else:
            step_forward = forward
        return cls(
            spec=spec,
            device=device,
            model=model,
            forward=forward,
            step_forward=step_forward,
            shard=shard,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
            loss_fn=loss_function(spec),
            generator=torch.Generator(device=device).manual_seed(seed + shard.rank),
            bf16=uses_bf16(spec, device),
            memory_format=memory_format,
        )

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch already on the device; returns the (detached) batch loss."""
        images = images.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.step_forward(images).squeeze(1)
        loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.spec.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


# --- one epoch, one validation --------------------------------------------------------------------


def train_one_epoch(
    trainer: Trainer,
    train: StampStore,
    table: torch.Tensor,
    epoch: int,
    steps: int,
    on_step: StepCallback | None = None,
) -> dict[str, float]:
    """``steps`` full batches in a fresh seeded order, augmented by ``table`` on the device.

    Returns the epoch's mean train loss, the learning rate it ended at and its throughput (all ranks');
    ``on_step`` is called after every optimizer step.
    """
    started = time.perf_counter()
    trainer.model.train()
    order = train.shuffled(trainer.generator)
    world = trainer.shard.world
    batch = rank_batch(trainer.spec.batch_size, train.split_size, world)
    loss_sum = torch.zeros((), device=trainer.device)
    for step in range(steps):
        images, labels = train.batch(order[step * batch : (step + 1) * batch])
        # out of place: the sum a TrainStep holds stays its step's
        loss_sum = loss_sum + trainer.step(augment(images, table, trainer.generator), labels)
        if on_step is not None:
            on_step(TrainStep(epoch, step + 1, steps, batch, loss_sum))
    if world > 1:
        dist.all_reduce(loss_sum)  # every rank's batches are the same size: the mean of means is the mean
    train_loss = float(loss_sum) / steps / world  # float() waits for the device
    train_s = time.perf_counter() - started
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"training diverged: epoch {epoch} mean train loss is {train_loss}")
    return {
        "train_loss": train_loss,
        "lr": trainer.scheduler.get_last_lr()[0],
        "train_s": train_s,
        "images_per_s": steps * batch * world / train_s,
    }


def rank_batch(batch_size: int, n_train: int, world: int) -> int:
    """Stamps each of ``world`` ranks steps on: its share of the global batch (``batch_size``, or the whole split
    when smaller), which must divide evenly."""
    batch = min(batch_size, n_train)
    if batch % world:
        raise ValueError(
            f"train.batch_size {batch} does not split over engine.train_processes {world}: use a multiple of {world}"
        )
    return batch // world


def gathered(values: np.ndarray, store: StampStore) -> np.ndarray:
    """Every rank's ``values`` (one per row of its shard of ``store``'s split) in split order, on every rank."""
    if store.shard.world == 1:
        return values
    parts: list[tuple[np.ndarray, np.ndarray] | None] = [None] * store.shard.world
    dist.all_gather_object(parts, (store.split_positions, values))
    out = np.empty(store.split_size, dtype=values.dtype)
    for positions, part in parts:  # type: ignore[misc]
        out[positions] = part
    return out


def predict_logits(model: nn.Module, store: StampStore, batch_size: int, bf16: bool = False) -> np.ndarray:
    """The model's logits (float32) for every stamp of ``store``, in store order, in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(store.device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(store), batch_size):
            index = torch.arange(start, min(start + batch_size, len(store)), device=store.device)
            images, _ = store.batch(index)
            out.append(model(images.contiguous(memory_format=torch.channels_last)).float().squeeze(1))
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


def evaluate(trainer: Trainer, val: StampStore, labels: np.ndarray, rule: EpochPickRule) -> dict[str, Any]:
    """Val loss and ``epoch_metrics`` of the model as it stands over the whole val split (every rank's shard, whose
    ``labels`` are given in split order), and the time they took."""
    started = time.perf_counter()
    logits = gathered(predict_logits(trainer.forward, val, trainer.spec.batch_size, trainer.bf16), val)
    return {
        "val_loss": float(trainer.loss_fn(torch.from_numpy(logits), torch.from_numpy(labels))),
        **epoch_metrics(logits, labels, trainer.spec.select_at_fpr, rule),
        "val_s": time.perf_counter() - started,
    }


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """A finished epoch in one line: losses, val completeness at the selection FPR, throughput, time."""
    completeness = row["select_completeness"]
    at_fpr = (
        f"val completeness {completeness:.3f} at FPR {row['select_fpr']:.3g}"
        if math.isfinite(completeness)
        else "val completeness unresolved"
    )
    return (
        f"  epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
        f"{at_fpr}, {row['images_per_s']:,.0f} images/s, {row['epoch_s']:.1f} s"
    )


# --- the training state ---------------------------------------------------------------------------


def training_state(
    trainer: Trainer, args: dict[str, Any], epoch: int, history: list[dict[str, Any]], inputs: ForwardInputs
) -> dict[str, Any]:
    """The checkpoint after ``epoch``: everything an exact resume needs, as tensors and primitives (across ranks,
    every rank's generator state: each rank calls this, rank 0 saves it)."""
    rng: dict[str, Any] = {"generator": trainer.generator.get_state(), "torch": torch.get_rng_state()}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    if trainer.shard.world > 1:
        states: list[torch.Tensor | None] = [None] * trainer.shard.world
        dist.all_gather_object(states, rng["generator"])
        rng["rank_generators"] = states
    return {
        "format": FORMAT,
        "arch": trainer.spec.arch,
        "normalisation": NORMALISATION,
        "args": args,
        "epoch": epoch,
        "state_dict": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": rng,
        "history": history,
        "forward_inputs": inputs.rows(),
    }


def resume(trainer: Trainer, path: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Load the training state at ``path`` into ``trainer`` and return it; refuses one made with other args."""
    state = load_checkpoint(path)
    _check_args(path, state.get("args"), args)
    trainer.model.load_state_dict(state["state_dict"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    generators = state["rng"].get("rank_generators", [state["rng"]["generator"]])
    trainer.generator.set_state(generators[trainer.shard.rank])
    torch.set_rng_state(state["rng"]["torch"])
    if trainer.device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], trainer.device)
    return state


def _check_args(path: Path, saved: Any, current: dict[str, Any]) -> None:
    """Refuse to resume from a checkpoint made for other settings or other stamps."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: no run args recorded; cannot resume from it")
    differing = sorted(k for k in current.keys() | saved.keys() if saved.get(k) != current.get(k))
    if differing:
        key = differing[0]
        raise CheckpointError(
            f"{path}: made for another run ({key}: {saved.get(key)!r} there, {current.get(key)!r} here); "
            "remove it to start afresh"
        )


# --- fit ------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """What ``fit`` did: per-epoch history, the chosen epoch and why, where the checkpoints are, and
    ``model_inputs``, the record of what the model was fed that L10 judges."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_reason: str
    resumed_from: int  # epochs already in the checkpoints when this call started (0: fresh)
    checkpoint_dir: Path
    device: str
    precision: str
    model_inputs: dict[str, Any]
    train_stamps: int  # the whole train split's
    val_stamps: int
    store_on_device: bool  # the train stamps lived on the compute device (no copy per batch)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (a checkpoint-safe payload): how a training process hands its result back."""
        return {**dataclasses.asdict(self), "checkpoint_dir": str(self.checkpoint_dir)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitResult:
        return cls(**{**data, "checkpoint_dir": Path(data["checkpoint_dir"])})


def fit(
    train: StampStore,
    val: StampStore,
    spec: TrainSpec,
    seed: int,
    checkpoint_dir: Path,
    min_expected_fp: float,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train ``spec.arch`` on ``train``, validate on ``val`` each epoch, resuming from ``checkpoint_dir``.

    ``min_expected_fp`` is the resolvability rule (the evaluate stage's): the best epoch is judged at
    an FPR where the val negatives expect at least that many false positives. ``on_step`` sees every
    optimizer step (darkhalo.training.loop.TrainStep), ``on_epoch`` every finished epoch's history row.
    Sharded stores (one rank of a torchrun process group) train with DDP; rank 0 writes the checkpoints.
    """
    shard = train.shard
    if rank_batch(spec.batch_size, train.split_size, shard.world) < 2:
        raise ValueError(f"need at least 2 train stamps per step and process (batch norm), got {train.split_size}")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    args = {
        **spec.model_dump(mode="json"),
        "seed": seed,
        "min_expected_fp": min_expected_fp,
        "train_stamps": train.digest(),
        "val_stamps": val.digest(),
        "device": train.device.type,
        "processes": shard.world,
    }
    steps = steps_per_epoch(train.split_size, spec.batch_size)
    trainer = Trainer.build(spec, train.device, seed, steps * spec.epochs, shard)
    state: dict[str, Any] = {"epoch": 0, "history": [], "forward_inputs": []}
    latest = latest_checkpoint(checkpoint_dir)
    if latest is not None:
        state = resume(trainer, latest, args)
    history = list(state["history"])
    inputs = ForwardInputs(state["forward_inputs"])  # the calls of the epochs already done, then ours
    labels = gathered(val.labels.cpu().numpy(), val)  # the whole val split's, in split order: once per fit
    rule = pick_rule(spec.select_at_fpr, int((labels == 0).sum()), min_expected_fp)
    table = transform_table(train.images.shape[-1], spec.augment, train.device)

    with inputs.recording(trainer.forward):
        for epoch in range(state["epoch"] + 1, spec.epochs + 1):
            started = time.perf_counter()
            row = {"epoch": epoch, **train_one_epoch(trainer, train, table, epoch, steps, on_step)}
            row.update(evaluate(trainer, val, labels, rule), epoch_s=time.perf_counter() - started)
            history.append(row)
            saved = training_state(trainer, args, epoch, history, inputs)  # on every rank: it gathers their RNGs
            if shard.rank == 0:
                save_checkpoint(checkpoint_dir / checkpoint_name(epoch), saved)
            if on_epoch is not None:
                on_epoch(row)

    best_epoch, reason = choose_best(history, rule)
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        best_reason=reason,
        resumed_from=state["epoch"],
        checkpoint_dir=checkpoint_dir,
        device=str(train.device),
        precision="bf16" if trainer.bf16 else "fp32",
        train_stamps=train.split_size,
        val_stamps=val.split_size,
        store_on_device=train.on_device,
        model_inputs={
            "columns_read": list(dict.fromkeys(train.columns_read + val.columns_read)),
            "input_columns": list(dict.fromkeys(train.input_columns + val.input_columns)),
            "forward_inputs": inputs.rows(),
        },
    )
