"""The contract of ``evaluate/scores.parquet`` (pandera): one row per test stamp with its model score.

``score`` is the model's logit (finite; flag: score >= threshold); metadata columns follow the stamps.
"""

from __future__ import annotations

import pandera.pandas as pa

SCORES_SCHEMA = pa.DataFrameSchema(
    {
        "stamp_id": pa.Column("int64", unique=True),
        "label": pa.Column("int8", pa.Check.isin([0, 1])),
        "split": pa.Column(str, pa.Check.eq("test")),
        "score": pa.Column("float64", pa.Check(lambda s: s.abs() < float("inf"), error="finite")),
    },
    strict=False,
    coerce=False,
)
