"""The Spark session factory: local mode by default, any cluster by setting the master.

The master comes from ``DARKHALO_SPARK_MASTER``, else the spec's ``engine.spark_master``, else
``local[*]``. One session is made per process and reused across stages. Before the JVM starts, a malformed master
URL, a missing Java and an unreachable master are refused as SparkError (seconds, naming the URL), where Spark itself
would retry for over a minute and never name it. In local mode the executors
import this package from the driver's path; on a cluster darkhalo must be installed where the
executors run (README: Spark), and a session whose executors run other darkhalo code is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from darkhalo.code_digest import package_fingerprint
from darkhalo.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from darkhalo.spec import EngineSpec

MASTER_ENV = "DARKHALO_SPARK_MASTER"
#: The master URLs Spark accepts: local mode, a standalone cluster (one or more masters), YARN, Kubernetes.
MASTER_URL = re.compile(
    r"local(?:\[(?:\*|[1-9][0-9]*)(?:, *[1-9][0-9]*)?\])?|local-cluster\[[1-9][0-9]*, *[1-9][0-9]*, *[1-9][0-9]*\]"
    r"|spark://[^\s:/,]+:[0-9]+(?:,[^\s:/,]+:[0-9]+)*|yarn|k8s://(?:https?://)?[^\s:/]+(?::[0-9]+)?"
)
#: Seconds to wait for a TCP connection to a cluster master before calling it unreachable.
CONNECT_TIMEOUT_S = 3.0
_LOG4J = Path(__file__).with_name("log4j2.properties")
_session: SparkSession | None = None
_session_key: tuple[str, tuple[tuple[str, str], ...]] | None = None


class SparkError(UserError):
    """Spark cannot start or reach its master here: no Java, a malformed or unreachable master, other executor code."""


def resolve_master(engine: EngineSpec | None = None) -> str:
    """The Spark master to use: environment, then spec, then ``local[*]``."""
    return os.environ.get(MASTER_ENV) or (engine.spark_master if engine else "local[*]")


def _master_source() -> str:
    """Where the master URL in use came from, for messages."""
    return MASTER_ENV if os.environ.get(MASTER_ENV) else "engine.spark_master"


def master_url_problem(master: str) -> str | None:
    """Why Spark would not accept ``master`` as a master URL (one sentence naming it and the forms it takes), or
    None; ``spec check`` and the session's start both ask."""
    if MASTER_URL.fullmatch(master):
        return None
    return f"{master!r} is not a Spark master URL; use local[*], local[N], spark://HOST:PORT, yarn or k8s://HOST:PORT"


def check_master_url(master: str) -> None:
    """Refuse a master URL that Spark would not accept (SparkError naming it and where it came from)."""
    problem = master_url_problem(master)
    if problem is not None:
        raise SparkError(f"{_master_source()}: {problem}")


def check_java() -> None:
    """Refuse to start Spark without a Java runtime where Spark's launcher looks: $JAVA_HOME/bin/java, else PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        if not os.access(Path(home) / "bin" / "java", os.X_OK):
            raise SparkError(f"JAVA_HOME={home} holds no bin/java; point JAVA_HOME at a Java 17 or 21 runtime")
    elif shutil.which("java") is None:
        raise SparkError(
            "Spark needs Java and there is none: no java on PATH and JAVA_HOME unset; install a Java 17 or 21 "
            "runtime (e.g. apt install openjdk-17-jre-headless) or set JAVA_HOME"
        )


def check_reachable(master: str) -> None:
    """Refuse a standalone or Kubernetes master that no TCP connection reaches within CONNECT_TIMEOUT_S."""
    scheme, _, rest = master.partition("://")
    if scheme not in ("spark", "k8s"):
        return
    if scheme == "k8s":
        rest = rest.partition("://")[2] or rest
        host, _, port = rest.partition(":")
        addresses = [(host, int(port or 443))]
    else:
        addresses = [(host, int(port)) for host, _, port in (a.rpartition(":") for a in rest.split(","))]
    problems = []
    for address in addresses:
        try:
            socket.create_connection(address, timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            problems.append(f"{address[0]}:{address[1]} {exc.strerror or type(exc).__name__}")
    raise SparkError(
        f"{_master_source()}: the Spark master {master} cannot be reached ({'; '.join(problems)}); "
        "start it, or fix the URL"
    )


def get_spark(engine: EngineSpec | None = None) -> SparkSession:
    """The process's Spark session, started on first use (~5 s locally).

    Workers run this interpreter (PYSPARK_PYTHON) and see this package on their path; locally
    the driver binds to loopback, the UI is off and logs are quiet. Raises SparkError when Spark cannot start
    (check_master_url, check_java, check_reachable) or its session fails to come up, naming the master.
    """
    global _session, _session_key
    master = resolve_master(engine)
    conf = dict(engine.spark_conf) if engine else {}
    key = (master, tuple(sorted(conf.items())))
    if _session is not None and _session_key == key:
        return _session
    check_master_url(master)
    check_java()
    check_reachable(master)
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
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise SparkError(f"Spark did not start with master {master}: {first}") from exc
    session.sparkContext.setLogLevel("ERROR")
    if not local:
        try:
            check_executors(session)
        except SparkError:
            session.stop()
            raise
    _session, _session_key = session, key
    return session


def check_executors(session: SparkSession) -> None:
    """Refuse a cluster whose executors run other darkhalo code than the driver (one task per core)."""

    def probe(_: object) -> tuple[str, str]:
        # pickled by value (a nested function), so it runs where darkhalo cannot be imported too
        import os
        import socket

        where = f"{socket.gethostname()}:{os.getpid()}"
        try:
            from darkhalo import code_digest as installed

            return f"{where} {Path(installed.__file__).parent}", installed.package_fingerprint()
        except Exception as exc:
            return where, f"no darkhalo ({type(exc).__name__}: {exc})"

    context = session.sparkContext
    tasks = max(2, context.defaultParallelism)
    seen = dict(context.parallelize(range(tasks), tasks).map(probe).collect())
    mine = package_fingerprint()
    other = {where: code for where, code in seen.items() if code != mine}
    if other:
        lines = "\n  ".join(f"{where}: {code}" for where, code in sorted(other.items()))
        raise SparkError(
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
