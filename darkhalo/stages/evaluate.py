"""The evaluate stage: the test split scored by the trained model, then the operating points (L4), the
shortcut probes (L9) and the report (darkhalo.metrics.evaluation).

Reads ``inject/stamps/`` (test split), ``train/model.pt`` and ``manifest/`` (for the PSF swap);
writes ``evaluate/scores.parquet``, ``metrics.json``, ``report.html``, ``report.md`` and ``plots/``.
Its gate (darkhalo.audit.judges.judge_metrics): the scores schema, L4 on metrics.json, L9 on the
stored probe measurements.
"""

from __future__ import annotations

from darkhalo import layout
from darkhalo.metrics.evaluation import evaluate, load_test_stamps, model_scorer
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.training.device import resolve_device


def run(ctx: StageContext) -> StageResult:
    meta, images = load_test_stamps(ctx.input("inject"), ctx.spec.stamps.size)
    device = resolve_device(ctx.engine.device)
    score = model_scorer(layout.artifact(ctx.input("train"), layout.MODEL), device, ctx.spec.evaluate.batch_size)
    metrics = evaluate(ctx.spec, meta, images, score, ctx.out, ctx.run_dir, ctx.input("manifest"))
    return StageResult(
        rows={"scores": len(meta)},
        measured={"n_pos": metrics["n_pos"], "n_neg": metrics["n_neg"], "auroc": metrics["auroc"]},
    )
