"""L4, operational reporting: metrics.json holds every operating point with counts and intervals,
unresolved FPR targets as unresolved (no number), and no AUROC without the operating points."""

from __future__ import annotations

from typing import Any

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.metrics import metrics_problems

LESSON = LESSONS["L4"]


def check(metrics: Any) -> Finding:
    """Judge parsed metrics.json, any JSON value, against the L4 contract (data_contracts.metrics):
    a value that does not fit the model is a failed finding naming the field, never an exception."""
    problems = metrics_problems(metrics)
    evidence, count = evidence_rows([{"problem": p} for p in problems])
    return Finding(
        id=LESSON.id,
        title=LESSON.title,
        passed=not problems,
        measured=len(problems),
        threshold=0,
        detail="; ".join(problems[:3]) if problems else "every operating point reported with counts and intervals",
        evidence=evidence,
        n_offending=count,
    )
