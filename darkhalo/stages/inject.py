"""The inject stage: stamps. One Spark task per shard ``inject/stamps/part-*.parquet`` (darkhalo.stamps
format): the manifest's rows in stamp_id order, ``injection.shard_rows`` a shard, each task reading its
rows, taking cutouts from the survey provider, rendering arcs in batches (darkhalo.injection) and
writing its shard itself, so no pixel passes through the JVM and the shards are the same however Spark
schedules the tasks. A task returns its stamps' summary columns, which the stage reports.

Its gate (darkhalo.audit.judges.judge_stamps): the stamp metadata schema, L3 (injection PSF wings
against real DECam PSFs), L7 (realistic, visible arcs), L8 (every stamp's bytes, pixels and record,
and a seeded sample against its cutout fetched again and its arc rendered again, and a point source
through the injection PSF).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from darkhalo import layout, tables
from darkhalo.injection import Rendering, inject_batch
from darkhalo.progress import spark_job
from darkhalo.sparkio import key_ranges, run_tasks, write_part
from darkhalo.spec import SurveySpec
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.provider import provider_for
from data_contracts.stamps import shard_schema

#: Columns of each stamp a shard's task returns for the stage's summary.
SUMMARY_COLUMNS = ["label", "split", "arc_snr", "magnification"]


def shard_rows(manifest: list[Path], first: int, last: int) -> pd.DataFrame:
    """The manifest rows with ``first <= stamp_id <= last``, in stamp_id order."""
    stamp_id = pc.field("stamp_id")
    rows = ds.dataset(manifest, format="parquet").to_table(filter=(stamp_id >= first) & (stamp_id <= last))
    return rows.to_pandas().sort_values("stamp_id", ignore_index=True)


def write_shard(rows: pd.DataFrame, target: Path, *, rendering: Rendering, survey: SurveySpec) -> pd.DataFrame:
    """Stamps of manifest ``rows`` (stamp_id order) into the shard ``target``, one row group per render
    batch of ``injection.batch_size`` rows (cutouts from ``survey``); returns their SUMMARY_COLUMNS."""
    provider = provider_for(survey, rendering.seed)
    schema, step = shard_schema(), rendering.injection.batch_size
    summaries = []

    def batches() -> Iterator[pa.Table]:
        for start in range(0, len(rows), step):
            stamps = inject_batch(rows.iloc[start : start + step], provider, rendering=rendering)
            summaries.append(stamps[SUMMARY_COLUMNS])
            yield pa.Table.from_pandas(stamps, schema=schema, preserve_index=False)

    write_part(target, batches(), schema)
    return pd.concat(summaries, ignore_index=True)


def run(ctx: StageContext) -> StageResult:
    spec = ctx.spec
    manifest = layout.parts(ctx.input("manifest"), layout.MANIFEST)
    ids = np.concatenate([tables.read_table(p, columns=["stamp_id"])["stamp_id"].to_numpy() for p in manifest])
    if not ids.size:
        raise ValueError(f"{manifest[0].parent}: the manifest has no rows to stamp")
    ctx.console.print(f"  injecting {ids.size:,} stamps ({spec.stamps.size}x{spec.stamps.size}, PSF {spec.psf.model})")
    shards = list(enumerate(key_ranges(ids, spec.injection.shard_rows)))
    folder = ctx.out / layout.STAMPS
    rendering, survey = Rendering.of(spec), spec.survey

    def shard(item: tuple[int, tuple[int, int]]) -> pd.DataFrame:
        index, (first, last) = item
        target = folder / f"part-{index:05d}.parquet"
        return write_shard(shard_rows(manifest, first, last), target, rendering=rendering, survey=survey)

    spark = ctx.spark()
    with spark_job(spark, ctx.console, "injecting", ids.size) as done:
        record = pd.concat(run_tasks(spark, shards, shard), ignore_index=True)
        done()
    return StageResult(rows={"stamps": len(record)}, measured=_summary(record))


def _summary(record: pd.DataFrame) -> dict[str, object]:
    positives = record[record["label"] == 1]
    return {
        "stamps_by_split_label": {
            f"{split}/{'positive' if label else 'control'}": int(n)
            for (split, label), n in record.groupby(["split", "label"]).size().items()
        },
        "arc_snr_median": float(positives["arc_snr"].median()) if len(positives) else None,
        "magnification_median": float(positives["magnification"].median()) if len(positives) else None,
    }
