"""Crash safety: kill -9 at a random moment inside each real stage, re-run, and get the same outputs.

Each trial copies the installed upstream stages of one uninterrupted baseline run, starts the
stage in a child process (its own process group: the Spark JVM and Python workers die with it),
waits for the stage's start line, sleeps a seeded random delay within the stage's baseline wall
time, and sends SIGKILL to the group. Either nothing is then at the stage's final path, or the stage
was installed before the kill and is whole (and the kill is tried again, 4x sooner, up to
KILL_ATTEMPTS times). A trial may kill several times in a row, each child starting on the leftovers
of the last; the re-run (in this process) must then install outputs whose content hashes equal
the baseline's. The baseline and the trials run under a runs folder whose name Hadoop and glob read
as a pattern (crash_run.LITERAL_RUNS), the baseline beside a decoy folder that the pattern matches,
holding unreadable parts where the stages read theirs: a run reads only its own files.

Content hashes are every artifact file's sha256 (darkhalo.artifacts.artifact_files), except for
fields that record the wall clock or a run's random ids, which are compared with those fields left
out: select's Great Expectations result (its run time and ids; its Data Docs HTML is not compared),
the training history's timings (history.parquet and each checkpoint's copy of it) and the audit's
target (the run folder it judged, in audit.json and audit.md); checkpoints are compared by their
tensors. The evaluation's and the scan's reports and plots are compared byte for byte. The default
run kills each stage DEFAULT_KILLS times (11 kills in all); ``-m slow`` runs four more kills per stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from crash_run import CHAIN, DECOY_RUNS, LITERAL_RUNS, tiny_spec

from darkhalo.artifacts import artifact_files
from darkhalo.runner import run_generation

pytestmark = pytest.mark.spark

#: History fields that measure the wall clock (differ between any two runs).
TIMING_FIELDS = ("train_s", "val_s", "epoch_s", "images_per_s")
#: Select's Great Expectations Data Docs (HTML) carry the validation's run time and ids; its
#: result is compared without them (GE_RUN_KEYS).
GE_DOCS = "validation/data_docs/"
GE_RESULT = "validation/validation_result.json"
GE_RUN_KEYS = {"validation_id", "run_id", "batch_markers", "checkpoint_id", "validation_time", "id"}
#: The audit's record of the run folder it judged (a path, different for every copy of a run).
AUDIT_JSON, AUDIT_MD, AUDIT_TARGET = "audit/audit.json", "audit/audit.md", "target"
SLOW_TRIALS = 4
#: Kills in each stage's default trial, one after another: a second one where it costs least (a short
#: stage, or a child that starts no Spark), the next child starting on the killed one's leftovers.
DEFAULT_KILLS = dict.fromkeys(CHAIN, 1) | dict.fromkeys(("survey", "train", "evaluate"), 2)
#: Kills tried per trial; each retry comes 4x sooner when the child finished before the kill.
KILL_ATTEMPTS = 3
#: What test tools (possibly in another process) may add to the working directory meanwhile.
TOOL_CACHES = {".hypothesis", ".pytest_cache", ".ruff_cache"}


@pytest.fixture(scope="module")
def baseline(spark, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """An uninterrupted run of the chain under LITERAL_RUNS beside the decoy: its run folder and each stage's wall
    time (s)."""
    top = tmp_path_factory.mktemp("baseline")
    root = top / LITERAL_RUNS
    spec = tiny_spec()
    for artifact in ("survey/catalog", "select/parent_sample"):  # what a glob of a Spark read would open instead
        decoy = top / DECOY_RUNS / spec.generation / artifact / "part-00000.parquet"
        decoy.parent.mkdir(parents=True)
        decoy.write_bytes(b"decoy: not parquet")
    cwd_before = set(os.listdir()) - TOOL_CACHES
    outcomes = run_generation(spec, root, stop=CHAIN[-1])
    assert set(os.listdir()) - TOOL_CACHES == cwd_before, "a stage wrote into the working directory"
    return root / spec.generation, {o.stage: o.wall_s for o in outcomes}


def test_every_file_a_stage_wrote_is_inside_its_folder_and_in_its_lineage(baseline) -> None:
    """No stage writes outside ctx.out: the run folder holds the stage folders and the frozen spec
    only, and every file in a stage folder is an output its lineage lists (or a record file)."""
    base_dir, _ = baseline
    assert [p.name for p in base_dir.parent.iterdir()] == [base_dir.name]
    assert sorted(p.name for p in base_dir.iterdir()) == sorted([*CHAIN, "spec.yaml", ".lock"])
    for stage in CHAIN:
        folder = base_dir / stage
        listed = set(json.loads((folder / "lineage.json").read_text())["outputs"])
        found = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert found == listed | {"contract.json", "lineage.json"}, stage


def content(stage: str, folder: Path) -> dict[str, str]:
    """The stage's output content hashes by relative path (wall-clock fields left out)."""
    files = artifact_files(folder)
    if stage == "select":
        kept = {k: v for k, v in files.items() if not k.startswith(GE_DOCS)}
        result = json.loads((folder / GE_RESULT).read_text())
        return kept | {GE_RESULT: _json_hash(_without_run_ids(result))}
    if stage == "audit":
        run_dir = folder.parent
        audit = json.loads((run_dir / AUDIT_JSON).read_text())
        assert audit.pop(AUDIT_TARGET) == str(run_dir)
        report = (run_dir / AUDIT_MD).read_text().replace(str(run_dir), "<run folder>")
        return {AUDIT_JSON: _json_hash(audit), AUDIT_MD: hashlib.sha256(report.encode()).hexdigest()}
    if stage != "train":
        return files
    hashes = {"model.pt": files["model.pt"]}
    history = pd.read_parquet(folder / "history.parquet").drop(columns=list(TIMING_FIELDS))
    hashes["history.parquet"] = _frame_hash(history)
    for path in sorted((folder / "checkpoints").glob("*.pt")):
        state = torch.load(path, weights_only=True)
        digest = hashlib.sha256()
        for name, tensor in state["state_dict"].items():
            digest.update(name.encode() + tensor.numpy().tobytes())
        epochs = pd.DataFrame(state["history"]).drop(columns=list(TIMING_FIELDS))
        hashes[f"checkpoints/{path.name}"] = digest.hexdigest() + _frame_hash(epochs)
    return hashes


