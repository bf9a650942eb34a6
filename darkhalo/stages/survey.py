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

import glob
import io
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from darkhalo.artifacts import atomic_file
from darkhalo.spec import GenerationSpec, MockSurvey
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.columns import KEY, SWEEP_COLUMNS
from darkhalo.surveys.mock import mock_catalog, n_blocks
from data_contracts.findings import MAX_EVIDENCE_ROWS, Finding, evidence_rows

CATALOG = "catalog"
ARROW_TYPES = {"str": pa.string(), "float32": pa.float32(), "float64": pa.float64()} | {
    f"int{bits}": getattr(pa, f"int{bits}")() for bits in (16, 32, 64)
}


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """The real catalog files a legacy survey reads (none for the mock)."""
    return [] if isinstance(spec.survey, MockSurvey) else catalog_paths(spec.survey.catalogs)


def catalog_paths(patterns: list[str]) -> list[Path]:
    """Expand paths and globs, in order; a pattern that matches nothing is an error naming it."""
    paths: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"survey.catalogs: {pattern!r} matches no file")
        paths.extend(Path(p) for p in matched)
    return paths


def write_block(survey: MockSurvey, seed: int, folder: Path, block: int) -> int:
    """Write one mock block as ``part-<block>.parquet`` (atomically); returns its row count."""
    frame = mock_catalog(survey, seed, block)
    table = pa.Table.from_pandas(frame, schema=arrow_schema(), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with atomic_file(folder / f"part-{block:05d}.parquet", "wb") as handle:
        handle.write(buffer.getvalue())
    return len(frame)


def arrow_schema() -> pa.Schema:
    """The Arrow schema of SWEEP_COLUMNS."""
    return pa.schema([(name, ARROW_TYPES[dtype]) for name, dtype in SWEEP_COLUMNS.items()])


def run(ctx: StageContext) -> StageResult:
    """Write the catalog into ``ctx.out/catalog`` and check its schema and key."""
    folder = ctx.out / CATALOG
    folder.mkdir(parents=True)
    survey = ctx.spec.survey
    spark = ctx.spark()
    if isinstance(survey, MockSurvey):
        blocks = n_blocks(survey)
        task = partial(write_block, survey, ctx.spec.seed, folder)
        counts = spark.sparkContext.parallelize(range(blocks), blocks).map(task).collect()
        rows = sum(counts)
    else:
        from darkhalo.surveys.legacy import ingest_catalogs

        rows = sum(ingest_catalogs(catalog_paths(survey.catalogs), folder).values())
    parts = sorted(folder.glob("part-*.parquet"))
    findings = [schema_finding({p.name: pq.read_schema(p) for p in parts})]
    repeated = spark.read.parquet(*map(str, parts)).groupBy(*KEY).count().filter("count > 1")
    findings.append(key_finding(repeated.count(), repeated.limit(MAX_EVIDENCE_ROWS).toPandas().to_dict("records")))
    return StageResult(rows={CATALOG: rows}, findings=findings, measured={"parts": len(parts)})


def schema_finding(schemas: dict[str, pa.Schema]) -> Finding:
    """Every part has exactly SWEEP_COLUMNS, in order, with their dtypes."""
    expected = arrow_schema()
    problems = []
    for part, schema in schemas.items():
        got = {f.name: f.type for f in schema}
        for field in expected:
            if field.name not in got:
                problems.append({"part": part, "column": field.name, "problem": "missing"})
            elif _normal(got[field.name]) != field.type:
                problems.append({"part": part, "column": field.name, "problem": f"{got[field.name]} != {field.type}"})
        problems += [{"part": part, "column": c, "problem": "unexpected"} for c in got if c not in expected.names]
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
