"""The evaluate stage: the test split scored by the trained model, then the operating points (L4), the
shortcut probes (L9) and the report (darkhalo.metrics.evaluation).

Reads ``inject/stamps/`` (test split, streamed: ``engine.memory_mb`` bounds the stamps held at once),
``train/model.pt`` and ``manifest/`` (for the PSF swap). With ``engine.score_on: executors`` the test stamps are
read and scored in Spark tasks, one per shard (``engine.memory_mb`` bounds what each task holds), with the model
loaded once per executor worker, and so are the blob, core and ring probes and the positives at the real sets'
depths (darkhalo.task_scoring); the driver still scores the real sets and the PSF swap and reads the galleries' few
stamps. Writes ``evaluate/scores.parquet``,
``metrics.json``, ``report.html``, ``report.md`` and ``plots/``. Its gate
(darkhalo.audit.judges.judge_metrics): the scores schema, L4 on metrics.json, L9 on the stored probe
measurements. contract.json's measured values carry every resolved operating point.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from darkhalo import layout
from darkhalo.metrics.evaluation import ShardedSplit, evaluate, model_scorer
from darkhalo.progress import spark_job
from darkhalo.real_inputs import input_files
from darkhalo.spec import GenerationSpec
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.task_scoring import score_on_executors
from darkhalo.training.device import resolve_device
from data_contracts.metrics import OperatingPointSummary


def external_inputs(spec: GenerationSpec) -> list[Path]:
    """The real sets' files outside the run: each input (a cutout folder, or its description and the files it
    names) and each visibility index."""
    files: list[Path] = []
    for real_set in spec.evaluate.real_sets:
        files += input_files(Path(real_set.input))
        if real_set.visible is not None:
            files.append(Path(real_set.visible.index))
    return files


def resolved_operating_points(metrics: OperatingPointSummary) -> dict[str, dict[str, Any]]:
    """Each resolved L4 point by name (``fpr=0.001``, ``completeness=0.9``): its completeness, FPR and
    threshold (model logit), and the 95 % interval of its headline rate (None without a bootstrap)."""
    return {
        name: {"completeness": p.completeness, "fpr": p.fpr, "threshold": p.threshold, "interval": p.interval}
        for name, p in metrics.resolved_points().items()
    }


def run(ctx: StageContext) -> StageResult:
    split = ShardedSplit.open(ctx.input("inject"), ctx.spec.stamps.size)
    model, engine = layout.artifact(ctx.input("train"), layout.MODEL), ctx.engine
    batch_size = ctx.spec.evaluate.batch_size
    score = model_scorer(model, resolve_device(engine.device), batch_size)
    evaluated = partial(
        evaluate, ctx.spec, split, score, ctx.out, ctx.run_dir, ctx.input("manifest"), memory_mb=engine.memory_mb
    )
    if engine.score_on == "executors":
        spark = ctx.spark()
        with spark_job(spark, ctx.console, "score test stamps", len(split)) as done:
            metrics = evaluated(run_shards=score_on_executors(spark, model, engine.device, batch_size))
            done()
    else:
        with ctx.track("score test stamps", len(split), unit="stamps") as bar:
            metrics = evaluated(on_scored=bar.advance)
    return StageResult(
        rows={"scores": len(split)},
        measured={
            "n_pos": metrics["n_pos"],
            "n_neg": metrics["n_neg"],
            "auroc": metrics["auroc"],
            "operating_points": resolved_operating_points(OperatingPointSummary.model_validate(metrics)),
        },
    )
