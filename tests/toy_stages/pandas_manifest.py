"""Toy 'manifest' stage without Spark: the real expansion (darkhalo.expansion) of a synthetic parent."""

import os

from hosts import synthetic_parent

from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.stages.base import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    parent = synthetic_parent(int(os.environ.get("TOY_PARENT_ROWS", "120")), seed=ctx.spec.seed)
    expansion = Expansion.of(ctx.spec)
    hosts = host_frame(parent, expansion=expansion)
    rows = expand_hosts(hosts, expansion=expansion).sort_values("stamp_id", ignore_index=True)
    (ctx.out / "manifest").mkdir()
    rows.to_parquet(ctx.out / "manifest" / "part-00000.parquet", index=False)
    return StageResult(rows={"manifest": len(rows)})
