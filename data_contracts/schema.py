"""What every artifact's pandera model gives the rest of the house: its check as a finding (so schemas
and invariants report the same way), its column dtypes and its Arrow schema (Spark's comes from it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors
import pandera.pandas as pa
import pyarrow
from pydantic import BaseModel, ValidationError

from data_contracts.findings import Finding, evidence_rows

Contract = type[pa.DataFrameModel] | pa.DataFrameSchema
#: Frame-wide checks whose failure case is a column's name (missing, unexpected, out of order).
COLUMN_CHECKS = ("column_in_dataframe", "column_in_schema", "column_ordered")


def as_schema(contract: Contract) -> pa.DataFrameSchema:
    """The pandera schema of a model (a schema is returned as is)."""
    return contract if isinstance(contract, pa.DataFrameSchema) else contract.to_schema()


def column_names(contract: Contract) -> tuple[str, ...]:
    """The contract's column names, in order."""
    return tuple(as_schema(contract).columns)


def column_dtypes(contract: Contract) -> dict[str, str]:
    """Column name -> dtype name (``int16``, ``float32``, ``bool``, ``str``, ...), in the contract's order."""
    return {name: str(column.dtype) for name, column in as_schema(contract).columns.items()}


def arrow_schema(contract: Contract) -> pyarrow.Schema:
    """The Arrow schema of the contract's columns, in order (strings as UTF-8, every field nullable)."""
    return pyarrow.schema(
        (name, pyarrow.string() if dtype == "str" else pyarrow.from_numpy_dtype(np.dtype(dtype)))
        for name, dtype in column_dtypes(contract).items()
    )


def schema_finding(contract: Contract, frame: pd.DataFrame, artifact: str) -> Finding:
    """Validate ``frame`` lazily against a model or schema; every failure case becomes evidence naming its column."""
    try:
        as_schema(contract).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        rows = [
            {
                "column": str(case["failure_case"] if case.get("check") in COLUMN_CHECKS else case.get("column")),
                "check": str(case.get("check")),
                "row": None if pd.isna(case.get("index")) else case.get("index"),
                "value": None if pd.isna(case.get("failure_case")) else str(case.get("failure_case")),
            }
            for case in exc.failure_cases.to_dict("records")
        ]
        first = rows[0]
        return _schema_finding(
            artifact,
            rows,
            f"; first: column {first['column']}, check {first['check']}, row {first['row']}, value {first['value']}",
        )
    return _schema_finding(artifact, [], "")


def model_finding(model: type[BaseModel], path: Path, artifact: str) -> Finding:
    """Validate the JSON artifact at ``path`` against a pydantic ``model``; each error is evidence naming its field."""
    try:
        model.model_validate_json(path.read_text())
    except ValidationError as exc:
        rows = [{"field": ".".join(map(str, e["loc"])) or "(top)", "problem": e["msg"]} for e in exc.errors()]
        return _schema_finding(artifact, rows, f" in {path.name}; first: {rows[0]['field']}: {rows[0]['problem']}")
    return _schema_finding(artifact, [], "")


def _schema_finding(artifact: str, rows: list[dict[str, object]], tail: str) -> Finding:
    """The ``schema:<artifact>`` finding of its failure ``rows`` (it passes on none), its detail ending in ``tail``."""
    if not rows:
        return Finding(id=f"schema:{artifact}", title=f"{artifact} schema", passed=True, measured=0, threshold=0)
    evidence, n = evidence_rows(rows)
    return Finding(
        id=f"schema:{artifact}",
        title=f"{artifact} schema",
        passed=False,
        measured=n,
        threshold=0,
        detail=f"{n} schema failure(s){tail}",
        evidence=evidence,
        n_offending=n,
    )
