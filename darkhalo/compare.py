"""Two generations on one shared, realistic test set (the Gen 1 post-mortem's experiment).

Both specs are run through their own stages (contracts apply; a spec that reproduces a failed
generation must waive what it fails, with reasons the audit shows). Then both trained models score
the *corrected* generation's test split — unpaired controls, the survey PSF, prior-based arc
brightness — and the operating points (resolved ones only), the FPR per confuser class, the real sets' rates
beside the simulated ones, the stratified completeness and the shortcut probes are put side by side in
``<out>/compare-<a>-vs-<b>/``.

The specs must share seed, survey and sky splits, so that the test sky is the same HEALPix
regions for both and none of the baseline's training hosts is in it (checked); they may differ in the mock's
texture (``TEXTURE_FIELDS``: pixel noise, faint field galaxies), which changes stamps, not hosts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
from rich.console import Console

from darkhalo import layout
from darkhalo.artifacts import atomic_file, write_json, write_text
from darkhalo.audit.judges import judge_artifact
from darkhalo.metrics.evaluation import ShardedSplit, evaluate, model_scorer
from darkhalo.metrics.report import (
    confuser_table,
    depth_cell,
    gap_line,
    md_table,
    probe_table,
    real_cell,
    roc_plot,
    simulated_rate,
)
from darkhalo.progress import track
from darkhalo.runner import RunError, run_generation
from darkhalo.spec import GenerationSpec
from darkhalo.training.device import resolve_device
from data_contracts.findings import Finding
from data_contracts.metrics import EvaluationMetrics, ReportedPoint, read_metrics

SHARED_SECTIONS = ("seed", "survey", "splits")
#: Survey fields the pair may differ in: they change the stamps' pixels, not which host is where.
TEXTURE_FIELDS = ("noise_correlation", "field_galaxies")


def shared_sky(spec: GenerationSpec) -> dict[str, object]:
    """What fixes a spec's test sky: SHARED_SECTIONS, the survey less its TEXTURE_FIELDS."""
    data = spec.model_dump(mode="json")
    survey = {k: v for k, v in data["survey"].items() if k not in TEXTURE_FIELDS}
    return {name: survey if name == "survey" else data[name] for name in SHARED_SECTIONS}


def check_comparable(baseline: GenerationSpec, corrected: GenerationSpec) -> None:
    """Refuse a pair that shares one run folder (the same generation name) or whose test skies differ (different
    seed, survey hosts or splits)."""
    if baseline.generation == corrected.generation:
        raise RunError(
            f"compare: both specs name the generation {baseline.generation!r}, so both would run in one folder; "
            "give the two specs different `generation` names"
        )
    skies = shared_sky(baseline), shared_sky(corrected)
    differing = [s for s in SHARED_SECTIONS if skies[0][s] != skies[1][s]]
    if differing:
        raise RunError(f"compare: the specs differ in {', '.join(differing)}; they must share them for one test sky")


def training_hosts_in_test(baseline_run: Path, test_meta: pd.DataFrame) -> int:
    """Hosts of the shared test set that the baseline trained or validated on (must be 0)."""
    parts = layout.parts(baseline_run / "manifest", layout.MANIFEST)
    manifest = ds.dataset(parts, format="parquet").to_table(columns=["host_id", "split"]).to_pandas()
    seen = set(manifest.loc[manifest["split"] != "test", "host_id"])
    return int(test_meta["host_id"].isin(seen).sum())


