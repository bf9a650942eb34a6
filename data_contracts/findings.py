"""The one result type of every contract check: a finding (id, passed, measured, threshold, evidence)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

#: At most this many offending rows are kept as evidence in a finding (the count is kept in full).
MAX_EVIDENCE_ROWS = 20


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
