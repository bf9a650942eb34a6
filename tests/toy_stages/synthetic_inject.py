"""Toy 'inject' stage for the evaluate tests: the trainer's separable toy stamps (a ring on
positives) with the metadata columns the evaluator reads, split train/val/test by stamp."""

import numpy as np
from stamps_factory import SKY_SIGMA, toy_stamps, write_shards

from darkhalo.stages.base import StageContext, StageResult

ROWS = 240
SPLITS = ("train", "train", "val", "test")


def run(ctx: StageContext) -> StageResult:
    size = ctx.spec.stamps.size
    images, labels = toy_stamps(ROWS, size, seed=ctx.spec.seed, ring_snr=6.0)
    rng = np.random.default_rng(ctx.spec.seed)
    y, x = np.mgrid[:size, :size] - size // 2
    ring_sum = np.exp(-0.5 * ((np.hypot(x, y) - size / 5) / 0.7) ** 2).sum()
    positive = labels == 1
    injected = np.where(positive, 1.0, np.nan)
    extra = {
        "theta_e": injected * size / 5 * ctx.spec.stamps.pixel_scale,
        "psfsize_r": rng.uniform(1.0, 1.5, ROWS),
        "src_mag_r": injected * rng.uniform(22, 25, ROWS),
        "host_mag_r": rng.uniform(18, 21, ROWS),
        "arc_snr": injected * 6.0 * np.sqrt(ring_sum),
        **{f"arc_flux_{b}": injected * 6.0 * SKY_SIGMA[i] * ring_sum for i, b in enumerate("grz")},
    }
    splits = [SPLITS[(i // 2) % len(SPLITS)] for i in range(ROWS)]  # labels alternate 1, 0
    write_shards(ctx.out, images, labels, splits, rows_per_shard=128, extra=extra)
    return StageResult(rows={"stamps": ROWS})