def compare(baseline: GenerationSpec, corrected: GenerationSpec, root: Path, console: Console) -> Path:
    """Run both generations, score both models on the corrected test set, judge each evaluation
    against its own generation's spec (darkhalo.audit.judges, with that spec's waivers), write the comparison."""
    check_comparable(baseline, corrected)
    run_generation(baseline, root, stop="train", console=console)
    run_generation(corrected, root, stop="train", console=console)
    corrected_run = root / corrected.generation
    split = ShardedSplit.open(corrected_run / "inject", corrected.stamps.size)
    leaked = training_hosts_in_test(root / baseline.generation, split.meta)
    if leaked:
        raise RunError(f"compare: {leaked} test stamps sit on hosts the baseline trained on")

    out = root / f"compare-{baseline.generation}-vs-{corrected.generation}"
    device = resolve_device(corrected.engine.device)
    findings: dict[str, list[Finding]] = {}
    for spec in (baseline, corrected):
        console.print(f"[bold]▶[/] scoring {spec.generation}'s model on the shared test set")
        folder = out / spec.generation
        folder.mkdir(parents=True, exist_ok=True)
        model = layout.artifact(root / spec.generation / "train", layout.MODEL)
        score = model_scorer(model, device, corrected.evaluate.batch_size)
        with track(console, f"score test stamps ({spec.generation}'s model)", len(split)) as bar:
            manifest = corrected_run / "manifest"
            memory = corrected.engine.memory_mb
            evaluate(corrected, split, score, folder, corrected_run, manifest, on_scored=bar.advance, memory_mb=memory)
        findings[spec.generation] = spec.invariants.judged(judge_artifact("evaluate", folder, corrected_run, spec))
    write_comparison(out, corrected.generation, len(split), findings)
    return out


def write_comparison(out: Path, test_set: str, n_stamps: int, findings: Mapping[str, Sequence[Finding]]) -> None:
    """``out/compare.json``, ``out/compare.md`` and ``out/roc.png`` (both models' ROC) from each generation's
    ``out/<generation>/metrics.json`` (read through the model, so a file that does not fit is refused naming
    it and the field), its scores and findings."""
    metrics = {name: read_metrics(layout.artifact(out / name, layout.METRICS)) for name in findings}
    curves = {
        name: (pd.read_parquet(layout.artifact(out / name, layout.SCORES), columns=["label", "score"]), metrics[name])
        for name in findings
    }
    with atomic_file(out / "roc.png", "wb") as handle:
        handle.write(roc_plot(curves))
    generations = {
        name: {"metrics": metrics[name].model_dump(mode="json"), "findings": [f.to_dict() for f in findings[name]]}
        for name in findings
    }
    write_json(out / "compare.json", {"test_set": test_set, "generations": generations})
    write_text(out / "compare.md", comparison_markdown(metrics, findings, test_set, n_stamps))


def _rate(point: ReportedPoint) -> str:
    """A point's headline rate (FPR at a completeness target, else completeness) with its covering bootstrap
    interval; without a bootstrap, its exact interval labelled "at this threshold"; unresolved: what it needs."""
    if not point.resolved:
        return f"unresolved (needs {point.needs()})"
    at_completeness = point.target == "completeness"
    rate = point.fpr if at_completeness else point.completeness
    if point.interval is not None:
        return f"{rate:.4f} [{point.interval[0]:.4f}, {point.interval[1]:.4f}]"
    low, high = point.fpr_interval_at_threshold if at_completeness else point.completeness_interval_at_threshold
    return f"{rate:.4f} [{low:.4f}, {high:.4f}] at this threshold"


def _confuser_lines(metrics: Mapping[str, EvaluationMetrics]) -> list[str]:
    """The FPR per confuser class of both models side by side, a table per operating point both resolve (each
    model at its own threshold for that point)."""
    names = list(metrics)
    shared = [p for p in metrics[names[0]].confuser_fpr if all(p in metrics[n].confuser_fpr for n in names)]
    lines = [
        "",
        "## False positives by confuser class",
        "",
        "Each class's FPR at each model's threshold, with its exact 95 % interval at this threshold and "
        "(flagged/controls); 'none' (plain hosts) is the reference.",
        "",
    ]
    if not shared:
        return [*lines, "No operating point has per-class rates in both models' metrics."]
    for point in shared:
        table = confuser_table({name: metrics[name].confuser_fpr[point] for name in names})
        lines += [f"### At {point}", "", md_table(*table), ""]
    return lines


