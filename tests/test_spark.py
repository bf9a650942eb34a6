"""The Spark session factory: local by default, overridable, reused, workers see the package."""

from __future__ import annotations

import pytest

from darkhalo.spark import MASTER_ENV, get_spark, resolve_master
from darkhalo.spec import EngineSpec


def test_master_comes_from_environment_then_spec_then_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_ENV, raising=False)
    assert resolve_master(None) == "local[*]"
    assert resolve_master(EngineSpec(spark_master="spark://head:7077")) == "spark://head:7077"
    monkeypatch.setenv(MASTER_ENV, "local[1]")
    assert resolve_master(EngineSpec(spark_master="spark://head:7077")) == "local[1]"


@pytest.mark.spark
def test_one_local_session_is_reused_and_quiet(spark) -> None:
    assert get_spark() is spark
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.ui.enabled") == "false"
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert spark.sparkContext.master.startswith("local")


@pytest.mark.spark
def test_workers_run_this_interpreter_with_the_package_importable(spark) -> None:
    import sys

    def probe(batches):
        import sys as worker_sys

        import darkhalo

        for batch in batches:
            yield batch.assign(python=worker_sys.executable, version=darkhalo.__version__)

    rows = spark.range(2).mapInPandas(probe, "id long, python string, version string").collect()
    import darkhalo

    assert {r.python for r in rows} == {sys.executable}
    assert {r.version for r in rows} == {darkhalo.__version__}
