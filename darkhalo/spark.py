"""The Spark session factory: local mode by default, any cluster by setting the master.

The master comes from ``DARKHALO_SPARK_MASTER``, else the spec's ``engine.spark_master``, else
``local[*]``. One session is made per process and reused across stages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from darkhalo.spec import EngineSpec

MASTER_ENV = "DARKHALO_SPARK_MASTER"
_LOG4J = Path(__file__).with_name("log4j2.properties")
_session: SparkSession | None = None
_session_key: tuple[str, tuple[tuple[str, str], ...]] | None = None


def resolve_master(engine: EngineSpec | None = None) -> str:
    """The Spark master to use: environment, then spec, then ``local[*]``."""
    return os.environ.get(MASTER_ENV) or (engine.spark_master if engine else "local[*]")


def get_spark(engine: EngineSpec | None = None) -> SparkSession:
    """The process's Spark session, started on first use (~5 s locally).

    Workers run this interpreter (PYSPARK_PYTHON) and see this package on their path; locally
    the driver binds to loopback, the UI is off and logs are quiet.
    """
    global _session, _session_key
    master = resolve_master(engine)
    conf = dict(engine.spark_conf) if engine else {}
    key = (master, tuple(sorted(conf.items())))
    if _session is not None and _session_key == key:
        return _session
    if _session is not None:
        _session.stop()
        _session = None

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    package_root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    local = master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import SparkSession

    java_opts = f"-Dlog4j2.configurationFile=file:{_LOG4J}"
    builder = (
        SparkSession.builder.master(master)
        .appName("darkhalo")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
    )
    if local:
        builder = (
            builder.config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", str(max(2, 2 * (os.cpu_count() or 1))))
        )
    for name, value in conf.items():
        builder = builder.config(name, value)
    _session = builder.getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    _session_key = key
    return _session


def stop_spark() -> None:
    """Stop the process's session if one was started."""
    global _session, _session_key
    if _session is not None:
        _session.stop()
    _session = None
    _session_key = None
