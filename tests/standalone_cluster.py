"""A Spark standalone cluster on loopback for the tests: a master and workers started with the Spark that the pyspark
package ships (its Master and Worker classes through ``bin/spark-class``), each worker importing darkhalo from its
own folder where the package's wheel is installed, as a real cluster's workers would.

Ports are free loopback ports; every process has its own process group and is killed when the block ends; start-up
waits at most ``START_S`` seconds for the workers to register.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyspark

REPO = Path(__file__).resolve().parent.parent
SPARK_HOME = Path(pyspark.__file__).resolve().parent
START_S = 90
#: What a wheel needs from the repository.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "darkhalo", "data_contracts")


@dataclass
class Cluster:
    """A running cluster: its master URL, its workers' processes (by index) and the folder of its logs."""

    url: str
    workers: list[subprocess.Popen]
    logs: Path

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker and everything it started (its executors and their Python workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()


def build_wheel(out: Path) -> Path:
    """darkhalo's wheel, built from a clean copy of the repository's package files into ``out``."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in WHEEL_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source)]
    command += ["-w", str(out)]
    subprocess.run(command, check=True, capture_output=True, cwd=out)
    return next(out.glob("darkhalo-*.whl"))


def install(wheel: Path, site: Path) -> Path:
    """The wheel installed into the folder ``site`` (no dependencies: they come from this interpreter)."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(command, check=True, capture_output=True)
    return site


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class(name: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("wb") as handle:
        command = [str(SPARK_HOME / "bin" / "spark-class"), name, *args]
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def standalone_cluster(root: Path, sites: list[Path], cores: int = 1, memory: str = "3g") -> Iterator[Cluster]:
    """A master and one worker per folder of ``sites`` (its PYTHONPATH), ``cores`` cores each, on loopback."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    env.pop("PYTHONPATH", None)
    port = _free_port()
    master = _spark_class(
        "org.apache.spark.deploy.master.Master",
        ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(_free_port())],
        root / "master.log",
        env,
    )
    url = f"spark://127.0.0.1:{port}"
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + START_S
        for i, site in enumerate(sites):
            args = [url, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory]
            args += ["--webui-port", str(_free_port()), "--work-dir", str(root / f"work-{i}")]
            workers.append(
                _spark_class(
                    "org.apache.spark.deploy.worker.Worker",
                    args,
                    root / f"worker-{i}.log",
                    {**env, "PYTHONPATH": str(site)},
                )
            )
        while (root / "master.log").read_text(errors="replace").count("Registering worker") < len(sites):
            for process in (master, *workers):
                if process.poll() is not None:
                    raise RuntimeError(f"a cluster process exited early; logs in {root}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(sites)} workers did not register within {START_S} s; logs in {root}")
            time.sleep(0.2)
        yield Cluster(url, workers, root)
    finally:
        for process in (*workers, master):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
