"""The report: a self-contained html (every image embedded), markdown with its plots, every table, no verdicts."""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from darkhalo.artifacts import write_json
from darkhalo.metrics.report import Gallery, rgb, write_report
from darkhalo.metrics.summary import evaluation_metrics
from data_contracts.metrics import Probes, PsfSwap, SwappedCompleteness


def _scores(n_pos: int, n_neg: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    pos = pd.DataFrame(
        {
            "label": 1,
            "score": rng.normal(2, 1, n_pos),
            "theta_e": rng.uniform(0.5, 2.0, n_pos),
            "psfsize_r": rng.uniform(1.0, 1.6, n_pos),
            "src_mag_r": rng.uniform(22, 25, n_pos),
            "arc_snr": rng.lognormal(3, 1, n_pos),
            "host_mag_r": rng.uniform(18, 21, n_pos),
        }
    )
    spiral = np.arange(n_neg) % 4 == 0  # a quarter of the controls, scored higher
    neg = pd.DataFrame(
        {"label": 0, "score": rng.normal(0, 1, n_neg) + spiral, "confuser": np.where(spiral, "spiral", "none")}
    )
    frame = pd.concat([pos, neg], ignore_index=True).assign(host_id=lambda f: np.arange(len(f)))
    return frame.fillna({"confuser": "none"})


def test_report_is_self_contained_and_shows_unresolved_targets(tmp_path: Path) -> None:
    scores = _scores(300, 2000)
    metrics = evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=20, seed=0, survey_hosts=10**6, prevalence=1e-3
    )
    # 300 positives resolve completeness 0.95 (15 missed) and lower, not 0.99 (3 missed)
    assert set(metrics.stratified) == {f"completeness={c:g}" for c in (0.95, 0.9, 0.85, 0.8, 0.7)} | {"fpr=0.01"}
    assert metrics.stratified["fpr=0.01"]["theta_e_over_psf"]
    names = [f"completeness={c:g}" for c in (0.99, 0.95, 0.9, 0.85, 0.8, 0.7)]
    swap = SwappedCompleteness(survey=0.8, gaussian=0.9, change=0.1)
    probes = Probes(
        core_auc=0.512,
        ring_auc=0.9,
        core_minus_ring_auc_lower=-0.43,
        fpr_at_thresholds=dict.fromkeys(names, 0.1),
        blob_flag_rates=dict.fromkeys(names, 0.15),
        psf_swap=PsfSwap(n_positives=300, injection_psf="survey", completeness=dict.fromkeys(names, swap)),
    )
    metrics = metrics.model_copy(update={"probes": probes})
    write_json(tmp_path / "metrics.json", metrics.model_dump(mode="json"))
    stamps = np.random.default_rng(1).normal(0, 0.01, (4, 3, 16, 16)).astype(np.float32)
    write_report(
        tmp_path,
        scores,
        [Gallery("top-scored controls", stamps, ["a", "b", "c", "d"])],
        links=[("Data Docs", "../select/validation/index.html"), ("Audit", "../audit/audit.md")],
    )
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    # four plots, the gallery and the FPR by confuser class
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        assert base64.b64decode(source.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "unresolved: needs ≥ 100,000 negatives (has 2,000 distinct control hosts)" in page
    assert "unresolved: needs ≥ 1,000 positives (has 300)" in page
    assert "Verdicts on the invariants (L4, L9 and the rest) are in the generation&#x27;s audit." in page
    assert "<td>L9</td>" not in page  # verdicts live in the audit, never in the report
    assert 'href="../select/validation/index.html"' in page and 'href="../audit/audit.md"' in page
    markdown = (tmp_path / "report.md").read_text()
    assert "| completeness at FPR | 0.001 | unresolved" in markdown
    assert (
        "| headline rate [95 %, covers] | completeness [95 % at this threshold] | FPR [95 % at this threshold] |"
        in (markdown)
    )
    at_90 = metrics.fpr_at_completeness[2]
    low, high = at_90.interval
    assert (
        f"| FPR at completeness | 0.9 | {at_90.threshold:.4g} | FPR {at_90.fpr:.3g} [{low:.4g}, {high:.4g}] |"
        in markdown
    )
    small = scores[(scores["label"] == 1) & (scores["theta_e"] / scores["psfsize_r"] < 0.5)]
    flagged = int((small["score"] >= metrics.fpr_at_completeness[1].threshold).sum())
    assert f"| [0, 0.5) | {flagged}/{len(small)} |" in markdown  # the stratified table, at completeness 0.95
    assert "## Shortcut probes (core-pixel AUC 0.512, ring AUC 0.900, core - ring >= -0.430 at 95 %)" in markdown
    assert "| completeness=0.9 | 0.1 | 0.15 | 0.800 → 0.900 (+0.100) |" in markdown
    assert "![roc](plots/roc.png)" in markdown and (tmp_path / "plots" / "roc.png").is_file()


@pytest.mark.parametrize(
    ("missing", "shown"), [(("n_neg",), "n_neg: missing"), (("probes", "ring_auc"), "probes.ring_auc: missing")]
)
def test_the_report_reads_metrics_json_through_the_model(tmp_path: Path, missing: tuple[str, ...], shown: str) -> None:
    scores = _scores(50, 500)
    metrics = evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3
    ).model_dump(mode="json")
    metrics["probes"] = {
        "core_auc": 0.5,
        "ring_auc": 0.6,
        "core_minus_ring_auc_lower": -0.2,
        "blob_flag_rates": {},
        "fpr_at_thresholds": {},
    }
    *parents, field = missing
    del functools.reduce(dict.__getitem__, parents, metrics)[field]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'metrics.json'}: not a valid metrics.json")) as error:
        write_report(tmp_path, scores, [])
    assert shown in str(error.value)
    assert not (tmp_path / "report.html").exists()


