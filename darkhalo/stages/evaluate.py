"""The evaluate stage: the test split scored by the trained model, then the operating points (L4), the
shortcut probes (L9) and the report (darkhalo.metrics.evaluation).

Reads ``inject/stamps/`` (test split, streamed: ``engine.memory_mb`` bounds the stamps held at once),
``train/model.pt`` and ``manifest/`` (for the PSF swap); writes ``evaluate/scores.parquet``,
``metrics.json``, ``report.html``, ``report.md`` and ``plots/``. Its gate
(darkhalo.audit.judges.judge_metrics): the scores schema, L4 on metrics.json, L9 on the stored probe
measurements. contract.json's measured values carry every resolved operating point.
"""

from __future__ import annotations

from typing import Any

from darkhalo import layout
from darkhalo.metrics.evaluation import ShardedSplit, evaluate, model_scorer
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.training.device import resolve_device
from data_contracts.metrics import OperatingPointSummary


def resolved_operating_points(metrics: OperatingPointSummary) -> dict[str, dict[str, Any]]:
    """Each resolved L4 point by name (``fpr=0.001``, ``completeness=0.9``): its completeness, FPR and
    threshold (model logit), and the 95 % interval of its headline rate (None without a bootstrap)."""
    return {
        name: {"completeness": p.completeness, "fpr": p.fpr, "threshold": p.threshold, "interval": p.interval}
        for name, p in metrics.resolved_points().items()
    }


def run(ctx: StageContext) -> StageResult:
    split = ShardedSplit.open(ctx.input("inject"), ctx.spec.stamps.size)
    device = resolve_device(ctx.engine.device)
    score = model_scorer(layout.artifact(ctx.input("train"), layout.MODEL), device, ctx.spec.evaluate.batch_size)
    with ctx.track("score test stamps", len(split), unit="stamps") as bar:
        metrics = evaluate(
            ctx.spec,
            split,
            score,
            ctx.out,
            ctx.run_dir,
            ctx.input("manifest"),
            on_scored=bar.advance,
            memory_mb=ctx.engine.memory_mb,
        )
    return StageResult(
        rows={"scores": len(split)},
        measured={
            "n_pos": metrics["n_pos"],
            "n_neg": metrics["n_neg"],
            "auroc": metrics["auroc"],
            "operating_points": resolved_operating_points(OperatingPointSummary.model_validate(metrics)),
        },
    )
