"""Runs a generation's stages in order, each behind its contract, atomically and with lineage.

A stage's lineage key is what its output depends on: its declared spec sections, its code (darkhalo.code_digest),
the outputs digest of each upstream stage it reads and a stamp of every file outside the run it reads (its
module's ``external_inputs``). A stage whose installed output has the same key is skipped, once every file of
that output (contract.json included) hashes as its ``lineage.json`` records; otherwise it runs into a temporary
folder, seeing only the spec sections it declares; its artifact's judge (darkhalo.audit.judges) gates what it
wrote, the findings go to ``contract.json``, the key and every output's sha256 to ``lineage.json``, and only if no
finding blocks is the folder renamed to ``runs/<generation>/<stage>/`` (else kept under ``.failed/``). A stage
that fails or is killed leaves nothing at that path. An upstream output is re-hashed before a stage's key names
it: one that differs from its record re-runs when it is in the run, and refuses the run when it is not.
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
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from darkhalo import __version__, layout
from darkhalo.artifacts import (
    CONTRACT,
    FAILED_DIR,
    LINEAGE,
    contained,
    digest_of,
    file_sha256,
    output_mismatch,
    outputs_record,
    read_lineage,
    write_json,
    write_text,
)
from darkhalo.audit.judges import judge_artifact
from darkhalo.code_digest import code_digest
from darkhalo.removal import make_folder, remove_tree
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
        lines = [f"{f.id}: {f.title} (measured {f.measured}, threshold {f.threshold}){_detail(f)}" for f in findings]
        super().__init__(
            f"stage '{stage}' failed its contract; output kept at {kept}, nothing installed:\n  " + "\n  ".join(lines)
        )


def _detail(finding: Finding) -> str:
    return f"; {finding.detail}" if finding.detail else ""


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
        installed = Installed(run_dir)
        _check_upstream(spec, installed, selected, by_name)
        for stage in selected:
            outcomes.append(_run_stage(stage, spec, installed, force, console))
    return outcomes


class Installed:
    """The installed stage outputs of a run directory, each re-hashed against its lineage.json before it is
    trusted, once per run: the run holds the directory's lock, so only its own installs change them meanwhile."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._checked: dict[str, tuple[dict[str, Any] | None, str | None]] = {}

    def check(self, stage: str) -> tuple[dict[str, Any] | None, str | None]:
        """The stage's lineage record (None when none is installed) and what is wrong with its output (None when
        every file hashes as recorded; else the sentence naming the file)."""
        if stage not in self._checked:
            folder = self.run_dir / stage
            record = read_lineage(folder)
            problem = f"no output installed in {folder}" if record is None else output_mismatch(folder, record)
            self._checked[stage] = (record, problem)
        return self._checked[stage]

    def trusted(self, reader: str, stage: str) -> dict[str, Any]:
        """The verified lineage record of ``stage``, which ``reader`` reads; a RunError naming the file otherwise."""
        record, problem = self.check(stage)
        if record is None:
            raise RunError(
                f"stage '{reader}' needs the output of '{stage}', which is not in {self.run_dir}; "
                f"run with --from {stage}"
            )
        if problem is not None:
            raise RunError(f"stage '{reader}' reads '{stage}', whose output cannot be trusted: {problem}")
        return record

    def installing(self, stage: str, record: dict[str, Any]) -> None:
        """Note the output the run is installing for ``stage``, hashed as it was written."""
        self._checked[stage] = (record, None)


def lineage_key(stage: Stage, spec: GenerationSpec, installed: Installed) -> dict[str, Any]:
    """What a stage's output depends on; equal keys mean the output can be reused. Each upstream output it names is
    verified first (Installed.trusted)."""
    inputs = {name: installed.trusted(stage.name, name)["outputs_digest"] for name in stage.inputs}
    module = importlib.import_module(stage.module)
    external = getattr(module, "external_inputs", None)
    files = external(spec) if external else []
    return {
        "stage": stage.name,
        "spec_digest": spec.digest(*stage.sections),
        "code_digest": code_digest(stage.module),
        "inputs": inputs,
        "external_inputs": {str(p): _file_stamp(Path(p)) for p in files},
    }


def stale_reason(stage: Stage, spec: GenerationSpec, installed: Installed) -> str | None:
    """Why the stage's installed output cannot be reused for ``spec`` (its key differs, naming what changed, or a
    file differs from its lineage record, naming the file), or None when it can."""
    record, _ = installed.check(stage.name)
    if record is None:
        return "no output installed"
    try:
        key = lineage_key(stage, spec, installed)
    except RunError as exc:
        return str(exc)
    changed = [_what_changed(name, record.get(name), value) for name, value in key.items() if record.get(name) != value]
    if changed:
        return "; ".join(changed)
    return installed.check(stage.name)[1]


#: How the console names a changed lineage key field (inputs and external files are named one by one).
KEY_CHANGES = {"spec_digest": "its spec sections changed", "code_digest": "its code changed"}


def _what_changed(field: str, recorded: Any, now: Any) -> str:
    """One lineage key field that differs from its recorded value, in words."""
    if field in ("inputs", "external_inputs") and isinstance(recorded, dict):
        names = sorted(k for k in {*recorded, *now} if recorded.get(k) != now.get(k))
        what = "the output of" if field == "inputs" else "the file(s)"
        return f"{what} {', '.join(names)} changed"
    return KEY_CHANGES.get(field, f"{field} changed")


