"""The classifiers: torchvision ResNet18, stock or with Gen 1's 64x64 stem, one logit, inputs g, r, z."""

from __future__ import annotations

from typing import Literal

from torch import nn
from torchvision.models import resnet18

Arch = Literal["resnet18", "resnet18_64"]
ARCHS: tuple[str, ...] = ("resnet18", "resnet18_64")


def build_model(arch: str) -> nn.Module:
    """A freshly initialised ResNet18 giving one logit per (3, S, S) stamp.

    ``resnet18`` is torchvision's (7x7 stride-2 stem and max-pool: /32 overall); ``resnet18_64``
    keeps full resolution in the stem (3x3 stride-1 conv, no max-pool: /8 overall), as Gen 1 did
    for 64x64 stamps.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    model = resnet18(weights=None, num_classes=1)
    if arch == "resnet18_64":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model
