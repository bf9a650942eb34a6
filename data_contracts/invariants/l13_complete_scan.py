"""L13 complete scan: every parent-sample host is scored exactly once or listed unscored with its reason, and no
other host is a candidate (data_contracts.lessons)."""

from __future__ import annotations

import pandas as pd

from data_contracts.findings import MAX_EVIDENCE_ROWS, Finding, offending_finding
from data_contracts.lessons import LESSONS
from data_contracts.survey import KEY

KEYS = list(KEY)


def check(parent: pd.DataFrame, candidates: pd.DataFrame, unscored: pd.DataFrame) -> Finding:
    """Parent hosts (KEY columns) seen other than once among the candidates and the unscored, and scan rows that are
    no parent host."""
    scanned = pd.concat([candidates[KEYS], unscored[KEYS]], ignore_index=True)
    times = scanned.value_counts().rename("times").reset_index()
    joined = parent[KEYS].drop_duplicates().merge(times, on=KEYS, how="outer", indicator="where")
    joined["times"] = joined["times"].fillna(0).astype(int)
    foreign = (joined["where"] == "right_only").to_numpy()
    bad = joined[foreign | (joined["times"] != 1).to_numpy()]
    rows = [
        {
            **{k: int(row[k]) for k in KEYS},
            "problem": "scanned but not in the parent sample"
            if row["where"] == "right_only"
            else f"scanned {row['times']} times",
        }
        for row in bad.head(MAX_EVIDENCE_ROWS).to_dict("records")
    ]
    detail = (
        f"{len(bad)} of {int((~foreign).sum()):,} parent hosts scanned other than once or not parent hosts; "
        f"{len(candidates):,} scored, {len(unscored):,} unscored"
    )
    return offending_finding("L13", LESSONS["L13"].title, rows, detail, count=len(bad))
