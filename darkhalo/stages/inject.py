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

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from darkhalo import layout, tables
from darkhalo.injection import Rendering, stamp_shard
from darkhalo.progress import spark_job
from darkhalo.sparkio import key_ranges, run_tasks
from darkhalo.spec import GenerationSpec, LegacySurvey
from darkhalo.stages.base import StageContext, StageResult


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """Folders outside the run this stage reads: a legacy survey's cutout folder and the PSFEx models of the
    ``pixelized`` PSF (stamped by their listings, so an added or changed file re-runs the stage)."""
    survey, psf = spec.survey, spec.psf
    cutouts = [survey.cutouts.dir] if isinstance(survey, LegacySurvey) and survey.cutouts and survey.cutouts.dir else []
    return cutouts + ([psf.psfex_dir] if psf.model == "pixelized" and psf.psfex_dir else [])


def run(ctx: StageContext) -> StageResult:
    spec = ctx.spec
    manifest = layout.parts(ctx.input("manifest"), layout.MANIFEST)
    ids = np.concatenate([tables.read_table(p, columns=["stamp_id"])["stamp_id"].to_numpy() for p in manifest])
    if not ids.size:
        raise ValueError(f"{manifest[0].parent}: the manifest has no rows to stamp")
    ctx.console.print(f"  injecting {ids.size:,} stamps ({spec.stamps.size}x{spec.stamps.size}, PSF {spec.psf.model})")
    shards = list(enumerate(key_ranges(ids, spec.injection.shard_rows)))
    # a module-level task: Spark's Python workers import darkhalo.injection, not the stages
    task = partial(
        stamp_shard, manifest=manifest, folder=ctx.out / layout.STAMPS, rendering=Rendering.of(spec), survey=spec.survey
    )

    spark = ctx.spark()
    with spark_job(spark, ctx.console, "injecting", ids.size) as done:
        record = pd.concat(run_tasks(spark, shards, task), ignore_index=True)
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
