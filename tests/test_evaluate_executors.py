"""The evaluate stage scoring on Spark executors (``engine.score_on: executors``): one task per stamp shard, the model
loaded once per worker, gives the scores and metrics that scoring on the driver gives; the shards' passes merged are
the whole split's pass, blobs and depth-noised positives included. On a standalone cluster (tests/standalone_cluster.py,
two workers importing darkhalo from the wheel) the stage gives the same (``-m slow``: about a minute of CPU, two minutes
on two busy cores).

The run folder holds what the stage reads: 60 synthetic hosts' manifest rows, their stamps (the real injection) in
three shards of 20 by stamp_id (31 test stamps: 11, 9 and 11 a shard), and an untrained ResNet18 (the glue is under
test, not the model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import spec_data, with_small_real_sets
from hosts import synthetic_parent
from rich.console import Console
from standalone_cluster import REPO, build_wheel, install, standalone_cluster

from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.injection import Rendering, inject_batch
from darkhalo.metrics.evaluation import BlobPlan, ShardedSplit, SplitPass
from darkhalo.metrics.real_recall import DepthNoise
from darkhalo.spec import GenerationSpec, spec_from_dict
from darkhalo.stages.base import StageContext
from darkhalo.stages.evaluate import run
from darkhalo.surveys.provider import provider_for
from darkhalo.task_scoring import worker_scorer
from darkhalo.training.checkpoint import save_checkpoint
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION

SIZE = 32
SHARD_ROWS = 20
BATCH = 8  # the scorer's batch: the driver's batches cross the shards' edges, the tasks' start at them


def _spec() -> GenerationSpec:
    data = with_small_real_sets(spec_data())
    data["stamps"] = {"size": SIZE}
    data["psf"]["kernel_size_pix"] = 31
    data["splits"] = {"nside": 128, "fractions": {"train": 0.25, "val": 0.25, "test": 0.5}}
    data["evaluate"].update(bootstrap_samples=20, batch_size=BATCH)
    return spec_from_dict(data)


def _save_model(path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    state = build_model("resnet18").state_dict()
    save_checkpoint(path, {"format": 1, "arch": "resnet18", "normalisation": NORMALISATION, "state_dict": state})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec, folder = _spec(), tmp_path_factory.mktemp("run")
    expansion = Expansion.of(spec)
    rows = expand_hosts(host_frame(synthetic_parent(60, seed=3), expansion=expansion), expansion=expansion)
    rows = rows.sort_values("stamp_id", ignore_index=True)
    (folder / "manifest" / "manifest").mkdir(parents=True)
    rows.to_parquet(folder / "manifest" / "manifest" / "part-00000.parquet", index=False)
    stamps = inject_batch(rows, provider_for(spec.survey, spec.seed), rendering=Rendering.of(spec))
    (folder / "inject" / "stamps").mkdir(parents=True)
    for i, start in enumerate(range(0, stamps.num_rows, SHARD_ROWS)):
        pq.write_table(stamps.slice(start, SHARD_ROWS), folder / "inject" / "stamps" / f"part-{i:05d}.parquet")
    _save_model(folder / "train" / "model.pt", seed=0)
    return folder


def _evaluated(run_dir: Path, out: Path, score_on: str, console: Console) -> None:
    """The evaluate stage's ``run`` on ``run_dir`` scoring on ``score_on``, writing into ``out``."""
    spec = _spec()
    engine = spec.engine.model_copy(update={"device": "cpu", "score_on": score_on})
    out.mkdir()
    run(StageContext(spec, run_dir, out, out.parent / f"scratch-{score_on}", console, engine))


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """A JSON document's leaves by their path (``a.b[0].c``)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def _assert_same_json(path: Path, expected: Path) -> None:
    """The JSON files hold the same document: the same leaves, floats equal to float rounding, the rest exactly."""
    got, want = (_leaves(json.loads(p.read_text())) for p in (path, expected))
    assert got.keys() == want.keys()
    floats = {k for k, v in want.items() if isinstance(v, float)}
    assert {k: got[k] for k in floats} == pytest.approx({k: want[k] for k in floats}, rel=1e-5, abs=1e-6, nan_ok=True)
    assert {k: v for k, v in got.items() if k not in floats} == {k: v for k, v in want.items() if k not in floats}


def test_scoring_on_executors_gives_the_drivers_scores_and_metrics(spark, run_dir: Path, tmp_path: Path) -> None:
    terminal = Console(file=StringIO(), force_terminal=True, width=200)
    _evaluated(run_dir, tmp_path / "driver", "driver", Console(quiet=True))
    _evaluated(run_dir, tmp_path / "executors", "executors", terminal)
    driver = pd.read_parquet(tmp_path / "driver" / "scores.parquet")
    executors = pd.read_parquet(tmp_path / "executors" / "scores.parquet")
    assert len(driver) == 31 and driver["score"].std() > 0
    pd.testing.assert_frame_equal(executors, driver, check_exact=False, rtol=1e-5, atol=1e-6)
    _assert_same_json(tmp_path / "executors" / "metrics.json", tmp_path / "driver" / "metrics.json")
    metrics = json.loads((tmp_path / "executors" / "metrics.json").read_text())
    assert metrics["probes"]["n_blobs"] == 15 and metrics["probes"]["psf_swap"]["n_positives"] == 16  # all of them
    assert metrics["real_sets"]["ps1_sled_lensed_galaxies"]["at_depth"] is not None  # positives at the set's depth
    assert "score test stamps" in terminal.file.getvalue() and "31/31" in terminal.file.getvalue()  # from the tasks


def _peak(images: np.ndarray) -> np.ndarray:
    """A stand-in scorer of each stamp alone (no batch effect): its brightest r-band pixel plus its g-band sum."""
    return (images[:, 1].max(axis=(1, 2)) + images[:, 0].sum(axis=(1, 2))).astype(np.float64)


def test_the_shards_passes_merged_are_the_whole_splits_pass(run_dir: Path) -> None:
    split = ShardedSplit.open(run_dir / "inject", SIZE)
    deeper = DepthNoise("deeper", np.array([0.01, 0.02, 0.04]), seed=5)
    work = SplitPass(split, 16, BATCH, 4, BlobPlan.of(split.meta, Rendering.of(_spec())), (deeper,))
    parts = work.shards()
    assert [len(p.split) for p in parts] == [np.count_nonzero(split.shard_of == i) for i in range(3)]
    assert all(len(p.plan.rows) and (p.split.meta["label"] == 1).any() for p in parts)  # blobs, positives in each
    whole, merged = work.run(_peak), work.merged([p.run(_peak) for p in parts])
    for name in ("scores", "core", "ring", "blob_scores"):
        assert np.array_equal(getattr(merged, name), getattr(whole, name)), name
    assert merged.depth.keys() == whole.depth.keys() == {"deeper"}
    assert np.array_equal(merged.depth["deeper"].scores, whole.depth["deeper"].scores)
    assert np.array_equal(merged.depth["deeper"].own_sigma, whole.depth["deeper"].own_sigma)


def test_a_worker_loads_the_model_once_and_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    _save_model(path, seed=1)
    first = worker_scorer(path, "cpu", BATCH)
    assert worker_scorer(path, "cpu", BATCH) is first
    _save_model(path, seed=2)  # retrained in place
    second = worker_scorer(path, "cpu", BATCH)
    images = np.random.default_rng(0).normal(0, 0.01, (4, 3, SIZE, SIZE)).astype(np.float32)
    assert second is not first and not np.array_equal(second(images), first(images))


#: A child driver: the stage scoring on executors (the cluster's, from DARKHALO_SPARK_MASTER) on RUN_DIR into OUT.
CLUSTER_CHILD = """import sys
from pathlib import Path
from rich.console import Console
from test_evaluate_executors import _evaluated
_evaluated(Path(sys.argv[1]), Path(sys.argv[2]), "executors", Console(quiet=True))
"""


@pytest.mark.slow
def test_scoring_on_a_standalone_clusters_executors_gives_the_drivers_scores(
    spark, run_dir: Path, tmp_path: Path
) -> None:
    _evaluated(run_dir, tmp_path / "driver", "driver", Console(quiet=True))
    wheel = build_wheel(tmp_path / "wheel")
    sites = [install(wheel, tmp_path / f"site-{i}") for i in range(2)]
    with standalone_cluster(tmp_path / "cluster", sites) as cluster:
        env = {**os.environ, "DARKHALO_SPARK_MASTER": cluster.url, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
        command = [sys.executable, "-c", CLUSTER_CHILD, str(run_dir), str(tmp_path / "cluster-out")]
        child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert child.returncode == 0, child.stderr
    executors = {p.parts[-4] for p in (tmp_path / "cluster").glob("work-*/app-*/*/stderr")}
    assert executors == {"work-0", "work-1"}, "both workers ran executors"
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "cluster-out" / "scores.parquet"),
        pd.read_parquet(tmp_path / "driver" / "scores.parquet"),
        check_exact=False,
        rtol=1e-5,
        atol=1e-6,
    )
    _assert_same_json(tmp_path / "cluster-out" / "metrics.json", tmp_path / "driver" / "metrics.json")
