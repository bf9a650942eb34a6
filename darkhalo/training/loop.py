"""The training loop: AdamW, BCE or focal loss, a per-step schedule, a checkpoint per epoch, exact resume.

Every epoch ends with a full checkpoint in ``checkpoint_dir``; a later call with the same
arguments continues from the newest one and produces the same weights and losses as a run that
was never interrupted (bitwise on CPU in fp32). The best epoch is the one with the highest val
completeness at a resolvable FPR, never the one with the best AUROC (L4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

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
from darkhalo.training.store import NORMALISATION, StampStore

#: An FPR is resolved when the val negatives expect at least this many false positives at it
#: (the evaluate stage's default rule).
MIN_EXPECTED_FP = 10.0
FORMAT = 1

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Selection:
    """The FPR at which val completeness picks the best epoch (None: val cannot resolve any), and why."""

    fpr: float | None
    why: str


@dataclass
class FitResult:
    """What ``fit`` did: per-epoch history, the chosen epoch and why, where the checkpoints are."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_reason: str
    resumed_from: int  # epochs already in the checkpoints when this call started (0: fresh)
    checkpoint_dir: Path
    device: str
    precision: str


def selection_fpr(target: float, n_neg: int, min_expected_fp: float = MIN_EXPECTED_FP) -> Selection:
    """``target`` when ``n_neg`` negatives resolve it, else the lowest FPR they do resolve."""
    if n_neg * target >= min_expected_fp:
        why = f"FPR {target:g} (resolved: {n_neg} val negatives x {target:g} >= {min_expected_fp:g})"
        return Selection(target, why)
    if n_neg >= min_expected_fp:
        lowest = min_expected_fp / n_neg
        return Selection(
            lowest,
            f"FPR {lowest:.4g}, the lowest {n_neg} val negatives resolve (target {target:g} needs "
            f"{math.ceil(min_expected_fp / target)} negatives)",
        )
    return Selection(None, f"no FPR is resolvable with {n_neg} val negatives (need {min_expected_fp:g})")


def epoch_metrics(logits: np.ndarray, labels: np.ndarray, target_fpr: float, selection: Selection) -> dict[str, Any]:
    """Val AUROC (reported, never used to choose) and completeness at ``target_fpr`` and at the selection FPR."""
    pos, neg = logits[labels == 1], logits[labels == 0]
    both = pos.size > 0 and neg.size > 0
    at_target = completeness_at_fpr(pos, neg, target_fpr, MIN_EXPECTED_FP) if both else None
    at_select = completeness_at_fpr(pos, neg, selection.fpr, MIN_EXPECTED_FP) if both and selection.fpr else None
    return {
        "val_auroc": float(roc_auc_score(labels, logits)) if both else math.nan,
        "val_completeness": at_target.completeness if at_target else math.nan,
        "val_completeness_fpr": target_fpr,
        "val_completeness_resolved": bool(at_target and at_target.resolved),
        "select_fpr": selection.fpr if selection.fpr is not None else math.nan,
        "select_completeness": at_select.completeness if at_select else math.nan,
    }


def choose_best(history: list[dict[str, Any]], selection: Selection) -> tuple[int, str]:
    """(best epoch, why): highest ``select_completeness``, ties to the lower val loss, then the earlier epoch.

    With no resolvable FPR it falls back to the lowest val loss. AUROC is never consulted.
    """
    if selection.fpr is not None and any(math.isfinite(r["select_completeness"]) for r in history):
        scored = [r for r in history if math.isfinite(r["select_completeness"])]
        best = min(scored, key=lambda r: (-r["select_completeness"], r["val_loss"], r["epoch"]))
        return best["epoch"], (
            f"highest val completeness {best['select_completeness']:.4f} at {selection.why}; "
            f"ties to lower val loss; AUROC not used"
        )
    best = min(history, key=lambda r: (r["val_loss"], r["epoch"]))
    return best["epoch"], f"lowest val loss {best['val_loss']:.4g}: {selection.why}"


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


