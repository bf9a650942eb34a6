"""L1 unpaired controls: no host galaxy is both a positive host and a control (data_contracts.lessons)."""

from __future__ import annotations

import pandas as pd

from data_contracts import survey
from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS

KEY = list(survey.KEY)


def check(manifest: pd.DataFrame) -> Finding:
    """Hosts (by sweep key) that appear with label 1 and with label 0, in any split."""
    labels = manifest.groupby(KEY, sort=True)["label"].agg(["min", "max"])
    both = labels[(labels["min"] == 0) & (labels["max"] == 1)].reset_index()
    splits = manifest.groupby(KEY)["split"].agg(lambda s: ",".join(sorted(set(s))))
    rows = [
        {**{k: int(row[k]) for k in KEY}, "splits": splits.loc[tuple(int(row[k]) for k in KEY)]}
        for _, row in both.head(50).iterrows()
    ]
    evidence, _ = evidence_rows(rows)
    n_hosts = len(labels)
    return Finding(
        id="L1",
        title=LESSONS["L1"].title,
        passed=len(both) == 0,
        measured=len(both),
        threshold=0,
        detail=f"{len(both)} of {n_hosts} hosts are both a positive host and a control",
        evidence=evidence,
        n_offending=len(both),
    )
