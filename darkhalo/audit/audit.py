"""The audit: every invariant that applies to what exists, judged against the spec as it is now.

- A spec alone: the pre-flight (L1, L2, L3, L11, L12) on a sample of its parent sample.
- A run folder: first its chain (``check_chain``): every stage of the generation installed, not failed, and
  consistent: its files hash as its lineage.json records (contract.json included), its spec digest is that of
  the folder's spec.yaml sections it declares, and each input digest is the outputs digest of the upstream output
  installed. Then each installed artifact (or, for a stage that failed with nothing installed, the output it
  kept under ``.failed/``) judged again by its judge (darkhalo.audit.judges) with the spec's current thresholds
  and waivers; the lessons no artifact decides but the spec can (L1, L2, L11, L3 and L12 before the manifest,
  inject or evaluate stage ran) from the pre-flight. The select stage's Great Expectations edge validation of
  the external catalog is shown as it recorded it.
Lessons with no finding are listed as not evaluated. The verdicts are compared with the spec's
``expect.audit_failures`` (what CI asserts for every spec in specs/). A run folder passes only when no lesson
fails and its chain is complete and consistent (``Audit.verdict``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from darkhalo import layout
from darkhalo.artifacts import CONTRACT, FAILED_DIR, output_mismatch, read_lineage, write_json, write_text
from darkhalo.audit.judges import AUDIT_STAMP_SAMPLE, JUDGES, judge_artifact, psf_finding
from darkhalo.audit.preflight import SAMPLE_HOSTS, expansion_findings, preflight, real_sets_finding, survey_sample
from darkhalo.code_digest import code_digest
from darkhalo.errors import EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK
from darkhalo.spec import GenerationSpec, load_spec
from darkhalo.stages import STAGES, Stage
from data_contracts.findings import TABLE_COLUMNS, Finding
from data_contracts.lessons import LESSONS

#: Stages whose own recorded findings the audit shows: the select stage's Great Expectations edge
#: validation of the external catalog (its result and Data Docs are in select/validation/).
RECORDED_STAGES = ("select",)
#: The stages whose outputs make up a generation: every stage but the audit, which judges them.
CHAIN = tuple(stage for stage in STAGES if stage.name != "audit")


@dataclass(frozen=True)
class StageCheck:
    """One link of a run folder's chain: whether the stage's output is installed, the attempt that failed after it
    (or with none installed; the kept folder and the failed ids, else None) and what is inconsistent about the
    installed output (each problem names the file, the spec sections or the upstream stage)."""

    stage: str
    installed: bool
    failed_attempt: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``failed``, ``missing``, ``inconsistent`` or ``ok``, the first that applies."""
        if self.failed_attempt is not None:
            return "failed"
        if not self.installed:
            return "missing"
        return "inconsistent" if self.problems else "ok"

    def detail(self) -> str:
        """The attempt and the problems in one line (empty for a stage that is ok)."""
        return "; ".join([*([self.failed_attempt] if self.failed_attempt else []), *self.problems])

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status,
            "failed_attempt": self.failed_attempt,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Audit:
    """The audit of one spec or run: its findings and the lessons nothing could judge."""

    target: str
    generation: str
    findings: tuple[Finding, ...]
    expected_failures: tuple[str, ...]
    chain: tuple[StageCheck, ...] | None = None  # a run folder's; None for a spec

    @property
    def failed(self) -> list[str]:
        """Ids of failed (and not waived) findings."""
        return [f.id for f in self.findings if f.blocking]

    @property
    def complete(self) -> bool:
        """Every stage of the chain installed and none failed after it (a spec alone: True, it has no chain)."""
        return all(c.status in ("ok", "inconsistent") for c in self.chain or ())

    @property
    def consistent(self) -> bool:
        """No installed output of the chain differs from its lineage, spec.yaml or its upstream outputs."""
        return not any(c.problems for c in self.chain or ())

    @property
    def verdict(self) -> str:
        """``FAIL`` when a lesson failed (the artifacts as they are fail it, whatever the chain), else
        ``inconsistent`` or ``incomplete`` when the chain is (a folder passes only whole), else ``pass``."""
        if self.failed:
            return "FAIL"
        if not self.consistent:
            return "inconsistent"
        return "pass" if self.complete else "incomplete"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def exit_code(self) -> int:
        """darkhalo.errors: EXIT_FAILED for a failed lesson, EXIT_INCOMPLETE for an incomplete or inconsistent
        chain with no failed lesson, EXIT_OK for a pass."""
        return {"pass": EXIT_OK, "FAIL": EXIT_FAILED}.get(self.verdict, EXIT_INCOMPLETE)

    @property
    def not_evaluated(self) -> list[str]:
        seen = {f.id for f in self.findings}
        return [lesson for lesson in LESSONS if lesson not in seen]

    @property
    def as_expected(self) -> bool:
        """True when exactly the spec's expected lessons fail."""
        return sorted(self.failed) == sorted(self.expected_failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "generation": self.generation,
            "verdict": self.verdict,
            "passed": self.passed,
            "failed": self.failed,
            "expected_failures": list(self.expected_failures),
            "as_expected": self.as_expected,
            "not_evaluated": self.not_evaluated,
            "complete": self.complete,
            "consistent": self.consistent,
            "chain": None if self.chain is None else [c.to_dict() for c in self.chain],
            "findings": [f.to_dict() for f in self.findings],
        }

    def chain_summary(self) -> str:
        """The chain's verdict in one line: complete and consistent, or the stages that are not."""
        if self.chain is None:
            return "no run folder: a spec's pre-flight"
        wrong = [f"{c.stage} {c.status}" for c in self.chain if c.status != "ok"]
        return "complete and consistent" if not wrong else ", ".join(wrong)

    def to_markdown(self) -> str:
        lines = [
            f"# Audit of {self.generation}",
            "",
            f"Target: `{self.target}`. Verdict: **{self.verdict}**"
            f" (failed: {', '.join(self.failed) or 'none'}; the spec expects: "
            f"{', '.join(self.expected_failures) or 'none'}; chain: {self.chain_summary()}).",
            "",
            "| " + " | ".join(TABLE_COLUMNS) + " |",
            "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
        ]
        lines += ["| " + " | ".join(f.table_row()) + " |" for f in self.findings]
        for lesson in self.not_evaluated:
            row = [lesson, LESSONS[lesson].title, "", "", "not evaluated", "no artifact to judge yet"]
            lines.append("| " + " | ".join(row) + " |")
        if self.chain is not None:
            lines += ["", "## Chain", "", "| stage | status | detail |", "|---|---|---|"]
            lines += [f"| {c.stage} | {c.status} | {c.detail()} |" for c in self.chain]
        return "\n".join(lines) + "\n"