@dataclass
class Trainer:
    """A model with its optimizer, schedule and loss, stepped on device batches (fit and the benchmark)."""

    spec: TrainSpec
    device: torch.device
    model: nn.Module
    forward: nn.Module  # the model, compiled when the spec asks
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    bf16: bool
    memory_format: torch.memory_format

    @classmethod
    def build(cls, spec: TrainSpec, device: torch.device, seed: int, total_steps: int) -> Trainer:
        """A fresh model (initialised from ``seed``), AdamW and the per-step schedule over ``total_steps``."""
        torch.manual_seed(seed)
        memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
        model = build_model(spec.arch).to(device).to(memory_format=memory_format)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, fused=device.type == "cuda"
        )
        schedule = partial(_cosine, total=total_steps) if spec.schedule == "cosine" else _constant
        return cls(
            spec=spec,
            device=device,
            model=model,
            forward=torch.compile(model) if spec.compile else model,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
            loss_fn=loss_function(spec),
            bf16=uses_bf16(spec, device),
            memory_format=memory_format,
        )

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch already on the device; returns the (detached) batch loss."""
        images = images.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(images).squeeze(1)
        loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.spec.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder joins later epochs' shuffles; at least one batch)."""
    return max(1, n_train // batch_size)


def fit(
    train: StampStore,
    val: StampStore,
    spec: TrainSpec,
    seed: int,
    checkpoint_dir: Path,
    on_step: StepCallback | None = None,
) -> FitResult:
    """Train ``spec.arch`` on ``train``, validate on ``val`` each epoch, resuming from ``checkpoint_dir``."""
    device = train.device
    if len(train) < 2:
        raise ValueError(f"need at least 2 train stamps (batch norm), got {len(train)}")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        **spec.model_dump(mode="json"),
        "seed": seed,
        "train_stamps": train.digest(),
        "val_stamps": val.digest(),
        "device": device.type,
    }
    per_epoch = steps_per_epoch(len(train), spec.batch_size)
    total_steps = per_epoch * spec.epochs
    trainer = Trainer.build(spec, device, seed, total_steps)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)

    history: list[dict[str, Any]] = []
    latest = latest_checkpoint(checkpoint_dir)
    if latest is not None:
        state = load_checkpoint(latest)
        _check_identity(latest, state.get("identity"), identity)
        trainer.model.load_state_dict(state["state_dict"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history = list(state["history"])
    resumed_from = len(history)

    table = transform_table(train.images.shape[-1], spec.augment, device)
    selection = selection_fpr(spec.select_at_fpr, val.n_negatives)
    val_labels = val.labels.cpu().numpy()
    batch = min(spec.batch_size, len(train))

    for epoch in range(resumed_from + 1, spec.epochs + 1):
        started = time.perf_counter()
        trainer.model.train()
        order = train.shuffled(generator)
        loss_sum = torch.zeros((), device=device)
        for step in range(per_epoch):
            images, labels = train.batch(order[step * batch : (step + 1) * batch])
            loss_sum += trainer.step(augment(images, table, generator), labels)
            if on_step is not None:
                on_step((epoch - 1) * per_epoch + step + 1, total_steps)
        train_loss = float(loss_sum) / per_epoch  # float() waits for the device
        train_s = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged: epoch {epoch} mean train loss is {train_loss}")

        val_started = time.perf_counter()
        val_logits = predict_logits(trainer.forward, val, spec.batch_size, trainer.bf16)
        val_loss = float(trainer.loss_fn(torch.from_numpy(val_logits), torch.from_numpy(val_labels.astype(np.float32))))
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                **epoch_metrics(val_logits, val_labels, spec.select_at_fpr, selection),
                "lr": trainer.scheduler.get_last_lr()[0],
                "train_s": train_s,
                "val_s": time.perf_counter() - val_started,
                "epoch_s": time.perf_counter() - started,
                "images_per_s": per_epoch * batch / train_s,
            }
        )
        state = {
            "format": FORMAT,
            "arch": spec.arch,
            "normalisation": NORMALISATION,
            "identity": identity,
            "epoch": epoch,
            "state_dict": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        save_checkpoint(checkpoint_dir / checkpoint_name(epoch), state)

    best_epoch, reason = choose_best(history, selection)
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        best_reason=reason,
        resumed_from=resumed_from,
        checkpoint_dir=checkpoint_dir,
        device=str(device),
        precision="bf16" if trainer.bf16 else "fp32",
    )


def _check_identity(path: Path, saved: Any, current: dict[str, Any]) -> None:
    """Refuse to resume from a checkpoint made for other settings or other stamps."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: no run identity recorded; cannot resume from it")
    differing = sorted(k for k in current.keys() | saved.keys() if saved.get(k) != current.get(k))
    if differing:
        key = differing[0]
        raise CheckpointError(
            f"{path}: made for another run ({key}: {saved.get(key)!r} there, {current.get(key)!r} here); "
            "remove it to start afresh"
        )