def test_without_resamples_the_report_has_no_headline_interval(tmp_path: Path) -> None:
    scores = _scores(300, 2000)
    metrics = evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3
    )
    write_json(tmp_path / "metrics.json", metrics.model_dump(mode="json"))
    write_report(tmp_path, scores, [])
    markdown = (tmp_path / "report.md").read_text()
    at_fpr = metrics.completeness_at_fpr[0]
    assert f"| completeness {at_fpr.completeness:.4f} (not bootstrapped) |" in markdown
    assert (tmp_path / "plots" / "operating_points.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_shows_the_false_positives_by_confuser_class_with_each_classs_gallery(tmp_path: Path) -> None:
    scores = _scores(300, 2000)
    metrics = evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3
    )
    write_json(tmp_path / "metrics.json", metrics.model_dump(mode="json"))
    stamps = np.random.default_rng(1).normal(0, 0.01, (2, 3, 16, 16)).astype(np.float32)
    galleries = {c: Gallery(f"top-scored controls: {c}", stamps, [f"s=1.00\n{c}"] * 2) for c in ("none", "spiral")}
    write_report(tmp_path, scores, [], class_galleries=galleries)
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split("## False positives by confuser class")[1].split("## Plots")[0]
    header = "| confuser class | controls | distinct hosts | " + " | ".join(metrics.confuser_fpr) + " |"
    assert header in section
    spiral = metrics.confuser_fpr["completeness=0.9"]["spiral"]
    low, high = spiral.fpr_interval_at_threshold
    cell = f"{spiral.fpr:.3g} [{low:.4g}, {high:.4g}] ({spiral.n_flagged}/500)"
    assert "| spiral | 500 | 500 | " in section and f" {cell} |" in section
    # 1,500 plain hosts resolve FPR 1e-2 (15 expected), 500 spirals do not (5)
    assert section.index("| none | 1,500 | 1,500 |") < section.index("| spiral |")
    assert section.split("| spiral |")[1].split("\n")[0].endswith(" unresolved (needs 1,000 hosts) |")
    for name in ("confuser_fpr", "gallery_confuser_none", "gallery_confuser_spiral"):
        assert f"![{name}](plots/{name}.png)" in section
        assert mpimg.imread(tmp_path / "plots" / f"{name}.png").shape[0] > 100
    page = (tmp_path / "report.html").read_text()
    section_html = page.split("<h2>False positives by confuser class</h2>")[1].split("<h2>Plots</h2>")[0]
    assert len(re.findall(r'src="data:image/png;base64,', section_html)) == 3
    assert "<td>unresolved (needs 1,000 hosts)</td>" in section_html


def test_a_metrics_json_without_class_rates_says_so(tmp_path: Path) -> None:
    scores = _scores(50, 500)
    metrics = evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3
    ).model_dump(mode="json")
    del metrics["confuser_fpr"]  # a metrics.json that records no per-class rates
    write_json(tmp_path / "metrics.json", metrics)
    write_report(tmp_path, scores, [])
    assert "This metrics.json has no FPR by confuser class." in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "plots" / "confuser_fpr.png").exists()


def test_rgb_maps_z_r_g_to_red_green_blue_in_unit_range() -> None:
    image = np.zeros((3, 4, 4), dtype=np.float32)
    image[2, 0, 0] = 5.0  # z only -> red
    image[0, 1, 1] = -1.0  # negative sky clips to black
    out = rgb(image)
    assert out.shape == (4, 4, 3) and out.min() >= 0 and out.max() <= 1
    assert out[0, 0, 0] == 1.0 and out[0, 0, 1:].sum() == 0 and out[1, 1].sum() == 0
