"""The select stage's row balance: every catalog row is selected, rejected by the cuts or quarantined."""

from __future__ import annotations

from data_contracts.findings import Finding

FINDING_ID = "select:reconciliation"


def check(input_rows: int, selected: int, rejected_by_cuts: int, quarantined: int) -> Finding:
    """Every input row is accounted for: input = selected + rejected_by_cuts + quarantined.

    ``input_rows`` and ``quarantined`` are counted by the edge validation (pandas), the others by Spark.
    """
    total = selected + rejected_by_cuts + quarantined
    return Finding(
        FINDING_ID,
        "catalog rows reconciled: input = selected + rejected_by_cuts + quarantined",
        passed=total == input_rows and min(selected, rejected_by_cuts, quarantined) >= 0,
        measured=total,
        threshold=input_rows,
        detail=f"{selected} selected + {rejected_by_cuts} rejected by cuts + {quarantined} quarantined",
    )
