"""Scoring inside Spark tasks, for when the driver's device is not enough: the trained model loaded once per executor
Python worker (``worker_scorer``, which the scan's tasks use too), and the evaluate stage's pass over its test split
run as one task per stamp shard (``score_on_executors``): each task reads its shard's stamps and scores them where
it runs, with the shard's core and ring pixels, blobs and depth-noised positives, so no stamp passes through the
driver; only scores and the probes' few pixels per stamp come back.
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from darkhalo.metrics.evaluation import Scorer, ShardRunner, SplitPass, Streamed, model_scorer
from darkhalo.sparkio import run_tasks
from darkhalo.training.device import resolve_device

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@lru_cache(maxsize=1)
def _loaded(model: Path, version: tuple[int, int, int], device: str, batch_size: int) -> Scorer:
    """The model file (as of ``version``: its inode, modification time in ns and size in bytes) as a scorer."""
    return model_scorer(model, resolve_device(device), batch_size)


def worker_scorer(model: Path, device: str, batch_size: int) -> Scorer:
    """The model file as a scorer on ``device`` (an engine.device choice, resolved where the task runs), loaded once
    per worker process and again only when the file changes (a model retrained in place is never scored stale)."""
    stat = model.stat()
    return _loaded(model, (stat.st_ino, stat.st_mtime_ns, stat.st_size), device, batch_size)


def score_shard(work: SplitPass, model: Path, device: str, batch_size: int) -> Streamed:
    """One task: one shard's pass over the test split, scored by this worker's copy of the model."""
    return work.run(worker_scorer(model, device, batch_size))


def score_on_executors(spark: SparkSession, model: Path, device: str, batch_size: int) -> ShardRunner:
    """The shards' passes run as one Spark task each (``score_shard``), results in the shards' order."""
    task = partial(score_shard, model=model, device=device, batch_size=batch_size)
    return lambda parts: run_tasks(spark, parts, task)
