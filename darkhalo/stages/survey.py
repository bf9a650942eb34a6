"""The survey stage: the catalog every later stage reads, as ``catalog/part-*.parquet`` with exactly
the sweep columns (darkhalo.surveys.columns.SWEEP_COLUMNS).

- mock: Spark spreads the mock's row blocks over its workers; each block is written as
  ``part-<block>.parquet``, so the files are bit-identical however the work is partitioned.
- legacy: real sweep/tractor files (FITS or parquet, paths or globs) go through
  darkhalo.surveys.legacy.ingest_catalogs.

Findings: the columns and dtypes of every part against SWEEP_COLUMNS, and a unique
(RELEASE, BRICKID, OBJID) key.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from darkhalo import layout
from darkhalo.spec import GenerationSpec, MockSurvey
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.columns import KEY
from darkhalo.surveys.mock import n_blocks, write_block
from data_contracts.catalog import Catalog
from data_contracts.findings import MAX_EVIDENCE_ROWS, Finding, evidence_rows
from data_contracts.schema import arrow_schema


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """The real catalog files a legacy survey reads (none for the mock)."""
    if isinstance(spec.survey, MockSurvey):
        return []
    from darkhalo.surveys.legacy import catalog_paths

    return catalog_paths(spec.survey.catalogs)


def run(ctx: StageContext) -> StageResult:
    """Write the catalog into ``ctx.out/catalog`` and check its schema and key."""
    folder = ctx.out / layout.CATALOG
    folder.mkdir(parents=True)
    survey = ctx.spec.survey
    spark = ctx.spark()
    if isinstance(survey, MockSurvey):
        blocks = n_blocks(survey)
        task = partial(write_block, survey, ctx.spec.seed, folder)
        counts = spark.sparkContext.parallelize(range(blocks), blocks).map(task).collect()
        rows = sum(counts)
    else:  # imported here: astropy stays out of the Spark workers that write mock blocks
        from darkhalo.surveys.legacy import catalog_paths, ingest_catalogs

        rows = sum(ingest_catalogs(catalog_paths(survey.catalogs), folder).values())
    parts = layout.parts(ctx.out, layout.CATALOG)
    findings = [schema_finding({p.name: pq.read_schema(p) for p in parts})]
    repeated = spark.read.parquet(*map(str, parts)).groupBy(*KEY).count().filter("count > 1")
    findings.append(key_finding(repeated.count(), repeated.limit(MAX_EVIDENCE_ROWS).toPandas().to_dict("records")))
    return StageResult(rows={layout.CATALOG: rows}, findings=findings, measured={"parts": len(parts)})


def schema_finding(schemas: dict[str, pa.Schema]) -> Finding:
    """Every part has exactly the catalog contract's columns, in order, with their dtypes."""
    expected = arrow_schema(Catalog)
    problems = []
    for part, schema in schemas.items():
        got = {f.name: f.type for f in schema}
        for field in expected:
            if field.name not in got:
                problems.append({"part": part, "column": field.name, "problem": "missing"})
            elif _normal(got[field.name]) != field.type:
                problems.append({"part": part, "column": field.name, "problem": f"{got[field.name]} != {field.type}"})
        problems += [{"part": part, "column": c, "problem": "unexpected"} for c in got if c not in expected.names]
        have = [c for c in got if c in expected.names]
        want = [c for c in expected.names if c in got]
        moved = [w for h, w in zip(have, want, strict=True) if h != w]
        if moved:
            problems.append({"part": part, "column": moved[0], "problem": "out of order"})
    evidence, count = evidence_rows(problems)
    return Finding(
        id="schema:catalog",
        title="catalog columns and dtypes are the sweep columns",
        passed=bool(schemas) and not problems,
        measured=count if schemas else "no parts",
        threshold=0,
        detail=f"{len(schemas)} part(s) checked against {len(expected)} columns",
        evidence=evidence,
        n_offending=count,
    )


def _normal(arrow_type: pa.DataType) -> pa.DataType:
    """Large strings count as strings (the same values, 64-bit offsets)."""
    return pa.string() if arrow_type == pa.large_string() else arrow_type


def key_finding(n_repeated: int, examples: list[dict]) -> Finding:
    """(RELEASE, BRICKID, OBJID) is unique; ``n_repeated`` keys occur more than once (``examples`` of them)."""
    return Finding(
        id="schema:catalog:key",
        title="(RELEASE, BRICKID, OBJID) is unique",
        passed=n_repeated == 0,
        measured=n_repeated,
        threshold=0,
        evidence=tuple(examples[:MAX_EVIDENCE_ROWS]),
        n_offending=n_repeated,
    )
