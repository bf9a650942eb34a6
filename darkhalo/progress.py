"""Progress of long work for a person at a terminal: count, rate, elapsed time and ETA.

``track`` is the one display: a rich bar that is drawn only when the console is a terminal (CI logs
and pipes stay quiet; the runner's summary line per stage says what was done). ``spark_job`` feeds it
from Spark's status tracker, for work that runs inside Spark tasks: the share of finished tasks of the
jobs started inside the block, times the items those jobs handle.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Seconds between polls of Spark's status tracker.
POLL_S = 0.5


class CountColumn(ProgressColumn):
    """Items done of the total, with thousands separators (items done alone while the total is unknown)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(f"{task.completed:,.0f}" if task.completed else "", style="progress.download")
        return Text(f"{task.completed:,.0f}/{task.total:,.0f}", style="progress.download")


class RateColumn(ProgressColumn):
    """Items per second, in the task's unit (``unit`` field)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "items")
        return Text("" if speed is None else f"{speed:,.0f} {unit}/s", style="progress.data.speed")


class Tracker:
    """One task of a progress display: ``advance(n)`` items done, ``note(text)`` a running remark
    (e.g. the loss), ``total`` may be set once known, ``restart`` begins the next round (an epoch)."""

    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        self._progress.update(self._task, advance=n)

    def update(self, completed: float, total: float | None = None) -> None:
        self._progress.update(self._task, completed=completed, total=total)

    def note(self, text: str) -> None:
        self._progress.update(self._task, note=text)

    def restart(self, description: str, total: float) -> None:
        """Start again from 0 of ``total`` under ``description`` (the next epoch, say), clock and rate reset."""
        self._progress.reset(self._task, total=total, description=description)


@contextmanager
def track(console: Console, description: str, total: float | None, unit: str = "stamps") -> Iterator[Tracker]:
    """A progress bar for ``total`` items (None: unknown yet), shown only on a terminal."""
    progress = Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        CountColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        yield Tracker(progress, progress.add_task(description, total=total, unit=unit, note=""))


def _finished_share(spark: SparkSession, group: str) -> tuple[float | None, int]:
    """(finished tasks over all tasks of the stages of the jobs in ``group``, None before any has started;
    the number of those jobs). A succeeded job counts whole: the stages it skipped (their shuffle output
    was reused) finish no task.
    """
    tracker = spark.sparkContext.statusTracker()
    done = total = 0
    jobs = tracker.getJobIdsForGroup(group)
    for job_id in jobs:
        job = tracker.getJobInfo(job_id)
        for stage_id in job.stageIds if job else ():
            stage = tracker.getStageInfo(stage_id)
            if stage is not None:
                done += stage.numTasks if job.status == "SUCCEEDED" else stage.numCompletedTasks
                total += stage.numTasks
    return (done / total if total else None), len(jobs)


@contextmanager
def spark_job(
    spark: SparkSession, console: Console, description: str, items: int, unit: str = "stamps"
) -> Iterator[Callable[[], None]]:
    """Progress of the Spark jobs started inside the block (which handle ``items`` items in all), from
    the share of their tasks that finished; yields a callable that marks the work done.

    The Spark actions must run in the calling thread (the job group is a property of the thread).
    """
    group = f"darkhalo-{uuid.uuid4().hex}"
    context = spark.sparkContext
    context.setJobGroup(group, description)
    stop = threading.Event()
    with track(console, description, items, unit) as bar:

        def poll() -> None:  # once more after the block, so the bar ends where the jobs did
            while True:
                stopping = stop.wait(POLL_S)
                share, jobs = _finished_share(spark, group)
                if share is not None:
                    bar.update(items * share, items)
                if jobs > 1:  # a later job's tasks join the count: say why the bar went back
                    bar.note(f"Spark job {jobs}")
                if stopping:
                    return

        poller = threading.Thread(target=poll, daemon=True) if console.is_terminal else None
        if poller is not None:
            poller.start()
        try:
            yield lambda: bar.update(items, items)
        finally:
            stop.set()
            if poller is not None:
                poller.join()
            context.setLocalProperty("spark.jobGroup.id", None)
