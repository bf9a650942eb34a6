"""Toy stage 'inject': writes a separable synthetic stamp set (no survey, no lensing) for the trainer."""

from __future__ import annotations

import numpy as np
from stamps_factory import toy_stamps, write_shards

from darkhalo.stages.base import StageContext, StageResult

SPLITS = {"train": 96, "val": 64, "test": 32}


def run(ctx: StageContext) -> StageResult:
    n = sum(SPLITS.values())
    images, labels = toy_stamps(n, ctx.spec.stamps.size, seed=ctx.spec.seed)
    splits = np.repeat(list(SPLITS), list(SPLITS.values()))
    leaky = {"theta_e": np.where(labels == 1, 1.0, np.nan), "arc_snr": np.where(labels == 1, 30.0, np.nan)}
    write_shards(ctx.out, images, labels, splits, rows_per_shard=80, extra=leaky)
    return StageResult(rows={"stamps": n})
