"""The select stage's row balance: every catalog row is selected, rejected by the cuts or quarantined."""

from __future__ import annotations

from data_contracts.findings import Finding

FINDING_ID = "select:reconciliation"


#: The counts the select stage records in select/counts.json, besides the parent sample's own rows.
COUNTS = ("input", "rejected_by_cuts", "quarantined")


def check_recorded(counts: object, selected: int) -> Finding:
    """``check`` on the recorded counts and the parent sample's ``selected`` rows; a record without
    an integer count fails naming it."""
    missing = [k for k in COUNTS if not (isinstance(counts, dict) and isinstance(counts.get(k), int))]
    if missing:
        return Finding(
            FINDING_ID, "catalog rows reconciled", False, detail=f"counts.json lacks integer {', '.join(missing)}"
        )
    return check(counts["input"], selected, counts["rejected_by_cuts"], counts["quarantined"])


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