def _json_hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def _without_run_ids(value: object) -> object:
    """A Great Expectations result without the keys that name or time this particular validation."""
    if isinstance(value, dict):
        return {k: _without_run_ids(v) for k, v in value.items() if k not in GE_RUN_KEYS}
    if isinstance(value, list):
        return [_without_run_ids(v) for v in value]
    return value


def _frame_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def _child(stage: str, root: Path, err) -> subprocess.Popen:
    """``crash_run.py root stage`` in its own process group, stderr to ``err``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "crash_run.py"), str(root), stage],
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=env,
        start_new_session=True,
    )


def kill_inside(stage: str, root: Path, delay_s: float) -> None:
    """Run ``stage`` in a child process group under ``root``; SIGKILL the group ``delay_s`` after the
    stage starts (unless the child has exited by then)."""
    log = root / "child.log"
    with log.open("wb") as err:
        child = _child(stage, root, err)
        try:
            deadline = time.monotonic() + 300
            while f"▶ {stage}:" not in log.read_text(errors="replace"):
                assert child.poll() is None, f"child ended before {stage} started:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"{stage} did not start in 300 s"
                time.sleep(0.05)
            time.sleep(delay_s)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the child exited and its group is gone
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode in (0, -signal.SIGKILL), log.read_text()


def _copy_upstream(base_dir: Path, run_dir: Path, stage: str) -> None:
    for upstream in CHAIN[: CHAIN.index(stage)]:
        shutil.copytree(base_dir / upstream, run_dir / upstream)


def trial(baseline: tuple[Path, dict[str, float]], stage: str, seed: int, tmp_path: Path, kills: int = 1) -> None:
    """``kills`` kills in a row inside ``stage``, each at a seeded random moment, then a re-run equal to the
    baseline."""
    base_dir, walls = baseline
    spec = tiny_spec()
    root = tmp_path / LITERAL_RUNS
    run_dir = root / spec.generation
    run_dir.mkdir(parents=True)
    _copy_upstream(base_dir, run_dir, stage)
    for kill in range(kills):
        delay = float(np.random.default_rng([seed, CHAIN.index(stage), kill]).uniform(0, walls[stage]))
        tries = 1
        kill_inside(stage, root, delay)
        while (run_dir / stage).exists():
            # Installed before the kill (the child lives on for a moment after its rename into place):
            # then it is whole. Try again, sooner.
            assert content(stage, run_dir / stage) == content(stage, base_dir / stage)
            assert tries < KILL_ATTEMPTS, f"{stage} was installed before every kill (last at {delay:.2f} s)"
            shutil.rmtree(run_dir / stage)
            delay /= 4
            tries += 1
            kill_inside(stage, root, delay)
        print(
            f"{stage} seed={seed} kill {kill + 1}: {delay:.2f} s into the stage (baseline {walls[stage]:.1f} s), "
            f"try {tries}"
        )

    outcome = run_generation(spec, root, start=stage, stop=stage)[0]
    assert outcome.status == "ran"
    assert content(stage, run_dir / stage) == content(stage, base_dir / stage)
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name not in (".lock", ".failed")]
    assert not leftovers, f"left behind after the re-run: {leftovers}"


def test_another_process_writes_the_same_content_and_one_changed_byte_shows(baseline, tmp_path: Path) -> None:
    """The comparison means something: a separate process (its own JVM) writes the manifest with the
    same content hashes as the baseline, and a one-byte change in a part is seen."""
    base_dir, _ = baseline
    run_dir = tmp_path / tiny_spec().generation
    _copy_upstream(base_dir, run_dir, "manifest")
    with (tmp_path / "child.log").open("wb") as err:
        assert _child("manifest", tmp_path, err).wait(timeout=600) == 0, (tmp_path / "child.log").read_text()
    assert content("manifest", run_dir / "manifest") == content("manifest", base_dir / "manifest")
    part = run_dir / "manifest" / "manifest" / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1
    part.write_bytes(bytes(data))
    assert content("manifest", run_dir / "manifest") != content("manifest", base_dir / "manifest")


@pytest.mark.parametrize("stage", CHAIN)
def test_a_stage_killed_at_random_moments_reruns_to_the_same_outputs(baseline, stage: str, tmp_path: Path) -> None:
    trial(baseline, stage, seed=0, tmp_path=tmp_path, kills=DEFAULT_KILLS[stage])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, SLOW_TRIALS + 1))
@pytest.mark.parametrize("stage", CHAIN)
def test_many_kills_per_stage(baseline, stage: str, seed: int, tmp_path: Path) -> None:
    trial(baseline, stage, seed=seed, tmp_path=tmp_path)
