"""The contracts of ``darkhalo score``'s output (pandera): ``scores.parquet``, one row per real image scored,
ranked by score, and ``refused.csv``, one row per image refused with its reason.

``score`` is the model's logit; ``rank`` 1 is the highest score. ``filled_fraction`` is the share of the
stamp's pixels (all bands) that had no valid input pixel and took the band's median sky;
``flux_ratio_<band>`` is the resampled image's total flux over the input's (1 for a flux-conserving
resampling).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

#: The most of a stamp's pixels (all bands) that may be filled unless an input allows more (its
#: ``max_filled_fraction``); an image above its limit is refused.
MAX_FILLED_FRACTION = 0.05
#: The most any input may allow: beyond a quarter of made-up sky a stamp is not the cutout any more.
FILLED_FRACTION_CEILING = 0.25


class Ranked(pa.DataFrameModel):
    """The checks of a ranked list (a model with ``score`` and ``rank`` columns mixes them in): finite scores,
    ``rank`` 1, 2, ... down the rows and ``score`` never rising."""

    @pa.check("score", name="finite")
    def _finite(cls, score: pd.Series) -> pd.Series:
        return score.abs() < np.inf

    @pa.dataframe_check(name="ranked")
    def _ranked(cls, frame: pd.DataFrame) -> bool:
        ranks = frame["rank"].to_numpy()
        return bool((ranks == np.arange(1, len(frame) + 1)).all() and (np.diff(frame["score"]) <= 0).all())


class RealImage(pa.DataFrameModel):
    """Which real image a row is: its input description file, its name and its index in that input."""

    input: Series[str]
    name: Series[str]
    index: Series[np.int64] = pa.Field(ge=0)


class RealScores(RealImage, Ranked):
    """A scored real image, in rank order."""

    score: Series[np.float64]
    rank: Series[np.int64] = pa.Field(ge=1)
    filled_fraction: Series[np.float64] = pa.Field(ge=0, le=FILLED_FRACTION_CEILING)
    flux_ratio_g: Series[np.float64]
    flux_ratio_r: Series[np.float64]
    flux_ratio_z: Series[np.float64]

    @pa.dataframe_check(name="one_row_per_image")
    def _unique(cls, frame: pd.DataFrame) -> bool:
        return not frame.duplicated(["input", "index"]).any()

    class Config:
        ordered = True
        strict = True
        name = "real_scores"


class RefusedImages(RealImage):
    """A real image not scored, and why."""

    reason: Series[str]

    class Config:
        ordered = True
        strict = True
        name = "refused_images"
