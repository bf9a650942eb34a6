"""The survey stage: the catalog every later stage reads, as ``catalog/part-*.parquet`` with exactly
the sweep columns (darkhalo.surveys.columns.SWEEP_COLUMNS).

- mock: Spark spreads the mock's row blocks over its workers (a bar follows them on a terminal); each
  block is written as ``part-<block>.parquet``, so the files are bit-identical however the work is
  partitioned.
- legacy: real sweep/tractor files (FITS or parquet, paths or globs) go through
  darkhalo.surveys.legacy.ingest_catalogs.
- A mock sky with ``survey.sky_lenses`` also gets its truth table, ``sky_lenses.parquet``: the lens and
  source of every catalog row that is a sky lens (darkhalo.surveys.sky_lenses), read part by part.

Its gate (darkhalo.audit.judges.judge_catalog): the columns, order and dtypes of every part against
the catalog contract, and a unique (RELEASE, BRICKID, OBJID) key; the truth table's contract, and that
each of its rows is a catalog row.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from darkhalo import layout, tables
from darkhalo.progress import spark_job
from darkhalo.spec import GenerationSpec, MockSurvey, SkyLenses
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys import sky_lenses
from darkhalo.surveys.mock import n_blocks, write_block
from data_contracts.schema import arrow_schema
from data_contracts.sky_lenses import SkyLensTruth


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
    counts, measured = {layout.CATALOG: rows}, {"parts": len(layout.parts(ctx.out, layout.CATALOG))}
    if isinstance(survey, MockSurvey) and survey.sky_lenses is not None:
        counts["sky_lenses"] = measured["sky_lenses"] = write_truth(ctx.out, ctx.spec.seed, survey.sky_lenses)
    return StageResult(rows=counts, measured=measured)


def write_truth(out: Path, seed: int, lenses: SkyLenses) -> int:
    """Write ``out/sky_lenses.parquet``: the truth rows (darkhalo.surveys.sky_lenses.truth_table) of the sky lenses in
    the catalog parts of ``out``, in order; returns their number."""
    columns = sky_lenses.CATALOG_COLUMNS
    parts = layout.parts(out, layout.CATALOG)
    truth = pd.concat(
        [sky_lenses.truth_table(tables.read_table(p, columns).to_pandas(), seed, lenses) for p in parts],
        ignore_index=True,
    )
    pq.write_table(
        pa.Table.from_pandas(truth, schema=arrow_schema(SkyLensTruth), preserve_index=False), out / layout.SKY_LENSES
    )
    return len(truth)
