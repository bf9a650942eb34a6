"""Where the trainer runs: the spec's ``engine.device`` (auto = CUDA when present, else CPU)."""

from __future__ import annotations

import torch


def resolve_device(choice: str) -> torch.device:
    """``auto`` -> cuda:0 if CUDA is available else cpu; ``cuda`` without a GPU is an error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("engine.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if choice not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {choice!r}; use auto, cpu or cuda")
    return torch.device(choice)
