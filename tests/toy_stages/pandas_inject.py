"""Toy 'inject' stage without Spark: the real batch function (darkhalo.injection.inject_batch) over
the manifest, with mock cutouts, written as one stamp shard."""

import pandas as pd
import pyarrow.parquet as pq

from darkhalo.injection import Rendering, inject_batch
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.provider import provider_for


def run(ctx: StageContext) -> StageResult:
    rows = pd.read_parquet(ctx.input("manifest") / "manifest")
    stamps = inject_batch(rows, provider_for(ctx.spec.survey, ctx.spec.seed), rendering=Rendering.of(ctx.spec))
    (ctx.out / "stamps").mkdir()
    pq.write_table(stamps, ctx.out / "stamps" / "part-00000.parquet")
    return StageResult(rows={"stamps": stamps.num_rows})
