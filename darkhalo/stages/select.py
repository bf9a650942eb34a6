"""The select stage: the survey catalog, validated at the edge, cut to the parent sample in Spark SQL.

1. Great Expectations validates the catalog (darkhalo.surveys.edge_validation); its result and Data Docs go to
   ``select/validation/``. Failing rows go to ``select/quarantine.parquet`` with their reasons when
   ``selection.quarantine_bad_rows``; otherwise the stage fails naming the first of them.
2. The variant's SQL (``darkhalo/sql/*.sql``) runs over a temporary view of the clean rows, every
   threshold bound as a named parameter from the spec.
3. Hosts within ``known_lens_radius_arcsec`` of a known lens are flagged (KNOWN_LENS, KNOWN_LENS_NAME).
4. ``select/counts.json`` records the row balance. The stage's finding is the edge validation's; its
gate (darkhalo.audit.judges.judge_parent_sample) checks the written parent sample against its
pandera contract and reconciles the rows: input = selected + rejected_by_cuts + quarantined.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F
from pyspark.sql import types as T

from darkhalo import layout, tables
from darkhalo.artifacts import atomic_file, write_json
from darkhalo.progress import spark_job
from darkhalo.sparkio import read_parquet, spark_schema
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.columns import KEY, SWEEP_COLUMNS
from darkhalo.surveys.edge_validation import edge_finding, validate_catalog
from darkhalo.surveys.known_lenses import known_lens_path, with_known_lenses
from data_contracts.catalog import Catalog

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from darkhalo.spec import GenerationSpec, SelectionSpec

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SQL_FILES = {
    "v3_color_relaxed": "v3_color_relaxed.sql",
    "desi_lrg_south": "desi_lrg.sql",
    "desi_lrg_north": "desi_lrg.sql",
}
VIEW = "catalog"
PART_ROWS = 1_000_000


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """Files outside the run this stage reads: the known-lens table and the variant's SQL."""
    return [known_lens_path(spec.selection.known_lenses), SQL_DIR / SQL_FILES[spec.selection.variant]]


def sql_text(variant: str) -> str:
    """The SQL text of a selection variant, as shipped in the package."""
    return (SQL_DIR / SQL_FILES[variant]).read_text()


def sql_parameters(text: str, selection: SelectionSpec) -> dict[str, Any]:
    """The named parameters ``:name`` the SQL uses, valued from the validated spec section.

    ``maskbits_veto`` (a list of bit numbers) is bound as its bit mask.
    """
    code = re.sub(r"--[^\n]*", "", text)
    names = sorted(set(re.findall(r"(?<![\w:]):([A-Za-z_]\w*)", code)))
    values = selection.model_dump()
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"SQL for {selection.variant} uses parameters the spec lacks: {', '.join(missing)}")
    args = {n: values[n] for n in names}
    if "maskbits_veto" in args:
        args["maskbits_veto"] = sum(1 << int(bit) for bit in args["maskbits_veto"])
    return args


def select_rows(spark: SparkSession, catalog: DataFrame, selection: SelectionSpec) -> DataFrame:
    """The catalog rows inside the variant's cuts (the catalog's columns only), via Spark SQL."""
    catalog.createOrReplaceTempView(VIEW)
    text = sql_text(selection.variant)
    return spark.sql(text, args=sql_parameters(text, selection)).select(*catalog.columns)


def run(ctx: StageContext) -> StageResult:
    """Validate the survey catalog, select the parent sample, flag known lenses, check the contract."""
    selection = ctx.spec.selection
    parts = layout.parts(ctx.input("survey"), layout.CATALOG)
    catalog, origin = read_catalog_parts(parts)
    n_input = len(catalog)
    with ctx.track("validate catalog (Great Expectations)", None, unit="rows"):  # elapsed time only: GE
        edge = validate_catalog(catalog, ctx.out / layout.VALIDATION)  # runs the whole frame at once
    edge_check, bad = edge_finding(edge, origin, catalog, selection.quarantine_bad_rows)
    measured: dict[str, Any] = {"input": n_input, "edge_expectations": edge.n_expectations}
    if not edge_check.passed:
        return StageResult(rows={"catalog": n_input}, findings=[edge_check], measured=measured)

    if bad:
        quarantine = catalog.loc[bad].assign(
            SOURCE_FILE=origin.loc[bad, "file"].to_numpy(),
            SOURCE_ROW=origin.loc[bad, "row"].to_numpy(),
            REASON=["; ".join(edge.row_reasons[i]) for i in bad],
        )
        _write_parquet(quarantine, ctx.out / layout.QUARANTINE)

    spark = ctx.spark()
    clean = clean_catalog(spark, parts, catalog.loc[bad, list(KEY)])
    with spark_job(spark, ctx.console, "read catalog", n_input, unit="rows"):
        n_clean = clean.count()
    with spark_job(spark, ctx.console, f"select {selection.variant}", n_clean, unit="rows"):
        selected = select_rows(spark, clean, selection).toPandas()
    selected = with_known_lenses(selected, known_lens_path(selection.known_lenses), selection.known_lens_radius_arcsec)
    _write_parts(selected, ctx.out / layout.PARENT_SAMPLE)

    counts = {
        "input": n_input,
        "selected": len(selected),
        "rejected_by_cuts": n_clean - len(selected),
        "quarantined": len(bad),
    }
    write_json(ctx.out / layout.COUNTS, counts)
    measured |= counts | {"known_lenses_flagged": int(selected["KNOWN_LENS"].sum())}
    rows = {"catalog": n_input, "quarantine": len(bad), "parent_sample": len(selected)}
    return StageResult(rows=rows, findings=[edge_check], measured=measured)


def clean_catalog(spark: SparkSession, parts: list[Path], quarantined: pd.DataFrame) -> DataFrame:
    """The catalog parts read by Spark (in parallel), less every row whose key is quarantined.

    A quarantined key is never shared with a clean row (a repeated key quarantines all its rows), so
    dropping by key (null-safe) drops exactly the quarantined rows.
    """
    catalog = read_parquet(spark, parts).select(*SWEEP_COLUMNS)
    if quarantined.empty:
        return catalog
    key_schema = T.StructType([f for f in spark_schema(Catalog).fields if f.name in KEY])
    keys = spark.createDataFrame(quarantined[list(KEY)], schema=key_schema)
    same_key = [catalog[k].eqNullSafe(keys[k]) for k in KEY]
    return catalog.join(F.broadcast(keys), on=same_key, how="left_anti")


def read_catalog_parts(parts: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The catalog parts as one frame (RangeIndex) and, per row, its source file and row in it."""
    frames = [tables.read_table(p).to_pandas() for p in parts]
    lengths = [len(f) for f in frames]
    origin = pd.DataFrame(
        {
            "file": np.repeat(np.array([p.name for p in parts], dtype=object), lengths),
            "row": np.concatenate([np.arange(n) for n in lengths]),
        }
    )
    return pd.concat(frames, ignore_index=True), origin


def _write_parts(frame: pd.DataFrame, folder: Path) -> None:
    """``folder/part-NNNNN.parquet`` of at most PART_ROWS rows each (one, empty, for no rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, max(len(frame), 1), PART_ROWS)):
        _write_parquet(frame.iloc[start : start + PART_ROWS], folder / f"part-{index:05d}.parquet")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_file(path, "wb") as handle:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), handle)
