"""Spark <-> parquet helpers shared by the stages: Spark schemas of the contracts, deterministic shards,
work spread over Spark tasks that write their own parts (no row passes through the JVM)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhalo.artifacts import atomic_file
from darkhalo.removal import remove_tree
from data_contracts.schema import Contract, arrow_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

Item = TypeVar("Item")
Result = TypeVar("Result")

#: The characters Hadoop's path globbing gives a meaning to (its GlobPattern), and its escape character.
_HADOOP_GLOB = re.compile(r"([\\*?\[\]{}])")


def spark_schema(contract: Contract | pa.Schema) -> StructType:
    """The Spark schema of a contract (its ``arrow_schema``) or of an Arrow schema; no session needed."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(contract if isinstance(contract, pa.Schema) else arrow_schema(contract))


def hadoop_literal(path: Path) -> str:
    """``path`` as a Hadoop path string that names exactly that file: Hadoop reads a path holding ``* ? [ ] { }``
    as a glob, so a run folder named ``runs [a]`` would read ``runs a``; each such character is escaped."""
    return _HADOOP_GLOB.sub(r"\\\1", str(path))


def read_parquet(spark: SparkSession, paths: Sequence[Path]) -> DataFrame:
    """The parquet files ``paths`` (each taken literally, never as a pattern) as one Spark DataFrame."""
    return spark.read.parquet(*[hadoop_literal(p) for p in paths])


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
    remove_tree(staging, out.parent)
    return written


def canonical_parquet(source: Path, target: Path) -> None:
    """Re-encode a Spark-written parquet file with pyarrow, row group by row group, atomically.

    parquet-mr lists each column chunk's encodings in the iteration order of a Java HashSet, which
    changes from one JVM to the next: the same rows written by two processes differ in their footer
    bytes. pyarrow writes the same rows as the same bytes.
    """
    spark_file = pq.ParquetFile(source)
    groups = (spark_file.read_row_group(group) for group in range(spark_file.num_row_groups))
    write_part(target, groups, spark_file.schema_arrow)


def write_part(target: Path, tables: Iterable[pa.Table], schema: pa.Schema) -> None:
    """Write ``tables`` as the row groups of one parquet file with pyarrow (the same rows give the same
    bytes), atomically; one table is held at a time."""
    with atomic_file(target, "wb") as handle, pq.ParquetWriter(handle, schema) as writer:
        for table in tables:
            writer.write_table(table)


def key_ranges(keys: np.ndarray, rows_per_part: int) -> list[tuple[int, int]]:
    """The canonical parts of rows with unique integer ``keys``: the (first, last) key of each run of
    ``rows_per_part`` rows in key order, whatever order or partitioning the keys come in."""
    ordered = np.sort(np.asarray(keys))
    starts = range(0, len(ordered), rows_per_part)
    return [(int(ordered[i]), int(ordered[min(i + rows_per_part, len(ordered)) - 1])) for i in starts]


def run_tasks(spark: SparkSession, items: Sequence[Item], work: Callable[[Item], Result]) -> list[Result]:
    """``work(item)`` for each item, one Spark task per item, results in the items' order. Each task's
    torch uses the task's cores (spark.task.cpus): more threads than cores spin ~10x the CPU time."""
    if not items:
        return []

    def task(item: Item) -> Result:
        import torch
        from pyspark import TaskContext

        context = TaskContext.get()
        torch.set_num_threads(context.cpus() if context is not None else 1)
        return work(item)

    return spark.sparkContext.parallelize(list(items), len(items)).map(task).collect()
