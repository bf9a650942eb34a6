"""The one result type of every contract check: a finding (id, passed, measured, threshold, evidence)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

#: At most this many offending rows are kept as evidence in a finding (the count is kept in full).
MAX_EVIDENCE_ROWS = 20
#: The columns a finding is shown in, in this order, by the CLI, audit.md and the report.
TABLE_COLUMNS = ("id", "lesson", "measured", "threshold", "verdict", "detail")


@dataclass(frozen=True)
class Finding:
    """What one check saw. ``id`` is a lesson id (``L1``..``L10``) or ``schema:<artifact>``."""

    id: str
    title: str
    passed: bool
    measured: Any = None
    threshold: Any = None
    detail: str = ""
    evidence: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    n_offending: int = 0
    waiver: str | None = None

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL`` or ``waived`` (a failed check the spec waives with a reason)."""
        if self.passed:
            return "pass"
        return "waived" if self.waiver else "FAIL"

    @property
    def blocking(self) -> bool:
        """True when this finding must stop the run: failed and not waived."""
        return self.verdict == "FAIL"

    def waived(self, reason: str | None) -> Finding:
        """This finding with the spec's waiver reason attached (no effect on a pass)."""
        return replace(self, waiver=reason) if reason else self

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Finding:
        """A finding from its ``to_dict`` record (``verdict`` is derived, not read)."""
        names = ("id", "title", "passed", "measured", "threshold", "detail", "n_offending", "waiver")
        return cls(**{k: record[k] for k in names if k in record}, evidence=tuple(record.get("evidence", ())))

    def table_row(self) -> list[str]:
        """The finding's cells in ``TABLE_COLUMNS`` order (a waiver shows its reason)."""
        verdict = f"waived: {self.waiver}" if self.verdict == "waived" else self.verdict
        return [self.id, self.title, show(self.measured), show(self.threshold), verdict, self.detail]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and inf become strings so the JSON stays strict)."""
        return {
            "id": self.id,
            "title": self.title,
            "verdict": self.verdict,
            "passed": self.passed,
            "measured": jsonable(self.measured),
            "threshold": jsonable(self.threshold),
            "detail": self.detail,
            "n_offending": self.n_offending,
            "evidence": [jsonable(row) for row in self.evidence],
            "waiver": self.waiver,
        }


def evidence_rows(rows: list[dict[str, Any]]) -> tuple[tuple[dict[str, Any], ...], int]:
    """Cap a list of offending rows for a finding; returns (kept rows, full count)."""
    return tuple(rows[:MAX_EVIDENCE_ROWS]), len(rows)


def offending_finding(
    finding_id: str, title: str, rows: list[dict[str, Any]], detail: str = "", count: int | None = None
) -> Finding:
    """A zero-tolerance check's finding from its offending rows: it passes when there are none; measured and
    n_offending are their number (``count`` when ``rows`` holds only the first of them), the evidence the first
    MAX_EVIDENCE_ROWS."""
    evidence, n = evidence_rows(rows)
    n = n if count is None else count
    return Finding(
        id=finding_id,
        title=title,
        passed=n == 0,
        measured=n,
        threshold=0,
        detail=detail,
        evidence=evidence,
        n_offending=n,
    )


def problems_finding(
    lesson_id: str, title: str, problems: list[str], measured: Any, threshold: Any, passed_detail: str
) -> Finding:
    """A contract check's finding from its list of problems: it passes when there are none (``passed_detail``),
    else its detail shows the first three and its evidence holds them all (capped)."""
    evidence, count = evidence_rows([{"problem": p} for p in problems])
    return Finding(
        id=lesson_id,
        title=title,
        passed=not problems,
        measured=measured,
        threshold=threshold,
        detail="; ".join(problems[:3]) if problems else passed_detail,
        evidence=evidence,
        n_offending=count,
    )


def jsonable(value: Any) -> Any:
    """A value made strict-JSON-ready: numpy scalars unwrapped, NaN and inf as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def show(value: Any) -> str:
    """A measured value or threshold as a table cell: floats to 4 significant digits, dicts as k=v."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)
