"""Augmentation on the device: a random flip and/or quarter turn per stamp, drawn from a generator.

Each allowed transform of the square's symmetry group is a precomputed pixel permutation, so a
batch is augmented by one gather (no per-stamp Python work, no host round trip).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def transform_table(size: int, kinds: Sequence[str], device: torch.device) -> torch.Tensor:
    """(K, size*size) source-pixel indices of the K distinct transforms ``kinds`` allow (identity first).

    ``flip`` gives left-right and up-down mirrors (4 transforms), ``rot90`` quarter turns (4);
    both give the square's 8 symmetries.
    """
    unknown = set(kinds) - {"flip", "rot90"}
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; known: flip, rot90")
    grid = torch.arange(size * size, device=device).view(size, size)
    flips = ((), (1,), (0,), (0, 1)) if "flip" in kinds else ((),)
    turns = range(4) if "rot90" in kinds else range(1)
    views: dict[tuple[int, ...], torch.Tensor] = {}
    for dims in flips:
        for k in turns:
            view = torch.rot90(grid.flip(dims) if dims else grid, k, dims=(0, 1)).reshape(-1)
            views.setdefault(tuple(view.tolist()), view)
    return torch.stack(list(views.values()))


def augment(images: torch.Tensor, table: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``images`` (N, C, S, S), each transformed by a table row drawn uniformly from ``generator``."""
    if table.shape[0] == 1:
        return images
    n, c, h, w = images.shape
    choice = torch.randint(table.shape[0], (n,), generator=generator, device=generator.device).to(images.device)
    index = table[choice].unsqueeze(1).expand(n, c, h * w)
    return images.flatten(2).gather(2, index).view(n, c, h, w)
