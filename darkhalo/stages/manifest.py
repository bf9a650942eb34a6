"""The manifest stage: the manifest, one row per stamp to make: grid configs on positive hosts, controls,
sky-disjoint splits, per-stamp nuisance parameters (darkhalo.expansion), expanded in Spark.

Reads ``select/parent_sample/``; writes ``manifest/manifest/part-*.parquet`` sorted by stamp_id.
Its gate (darkhalo.audit.judges.judge_manifest): the manifest schema, L1 (unpaired controls), L2
(resolvable injections), L5 (sky-disjoint splits), L6 (host matching).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from darkhalo import layout, tables
from darkhalo.expansion import PARENT_COLUMNS, Expansion, configs_per_host, expand_hosts, host_frame
from darkhalo.progress import spark_job
from darkhalo.sparkio import read_parquet, spark_schema, write_sorted_parquet
from darkhalo.stages.base import StageContext, StageResult
from data_contracts.manifest import Manifest

ROWS_PER_PART = 500_000
#: Columns the stage's counts read back from the written manifest.
COUNT_COLUMNS = ["RELEASE", "BRICKID", "OBJID", "label", "split"]


def parent_files(select_dir: Path) -> list[Path]:
    """The parent-sample parquet parts, with a clear error when the select stage left none."""
    files = layout.parts(select_dir, layout.PARENT_SAMPLE)
    schema = tables.read_schema(files[0])
    missing = [name for name in PARENT_COLUMNS if name not in schema.names]
    if missing:
        raise ValueError(f"{files[0]}: parent sample lacks column(s) {', '.join(missing)}")
    return files


def expand_batches(batches: Iterator[pd.DataFrame], *, expansion: Expansion) -> Iterator[pd.DataFrame]:
    """mapInPandas body: parent rows -> manifest rows, batch by batch."""
    for batch in batches:
        yield expand_hosts(host_frame(batch, expansion=expansion), expansion=expansion)


def run(ctx: StageContext) -> StageResult:
    spec = ctx.spec
    files = parent_files(ctx.input("select"))
    n_parent = sum(tables.num_rows(f) for f in files)
    if n_parent == 0:
        raise ValueError(f"{files[0].parent}: the parent sample is empty (the selection kept no host)")

    spark = ctx.spark()
    parent = read_parquet(spark, files).select(*PARENT_COLUMNS)
    expansion = Expansion.of(spec)
    expanded = parent.mapInPandas(lambda batches: expand_batches(batches, expansion=expansion), spark_schema(Manifest))
    ctx.console.print(f"  expanding {n_parent:,} parent hosts x {configs_per_host(spec.grid)} configs in Spark")
    with spark_job(spark, ctx.console, "expand and sort manifest", n_parent, unit="hosts"):
        parts = write_sorted_parquet(
            expanded, ctx.out / layout.MANIFEST, "stamp_id", ROWS_PER_PART, n_parent * (configs_per_host(spec.grid) + 1)
        )

    counted = pd.concat([pd.read_parquet(p, columns=COUNT_COLUMNS) for p in parts], ignore_index=True)
    return StageResult(rows={"manifest": len(counted)}, measured=_counts(counted, n_parent))


def _counts(manifest: pd.DataFrame, n_parent: int) -> dict[str, object]:
    hosts = manifest.drop_duplicates(["RELEASE", "BRICKID", "OBJID", "label"])
    return {
        "parent_hosts": n_parent,
        "stamps_by_split_label": {
            f"{split}/{'positive' if label else 'control'}": int(n)
            for (split, label), n in manifest.groupby(["split", "label"]).size().items()
        },
        "positive_hosts": int((hosts["label"] == 1).sum()),
        "control_hosts": int((hosts["label"] == 0).sum()),
    }