def _real_lines(metrics: Mapping[str, EvaluationMetrics]) -> list[str]:
    """Each real set both models scored: a table of the points both resolve, each model's simulated rate beside its
    real one (each at its own threshold for that point)."""
    names = list(metrics)
    lines = [
        "",
        "## Real data beside the simulation",
        "",
        "Each model at its own threshold for each point: a lens set's recall beside the simulated completeness and "
        "the simulated positives' completeness at the set's depth (simulated minus at-depth: what depth costs; "
        "at-depth minus real: what the sim-to-real shift costs), a non-lens set's flag rate beside the simulated FPR "
        "and its scores tested against the test controls' (two-sample KS), with the exact 95 % interval and (k/n).",
        "",
    ]
    sets = [s for s in metrics[names[0]].real_sets if all(s in metrics[n].real_sets for n in names)]
    if not sets:
        return [*lines, "No real set is in both models' metrics."]
    for name in sets:
        results = {model: metrics[model].real_sets[name] for model in names}
        first = results[names[0]]
        points = [p for p in first.at_points if all(p in r.at_points for r in results.values())]
        lens = first.label == "lens"
        header = ["operating point"]
        for model in names:
            header += [f"{model}: simulated {'completeness' if lens else 'FPR'}"]
            header += [f"{model}: at the set's depth"] if lens else []
            header += [f"{model}: real", f"{model}: visible"]
        rows = []
        for point in points:
            row = [point]
            for model, result in results.items():
                rates = result.at_points[point]
                sim = simulated_rate(result, metrics[model].resolved_points()[point])
                row += [f"{sim:.4g}", *depth_cell(result, point), real_cell(rates.all), real_cell(rates.visible)]
            rows.append(row)
        gaps = [gap_line(model, r, metrics[model].resolved_points()) for model, r in results.items()]
        lines += [
            f"### {name} ({first.label}, {first.n_scored} of {first.n_images} scored)",
            "",
            md_table(header, rows),
            "",
            *(f"- {line}" for line in gaps if line is not None),
            "",
        ]
    return lines


def comparison_markdown(
    metrics: Mapping[str, EvaluationMetrics], findings: Mapping[str, Sequence[Finding]], test_set: str, n_stamps: int
) -> str:
    """The side-by-side tables: operating points (resolved only as numbers), FPR per confuser class, the real sets,
    strata, probes, then the findings."""
    names = list(metrics)
    first = metrics[names[0]]
    lines = [
        f"# {names[0]} vs {names[1]} on {test_set}'s test set",
        "",
        f"{n_stamps} test stamps ({first.n_pos} positives, {first.n_neg} controls on {first.n_neg_hosts} hosts). "
        "Rates with their 95 % bootstrap interval (threshold re-derived per resample: the interval that covers; "
        "where every resample agrees, the exact interval at this threshold); "
        "without a bootstrap, the exact interval at this threshold, labelled so. A target the sample cannot "
        "resolve (distinct control hosts x FPR or positives x (1 - c) below the minimum) is shown as unresolved, "
        "never as a number.",
        "",
        "![Both models' ROC on this test set, log FPR](roc.png)",
        "",
        "## FPR at completeness",
        "",
        "| completeness | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, point in enumerate(first.fpr_at_completeness):
        points = [metrics[n].fpr_at_completeness[i] for n in names]
        cells = [_rate(p) for p in points]
        lines.append(f"| {point.target_value:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Completeness at FPR", "", "| FPR | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, point in enumerate(first.completeness_at_fpr):
        points = [metrics[n].completeness_at_fpr[i] for n in names]
        cells = [_rate(p) for p in points]
        lines.append(f"| {point.target_value:g} | " + " | ".join(cells) + " |")
    lines += _confuser_lines(metrics)
    lines += _real_lines(metrics)
    lines += ["", "## Completeness by theta_E / PSF FWHM at each model's resolved operating points", ""]
    for name in names:
        for point_name, strata in metrics[name].stratified.items():
            bins = strata.get("theta_e_over_psf", [])
            cells = ", ".join(f"[{b.low}, {b.high}): {b.completeness:.2f} (n={b.n})" for b in bins)
            lines.append(f"- {name} at {point_name}: {cells}")
    lines += ["", "## Shortcut probes (L9) and AUROC (secondary)", ""]
    for name in names:
        probes = metrics[name].probes
        if probes is None:
            lines.append(f"- {name}: probes not run; AUROC {metrics[name].auroc:.4f}")
            continue
        for title, (header, rows) in probe_table(probes).items():
            lines += [f"### {name}: {title}; AUROC {metrics[name].auroc:.4f}", "", md_table(header, rows), ""]
    for name in names:
        verdicts = ", ".join(f"{f.id}: {f.verdict}" for f in findings[name])
        lines.append(f"\n{name} findings on the shared test set: {verdicts}")
    return "\n".join(lines) + "\n"
