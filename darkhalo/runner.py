"""Runs a generation's stages in order, each behind its contract, atomically and with lineage.

For each stage: if its lineage matches (same spec sections, package version and input digests)
it is skipped; otherwise it runs into a temporary folder, seeing only the spec sections it declares;
its artifact's judge (darkhalo.audit.judges) gates what it wrote, the findings go to
``contract.json``, and only if no finding blocks is the folder given ``lineage.json`` and renamed
to ``runs/<generation>/<stage>/``. A stage that fails or is killed leaves nothing at that path.
The lineage also lists the run artifacts the stage opened (``artifacts_read``, darkhalo.layout), where
L14 judges who read the mock sky's truth.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from darkhalo import __version__, layout
from darkhalo.artifacts import artifact_files, contained, digest_of, file_sha256, write_json, write_text
from darkhalo.audit.judges import judge_artifact
from darkhalo.spark import resolve_master
from darkhalo.spec import GenerationSpec
from darkhalo.spec_view import SpecView
from darkhalo.stages import STAGES, Stage, StageContext, StageResult
from data_contracts.findings import Finding, jsonable


class RunError(RuntimeError):
    """A run that cannot go on; the message says which stage and why."""


class StageFailed(RunError):
    """A stage's output broke its contract; the output is kept aside for inspection, not installed."""

    def __init__(self, stage: str, findings: list[Finding], kept: Path) -> None:
        self.stage = stage
        self.findings = findings
        self.kept = kept
        lines = [f"{f.id}: {f.title} (measured {f.measured}, threshold {f.threshold})" for f in findings]
        super().__init__(
            f"stage '{stage}' failed its contract; output kept at {kept}, nothing installed:\n  " + "\n  ".join(lines)
        )


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    status: str  # "ran" or "skipped"
    folder: Path
    rows: dict[str, int]
    wall_s: float


def select_stages(stages: Sequence[Stage], start: str | None = None, stop: str | None = None) -> list[Stage]:
    """The stages from ``start`` to ``stop`` inclusive, in registered order."""
    names = [s.name for s in stages]
    for name in (start, stop):
        if name is not None and name not in names:
            raise RunError(f"unknown stage '{name}'; stages are: {', '.join(names)}")
    first = names.index(start) if start else 0
    last = names.index(stop) if stop else len(names) - 1
    if first > last:
        raise RunError(f"--from {start} comes after --to {stop}")
    return list(stages[first : last + 1])


def run_generation(
    spec: GenerationSpec,
    runs_root: Path = Path("runs"),
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
    stages: Sequence[Stage] = STAGES,
    console: Console | None = None,
) -> list[StageOutcome]:
    """Run (or skip, when up to date) the selected stages of ``spec`` under ``runs_root``."""
    console = console or Console(stderr=True)
    runs_root = Path(runs_root).resolve()  # stages and their tools (Great Expectations) get absolute paths
    try:  # even a spec built without validation stays inside runs_root
        contained(runs_root, spec.generation)
    except ValueError as exc:
        raise RunError(f"generation name: {exc}") from None
    run_dir = runs_root / spec.generation
    run_dir.mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in stages}
    selected = select_stages(stages, start, stop)
    outcomes: list[StageOutcome] = []
    with _run_lock(run_dir):
        _clear_leftovers(run_dir)
        write_text(run_dir / "spec.yaml", spec.to_yaml())
        _check_upstream(spec, run_dir, selected, by_name)
        for stage in selected:
            outcomes.append(_run_stage(stage, spec, run_dir, force, console))
    return outcomes


def lineage_key(stage: Stage, spec: GenerationSpec, run_dir: Path) -> dict[str, Any]:
    """What a stage's output depends on; equal keys mean the output can be reused."""
    inputs = {}
    for name in stage.inputs:
        record = read_lineage(run_dir / name)
        if record is None:
            raise RunError(
                f"stage '{stage.name}' needs the output of '{name}', which is not in {run_dir}; run with --from {name}"
            )
        inputs[name] = record["outputs_digest"]
    module = importlib.import_module(stage.module)
    external = getattr(module, "external_inputs", None)
    files = external(spec) if external else []
    return {
        "stage": stage.name,
        "spec_digest": spec.digest(*stage.sections),
        "package_version": __version__,
        "inputs": inputs,
        "external_inputs": {str(p): _file_stamp(Path(p)) for p in files},
    }


def read_lineage(folder: Path) -> dict[str, Any] | None:
    """A stage folder's lineage record, or None when there is no complete output there."""
    try:
        return json.loads((folder / "lineage.json").read_text())
    except (OSError, ValueError):
        return None


def is_up_to_date(stage: Stage, spec: GenerationSpec, run_dir: Path) -> bool:
    """True when the stage's installed output was made from exactly these inputs and spec sections."""
    record = read_lineage(run_dir / stage.name)
    if record is None:
        return False
    try:
        key = lineage_key(stage, spec, run_dir)
    except RunError:
        return False
    same = all(record.get(k) == v for k, v in key.items())
    return same and all((run_dir / stage.name / f).is_file() for f in record.get("outputs", {}))