def _run_stage(stage: Stage, spec: GenerationSpec, installed: Installed, force: bool, console: Console) -> StageOutcome:
    run_dir = installed.run_dir
    final = run_dir / stage.name
    reason = "forced" if force else stale_reason(stage, spec, installed)
    if reason is None:
        record = read_lineage(final) or {}
        console.print(f"[green]✓[/] {stage.name}: up to date, skipped")
        return StageOutcome(stage.name, "skipped", final, record.get("rows", {}), 0.0)
    if installed.check(stage.name)[0] is not None:
        console.print(f"  {stage.name}: re-running, {escape(reason)}", soft_wrap=True, highlight=False)

    key = lineage_key(stage, spec, installed)
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
        write_json(tmp / CONTRACT, _contract_record(stage, findings, result))
        record = {
            **key,
            **outputs_record(tmp),
            "package_version": __version__,
            "rows": result.rows,
            "artifacts_read": sorted(reads),
            "wall_s": round(wall, 3),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "spark_master": resolve_master(spec.engine),
            "python": platform.python_version(),
        }
        write_json(tmp / LINEAGE, record)  # a failed output keeps it too: the audit tells which spec it was for
        blocking = [f for f in findings if f.blocking]
        if blocking:
            kept = run_dir / FAILED_DIR / f"{stage.name}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
            make_folder(kept.parent, run_dir)
            tmp.rename(kept)
            raise StageFailed(stage.name, blocking, kept)
        _install(tmp, final)
        installed.installing(stage.name, record)
        with contextlib.suppress(OSError):  # what is left of the scratch is removed by the next run
            remove_tree(scratch.parent, run_dir)
        with contextlib.suppress(OSError):
            scratch.parent.parent.rmdir()  # .scratch itself, once no stage has work in progress
    finally:
        with contextlib.suppress(OSError):  # never hides the stage's own error
            remove_tree(tmp, run_dir)
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
    root = make_folder(run_dir / ".scratch" / stage, run_dir)
    folder = root / digest_of({k: json.dumps(v, sort_keys=True) for k, v in key.items()})[:16]
    for other in root.iterdir():
        if fresh or other != folder:
            remove_tree(other, run_dir)
    return make_folder(folder, run_dir)


def _install(tmp: Path, final: Path) -> None:
    """Rename a finished output folder into place; an older output (or a link there) is moved aside, then removed
    (a link is unlinked: what it points at is left alone)."""
    old = None
    if os.path.lexists(final):
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        remove_tree(old, final.parent)


def _check_upstream(
    spec: GenerationSpec, installed: Installed, selected: list[Stage], by_name: dict[str, Stage]
) -> None:
    """Refuse to start mid-chain on upstream outputs that are missing, made from another spec or code, or whose files
    differ from their lineage record (the reason names what, or the file)."""
    chosen = {s.name for s in selected}
    seen: set[str] = set()
    pending = [name for s in selected for name in s.inputs if name not in chosen]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        reason = stale_reason(by_name[name], spec, installed)
        if reason is not None:
            raise RunError(
                f"stage '{name}' in {installed.run_dir} is missing or out of date for this spec ({reason}); "
                f"run with --from {name}"
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


#: External inputs up to this size (SQL, lens tables, a small folder of PSF models) are known by their
#: bytes, so reinstalling the package, which rewrites its files' times, does not re-run a stage; larger
#: ones (survey catalogs, a big cutout folder: too slow to hash on every run) by size and modification time.
HASHED_INPUT_BYTES = 64 * 2**20


def _file_stamp(path: Path) -> str:
    """What a stage's lineage knows of an external input: a file by its bytes or size and time, a folder by the
    listing of every file under it, so an added, removed or changed file shows; a path that does not exist is
    "absent" (a cutout folder beside the service is optional), so creating it re-runs the stage too."""
    try:
        if path.is_dir():
            return _folder_stamp(path)
        st = path.stat()
        if st.st_size <= HASHED_INPUT_BYTES:
            return f"sha256={file_sha256(path)}"
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        raise RunError(f"input file {path} cannot be read: {exc.strerror}") from exc
    return f"size={st.st_size},mtime_ns={st.st_mtime_ns}"


def _folder_stamp(folder: Path) -> str:
    """A folder's listing digest: each file's sha256 when the folder holds at most HASHED_INPUT_BYTES, else each
    file's size and modification time."""
    stats = {str(p.relative_to(folder)): p.stat() for p in sorted(folder.rglob("*")) if p.is_file()}
    if sum(st.st_size for st in stats.values()) <= HASHED_INPUT_BYTES:
        listing = {name: file_sha256(folder / name) for name in stats}
    else:
        listing = {name: f"size={st.st_size},mtime_ns={st.st_mtime_ns}" for name, st in stats.items()}
    return f"files={len(listing)},listing={digest_of(listing)}"


def _clear_leftovers(run_dir: Path) -> None:
    """Remove temporary folders left by a run that was killed (they never reached a final path); links among them
    are unlinked, never followed."""
    for leftover in run_dir.glob(".*.tmp-*"):
        remove_tree(leftover, run_dir)
    for leftover in run_dir.glob(".*.old-*"):
        final = run_dir / leftover.name[1:].split(".old-")[0]
        if os.path.lexists(final):
            remove_tree(leftover, run_dir)
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
