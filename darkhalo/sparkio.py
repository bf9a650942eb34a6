"""Spark <-> parquet helpers shared by the stages: Spark schemas of the contracts, deterministic shards."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from darkhalo.artifacts import atomic_file
from data_contracts.schema import Contract, arrow_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


def spark_schema(contract: Contract | pa.Schema) -> StructType:
    """The Spark schema of a contract (its ``arrow_schema``) or of an Arrow schema; no session needed."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(contract if isinstance(contract, pa.Schema) else arrow_schema(contract))


def write_sorted_parquet(frame: DataFrame, out: Path, key: str, rows_per_part: int, n_rows: int) -> list[Path]:
    """Write ``frame`` range-partitioned and sorted by ``key`` as ``out/part-00000.parquet`` ...

    Rows are ordered by ``key`` within and across files and each part is re-encoded by pyarrow
    (``canonical_parquet``), so a rerun on the same input, in any process, writes the same bytes;
    Spark's bookkeeping files are removed and its part names replaced by stable ones.
    """
    n_parts = max(1, -(-n_rows // rows_per_part))
    staging = out.with_name(out.name + ".spark")
    frame.repartitionByRange(n_parts, key).sortWithinPartitions(key).write.mode("overwrite").parquet(str(staging))
    files = sorted(staging.glob("part-*.parquet"))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, path in enumerate(files):
        target = out / f"part-{index:05d}.parquet"
        canonical_parquet(path, target)
        written.append(target)
    shutil.rmtree(staging)
    return written


def canonical_parquet(source: Path, target: Path) -> None:
    """Re-encode a Spark-written parquet file with pyarrow, row group by row group, atomically.

    parquet-mr lists each column chunk's encodings in the iteration order of a Java HashSet, which
    changes from one JVM to the next: the same rows written by two processes differ in their footer
    bytes. pyarrow writes the same rows as the same bytes.
    """
    spark_file = pq.ParquetFile(source)
    with atomic_file(target, "wb") as handle, pq.ParquetWriter(handle, spark_file.schema_arrow) as writer:
        for group in range(spark_file.num_row_groups):
            writer.write_table(spark_file.read_row_group(group))
