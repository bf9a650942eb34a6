"""A real Spark standalone cluster (tests/standalone_cluster.py: a master and two one-core workers on loopback, each
importing darkhalo from its own install of the wheel): the tiny chain through survey, select, manifest and inject
installs the same content (tests/test_crash_safety.py's hashes) as local mode; a worker killed during inject is
survived by Spark's retry with the output still the same; executors running other darkhalo code are refused by name.

The cluster runs are child processes (``crash_run.py ROOT survey:inject`` with DARKHALO_SPARK_MASTER set), so this
process's local session is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crash_run import tiny_spec
from rich.console import Console
from standalone_cluster import REPO, build_wheel, install, standalone_cluster
from test_crash_safety import content

from darkhalo.runner import run_generation

pytestmark = pytest.mark.spark

CHAIN = ("survey", "select", "manifest", "inject")
#: Longest a cluster run of the tiny chain may take (it takes about a minute on 2 cores).
RUN_S = 600


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def local_run(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chain in local mode (this process's session)."""
    root = tmp_path_factory.mktemp("local")
    spec = tiny_spec()
    run_generation(spec, root, stop=CHAIN[-1], console=Console(quiet=True))
    return root / spec.generation


def _cluster_run(url: str, root: Path) -> subprocess.Popen:
    """The tiny chain as a child driver on the cluster at ``url`` (its own process group), stderr in root/driver.log."""
    env = {
        **os.environ,
        "DARKHALO_SPARK_MASTER": url,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
    }
    root.mkdir(parents=True, exist_ok=True)
    with (root / "driver.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "crash_run.py"), str(root), f"{CHAIN[0]}:{CHAIN[-1]}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            start_new_session=True,
        )


def _finished(driver: subprocess.Popen, root: Path) -> Path:
    assert driver.wait(timeout=RUN_S) == 0, (root / "driver.log").read_text(errors="replace")
    return root / tiny_spec().generation


def _same_outputs(run_dir: Path, local_dir: Path) -> None:
    for stage in CHAIN:
        assert content(stage, run_dir / stage) == content(stage, local_dir / stage), stage


def test_the_chain_on_a_standalone_cluster_installs_what_local_mode_does(
    wheel: Path, local_run: Path, tmp_path: Path
) -> None:
    sites = [install(wheel, tmp_path / f"site-{i}") for i in range(2)]
    with standalone_cluster(tmp_path / "cluster", sites) as cluster:
        run_dir = _finished(_cluster_run(cluster.url, tmp_path / "run"), tmp_path / "run")
        executors = list((tmp_path / "cluster").glob("work-*/app-*/*/stderr"))
    _same_outputs(run_dir, local_run)
    assert {p.parts[-4] for p in executors} == {"work-0", "work-1"}, "both workers ran executors"


def test_a_worker_killed_during_inject_is_survived_with_the_same_outputs(
    wheel: Path, local_run: Path, tmp_path: Path
) -> None:
    sites = [install(wheel, tmp_path / f"site-{i}") for i in range(2)]
    with standalone_cluster(tmp_path / "cluster", sites) as cluster:
        driver = _cluster_run(cluster.url, tmp_path / "run")
        log = tmp_path / "run" / "driver.log"
        deadline = time.monotonic() + RUN_S
        while "▶ inject:" not in log.read_text(errors="replace"):
            assert driver.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "inject did not start"
            time.sleep(0.1)
        time.sleep(2.0)  # inside the stage: its shards are being rendered on both workers
        cluster.kill_worker(1)
        run_dir = _finished(driver, tmp_path / "run")
    _same_outputs(run_dir, local_run)
    assert "lost" in (tmp_path / "cluster" / "master.log").read_text(errors="replace").lower()


def test_executors_running_other_darkhalo_code_are_refused_naming_them(wheel: Path, tmp_path: Path) -> None:
    site = install(wheel, tmp_path / "site")
    init = site / "darkhalo" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.1-other+'))
    with standalone_cluster(tmp_path / "cluster", [site]) as cluster:
        driver = _cluster_run(cluster.url, tmp_path / "run")
        assert driver.wait(timeout=RUN_S) != 0
    log = (tmp_path / "run" / "driver.log").read_text(errors="replace")
    assert "the Spark executors run other darkhalo code than the driver" in log
    assert f"{site / 'darkhalo'}: 0.0.1-other+" in log