def _run_stage(stage: Stage, spec: GenerationSpec, run_dir: Path, force: bool, console: Console) -> StageOutcome:
    final = run_dir / stage.name
    if not force and is_up_to_date(stage, spec, run_dir):
        record = read_lineage(final) or {}
        console.print(f"[green]✓[/] {stage.name}: up to date, skipped")
        return StageOutcome(stage.name, "skipped", final, record.get("rows", {}), 0.0)

    key = lineage_key(stage, spec, run_dir)
    module = importlib.import_module(stage.module)
    scratch = _scratch(run_dir, stage.name, key, fresh=force)
    tmp = run_dir / f".{stage.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    console.print(f"[bold]▶[/] {stage.name}: {stage.description}")
    started = time.perf_counter()
    try:
        view = SpecView.of(spec, stage.sections, f"stage '{stage.name}'")
        with layout.recording_reads() as reads:
            result: StageResult = module.run(StageContext(view, run_dir, tmp, scratch, console, spec.engine))
        gate = judge_artifact(stage.name, tmp, run_dir, spec)
        wall = time.perf_counter() - started
        findings = spec.invariants.judged([*result.findings, *gate])
        write_json(tmp / "contract.json", _contract_record(stage, findings, result))
        blocking = [f for f in findings if f.blocking]
        if blocking:
            kept = run_dir / ".failed" / f"{stage.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
            kept.parent.mkdir(exist_ok=True)
            tmp.rename(kept)
            raise StageFailed(stage.name, blocking, kept)
        outputs = artifact_files(tmp)
        write_json(
            tmp / "lineage.json",
            {
                **key,
                "outputs": outputs,
                "outputs_digest": digest_of(outputs),
                "rows": result.rows,
                "artifacts_read": sorted(reads),
                "wall_s": round(wall, 3),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "spark_master": resolve_master(spec.engine),
                "python": platform.python_version(),
            },
        )
        _install(tmp, final)
        shutil.rmtree(scratch.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            scratch.parent.parent.rmdir()  # .scratch itself, once no stage has work in progress
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = _rows_summary(result.rows, wall)
    console.print(f"[green]✓[/] {stage.name}: done in {wall:.1f} s ({summary})", soft_wrap=True)
    return StageOutcome(stage.name, "ran", final, result.rows, wall)


#: Row counts (StageResult.rows keys) of the tables a stage works through row by row: the summary line
#: gives the first of them a rate. Training shows its rate (images/s) on its per-epoch lines.
RATED_ROWS = ("catalog", "manifest", "stamps", "scores", "candidates")


def _rows_summary(rows: dict[str, int], wall_s: float) -> str:
    """A stage's row counts for its summary line, the first rated one with its rate per second of ``wall_s``."""
    rated = next((k for k in rows if k in RATED_ROWS), None)
    parts = []
    for key, n in rows.items():
        rate = f" at {n / wall_s:,.0f}/s" if key == rated and wall_s > 0 else ""
        parts.append(f"{key}={n:,}{rate}")
    return ", ".join(parts)


def _scratch(run_dir: Path, stage: str, key: dict[str, Any], fresh: bool) -> Path:
    """The stage's resumable work folder for this lineage key (other keys' leftovers removed)."""
    root = run_dir / ".scratch" / stage
    folder = root / digest_of({k: json.dumps(v, sort_keys=True) for k, v in key.items()})[:16]
    if root.exists():
        for other in root.iterdir():
            if fresh or other != folder:
                shutil.rmtree(other, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _install(tmp: Path, final: Path) -> None:
    """Rename a finished output folder into place; an older output is moved aside, then removed."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_upstream(spec: GenerationSpec, run_dir: Path, selected: list[Stage], by_name: dict[str, Stage]) -> None:
    """Refuse to start mid-chain on upstream outputs that are missing or made from another spec."""
    chosen = {s.name for s in selected}
    seen: set[str] = set()
    pending = [name for s in selected for name in s.inputs if name not in chosen]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if not is_up_to_date(by_name[name], spec, run_dir):
            raise RunError(
                f"stage '{name}' in {run_dir} is missing or out of date for this spec; run with --from {name}"
            )
        pending.extend(by_name[name].inputs)


def _contract_record(stage: Stage, findings: list[Finding], result: StageResult) -> dict[str, Any]:
    return {
        "stage": stage.name,
        "passed": not any(f.blocking for f in findings),
        "checks": [f.to_dict() for f in findings],
        "rows": result.rows,
        "measured": jsonable(result.measured),
    }


#: External inputs up to this size (SQL, lens tables) are known by their bytes, so reinstalling the
#: package, which rewrites its files' times, does not re-run a stage; larger ones (survey catalogs,
#: too slow to hash on every run) by size and modification time.
HASHED_INPUT_BYTES = 64 * 2**20


def _file_stamp(path: Path) -> str:
    try:
        st = path.stat()
        if st.st_size <= HASHED_INPUT_BYTES:
            return f"sha256={file_sha256(path)}"
    except OSError as exc:
        raise RunError(f"input file {path} cannot be read: {exc.strerror}") from exc
    return f"size={st.st_size},mtime_ns={st.st_mtime_ns}"


def _clear_leftovers(run_dir: Path) -> None:
    """Remove temporary folders left by a run that was killed (they never reached a final path)."""
    for leftover in run_dir.glob(".*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in run_dir.glob(".*.old-*"):
        final = run_dir / leftover.name[1:].split(".old-")[0]
        if final.exists():
            shutil.rmtree(leftover, ignore_errors=True)
        else:  # killed between moving the old output aside and installing the new one
            leftover.rename(final)


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One run at a time per run directory."""
    with (run_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"another darkhalo run is using {run_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
