"""The audit: every invariant that applies to what exists, judged against the spec as it is now.

- A spec alone: the pre-flight (L1, L2, L3, L11, L12) on a sample of its parent sample.
- A run folder: each installed artifact judged again by its judge (darkhalo.audit.judges) with the
  spec's current thresholds and waivers; the lessons no installed artifact decides but the spec
  can (L1, L2, L11, L3 and L12 before the manifest, inject or evaluate stage ran) from the
  pre-flight. The select stage's Great Expectations edge validation of the external catalog is shown
  as it recorded it.
Lessons with no finding are listed as not evaluated. The verdicts are compared with the spec's
``expect.audit_failures`` (what CI asserts for every spec in specs/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from darkhalo import layout
from darkhalo.artifacts import write_json, write_text
from darkhalo.audit.judges import AUDIT_STAMP_SAMPLE, JUDGES, judge_artifact, psf_finding
from darkhalo.audit.preflight import SAMPLE_HOSTS, expansion_findings, preflight, real_sets_finding, survey_sample
from darkhalo.spec import GenerationSpec, load_spec
from data_contracts.findings import TABLE_COLUMNS, Finding
from data_contracts.lessons import LESSONS

#: Stages whose own recorded findings the audit shows: the select stage's Great Expectations edge
#: validation of the external catalog (its result and Data Docs are in select/validation/).
RECORDED_STAGES = ("select",)


@dataclass(frozen=True)
class Audit:
    """The audit of one spec or run: its findings and the lessons nothing could judge."""

    target: str
    generation: str
    findings: tuple[Finding, ...]
    expected_failures: tuple[str, ...]

    @property
    def failed(self) -> list[str]:
        """Ids of failed (and not waived) findings."""
        return [f.id for f in self.findings if f.blocking]

    @property
    def passed(self) -> bool:
        return not self.failed

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
            "passed": self.passed,
            "failed": self.failed,
            "expected_failures": list(self.expected_failures),
            "as_expected": self.as_expected,
            "not_evaluated": self.not_evaluated,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_markdown(self) -> str:
        lines = [
            f"# Audit of {self.generation}",
            "",
            f"Target: `{self.target}`. Verdict: **{'pass' if self.passed else 'FAIL'}**"
            f" (failed: {', '.join(self.failed) or 'none'}; the spec expects: "
            f"{', '.join(self.expected_failures) or 'none'}).",
            "",
            "| " + " | ".join(TABLE_COLUMNS) + " |",
            "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
        ]
        lines += ["| " + " | ".join(f.table_row()) + " |" for f in self.findings]
        for lesson in self.not_evaluated:
            row = [lesson, LESSONS[lesson].title, "", "", "not evaluated", "no artifact to judge yet"]
            lines.append("| " + " | ".join(row) + " |")
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


def installed(folder: Path) -> bool:
    """True when a stage's output is installed (the runner writes lineage.json last)."""
    return (folder / "lineage.json").is_file()


def audit_run(run_dir: Path, spec: GenerationSpec | None = None, sample: int | None = AUDIT_STAMP_SAMPLE) -> Audit:
    """Audit of a run folder: every installed artifact judged again against ``spec`` (default: the run's
    frozen spec.yaml); ``sample`` stamps are checked against cutouts fetched again (None: all)."""
    spec = spec or load_spec(run_dir / "spec.yaml")
    findings: list[Finding] = []
    for stage in JUDGES:
        if installed(run_dir / stage):
            findings += judge_artifact(stage, run_dir / stage, run_dir, spec, sample)
    judged = {f.id for f in findings}
    for stage in RECORDED_STAGES:
        if installed(run_dir / stage):
            findings += [f for f in recorded_findings(run_dir / stage) if f.id not in judged and f.id not in LESSONS]
    if "L3" not in judged:
        findings.append(psf_finding(spec))
    if "L12" not in judged:
        findings.append(real_sets_finding(spec))
    if not {"L1", "L2", "L11"} <= judged:
        sample = _parent(run_dir) if installed(run_dir / "select") else survey_sample(spec)
        findings += expansion_findings(spec, *sample)
    return Audit(str(run_dir), spec.generation, _ordered(findings, spec), tuple(spec.expect.audit_failures))


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
