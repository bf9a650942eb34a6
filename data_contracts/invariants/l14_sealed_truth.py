"""L14 sealed truth: the mock sky's truth table is read by no stage but the scan and the audit
(data_contracts.lessons).

Each stage's lineage record lists ``artifacts_read``, every run artifact the stage opened (``"<stage>/<file>"``,
recorded by the runner); a stage whose record lists none is judged as unknown, so it fails too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from data_contracts.findings import Finding, offending_finding
from data_contracts.lessons import LESSONS

#: The stages allowed to read the truth: the scan grades the search against it, the audit judges it.
READERS = frozenset({"scan", "audit"})


def check(lineages: Mapping[str, Mapping[str, Any]], truth: str) -> Finding:
    """Stages (by name, their lineage records) other than ``READERS`` that read ``truth`` ("survey/<file>") or do not
    record their reads."""
    rows = []
    for stage, record in lineages.items():
        if stage in READERS:
            continue
        reads = record.get("artifacts_read")
        if reads is None:
            rows.append({"stage": stage, "problem": "its lineage records no reads (run it again)"})
        elif truth in reads:
            rows.append({"stage": stage, "problem": f"read {truth}"})
    detail = (
        f"{len(rows)} of {len(set(lineages) - READERS)} stages other than {' and '.join(sorted(READERS))} read "
        f"{truth} or record no reads"
    )
    return offending_finding("L14", LESSONS["L14"].title, rows, detail)
