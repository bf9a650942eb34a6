"""The scan stage: the search itself. Every parent-sample host is cut out from the survey provider and scored by the
trained model in Spark tasks (darkhalo.scanning), ranked, given the evaluation's simulated completeness, FPR and
expected purity at its score, matched to the known lenses (the select stage's flag) and, on the mock sky, to the
sky's own lenses (its truth table, which only this stage and the audit read: L14).

Writes ``candidates.parquet`` (data_contracts.candidates.Candidates), ``unscored.parquet`` (hosts without a usable
cutout, with the reason), ``search.json`` (data_contracts.search), ``report.md`` with ``plots/search.png``, and
``grade.html``, the top candidates for grading in a browser (darkhalo.grading). Its gate
(darkhalo.audit.judges.judge_scan): the schemas, L13 (every parent host scored once or listed) and L14.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from darkhalo import layout, tables
from darkhalo.artifacts import atomic_file, write_json, write_text
from darkhalo.grading import grade_page
from darkhalo.metrics.operating_points import Sample
from darkhalo.metrics.search import (
    expected_purity,
    headline,
    search_markdown,
    search_plot,
    search_result,
    share_at_least,
)
from darkhalo.progress import spark_job
from darkhalo.scanning import ScanSettings, host_slices, scan_slice
from darkhalo.sparkio import run_tasks
from darkhalo.spec import GenerationSpec, LegacySurvey, MockSurvey
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.provider import provider_for
from data_contracts.candidates import Candidates, Unscored
from data_contracts.metrics import OperatingPointSummary
from data_contracts.search import SearchResult
from data_contracts.survey import KEY

PARENT_COLUMNS = [*KEY, "RA", "DEC", "KNOWN_LENS", "KNOWN_LENS_NAME"]


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """A legacy survey's cutout folder, which the scan reads for every parent host (stamped by its listing)."""
    survey = spec.survey
    return [survey.cutouts.dir] if isinstance(survey, LegacySurvey) and survey.cutouts and survey.cutouts.dir else []


def run(ctx: StageContext) -> StageResult:
    spec = ctx.spec
    parts = layout.parts(ctx.input("select"), layout.PARENT_SAMPLE)
    parent = pd.concat([tables.read_table(p, PARENT_COLUMNS).to_pandas() for p in parts], ignore_index=True)
    settings = ScanSettings(
        survey=spec.survey,
        seed=spec.seed,
        size=spec.stamps.size,
        model=layout.artifact(ctx.input("train"), layout.MODEL),
        device=ctx.engine.device,
        batch_size=spec.evaluate.batch_size,
    )
    slices = host_slices(parts, spec.scan.hosts_per_task)
    ctx.console.print(f"  scanning {len(parent):,} parent hosts in {len(slices)} tasks")
    spark = ctx.spark()
    with spark_job(spark, ctx.console, "scanning", len(parent), unit="hosts") as done:
        scanned = pd.concat(run_tasks(spark, slices, partial(scan_slice, settings=settings)), ignore_index=True)
        done()
    scanned = parent.merge(scanned, on=list(KEY), how="left", validate="one_to_one")

    scores = tables.read_table(layout.artifact(ctx.input("evaluate"), layout.SCORES), ["label", "score"]).to_pandas()
    pos = Sample.of(scores.loc[scores["label"] == 1, "score"].to_numpy(), "test positive")
    neg = Sample.of(scores.loc[scores["label"] == 0, "score"].to_numpy(), "test control")
    truth = _sky_truth(ctx, scanned)
    candidates, unscored = _ranked(scanned, truth, pos, neg, spec.evaluate.lens_prevalence)

    metrics_json = layout.artifact(ctx.input("evaluate"), layout.METRICS).read_text()
    metrics = OperatingPointSummary.model_validate_json(metrics_json)
    result = search_result(
        candidates,
        unscored,
        metrics.resolved_points(),
        spec.scan.budgets_per_million,
        spec.evaluate.lens_prevalence,
        spec.evaluate.confidence,
        sky_unscored=None if truth is None else int(truth[scanned["score"].isna()].sum()),
    )
    _write(ctx.out, candidates, unscored, result, ctx.run_dir.name)
    top = candidates.head(spec.scan.grade_top)
    stamps = provider_for(spec.survey, spec.seed).cutouts(_host_rows(parts, top), spec.stamps.size).images
    write_text(ctx.out / layout.GRADE_PAGE, grade_page(top, stamps, f"darkhalo grading: {ctx.run_dir.name}"))
    for line in headline(result).splitlines():
        ctx.console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    return StageResult(
        rows={"candidates": len(candidates), "unscored": len(unscored)},
        measured={"search": result.model_dump(mode="json")},
    )


