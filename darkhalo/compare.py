"""Two generations on one shared, realistic test set (the Gen 1 post-mortem's experiment).

Both specs are run through their own stages (contracts apply; a spec that reproduces a failed
generation must waive what it fails, with reasons the audit shows). Then both trained models score
the *corrected* generation's test split — unpaired controls, the survey PSF, prior-based arc
brightness — and the operating points (resolved ones only), the stratified completeness and the
shortcut probes are put side by side in ``<out>/compare-<a>-vs-<b>/``.

The specs must share seed, survey and sky splits, so that the test sky is the same HEALPix
regions for both and none of the baseline's training hosts is in it (checked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from darkhalo.artifacts import write_json, write_text
from darkhalo.runner import RunError, run_generation
from darkhalo.spec import GenerationSpec
from darkhalo.stages.evaluate import evaluate, load_test_stamps, model_scorer
from darkhalo.training.device import resolve_device

SHARED_SECTIONS = ("seed", "survey", "splits")


def check_comparable(baseline: GenerationSpec, corrected: GenerationSpec) -> None:
    """Refuse a pair whose test skies differ (different seed, survey or splits)."""
    differing = [s for s in SHARED_SECTIONS if baseline.digest(s) != corrected.digest(s)]
    if differing:
        raise RunError(f"compare: the specs differ in {', '.join(differing)}; they must share them for one test sky")


def training_hosts_in_test(baseline_run: Path, test_meta: pd.DataFrame) -> int:
    """Hosts of the shared test set that the baseline trained or validated on (must be 0)."""
    manifest = pd.read_parquet(baseline_run / "manifest" / "manifest", columns=["host_id", "split"])
    seen = set(manifest.loc[manifest["split"] != "test", "host_id"])
    return int(test_meta["host_id"].isin(seen).sum())


def compare(baseline: GenerationSpec, corrected: GenerationSpec, root: Path, console: Console) -> Path:
    """Run both generations, score both models on the corrected test set, write the comparison."""
    check_comparable(baseline, corrected)
    run_generation(baseline, root, stop="train", console=console)
    run_generation(corrected, root, stop="train", console=console)
    corrected_run = root / corrected.generation
    meta, images = load_test_stamps(corrected_run / "inject")
    leaked = training_hosts_in_test(root / baseline.generation, meta)
    if leaked:
        raise RunError(f"compare: {leaked} test stamps sit on hosts the baseline trained on")

    out = root / f"compare-{baseline.generation}-vs-{corrected.generation}"
    device = resolve_device(corrected.engine.device)
    results: dict[str, dict[str, Any]] = {}
    for spec in (baseline, corrected):
        console.print(f"[bold]▶[/] scoring {spec.generation}'s model on the shared test set")
        folder = out / spec.generation
        folder.mkdir(parents=True, exist_ok=True)
        score = model_scorer(root / spec.generation / "train" / "model.pt", device, corrected.evaluate.batch_size)
        result = evaluate(corrected, meta, images, score, folder, corrected_run, corrected_run / "manifest")
        results[spec.generation] = {
            "metrics": json.loads((folder / "metrics.json").read_text()),
            "findings": [f.to_dict() for f in result.findings],
        }
    write_json(out / "compare.json", {"test_set": corrected.generation, "generations": results})
    write_text(out / "compare.md", comparison_markdown(results, corrected.generation, len(meta)))
    return out


def _rate(point: dict[str, Any], key: str) -> str:
    if not point["resolved"]:
        return f"unresolved (needs {point['n_neg_needed']:,} negatives)"
    interval = point[f"{key}_interval"]
    return f"{point[key]:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def comparison_markdown(results: dict[str, dict[str, Any]], test_set: str, n_stamps: int) -> str:
    """The side-by-side tables: operating points (resolved only as numbers), strata, probes."""
    names = list(results)
    metrics = {n: results[n]["metrics"] for n in names}
    first = metrics[names[0]]
    lines = [
        f"# {names[0]} vs {names[1]} on {test_set}'s test set",
        "",
        f"{n_stamps} test stamps ({first['n_pos']} positives, {first['n_neg']} controls). Rates with 95 % exact "
        "intervals; an FPR target the negatives cannot resolve is shown as unresolved, never as a number.",
        "",
        "## FPR at completeness",
        "",
        "| completeness | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, point in enumerate(first["fpr_at_completeness"]):
        cells = [_rate(metrics[n]["fpr_at_completeness"][i], "fpr") for n in names]
        lines.append(f"| {point['target_value']:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Completeness at FPR", "", "| FPR | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, point in enumerate(first["completeness_at_fpr"]):
        cells = [_rate(metrics[n]["completeness_at_fpr"][i], "completeness") for n in names]
        lines.append(f"| {point['target_value']:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Completeness by theta_E / PSF FWHM at each model's resolved operating points", ""]
    for name in names:
        for point_name, strata in metrics[name].get("stratified", {}).items():
            rows = strata.get("theta_e_over_psf", [])
            cells = ", ".join(f"[{r['low']}, {r['high']}): {r['completeness']:.2f} (n={r['n']})" for r in rows)
            lines.append(f"- {name} at {point_name}: {cells}")
    lines += ["", "## Shortcut probes (L9) and AUROC (secondary)", ""]
    for name in names:
        probes = metrics[name].get("probes", {})
        blob = ", ".join(f"{k}: {v:.4f}" for k, v in probes.get("blob_flag_rates", {}).items())
        lines.append(
            f"- {name}: core-pixel AUC {probes.get('core_auc', float('nan')):.3f}; blob flag rates {blob or '-'}"
        )
        lines.append(f"  PSF swap: {json.dumps(probes.get('psf_swap', 'not run'))}; AUROC {metrics[name]['auroc']:.4f}")
    for name in names:
        verdicts = ", ".join(f"{f['id']}: {f['verdict']}" for f in results[name]["findings"])
        lines.append(f"\n{name} findings on the shared test set: {verdicts}")
    return "\n".join(lines) + "\n"
