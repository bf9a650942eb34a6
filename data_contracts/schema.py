"""A pandera schema check as a finding, so schemas and invariants report the same way."""

from __future__ import annotations

import pandas as pd
import pandera.errors
import pandera.pandas as pa

from data_contracts.findings import Finding, evidence_rows


def schema_finding(schema: pa.DataFrameSchema, frame: pd.DataFrame, artifact: str) -> Finding:
    """Validate ``frame`` lazily against ``schema``; every failure case becomes evidence."""
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        rows = [
            {
                "column": str(case.get("column")),
                "check": str(case.get("check")),
                "row": None if pd.isna(case.get("index")) else case.get("index"),
                "value": None if pd.isna(case.get("failure_case")) else str(case.get("failure_case")),
            }
            for case in cases.to_dict("records")
        ]
        evidence, n = evidence_rows(rows)
        first = rows[0]
        return Finding(
            id=f"schema:{artifact}",
            title=f"{artifact} schema",
            passed=False,
            measured=n,
            threshold=0,
            detail=f"{n} schema failure(s); first: column {first['column']}, check {first['check']}, "
            f"row {first['row']}, value {first['value']}",
            evidence=evidence,
            n_offending=n,
        )
    return Finding(id=f"schema:{artifact}", title=f"{artifact} schema", passed=True, measured=0, threshold=0)
