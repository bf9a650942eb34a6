"""A Spark task that fails is retried by Spark: with ``local[2,2]`` (two attempts per task) a stage
whose every mapInPandas task fails on its first attempt still installs its whole output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, spec_data
from hosts import synthetic_parent

from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.spec import spec_from_dict

pytestmark = pytest.mark.spark

SCRIPT = (
    "import sys; from pathlib import Path; from conftest import spec_data; "
    "from toy_stages import PARENT_STAGE; from toy_stages.flaky import FLAKY_STAGE; "
    "from darkhalo.runner import run_generation; from darkhalo.spec import spec_from_dict; "
    "run_generation(spec_from_dict(spec_data()), Path(sys.argv[1]), stages=(PARENT_STAGE, FLAKY_STAGE))"
)


def test_a_task_failing_once_is_retried_and_the_output_is_complete(tmp_path: Path) -> None:
    markers = tmp_path / "failed_attempts"
    markers.mkdir()
    env = {
        **os.environ,
        "DARKHALO_SPARK_MASTER": "local[2,2]",
        "TOY_FLAKY_MARKERS": str(markers),
        "TOY_PARENT_ROWS": "80",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(markers.iterdir())) >= 3, "every task of the expansion failed once"

    spec = spec_from_dict(spec_data())
    out = tmp_path / spec.generation / "flaky"
    written = pd.read_parquet(out / "manifest").sort_values("stamp_id", ignore_index=True)
    expansion = Expansion.of(spec)
    hosts = host_frame(synthetic_parent(80, seed=spec.seed, known_lenses=3), expansion=expansion)
    expected = expand_hosts(hosts, expansion=expansion)
    pd.testing.assert_frame_equal(written, expected.sort_values("stamp_id", ignore_index=True), check_dtype=False)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["spark_master"] == "local[2,2]" and lineage["rows"] == {"manifest": len(expected)}
