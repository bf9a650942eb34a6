"""Toy stage 'flaky': the manifest's expansion in Spark, every task failing on its first attempt.

Each failing attempt leaves a file in the folder named by TOY_FLAKY_MARKERS, so a test sees that
the failures happened; with ``local[N,2]`` Spark retries each task once and the output is whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark import TaskContext

from darkhalo.expansion import PARENT_COLUMNS, Expansion, expand_hosts, host_frame
from darkhalo.sparkio import spark_schema, write_sorted_parquet
from darkhalo.spec import GenerationSpec
from darkhalo.stages.base import Stage, StageContext, StageResult
from darkhalo.tables import num_rows
from data_contracts.manifest import Manifest

FLAKY_STAGE = Stage(
    "flaky", ("select",), ("seed", "survey", "grid", "controls", "splits", "source"), "toy_stages.flaky", ""
)


def expand_failing_once(batches: Iterator[pd.DataFrame], spec: GenerationSpec, markers: str) -> Iterator[pd.DataFrame]:
    """The manifest expansion, raising on a task's first attempt (after leaving a marker file)."""
    task = TaskContext.get()
    if task.attemptNumber() == 0:
        Path(markers, f"stage-{task.stageId()}-task-{task.partitionId()}").touch()
        raise RuntimeError(f"injected failure: task {task.partitionId()}, attempt 0")
    expansion = Expansion.of(spec)
    for batch in batches:
        yield expand_hosts(host_frame(batch, expansion=expansion), expansion=expansion)


def run(ctx: StageContext) -> StageResult:
    spec = ctx.spec
    files = sorted((ctx.input("select") / "parent_sample").glob("part-*.parquet"))
    parent = ctx.spark().read.parquet(*map(str, files)).select(*PARENT_COLUMNS).repartition(3)
    markers = os.environ["TOY_FLAKY_MARKERS"]
    expanded = parent.mapInPandas(lambda batches: expand_failing_once(batches, spec, markers), spark_schema(Manifest))
    n = sum(num_rows(f) for f in files) * 2
    parts = write_sorted_parquet(expanded, ctx.out / "manifest", "stamp_id", 1000, n)
    return StageResult(rows={"manifest": sum(num_rows(p) for p in parts)})
