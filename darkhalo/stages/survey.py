"""The survey stage: the catalog every later stage reads, as ``catalog/part-*.parquet`` with exactly
the sweep columns (darkhalo.surveys.columns.SWEEP_COLUMNS).

- mock: Spark spreads the mock's row blocks over its workers (a bar follows them on a terminal); each
  block is written as ``part-<block>.parquet``, so the files are bit-identical however the work is
  partitioned.
- legacy: real sweep/tractor files (FITS or parquet, paths or globs) go through
  darkhalo.surveys.legacy.ingest_catalogs.

Its gate (darkhalo.audit.judges.judge_catalog): the columns, order and dtypes of every part against
the catalog contract, and a unique (RELEASE, BRICKID, OBJID) key.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from darkhalo import layout
from darkhalo.progress import spark_job
from darkhalo.spec import GenerationSpec, MockSurvey
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.mock import n_blocks, write_block


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """The real catalog files a legacy survey reads (none for the mock)."""
    if isinstance(spec.survey, MockSurvey):
        return []
    from darkhalo.surveys.legacy import catalog_paths

    return catalog_paths(spec.survey.catalogs)


def run(ctx: StageContext) -> StageResult:
    """Write the catalog into ``ctx.out/catalog``."""
    folder = ctx.out / layout.CATALOG
    folder.mkdir(parents=True)
    survey = ctx.spec.survey
    spark = ctx.spark()
    if isinstance(survey, MockSurvey):
        blocks = n_blocks(survey)
        task = partial(write_block, survey, ctx.spec.seed, folder)
        with spark_job(spark, ctx.console, "write mock catalog", survey.n_objects, unit="rows"):
            rows = sum(spark.sparkContext.parallelize(range(blocks), blocks).map(task).collect())
    else:  # imported here: astropy stays out of the Spark workers that write mock blocks
        from darkhalo.surveys.legacy import catalog_paths, ingest_catalogs

        rows = sum(ingest_catalogs(catalog_paths(survey.catalogs), folder).values())
    return StageResult(rows={layout.CATALOG: rows}, measured={"parts": len(layout.parts(ctx.out, layout.CATALOG))})
