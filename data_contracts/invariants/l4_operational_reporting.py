"""L4, operational reporting: metrics.json holds every operating point with counts and intervals,
unresolved targets as unresolved (no number), resolution counted on distinct control hosts, and no
AUROC without the operating points."""

from __future__ import annotations

from typing import Any

from data_contracts.findings import Finding, problems_finding
from data_contracts.lessons import LESSONS
from data_contracts.metrics import metrics_problems

LESSON = LESSONS["L4"]


def check(metrics: Any, control_hosts: int | None = None) -> Finding:
    """Judge parsed metrics.json, any JSON value, against the L4 contract (data_contracts.metrics):
    a value that does not fit the model is a failed finding naming the field, never an exception.
    ``control_hosts`` (the distinct hosts of the scored controls) is what ``n_neg_hosts`` must say."""
    problems = metrics_problems(metrics)
    claimed = metrics.get("n_neg_hosts") if isinstance(metrics, dict) else None
    if control_hosts is not None and claimed != control_hosts:
        problems.append(f"n_neg_hosts: {claimed} but the scored controls sit on {control_hosts} distinct hosts")
    passed = "every operating point reported with counts and intervals"
    return problems_finding(LESSON.id, LESSON.title, problems, len(problems), 0, passed)
