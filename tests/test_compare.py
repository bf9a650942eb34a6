"""darkhalo compare: which spec pairs share a test sky, the leak check, the side-by-side tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from conftest import SPECS, spec_data

from darkhalo.artifacts import write_json
from darkhalo.compare import check_comparable, comparison_markdown, training_hosts_in_test, write_comparison
from darkhalo.metrics.real_recall import AtDepth, DepthNoise, ScoredSet, set_result
from darkhalo.metrics.report import confuser_cell, real_cell
from darkhalo.metrics.summary import evaluation_metrics
from darkhalo.runner import RunError
from darkhalo.spec import RealSet, load_spec, spec_from_dict
from data_contracts.findings import Finding
from data_contracts.metrics import EvaluationMetrics, Probes, PsfSwap, SwappedCompleteness


def test_the_shipped_pair_shares_seed_survey_and_splits() -> None:
    check_comparable(load_spec(SPECS / "compare_gen1_recipe.yaml"), load_spec(SPECS / "embedded.yaml"))


def test_a_pair_on_different_skies_is_refused() -> None:
    other = spec_data("embedded")
    other["splits"] = {"nside": 128}
    with pytest.raises(RunError, match="splits"):
        check_comparable(load_spec(SPECS / "compare_gen1_recipe.yaml"), spec_from_dict(other))


def test_a_pair_may_differ_in_noise_texture_but_not_in_hosts() -> None:
    # white vs correlated pixel noise: the same hosts in the same regions, so one test sky
    check_comparable(load_spec(SPECS / "embedded_white_noise.yaml"), load_spec(SPECS / "embedded.yaml"))
    other = spec_data("embedded_white_noise")
    other["survey"]["n_objects"] += 1
    with pytest.raises(RunError, match="survey"):
        check_comparable(spec_from_dict(other), load_spec(SPECS / "embedded.yaml"))


def test_training_hosts_in_the_test_set_are_counted(tmp_path) -> None:
    (tmp_path / "manifest" / "manifest").mkdir(parents=True)
    pd.DataFrame({"host_id": [1, 2, 3], "split": ["train", "val", "test"]}).to_parquet(
        tmp_path / "manifest" / "manifest" / "part-00000.parquet"
    )
    assert training_hosts_in_test(tmp_path, pd.DataFrame({"host_id": [3, 4]})) == 0
    assert training_hosts_in_test(tmp_path, pd.DataFrame({"host_id": [1, 2, 3]})) == 2


def _scores(shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "label": np.r_[np.ones(200, int), np.zeros(400, int)],
            "host_id": np.arange(600),
            "score": np.r_[rng.normal(shift, 1, 200), rng.normal(0, 1, 400)],
            "theta_e": np.r_[rng.uniform(0.8, 2, 200), np.full(400, np.nan)],
            "psfsize_r": np.full(600, 1.3),
            "confuser": np.r_[np.full(300, "none"), np.full(300, "ring")],
        }
    )


def _metrics(shift: float) -> EvaluationMetrics:
    return evaluation_metrics(
        _scores(shift),
        min_expected_fp=10,
        confidence=0.95,
        bootstrap_samples=0,
        seed=0,
        survey_hosts=10**6,
        prevalence=1e-3,
    )


def test_the_comparison_shows_resolved_points_as_numbers_and_unresolved_ones_as_such() -> None:
    metrics = {"gen1": _metrics(0.5), "gen2": _metrics(3.0)}
    text = comparison_markdown(metrics, {"gen1": [], "gen2": []}, "gen2", 600)
    assert "| 0.01 |" in text and "unresolved (needs 1,000,000 negatives)" in text  # FPR 1e-5 with 400 controls
    gen2_fpr_at_90 = metrics["gen2"].fpr_at_completeness[2].fpr
    assert f"{gen2_fpr_at_90:.4f}" in text
    assert "- gen1: probes not run" in text


def test_the_comparison_shows_each_classs_fpr_for_both_models_at_each_shared_point() -> None:
    metrics = {"gen1": _metrics(0.5), "gen2": _metrics(3.0)}
    text = comparison_markdown(metrics, {"gen1": [], "gen2": []}, "gen2", 600)
    section = text.split("## False positives by confuser class")[1].split("## Completeness by theta_E")[0]
    shared = [p for p in metrics["gen1"].confuser_fpr if p in metrics["gen2"].confuser_fpr]
    assert shared == [f"completeness={c:g}" for c in (0.95, 0.9, 0.85, 0.8, 0.7)]  # 400 hosts x 1e-2 < 10
    assert (
        section.count("### At ") == len(shared)
        and "| confuser class | controls | distinct hosts | gen1 | gen2 |" in section
    )
    for point in shared:
        table = section.split(f"### At {point}\n")[1].split("###")[0]
        for value, n in (("none", 100), ("ring", 300)):
            cells = [confuser_cell(metrics[g].confuser_fpr[point][value]) for g in ("gen1", "gen2")]
            assert f"| {value} | {n} | {n} | {cells[0]} | {cells[1]} |" in table
    ring = metrics["gen1"].confuser_fpr["completeness=0.9"]["ring"]
    assert ring.resolved and f"({ring.n_flagged}/300)" in section
    assert "unresolved (needs" in section  # gen2 flags too few controls at completeness 0.95 for 100 plain hosts


def test_the_comparison_shows_each_models_probes_as_a_table() -> None:
    names = [f"completeness={c:g}" for c in (0.95, 0.9)]
    swap = PsfSwap(
        n_positives=200,
        injection_psf="survey",
        completeness=dict.fromkeys(names, SwappedCompleteness(survey=0.9, gaussian=0.8, change=-0.1)),
    )
    probes = Probes(
        core_auc=0.6,
        ring_auc=0.9,
        core_minus_ring_auc_lower=-0.25,
        fpr_at_thresholds=dict.fromkeys(names, 0.02),
        blob_flag_rates=dict.fromkeys(names, 0.15),
        psf_swap=swap,
    )
    metrics = {"gen1": _metrics(0.5), "gen2": _metrics(3.0).model_copy(update={"probes": probes})}
    text = comparison_markdown(metrics, {"gen1": [], "gen2": []}, "gen2", 600)
    assert "### gen2: Shortcut probes (core-pixel AUC 0.600, ring AUC 0.900, core - ring >= -0.250 at 95 %)" in text
    assert "| completeness=0.95 | 0.02 | 0.15 | 0.900 → 0.800 (-0.100) |" in text
    assert "{" not in text.split("## Shortcut probes")[1]  # no raw JSON


#: The 200 simulated positives' scores at the real set's depth (logits), own sky sigma 0.002/0.003/0.008 nanomaggies.
AT_DEPTH = np.linspace(-3, 3, 200)


def _with_real_lenses(metrics: EvaluationMetrics, scores: np.ndarray) -> EvaluationMetrics:
    """``metrics`` with a real lens set of 20 images scored ``scores``, the first 8 visible, at its resolved points,
    and the 200 positives at its depth (sky sigma 0.008/0.012/0.032) scored ``AT_DEPTH``."""
    scored = ScoredSet(
        RealSet(name="ps1", input="ps1.yaml", label="lens"),
        [f"lens{i}" for i in range(20)],
        scores,
        np.zeros((20, 3, 8, 8), np.float32),
        np.arange(20) < 8,
        [],
        20,
    )
    noise = DepthNoise("ps1", np.array([0.008, 0.012, 0.032]), 0)
    depth = AtDepth(noise, np.tile([0.002, 0.003, 0.008], (200, 1)), AT_DEPTH)
    result = set_result(scored, metrics.resolved_points(), 0.95, np.zeros(400), depth)
    return metrics.model_copy(update={"real_sets": {"ps1": result}})


def test_the_comparison_shows_both_models_real_rates_beside_their_simulated_ones() -> None:
    real = np.linspace(-2, 4, 20)
    metrics = {"gen1": _with_real_lenses(_metrics(0.5), real), "gen2": _with_real_lenses(_metrics(3.0), real + 1)}
    text = comparison_markdown(metrics, {"gen1": [], "gen2": []}, "gen2", 600)
    section = text.split("## Real data beside the simulation")[1].split("## Completeness by theta_E")[0]
    assert "### ps1 (lens, 20 of 20 scored)" in section
    assert (
        "| operating point | gen1: simulated completeness | gen1: at the set's depth | gen1: real | gen1: visible | "
        "gen2: simulated"
    ) in section
    point = "completeness=0.85"  # the one REAL_POINTS member 200 positives and 400 control hosts resolve
    assert list(metrics["gen1"].real_sets["ps1"].at_points) == [point]
    cells = []
    for name in ("gen1", "gen2"):
        rates = metrics[name].real_sets["ps1"].at_points[point]
        simulated = metrics[name].resolved_points()[point].completeness
        threshold = metrics[name].resolved_points()[point].threshold
        deep = metrics[name].real_sets["ps1"].at_depth.at_points[point]
        cells += [f"{simulated:.4g}", real_cell(deep), real_cell(rates.all), real_cell(rates.visible)]
        assert rates.all.n_flagged == (real + (name == "gen2") >= threshold).sum()
        assert deep.n == 200 and deep.n_flagged == np.count_nonzero(np.greater_equal(AT_DEPTH, threshold))
        cost = f"depth costs {simulated - deep.rate:+.3f}, the sim-to-real shift {deep.rate - rates.all.rate:+.3f}"
        assert f"- {name} at {point}: simulated completeness {simulated:.3f}" in section and cost in section
    assert f"| {point} | " + " | ".join(cells) + " |" in section


def _write_generations(out: Path) -> dict[str, list[Finding]]:
    for name, shift in (("gen1", 0.5), ("gen2", 3.0)):
        write_json(out / name / "metrics.json", _metrics(shift).model_dump(mode="json"))
        _scores(shift).to_parquet(out / name / "scores.parquet")
    l1 = "unpaired controls"
    return {"gen1": [Finding("L1", l1, False, 3, 0)], "gen2": [Finding("L1", l1, True)]}


def test_the_comparison_is_written_from_each_generations_metrics_json(tmp_path: Path) -> None:
    write_comparison(tmp_path, "gen2", 600, _write_generations(tmp_path))
    written = json.loads((tmp_path / "compare.json").read_text())
    assert written["test_set"] == "gen2" and list(written["generations"]) == ["gen1", "gen2"]
    assert EvaluationMetrics.model_validate(written["generations"]["gen2"]["metrics"]) == _metrics(3.0)
    assert written["generations"]["gen1"]["metrics"]["confuser_fpr"]["completeness=0.9"]["ring"]["n"] == 300
    assert written["generations"]["gen1"]["findings"][0]["verdict"] == "FAIL"
    text = (tmp_path / "compare.md").read_text()
    assert "gen1 findings on the shared test set: L1: FAIL" in text
    assert "](roc.png)" in text
    assert min(mpimg.imread(tmp_path / "roc.png").shape[:2]) > 300  # both models' ROC, a picture


def test_a_metrics_json_missing_a_field_is_refused_naming_the_file_and_the_field(tmp_path: Path) -> None:
    findings = _write_generations(tmp_path)
    path = tmp_path / "gen2" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["completeness_at_fpr"][1]["fpr_interval_at_threshold"]
    path.write_text(json.dumps(metrics))
    message = f"{path}: not a valid metrics.json: completeness_at_fpr[1].fpr_interval_at_threshold: missing"
    with pytest.raises(ValueError, match=re.escape(message)):
        write_comparison(tmp_path, "gen2", 600, findings)
    assert not (tmp_path / "compare.md").exists()
