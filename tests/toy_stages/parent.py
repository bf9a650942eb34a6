"""A stand-in select stage: writes tests.hosts.synthetic_parent as select/parent_sample/."""

from __future__ import annotations

import os

from hosts import synthetic_parent

from darkhalo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    n = int(os.environ.get("TOY_PARENT_ROWS", "300"))
    parent = synthetic_parent(n, seed=ctx.spec.seed, known_lenses=3)
    (ctx.out / "parent_sample").mkdir()
    parent.to_parquet(ctx.out / "parent_sample" / "part-00000.parquet", index=False)
    return StageResult(rows={"parent_sample": len(parent)})
