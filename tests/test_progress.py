"""Progress a person can follow: the bar (count, rate, ETA) on a terminal and nothing elsewhere, the
Spark job bar fed by Spark's status tracker, the trainer's running loss and its line per epoch, and
the runner's summary line per stage with a rate."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
import torch
from conftest import spec_data
from rich.console import Console
from stamps_factory import one_torch_thread, toy_stamps, write_shards

from darkhalo.audit import judges
from darkhalo.progress import spark_job, track
from darkhalo.runner import run_generation
from darkhalo.spec import TrainSpec, spec_from_dict
from darkhalo.stages import STAGES, Stage
from darkhalo.training.loop import TrainStep, fit
from darkhalo.training.store import load_store

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
INJECT = Stage("inject", (), ("seed", "stamps"), "toy_stages.synthetic_inject", "synthetic stamps")
TRAIN = next(s for s in STAGES if s.name == "train")
HALF = re.compile(r"held tasks \S+ 4/8 ")  # the Spark job bar at half its tasks
#: An epoch's summary line as the train stage prints it.
EPOCH_LINE = re.compile(
    r"^  epoch (\d)/2: train loss \d\.\d{4}, val loss \d\.\d{4}, val completeness \d\.\d{3} at FPR 0\.312, "
    r"[\d,]+ images/s, \d+\.\d s$"
)


def terminal() -> Console:
    return Console(file=StringIO(), force_terminal=True, width=200)


def drawn(console: Console) -> str:
    """What a terminal console was sent, escape codes removed."""
    return ANSI.sub("", console.file.getvalue())


def test_a_bar_on_a_terminal_shows_count_rate_and_eta() -> None:
    console = terminal()
    with track(console, "render stamps", 10_000, unit="stamps") as bar:
        bar.advance(2_000)
        time.sleep(0.2)
        bar.advance(2_000)
        bar.note("batch 2")
        time.sleep(0.3)  # a refresh or two (10 per second)
    out = drawn(console)
    assert "render stamps" in out and "4,000/10,000" in out and "batch 2" in out
    rate = re.search(r"([\d,]+) stamps/s", out)
    assert rate and 1_000 <= int(rate.group(1).replace(",", "")) <= 20_000  # 4,000 over >= 0.2 s (rich's estimate)
    assert re.search(r"ETA 0:00:0\d", out)  # 6,000 left at that rate


@pytest.mark.spark
def test_nothing_is_written_when_the_console_is_no_terminal(spark) -> None:
    console = Console(file=StringIO())
    assert not console.is_terminal
    with track(console, "render stamps", 10) as bar:
        bar.advance(5)
        bar.note("loss 0.5")
    with spark_job(spark, console, "count", 10, unit="rows"):
        assert spark.sparkContext.parallelize(range(10), 2).count() == 10
    assert console.file.getvalue() == ""


@pytest.mark.spark
def test_a_spark_job_bar_follows_the_finished_tasks_and_reaches_its_total(spark, tmp_path: Path) -> None:
    """Half the tasks finish at once and the rest wait for a flag: the bar must show 4/8 before the flag
    is raised (it follows Spark's tasks, not the clock), then 8/8 without being told the work is done."""
    console, flag = terminal(), tmp_path / "release"
    seen_half = threading.Event()

    def release_at_half() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not seen_half.is_set():
            if HALF.search(drawn(console)):
                seen_half.set()
            time.sleep(0.05)
        flag.touch()

    watcher = threading.Thread(target=release_at_half)
    watcher.start()

    def held(index: int, rows: Iterator[int]) -> Iterator[int]:  # defined here: Spark's workers get it by value
        deadline = time.monotonic() + 30
        while index >= 4 and not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return rows

    with spark_job(spark, console, "held tasks", 8, unit="rows"):
        assert spark.sparkContext.parallelize(range(8), 8).mapPartitionsWithIndex(held).collect() == list(range(8))
    watcher.join()
    assert seen_half.is_set()
    assert "8/8" in HALF.split(drawn(console))[-1]


def test_fit_reports_every_step_with_its_running_loss_and_every_epoch(tmp_path: Path, one_torch_thread) -> None:
    images, labels = toy_stamps(96, 32, seed=1)
    write_shards(tmp_path, images, labels, ["train"] * 64 + ["val"] * 32)
    train, val = (load_store(tmp_path, split, 32, torch.device("cpu")) for split in ("train", "val"))
    spec = TrainSpec(arch="resnet18", lr=1e-3, weight_decay=1e-4, batch_size=16, epochs=2, precision="fp32")
    steps: list[tuple[TrainStep, float]] = []
    rows: list[dict] = []
    fit(
        train,
        val,
        spec,
        seed=0,
        checkpoint_dir=tmp_path / "checkpoints",
        min_expected_fp=10.0,
        on_step=lambda step: steps.append((step, step.running_loss())),
        on_epoch=rows.append,
    )
    where = [(s.epoch, s.step, s.steps, s.batch) for s, _ in steps]
    assert where == [(epoch, i, 4, 16) for epoch in (1, 2) for i in range(1, 5)]
    for step, loss in steps:  # each step keeps its own sum: reading it later gives what it gave then
        assert step.running_loss() == loss and 0 < loss < 5
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [loss for step, loss in steps if step.step == 4] == [r["train_loss"] for r in rows]


@pytest.fixture
def train_spec():
    data = spec_data()
    data["stamps"] = {"size": 32}
    data["train"].update(epochs=2, batch_size=32)
    data.setdefault("evaluate", {})["min_expected_false_positives"] = 10.0  # 32 val negatives: FPR 10/32
    data["engine"] = {"device": "cpu"}
    return spec_from_dict(data)


@pytest.fixture
def no_stamps_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy inject stage writes stamps without the manifest and cutouts the stamps' judge checks them against."""
    monkeypatch.delitem(judges.JUDGES, "inject")


@pytest.mark.usefixtures(one_torch_thread.__name__, no_stamps_judge.__name__)
def test_the_log_has_a_line_per_epoch_and_a_summary_per_stage_and_no_bar(train_spec, tmp_path: Path) -> None:
    console = Console(file=StringIO(), width=80)  # narrower than the lines: they must not wrap
    run_generation(train_spec, tmp_path, stages=(INJECT, TRAIN), console=console)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "▶ inject: synthetic stamps"
    assert re.fullmatch(r"✓ inject: done in \d+\.\d s \(stamps=192 at [\d,]+/s\)", lines[1])
    assert lines[2].startswith("▶ train: ")
    assert [EPOCH_LINE.match(line).group(1) for line in lines[3:5]] == ["1", "2"]
    assert re.fullmatch(r"✓ train: done in \d+\.\d s \(train_stamps=96, val_stamps=64, epochs=2\)", lines[5])
    assert len(lines) == 6


@pytest.mark.usefixtures(one_torch_thread.__name__, no_stamps_judge.__name__)
def test_on_a_terminal_training_draws_the_epoch_its_stamps_and_the_running_loss(train_spec, tmp_path: Path) -> None:
    console = terminal()
    run_generation(train_spec, tmp_path, stages=(INJECT, TRAIN), console=console)
    out = drawn(console)
    assert re.search(r"train resnet18 epoch 2/2 .* 96/96 [\d,]+ images/s .* loss \d\.\d{3}", out)
    assert len(re.findall(r"epoch 1/2: train loss", out)) == 1  # the log line, once, above the bar
    assert len(re.findall(r"epoch 2/2: train loss", out)) == 1
