"""The contract of ``evaluate/scores.parquet`` (pandera): one row per test stamp with its model score.

``score`` is the model's logit (finite; flag: score >= threshold); ``host_id`` names the stamp's host, so
that L4 can count the distinct control hosts an FPR is resolved on; the stamps' record columns may follow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.stamps import StampRow


class Scores(StampRow):
    """A test stamp's name, its host and its model's logit, in this order; other columns (the stamp's record)
    may be present."""

    split: Series[str] = pa.Field(eq="test")
    host_id: Series[np.int64]
    score: Series[np.float64]

    @pa.check("score", name="finite")
    def _finite(cls, score: pd.Series) -> pd.Series:
        return score.abs() < np.inf

    class Config:
        ordered = True
        name = "scores"
