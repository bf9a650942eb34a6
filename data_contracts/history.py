"""The contract of ``train/history.parquet`` (pandera): one row per epoch, as the trainer records it.

Losses are the training loss function's mean per stamp; lr the learning rate the epoch ended at;
times in seconds; rates (AUROC, completeness, FPR) in [0, 1] and NaN where undefined (one class only,
or no resolvable FPR); ``val_completeness`` is at ``val_completeness_fpr``, ``select_completeness``
(what the best epoch is chosen by) at ``select_fpr``.
"""

from __future__ import annotations

import numpy as np
import pandera.pandas as pa
from pandera.typing import Series

UNIT = {"min_value": 0, "max_value": 1}


class TrainingHistory(pa.DataFrameModel):
    """One training epoch: its training loss and throughput, then the validation it ended with."""

    epoch: Series[np.int64] = pa.Field(ge=1, unique=True)
    train_loss: Series[np.float64] = pa.Field(ge=0)
    lr: Series[np.float64] = pa.Field(ge=0)
    train_s: Series[np.float64] = pa.Field(ge=0)
    images_per_s: Series[np.float64] = pa.Field(gt=0)
    val_loss: Series[np.float64] = pa.Field(ge=0)
    val_auroc: Series[np.float64] = pa.Field(in_range=UNIT, nullable=True)
    val_completeness: Series[np.float64] = pa.Field(in_range=UNIT, nullable=True)
    val_completeness_fpr: Series[np.float64] = pa.Field(in_range=UNIT)
    val_completeness_resolved: Series[bool]
    select_fpr: Series[np.float64] = pa.Field(in_range=UNIT, nullable=True)
    select_completeness: Series[np.float64] = pa.Field(in_range=UNIT, nullable=True)
    val_s: Series[np.float64] = pa.Field(ge=0)
    epoch_s: Series[np.float64] = pa.Field(ge=0)

    class Config:
        strict = True
        ordered = True
        name = "history"
