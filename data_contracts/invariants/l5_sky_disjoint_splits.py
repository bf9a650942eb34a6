"""L5 sky-disjoint splits: no host and no HEALPix region in two splits (data_contracts.lessons)."""

from __future__ import annotations

import pandas as pd

from data_contracts import survey
from data_contracts.findings import Finding, offending_finding
from data_contracts.lessons import LESSONS

KEY = list(survey.KEY)


def check(manifest: pd.DataFrame) -> Finding:
    """Hosts and ``healpix`` pixels whose stamps fall in more than one split."""
    rows = []
    for group, name in ((KEY, "host"), (["healpix"], "healpix")):
        counts = manifest.groupby(group)["split"].agg(lambda s: sorted(set(s)))
        for key, splits in counts[counts.map(len) > 1].items():
            rows.append({"kind": name, "key": str(key), "splits": ",".join(splits)})
    detail = f"{len(rows)} hosts or sky pixels span more than one split"
    return offending_finding("L5", LESSONS["L5"].title, rows, detail)
