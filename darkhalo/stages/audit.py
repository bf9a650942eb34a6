"""The audit: every invariant that applies to what exists, judged against the spec (DESIGN §5).

- A spec alone: the pre-flight (darkhalo.preflight: L1, L2, L3) on a sample of its parent sample.
- A run folder: the findings each stage recorded in its contract.json, with the manifest's
  invariants recomputed from the manifest itself and L3 from the spec where inject has not run.
Lessons with no finding are listed as not evaluated. The verdicts are compared with the spec's
``expect.audit_failures`` (what CI asserts for every spec in specs/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from darkhalo.artifacts import write_json, write_text
from darkhalo.preflight import parent_sample, preflight, psf_finding
from darkhalo.spec import GenerationSpec, load_spec
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.stages.manifest import manifest_findings
from data_contracts.findings import Finding
from data_contracts.lessons import LESSONS

#: Stages whose contract.json findings the audit collects, in pipeline order.
AUDITED_STAGES = ("survey", "select", "manifest", "inject", "train", "evaluate")


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
            "| id | lesson | measured | threshold | verdict | detail |",
            "|----|--------|----------|-----------|---------|--------|",
        ]
        for f in self.findings:
            verdict = f"waived: {f.waiver}" if f.verdict == "waived" else f.verdict
            lines.append(
                f"| {f.id} | {f.title} | {_show(f.measured)} | {_show(f.threshold)} | {verdict} | {f.detail} |"
            )
        for lesson in self.not_evaluated:
            lines.append(f"| {lesson} | {LESSONS[lesson].title} | | | not evaluated | no artifact to judge yet |")
        return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _ordered(findings: dict[str, Finding], spec: GenerationSpec) -> tuple[Finding, ...]:
    order = {lesson: i for i, lesson in enumerate(LESSONS)}
    waived = [f.waived(spec.invariants.waiver(f.id) if f.id in order else None) for f in findings.values()]
    return tuple(sorted(waived, key=lambda f: (order.get(f.id, -1), f.id)))


def audit_spec(spec: GenerationSpec, target: str, parent: pd.DataFrame | None = None) -> Audit:
    """Pre-flight audit of a spec (nothing is run)."""
    findings = {f.id: f for f in preflight(spec, parent)}
    return Audit(target, spec.generation, _ordered(findings, spec), tuple(spec.expect.audit_failures))


def recorded_findings(folder: Path) -> list[Finding]:
    """The findings a stage wrote into its contract.json."""
    record = json.loads((folder / "contract.json").read_text())
    fields = ("id", "title", "passed", "measured", "threshold", "detail", "n_offending")
    return [
        Finding(**{k: check[k] for k in fields}, evidence=tuple(check.get("evidence", ())))
        for check in record["checks"]
    ]


def audit_run(run_dir: Path, spec: GenerationSpec | None = None) -> Audit:
    """Audit of a run folder: every stage's recorded findings, the manifest's recomputed."""
    spec = spec or load_spec(run_dir / "spec.yaml")
    findings: dict[str, Finding] = {}
    for stage in AUDITED_STAGES:
        folder = run_dir / stage
        if (folder / "contract.json").is_file():
            findings.update({f.id: f for f in recorded_findings(folder)})
    manifest_parts = sorted((run_dir / "manifest" / "manifest").glob("part-*.parquet"))
    if manifest_parts:
        findings.update({f.id: f for f in manifest_findings(manifest_parts, spec)[0]})
    if "L3" not in findings:
        findings["L3"] = psf_finding(spec, _median_psf(run_dir, spec))
    return Audit(str(run_dir), spec.generation, _ordered(findings, spec), tuple(spec.expect.audit_failures))


def _median_psf(run_dir: Path, spec: GenerationSpec) -> float:
    """Median host PSFSIZE_R (arcsec) of the run's parent sample, else of a pre-flight sample."""
    parts = sorted((run_dir / "select" / "parent_sample").glob("*.parquet"))
    if parts:
        values = np.concatenate([pd.read_parquet(p, columns=["PSFSIZE_R"])["PSFSIZE_R"].to_numpy() for p in parts])
    else:
        values = parent_sample(spec)["PSFSIZE_R"].to_numpy()
    return float(np.median(values))


def write_audit(audit: Audit, folder: Path) -> tuple[Path, Path]:
    """audit.json and audit.md into ``folder`` (atomically)."""
    write_json(folder / "audit.json", audit.to_dict())
    write_text(folder / "audit.md", audit.to_markdown())
    return folder / "audit.json", folder / "audit.md"


def run(ctx: StageContext) -> StageResult:
    audit = audit_run(ctx.run_dir, ctx.spec)
    write_audit(audit, ctx.out)
    return StageResult(
        rows={"findings": len(audit.findings)},
        findings=[f for f in audit.findings if f.id in LESSONS],
        measured={"failed": audit.failed, "not_evaluated": audit.not_evaluated},
    )
