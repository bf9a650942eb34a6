"""Toy 'survey' stage for the select tests: a small synthetic sweep catalog seeded by the spec, and, when the spec's
sky has its own lenses, their truth table by the survey's own rule (darkhalo.surveys.sky_lenses).

TOY_SURVEY_NAN_ROW (environment) puts a NaN FLUX_R in that row, to drive edge-validation failures.
"""

import os

import numpy as np
from catalogs import synthetic_catalog, write_catalog

from darkhalo.stages.base import StageContext, StageResult
from darkhalo.stages.survey import write_truth

ROWS = 300


def run(ctx: StageContext) -> StageResult:
    catalog = synthetic_catalog(ROWS, seed=ctx.spec.seed)
    if "TOY_SURVEY_NAN_ROW" in os.environ:
        catalog.loc[int(os.environ["TOY_SURVEY_NAN_ROW"]), "FLUX_R"] = np.nan
    write_catalog(catalog, ctx.out / "catalog")
    lenses = getattr(ctx.spec.survey, "sky_lenses", None)
    if lenses is not None:
        write_truth(ctx.out, ctx.spec.seed, lenses)
    return StageResult(rows={"catalog": ROWS})
