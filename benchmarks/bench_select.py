"""Parent-sample selection: Spark SQL (local[*], the stage's SQL) against the same cuts in pandas.

Same process, same synthetic sweep catalog written once as parquet (tests/catalogs.py), both timed
from reading the parquet to the selected row count; best of ``REPEATS`` after a warm-up. Rows per
second for each and their ratio (> 1: Spark is faster). Sizes from DARKHALO_BENCH_SELECT_ROWS
(comma-separated, default 1,000,000) to see how cost grows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from catalogs import synthetic_catalog, write_catalog

from darkhalo.spark import get_spark
from darkhalo.spec import DesiLrg, SelectionSpec, V3ColorRelaxed
from darkhalo.stages.select import select_rows
from data_contracts.parent_sample import cuts_mask

REPEATS = 3
SELECTIONS = {
    "v3_color_relaxed": V3ColorRelaxed(variant="v3_color_relaxed"),
    "desi_lrg_south": DesiLrg(variant="desi_lrg_south"),
}


def _best(fn: Callable[[], int]) -> tuple[float, int]:
    fn()  # warm-up (JIT, caches, Spark plan)
    times, count = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - started)
    return min(times), count


def _compare(spark: SparkSession, folder: Path, selection: SelectionSpec, n: int) -> dict:
    """Spark SQL and pandas on the same parquet folder: rows/s each and the speed ratio."""
    dump = selection.model_dump()
    spark_s, spark_n = _best(lambda: select_rows(spark, spark.read.parquet(str(folder)), selection).count())
    pandas_s, pandas_n = _best(lambda: int(cuts_mask(pd.read_parquet(folder), dump).sum()))
    if spark_n != pandas_n:
        raise AssertionError(f"{selection.variant}: Spark selected {spark_n} rows, pandas {pandas_n}")
    name = f"{selection.variant}_{n}"
    return {
        f"{name}_selected": spark_n,
        f"{name}_spark_rows_per_s": round(n / spark_s),
        f"{name}_pandas_rows_per_s": round(n / pandas_s),
        f"{name}_spark_over_pandas": round(pandas_s / spark_s, 3),
    }


def main() -> dict:
    sizes = [int(s) for s in os.environ.get("DARKHALO_BENCH_SELECT_ROWS", "1000000").split(",")]
    spark = get_spark()
    results: dict = {"peer": "pandas (data_contracts.parent_sample.cuts_mask)", "cores": os.cpu_count()}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "catalog"
            write_catalog(synthetic_catalog(n, seed=1), folder, parts=max(2, n // 250_000))
            for selection in SELECTIONS.values():
                results |= _compare(spark, folder, selection, n)
    return results


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
