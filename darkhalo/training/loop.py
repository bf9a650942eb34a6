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
    bf16 = uses_bf16(spec, device)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        **spec.model_dump(mode="json"),
        "seed": seed,
        "train_stamps": train.digest(),
        "val_stamps": val.digest(),
        "device": device.type,
    }

    torch.manual_seed(seed)
    model = build_model(spec.arch).to(device)
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, fused=device.type == "cuda"
    )
    steps_per_epoch = max(1, len(train) // spec.batch_size)  # the remainder joins later epochs' shuffles
    total_steps = steps_per_epoch * spec.epochs
    schedule = partial(_cosine, total=total_steps) if spec.schedule == "cosine" else _constant
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)

    history: list[dict[str, Any]] = []
    latest = latest_checkpoint(checkpoint_dir)
    if latest is not None:
        state = load_checkpoint(latest)
        _check_identity(latest, state.get("identity"), identity)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history = list(state["history"])
    resumed_from = len(history)

    forward = torch.compile(model) if spec.compile else model
    loss_fn = loss_function(spec)
    table = transform_table(train.images.shape[-1], spec.augment, device)
    selection = selection_fpr(spec.select_at_fpr, val.n_negatives)
    val_labels = val.labels.cpu().numpy()

    for epoch in range(resumed_from + 1, spec.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = train.shuffled(generator)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            images, labels = train.batch(order[step * spec.batch_size : (step + 1) * spec.batch_size])
            images = augment(images, table, generator).contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = forward(images).squeeze(1)
            loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
            if on_step is not None:
                on_step((epoch - 1) * steps_per_epoch + step + 1, total_steps)
        train_loss = float(loss_sum) / steps_per_epoch
        train_s = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged: epoch {epoch} mean train loss is {train_loss}")

        val_started = time.perf_counter()
        val_logits = predict_logits(forward, val, spec.batch_size, bf16)
        val_loss = float(loss_fn(torch.from_numpy(val_logits), torch.from_numpy(val_labels.astype(np.float32))))
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            **epoch_metrics(val_logits, val_labels, spec.select_at_fpr, selection),
            "lr": scheduler.get_last_lr()[0],
            "train_s": train_s,
            "val_s": time.perf_counter() - val_started,
            "epoch_s": time.perf_counter() - started,
            "images_per_s": steps_per_epoch * min(spec.batch_size, len(train)) / train_s,
        }
        history.append(row)
        state = {
            "format": FORMAT,
            "arch": spec.arch,
            "normalisation": NORMALISATION,
            "identity": identity,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
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
        precision="bf16" if bf16 else "fp32",
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
