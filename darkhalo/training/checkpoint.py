"""Checkpoints as plain tensors and primitives: written atomically, read with ``weights_only=True``.

A training checkpoint (``epoch-XXX.pt``, written by ``loop.training_state``) holds everything an
exact resume needs (model, optimizer, scheduler, RNG states as tensors, epoch, the run's args,
history, the forward-input record); ``model.pt`` holds the chosen weights with the arch and
normalisation names. Nothing is pickled as an object.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from darkhalo.artifacts import atomic_file
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION

CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d{3,})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and why."""


def checkpoint_name(epoch: int) -> str:
    """The file name of epoch ``epoch``'s checkpoint (1-based)."""
    return f"epoch-{epoch:03d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with torch.save to a temporary sibling, fsync, then rename over ``path``."""
    with atomic_file(path, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and primitives only) onto the CPU."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused, it holds pickled objects that weights_only=True will not load ({exc})"
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(payload).__name__}")
    return payload


def latest_checkpoint(folder: Path) -> Path | None:
    """The highest-epoch ``epoch-XXX.pt`` in ``folder``, or None when there is none."""
    found = [(int(m[1]), p) for p in folder.glob("epoch-*.pt") if (m := CHECKPOINT_PATTERN.match(p.name))]
    return max(found)[1] if found else None


def load_model(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """The classifier in ``model.pt`` (or any epoch checkpoint), in eval mode on ``device``.

    Refuses a file made with another normalisation: inputs must be ``normalise``d as in training.
    """
    payload = load_checkpoint(path)
    missing = [k for k in ("arch", "normalisation", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a darkhalo model file (lacks {', '.join(missing)})")
    if payload["normalisation"] != NORMALISATION:
        raise CheckpointError(
            f"{path}: trained with normalisation {payload['normalisation']!r}, this code applies {NORMALISATION!r}"
        )
    model = build_model(payload["arch"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
