"""Toy 'survey' stage for the select tests: a small synthetic sweep catalog seeded by the spec.

TOY_SURVEY_NAN_ROW (environment) puts a NaN FLUX_R in that row, to drive edge-validation failures.
"""

import os

import numpy as np
from catalogs import synthetic_catalog, write_catalog

from darkhalo.stages.base import StageContext, StageResult

ROWS = 300


def run(ctx: StageContext) -> StageResult:
    catalog = synthetic_catalog(ROWS, seed=ctx.spec.seed)
    if "TOY_SURVEY_NAN_ROW" in os.environ:
        catalog.loc[int(os.environ["TOY_SURVEY_NAN_ROW"]), "FLUX_R"] = np.nan
    write_catalog(catalog, ctx.out / "catalog")
    return StageResult(rows={"catalog": ROWS})