def _sky_truth(ctx: StageContext, scanned: pd.DataFrame) -> pd.Series | None:
    """Whether each scanned host is one of the mock sky's own lenses (None on a real survey, which has no truth)."""
    survey = ctx.spec.survey
    if not isinstance(survey, MockSurvey) or survey.sky_lenses is None:
        return None
    path = layout.artifact(ctx.input("survey"), layout.SKY_LENSES)
    lenses = tables.read_table(path, list(KEY)).to_pandas().assign(sky_lens=True)
    flags = scanned[list(KEY)].merge(lenses, on=list(KEY), how="left", validate="one_to_one")["sky_lens"]
    return flags.fillna(False).astype(bool)


def _ranked(
    scanned: pd.DataFrame, truth: pd.Series | None, pos: Sample, neg: Sample, prevalence: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scored hosts ranked (Candidates) and the unscored ones with their reasons (Unscored)."""
    sky = pd.array([pd.NA] * len(scanned), dtype="boolean") if truth is None else pd.array(truth, dtype="boolean")
    scanned = scanned.assign(sky_lens=sky)
    usable = scanned["score"].notna().to_numpy()
    unscored = scanned.loc[~usable, [*KEY, "RA", "DEC", "reason"]].reset_index(drop=True)
    scored = scanned.loc[usable].sort_values(["score", *KEY], ascending=[False, True, True, True], kind="stable")
    score = scored["score"].to_numpy(np.float64)
    candidates = pd.DataFrame(
        {
            **{k: scored[k].to_numpy() for k in (*KEY, "RA", "DEC")},
            "score": score,
            "rank": np.arange(1, len(scored) + 1, dtype=np.int64),
            "completeness": share_at_least(pos, score),
            "fpr": share_at_least(neg, score),
            "purity": expected_purity(prevalence, pos, neg, score),
            "known_lens": scored["KNOWN_LENS"].to_numpy(bool),
            "known_lens_name": scored["KNOWN_LENS_NAME"].to_numpy(str).astype(object),
            "sky_lens": scored["sky_lens"].array,
        }
    )
    return Candidates.validate(candidates), Unscored.validate(unscored)


def _host_rows(parts: list[Path], top: pd.DataFrame) -> pd.DataFrame:
    """The parent sample's full rows of the candidates ``top``, in their rank order (the provider's input)."""
    wanted = pc.field("OBJID").isin(top["OBJID"].to_numpy())
    rows = pd.concat([tables.read_table(p).filter(wanted).to_pandas() for p in parts], ignore_index=True)
    return top[list(KEY)].merge(rows, on=list(KEY), how="left", validate="one_to_one")


def _write(out: Path, candidates: pd.DataFrame, unscored: pd.DataFrame, result: SearchResult, generation: str) -> None:
    """candidates.parquet, unscored.parquet, search.json, report.md and plots/search.png into ``out``."""
    for name, frame in ((layout.CANDIDATES, candidates), (layout.UNSCORED, unscored)):
        with atomic_file(out / name, "wb") as handle:
            frame.to_parquet(handle, index=False)
    write_json(out / layout.SEARCH, result.model_dump(mode="json"))
    write_text(out / "report.md", search_markdown(result, generation))
    with atomic_file(out / "plots" / "search.png", "wb") as handle:
        handle.write(search_plot(candidates))