def _ordered(findings: list[Finding], spec: GenerationSpec) -> tuple[Finding, ...]:
    """Findings with the spec's waivers, in lesson order (edge and schema findings first)."""
    order = {lesson: i for i, lesson in enumerate(LESSONS)}
    return tuple(sorted(spec.invariants.judged(findings), key=lambda f: (order.get(f.id, -1), f.id)))


def audit_spec(spec: GenerationSpec, target: str, parent: pd.DataFrame | None = None) -> Audit:
    """Pre-flight audit of a spec (nothing is run)."""
    return Audit(target, spec.generation, _ordered(preflight(spec, parent), spec), tuple(spec.expect.audit_failures))


def recorded_findings(folder: Path) -> list[Finding]:
    """The findings a stage wrote into its contract.json."""
    record = json.loads((folder / "contract.json").read_text())
    return [Finding.from_dict(check) for check in record["checks"]]


def audit_run(
    run_dir: Path,
    spec: GenerationSpec | None = None,
    sample: int | None = AUDIT_STAMP_SAMPLE,
    stages: Sequence[Stage] = CHAIN,
) -> Audit:
    """Audit of a run folder: its chain of ``stages`` checked against its spec.yaml (``check_chain``), then every
    installed artifact (or a failed stage's kept output) judged again against ``spec`` (default: the run's frozen
    spec.yaml); ``sample`` stamps are checked against cutouts fetched again (None: all)."""
    frozen = load_spec(run_dir / "spec.yaml")
    spec = spec or frozen
    chain, judged_folders = check_chain(run_dir, frozen, stages)
    findings: list[Finding] = []
    for stage in JUDGES:
        if stage in judged_folders:
            findings += judge_artifact(stage, judged_folders[stage], run_dir, spec, sample)
    judged = {f.id for f in findings}
    for stage in RECORDED_STAGES:
        if read_lineage(run_dir / stage) is not None:
            findings += [f for f in recorded_findings(run_dir / stage) if f.id not in judged and f.id not in LESSONS]
    if "L3" not in judged:
        findings.append(psf_finding(spec))
    if "L12" not in judged:
        findings.append(real_sets_finding(spec))
    if not {"L1", "L2", "L11"} <= judged:
        sample = _parent(run_dir) if read_lineage(run_dir / "select") is not None else survey_sample(spec)
        findings += expansion_findings(spec, *sample)
    return Audit(str(run_dir), spec.generation, _ordered(findings, spec), tuple(spec.expect.audit_failures), chain)


