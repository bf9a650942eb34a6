"""The Spark session factory: local mode by default, any cluster by setting the master.

The master comes from ``DARKHALO_SPARK_MASTER``, else the spec's ``engine.spark_master``, else
``local[*]``. One session is made per process and reused across stages. In local mode the executors
import this package from the driver's path; on a cluster darkhalo must be installed where the
executors run (README: Spark), and a session whose executors run other darkhalo code is refused.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from darkhalo.spec import EngineSpec

MASTER_ENV = "DARKHALO_SPARK_MASTER"
_LOG4J = Path(__file__).with_name("log4j2.properties")
#: The packages whose code the driver and every executor must share.
PACKAGES = ("darkhalo", "data_contracts")
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
    )
    if local:
        builder = (
            builder.config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", str(max(2, 2 * (os.cpu_count() or 1))))
        )
    for name, value in conf.items():
        builder = builder.config(name, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if not local:
        try:
            check_executors(session)
        except RuntimeError:
            session.stop()
            raise
    _session, _session_key = session, key
    return session


def code_fingerprint() -> str:
    """This process's darkhalo: its version and the sha256 (12 hex digits) of every file of PACKAGES as installed
    (compiled caches left out), so two installs of the same code agree and any edit shows."""
    from darkhalo import __version__

    digest = hashlib.sha256()
    for name in PACKAGES:
        root = Path(__import__(name).__file__).resolve().parent
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{name}/{path.relative_to(root).as_posix()}".encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def check_executors(session: SparkSession) -> None:
    """Refuse a cluster whose executors run other darkhalo code than the driver (one task per core)."""

    def probe(_: object) -> tuple[str, str]:
        # pickled by value (a nested function), so it runs where darkhalo cannot be imported too
        import os
        import socket

        where = f"{socket.gethostname()}:{os.getpid()}"
        try:
            from darkhalo import spark as installed

            return f"{where} {Path(installed.__file__).parent}", installed.code_fingerprint()
        except Exception as exc:
            return where, f"no darkhalo ({type(exc).__name__}: {exc})"

    context = session.sparkContext
    tasks = max(2, context.defaultParallelism)
    seen = dict(context.parallelize(range(tasks), tasks).map(probe).collect())
    mine = code_fingerprint()
    other = {where: code for where, code in seen.items() if code != mine}
    if other:
        lines = "\n  ".join(f"{where}: {code}" for where, code in sorted(other.items()))
        raise RuntimeError(
            f"the Spark executors run other darkhalo code than the driver ({mine}):\n  {lines}\n"
            "install the driver's wheel on every worker (README: Spark)"
        )


def stop_spark() -> None:
    """Stop the process's session if one was started."""
    global _session, _session_key
    if _session is not None:
        _session.stop()
    _session = None
    _session_key = None
