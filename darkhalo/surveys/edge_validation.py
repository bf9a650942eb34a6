"""Edge validation of a survey catalog with Great Expectations, before anything is selected from it.

The suite: every sweep column present with its dtype; finite fluxes, RA and DEC; inverse variances
finite and >= 0; MW_TRANSMISSION in (0, 1]; PSFSIZE (FWHM, arcsec) > 0; TYPE in the Tractor set;
a unique (RELEASE, BRICKID, OBJID) key. It runs in an ephemeral GE context on a pandas frame; the
validation result (JSON) and the Data Docs (HTML) are written under the given folder. Failures of
row expectations name the offending rows; failures of table expectations (a missing column, a
wrong dtype) condemn the whole catalog. ``edge_finding`` turns the outcome into the select stage's
finding and the rows it may quarantine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from darkhalo.artifacts import write_json
from darkhalo.surveys.columns import KEY, OPTICAL_WISE, SWEEP_COLUMNS, TYPES
from data_contracts.findings import MAX_EVIDENCE_ROWS, Finding

#: Largest finite float32: "between -FLOAT_MAX and FLOAT_MAX" is how GE says "finite" (NaN is null).
FLOAT_MAX = 3.4e38
#: Offending values kept per expectation in the written result (the counts are kept in full).
KEPT_UNEXPECTED = 20
EDGE_ID = "edge:survey_catalog"
#: Offending rows named in a failed edge validation's title.
NAMED_ROWS = 5


@dataclass
class EdgeReport:
    """What the suite found: table-level problems and, per row position, the reasons it failed."""

    n_expectations: int
    table_problems: list[str] = field(default_factory=list)
    row_reasons: dict[int, list[str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.table_problems and not self.row_reasons


def expectations() -> list[Any]:
    """The sweep-catalog expectation suite (GE expectation objects)."""
    import great_expectations.expectations as gxe

    suite: list[Any] = []
    for name, dtype in SWEEP_COLUMNS.items():
        suite.append(gxe.ExpectColumnToExist(column=name))
        suite.append(gxe.ExpectColumnValuesToBeOfType(column=name, type_=dtype))

    def finite(column: str, low: float = -FLOAT_MAX, strict_min: bool = False, high: float = FLOAT_MAX) -> None:
        suite.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
        suite.append(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high, strict_min=strict_min)
        )

    for name in (*KEY, "TYPE"):
        suite.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
    finite("RA", 0.0, high=360.0)
    finite("DEC", -90.0, high=90.0)
    for band in OPTICAL_WISE:
        finite(f"FLUX_{band}")
        finite(f"FLUX_IVAR_{band}", 0.0)
        finite(f"MW_TRANSMISSION_{band}", 0.0, strict_min=True, high=1.0)
    for band in ("G", "R", "Z"):
        finite(f"PSFSIZE_{band}", 0.0, strict_min=True)
    suite.append(gxe.ExpectColumnValuesToBeInSet(column="TYPE", value_set=list(TYPES)))
    suite.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(KEY)))
    return suite


def validate_catalog(frame: pd.DataFrame, folder: Path) -> EdgeReport:
    """Run the suite on ``frame`` (a default RangeIndex: row positions); write result and Data Docs."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    folder.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name="run",
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder / "data_docs")},
        },
    )
    batch = context.data_sources.add_pandas("survey").add_dataframe_asset("catalog")
    definition = batch.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name="sweep_catalog", expectations=expectations()))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="edge", data=definition, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="survey_catalog_edge",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["run"])],
            result_format={"result_format": "COMPLETE"},
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame.reset_index(drop=True)})
    (result,) = outcome.run_results.values()
    record = result.to_json_dict()
    report = _report(record)
    write_json(folder / "validation_result.json", _trimmed(record))
    return report


def edge_finding(
    edge: EdgeReport, origin: pd.DataFrame, catalog: pd.DataFrame, quarantine: bool
) -> tuple[Finding, list[int]]:
    """The edge validation as a finding, and the row positions to quarantine (when ``quarantine`` allows).

    ``origin`` gives each row's source file and row in it (``catalog``'s RangeIndex order); a
    failed finding names the first offending rows by file, row and reasons."""
    bad = sorted(edge.row_reasons)
    n = len(bad)
    evidence = tuple(
        {
            "file": origin.at[i, "file"],
            "row": int(origin.at[i, "row"]),
            "key": {k: int(catalog.at[i, k]) for k in KEY if pd.notna(catalog.at[i, k])},
            "failed": edge.row_reasons[i],
        }
        for i in bad[:MAX_EVIDENCE_ROWS]
    )
    detail = "Great Expectations suite 'sweep_catalog'; result and Data Docs in validation/"
    if edge.table_problems:
        title = f"survey catalog unusable: {'; '.join(edge.table_problems)}"
        return Finding(EDGE_ID, title, False, len(edge.table_problems), 0, detail, evidence, n), bad
    if bad and not quarantine:
        named = "; ".join(f"{r['file']} row {r['row']}: {', '.join(r['failed'])}" for r in evidence[:NAMED_ROWS])
        title = f"survey catalog has {n} bad rows (quarantine_bad_rows is off); first: {named}"
        return Finding(EDGE_ID, title, False, n, 0, detail, evidence, n), bad
    title = f"survey catalog passed edge validation ({n} rows quarantined)"
    return Finding(EDGE_ID, title, True, n, None, detail, evidence, n), bad


def _report(record: dict[str, Any]) -> EdgeReport:
    report = EdgeReport(n_expectations=len(record["results"]))
    reasons: dict[int, list[str]] = defaultdict(list)
    for item in record["results"]:
        if item["success"]:
            continue
        config = item["expectation_config"]
        kwargs = config["kwargs"]
        what = kwargs.get("column") or "+".join(kwargs.get("column_list", []))
        reason = f"{what}: {config['type']}"
        indices = (item.get("result") or {}).get("unexpected_index_list")
        if item.get("exception_info", {}).get("raised_exception") or not indices:
            report.table_problems.append(reason)
            continue
        for index in indices:
            reasons[int(index)].append(reason)
    report.row_reasons = dict(reasons)
    return report


def _trimmed(value: Any) -> Any:
    """The result as strict JSON: long unexpected lists cut to KEPT_UNEXPECTED, non-finite floats as text."""
    if isinstance(value, dict):
        long_lists = ("unexpected_", "partial_unexpected_")
        return {
            k: _trimmed(v[:KEPT_UNEXPECTED] if k.startswith(long_lists) and isinstance(v, list) else v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_trimmed(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
