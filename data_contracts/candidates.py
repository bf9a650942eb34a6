"""The scan's contracts (pandera): ``candidates.parquet``, one row per parent-sample host scored, ranked by
score, and ``unscored.parquet``, one row per parent host without a usable cutout, with the reason.

``score`` is the model's logit; ``rank`` 1 is the highest score. ``completeness`` and ``fpr`` are the
evaluation's simulated completeness and false-positive rate at a threshold equal to the row's score, and
``purity`` the share of lenses expected above that threshold at the spec's lens prevalence p:
p c / (p c + (1 - p) fpr). ``known_lens_name`` is the known lens within the selection's radius ("" for none);
``sky_lens`` is the mock sky's truth (NA on a real survey).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.real_scores import Ranked
from data_contracts.survey import KEY


class ScanHost(pa.DataFrameModel):
    """Which parent-sample host a row is (its sweep key) and where it is (degrees)."""

    RELEASE: Series[np.int16]
    BRICKID: Series[np.int32]
    OBJID: Series[np.int32]
    RA: Series[np.float64]
    DEC: Series[np.float64]


class Candidates(ScanHost, Ranked):
    """A scored parent host, in rank order."""

    score: Series[np.float64]
    rank: Series[np.int64] = pa.Field(ge=1)
    completeness: Series[np.float64] = pa.Field(ge=0, le=1)
    fpr: Series[np.float64] = pa.Field(ge=0, le=1)
    purity: Series[np.float64] = pa.Field(ge=0, le=1)
    known_lens: Series[bool]
    known_lens_name: Series[str]
    sky_lens: Series[pd.BooleanDtype] = pa.Field(nullable=True)

    class Config:
        ordered = True
        strict = True
        coerce = False
        name = "candidates"


class Unscored(ScanHost):
    """A parent host the scan could not score, and why."""

    reason: Series[str] = pa.Field(str_length={"min_value": 1})

    class Config:
        ordered = True
        strict = True
        name = "unscored"


#: The grades a person gives a candidate on the grading page (A: definite lens, B: probable, C: possible).
GRADES = ("A", "B", "C", "not_lens")
#: The grades that count a candidate as a lens in the graded purity.
LENS_GRADES = ("A", "B")


class Grades(pa.DataFrameModel):
    """A grading round's export: one row per graded candidate (its sweep key, its rank in the scan, the grade)."""

    RELEASE: Series[np.int64]
    BRICKID: Series[np.int64]
    OBJID: Series[np.int64]
    rank: Series[np.int64] = pa.Field(ge=1)
    grade: Series[str] = pa.Field(isin=GRADES)

    @pa.dataframe_check(name="one_grade_per_candidate")
    def _unique(cls, frame: pd.DataFrame) -> bool:
        return not frame.duplicated(list(KEY)).any()

    class Config:
        ordered = True
        strict = True
        name = "grades"


class GradedCandidates(Grades):
    """``grades/grades.parquet``: a grading round's grades in rank order, each with its candidate's position, score,
    expected purity, known-lens match and, on the mock sky, truth (as in Candidates)."""

    RA: Series[np.float64]
    DEC: Series[np.float64]
    score: Series[np.float64]
    purity: Series[np.float64] = pa.Field(ge=0, le=1)
    known_lens: Series[bool]
    known_lens_name: Series[str]
    sky_lens: Series[pd.BooleanDtype] = pa.Field(nullable=True)

    @pa.dataframe_check(name="in_rank_order")
    def _in_rank_order(cls, frame: pd.DataFrame) -> bool:
        return bool(frame["rank"].is_monotonic_increasing)

    class Config:
        ordered = True
        strict = True
        name = "graded_candidates"