def check_chain(
    run_dir: Path, frozen: GenerationSpec, stages: Sequence[Stage] = CHAIN
) -> tuple[tuple[StageCheck, ...], dict[str, Path]]:
    """Each stage's link in the chain of the run folder made from ``frozen`` (its spec.yaml), and the folder to judge
    per stage: the installed output, or the failed attempt's kept output when none is installed."""
    records = {stage.name: read_lineage(run_dir / stage.name) for stage in stages}
    checks, folders = [], {}
    for stage in stages:
        record = records[stage.name]
        attempt = _failed_attempt(stage, run_dir, frozen, records)
        problems = () if record is None else _inconsistencies(stage, run_dir, frozen, record, records)
        failed = None if attempt is None else f"{attempt} failed its contract ({', '.join(_failed_ids(attempt))})"
        checks.append(StageCheck(stage.name, record is not None, failed, problems))
        folder = run_dir / stage.name if record is not None else attempt
        if folder is not None:
            folders[stage.name] = folder
    return tuple(checks), folders


def _inconsistencies(
    stage: Stage, run_dir: Path, frozen: GenerationSpec, record: dict[str, Any], records: dict[str, Any]
) -> tuple[str, ...]:
    """What disagrees in an installed output: its files and lineage.json, its spec digest and spec.yaml, its input
    digests and the upstream outputs installed."""
    folder = run_dir / stage.name
    problems = []
    if record.get("stage") != stage.name:
        problems.append(f"{folder / 'lineage.json'} is the lineage of stage {record.get('stage')!r}")
    mismatch = output_mismatch(folder, record)
    if mismatch is not None:
        problems.append(mismatch)
    if record.get("spec_digest") != frozen.digest(*stage.sections):
        problems.append(
            f"made for another spec: its sections {', '.join(stage.sections)} differ from {run_dir / 'spec.yaml'}"
        )
    made_from = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    for name in stage.inputs:
        upstream = records.get(name)
        if upstream is None:
            problems.append(f"made from an output of '{name}', which is not installed")
        elif made_from.get(name) != upstream.get("outputs_digest"):
            problems.append(f"made from another output of '{name}' than the one installed (a mixed lineage)")
    return tuple(problems)


def _failed_attempt(stage: Stage, run_dir: Path, frozen: GenerationSpec, records: dict[str, Any]) -> Path | None:
    """The newest output of ``stage`` kept under ``.failed/`` that was made for this generation as it stands (the
    spec.yaml sections, the code now installed, the upstream outputs installed) after the installed output was
    (or with none installed), or None. An attempt for another spec or code is history, not this generation's."""
    kept = run_dir / FAILED_DIR
    if not kept.is_dir():
        return None
    attempts = [p for p in kept.iterdir() if p.name.startswith(f"{stage.name}-") and (p / CONTRACT).is_file()]
    if not attempts:
        return None
    installed = run_dir / stage.name / CONTRACT
    since = installed.stat().st_mtime_ns if records[stage.name] is not None and installed.is_file() else -1
    wanted = {
        "spec_digest": frozen.digest(*stage.sections),
        "code_digest": code_digest(stage.module),
        "inputs": {name: (records.get(name) or {}).get("outputs_digest") for name in stage.inputs},
    }
    for attempt in sorted(attempts, key=lambda p: (p / CONTRACT).stat().st_mtime_ns, reverse=True):
        if (attempt / CONTRACT).stat().st_mtime_ns <= since:
            return None
        record = read_lineage(attempt) or {}
        if all(record.get(k) == v for k, v in wanted.items()):
            return attempt
    return None


def _failed_ids(attempt: Path) -> list[str]:
    """The ids of the failed (not waived) findings in a kept attempt's contract.json."""
    return [f.id for f in recorded_findings(attempt) if f.blocking]


def _parent(run_dir: Path) -> tuple[pd.DataFrame, float]:
    """The first ``SAMPLE_HOSTS`` rows of the run's installed parent sample, and the whole sample's size over theirs."""
    parts = layout.parts(run_dir / "select", layout.PARENT_SAMPLE)
    parent = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return parent.head(SAMPLE_HOSTS), len(parent) / max(min(len(parent), SAMPLE_HOSTS), 1)


def write_audit(audit: Audit, folder: Path) -> tuple[Path, Path]:
    """audit.json and audit.md into ``folder`` (atomically)."""
    write_json(folder / "audit.json", audit.to_dict())
    write_text(folder / "audit.md", audit.to_markdown())
    return folder / "audit.json", folder / "audit.md"
