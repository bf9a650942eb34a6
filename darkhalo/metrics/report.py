"""The evaluation report: ``report.html`` (self-contained: every plot a base64-embedded PNG) and
``report.md`` (plots beside it in ``plots/``), written atomically.

Contents: the operating-point table, headlining each point's covering (bootstrap) interval beside the
exact intervals at its threshold (unresolved targets shown as such), Bologna TPR0/TPR10, the
inspection budget, the false positives by confuser class (table, plot, each class's top-scored controls), the
real sets at the operating thresholds beside the simulated rates (a table per set with the simulated positives at a
lens set's depth, a line on what depth and the sim-to-real shift cost, a non-lens set's two-sample test against the
controls, refusals, score histograms, top- and lowest-scored stamps), ROC on a log-FPR axis, completeness vs FPR at
the operating points (the same labelling), completeness vs theta_E / PSF, score histograms per class, galleries of
stamps (asinh-stretched grz -> RGB) and links (Great Expectations Data Docs, the audit). Verdicts are not shown here:
the audit judges the written artifacts against the spec.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from darkhalo import layout
from darkhalo.artifacts import atomic_file, write_text
from data_contracts.confusers import VALUES
from data_contracts.metrics import (
    FPR_TARGETS,
    ConfuserRate,
    EvaluationMetrics,
    OperatingPointSummary,
    Probes,
    RealRate,
    RealSetResult,
    ReportedPoint,
    StratumBin,
    headline_real_point,
    read_metrics,
)

#: asinh softening of the gallery stretch (nanomaggies per pixel, a few background sigmas in r).
ASINH_SOFT = 0.01


@dataclass(frozen=True)
class Gallery:
    """Stamps to show under a title: images (N, 3, S, S) nanomaggies g, r, z and one caption each."""

    title: str
    images: np.ndarray
    captions: list[str]


def rgb(image: np.ndarray) -> np.ndarray:
    """An asinh-stretched RGB (S, S, 3) in [0, 1] of a (3, S, S) grz stamp: z -> red, r -> green, g -> blue."""
    stretched = np.arcsinh(np.clip(image[::-1], 0, None) / ASINH_SOFT)
    top = np.percentile(stretched, 99.5)
    return np.clip(stretched / top if top > 0 else stretched, 0, 1).transpose(1, 2, 0)


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes (100 dpi, cropped to its content)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(pair: Sequence[float] | None) -> str:
    return "—" if pair is None else f"[{pair[0]:.4g}, {pair[1]:.4g}]"


def roc_plot(curves: Mapping[str, tuple[pd.DataFrame, OperatingPointSummary]]) -> bytes:
    """ROC (completeness vs FPR) of each named model's ``(scores, metrics)`` on a log-FPR axis down to
    1 / n_neg, its resolved L4 points marked and its completeness at each resolved FPR target drawn with
    its headline 95 % interval."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    floor = 1 / min(metrics.n_neg for _, metrics in curves.values())
    for i, (name, (scores, metrics)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(scores["label"], scores["score"])
        colour = f"C{2 * i}"
        label = f"{name} (AUROC {metrics.auroc:.4f})" if len(curves) > 1 else "ROC"
        ax.step(np.maximum(fpr, floor / 2), tpr, where="post", color=colour, label=label)
        for point in metrics.resolved_points().values():
            ax.plot(max(point.fpr, floor / 2), point.completeness, "o", color=colour, ms=3)
        bars = [p for p in metrics.completeness_at_fpr if p.resolved and p.interval is not None]
        if bars:
            y = np.array([p.completeness for p in bars])
            x = np.maximum([p.fpr for p in bars], floor / 2)
            ax.errorbar(x, y, yerr=_bars(y, [p.interval for p in bars]), fmt="none", ecolor=colour, capsize=3)
    for target in FPR_TARGETS:
        ax.axvline(target, color="0.8", lw=0.8, zorder=0)
    ax.axvline(floor, color="C1", ls="--", lw=1, label=f"1 / n_neg = {floor:.1e}")
    ax.set(xscale="log", xlabel="false-positive rate", ylabel="completeness", ylim=(0, 1.02))
    ax.set_xlim(left=min(1e-5, floor / 2), right=1)
    ax.legend(loc="lower right", fontsize=8)
    if len(curves) == 1:
        ax.set_title(f"ROC (AUROC {next(iter(curves.values()))[1].auroc:.4f}, secondary)")
    else:
        ax.set_title("ROC on the same test set; bars: the headline 95 % interval at each FPR target", fontsize=9)
    return png_bytes(fig)


def _bars(centre: np.ndarray, intervals: Sequence[Sequence[float]], floor: float = 0.0) -> np.ndarray:
    """Error-bar lengths (2, N) from ``centre`` to each [low, high], the ends raised to ``floor`` (a log axis)."""
    low, high = np.maximum(np.array(intervals, dtype=np.float64).T, floor)
    return np.array([np.maximum(centre - low, 0), np.maximum(high - centre, 0)])


def operating_point_plot(metrics: OperatingPointSummary) -> bytes:
    """Completeness vs FPR at the resolved L4 operating points: each headline rate's bootstrap 95 % interval
    (the one that covers) in colour, both rates' exact 95 % intervals at this threshold in grey."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    floor = 0.5 / metrics.n_neg
    for section, marker, label, axis in (
        (metrics.fpr_at_completeness, "s", "FPR at completeness target", "xerr"),
        (metrics.completeness_at_fpr, "o", "completeness at FPR target", "yerr"),
    ):
        points = [p for p in section if p.resolved]
        if not points:
            continue
        x = np.maximum([p.fpr for p in points], floor)
        y = np.array([p.completeness for p in points])
        xerr = _bars(x, [p.fpr_interval_at_threshold for p in points], floor)
        yerr = _bars(y, [p.completeness_interval_at_threshold for p in points])
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="none", ecolor="0.7", lw=0.8, zorder=1)
        headline = {}
        if metrics.bootstrap_samples > 0:
            centre, floor_of_axis = (x, floor) if axis == "xerr" else (y, 0.0)
            headline[axis] = _bars(centre, [p.interval for p in points], floor_of_axis)
        ax.errorbar(x, y, **headline, fmt=marker, capsize=3, label=label, zorder=2)
    ax.set(xscale="log", xlabel="false-positive rate", ylabel="completeness", ylim=(0, 1.02))
    ax.legend(loc="lower right")
    if metrics.bootstrap_samples > 0:
        title = "95 %: bootstrap of the headline rate (colour); at this threshold (grey)"
    else:
        title = "no bootstrap: only the exact 95 % intervals at this threshold (grey)"
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)


def stratified_plot(stratified: Mapping[str, Mapping[str, list[StratumBin]]], stratum: str) -> bytes:
    """Completeness per bin of one stratum (e.g. theta_e_over_psf) at each resolved operating point."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for name, table in stratified.items():
        rows = table.get(stratum, [])
        if not rows:
            continue
        lows = [r.low if r.low is not None else r.high - 0.5 for r in rows]
        highs = [r.high if r.high is not None else r.low + 0.5 for r in rows]
        x = (np.array(lows) + np.array(highs)) / 2
        y = np.array([r.completeness for r in rows])
        yerr = np.abs(np.array([r.interval for r in rows]).T - y)
        ax.errorbar(x, y, yerr=yerr, fmt="o-", capsize=2, label=name)
    ax.set(xlabel=stratum.replace("_", " "), ylabel="completeness", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    ax.set_title(f"completeness vs {stratum}")
    return png_bytes(fig)


def histogram_plot(scores: pd.DataFrame) -> bytes:
    """Score histograms of positives and controls on a log count axis."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    bins = np.linspace(scores["score"].min(), scores["score"].max(), 60) if len(scores) else 10
    for label, name in ((0, "controls"), (1, "positives")):
        values = scores.loc[scores["label"] == label, "score"]
        ax.hist(values, bins=bins, histtype="step", lw=1.5, label=f"{name} ({len(values)})")
    ax.set(yscale="log", xlabel="score (logit)", ylabel="stamps")
    ax.legend()
    return png_bytes(fig)


def confuser_plot(rates: Mapping[str, Mapping[str, ConfuserRate]]) -> bytes:
    """FPR of each confuser class (x) at each resolved operating point (``rates``: point name -> class -> rate, a
    series each) on a log axis, with the exact 95 % intervals at each threshold; unresolved rates are not drawn,
    an FPR of 0 sits at 0.5 / (the largest class's controls)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    classes = [c for c in VALUES if any(c in table for table in rates.values())]
    floor = 0.5 / max((r.n for table in rates.values() for r in table.values()), default=1)
    width = 0.8 / max(1, len(rates))
    for j, (name, table) in enumerate(rates.items()):
        shown = [(i, table[c]) for i, c in enumerate(classes) if c in table and table[c].resolved]
        if not shown:
            continue
        x = np.array([i for i, _ in shown]) + (j - (len(rates) - 1) / 2) * width
        y = np.maximum([r.fpr for _, r in shown], floor)
        yerr = _bars(y, [r.fpr_interval_at_threshold for _, r in shown], floor)
        ax.errorbar(x, y, yerr=yerr, fmt="o", capsize=2, ms=4, label=name)
    ax.set_xticks(range(len(classes)), [c.replace("_", " ") for c in classes], rotation=30, ha="right")
    ax.set(yscale="log", ylabel="false-positive rate of the class's controls")
    ax.legend(fontsize=7)
    ax.set_title("FPR by confuser class, 95 % at this threshold", fontsize=9)
    return png_bytes(fig)


def gallery_plot(gallery: Gallery, columns: int = 6) -> bytes:
    """A grid of asinh grz RGB stamps with captions."""
    n = max(1, len(gallery.images))
    rows = (n + columns - 1) // columns
    fig = Figure(figsize=(2.0 * columns, 2.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < len(gallery.images):
            ax.imshow(rgb(gallery.images[i]), origin="lower")
            ax.set_title(gallery.captions[i], fontsize=5.5, parse_math=False)  # a name may hold a $
    fig.suptitle(gallery.title, fontsize=9)
    return png_bytes(fig)


def _headline_cell(p: ReportedPoint, bootstrapped: bool) -> str:
    """A resolved point's headline rate with its covering interval (FPR at a completeness target, else completeness)."""
    rate = f"FPR {p.fpr:.3g}" if p.target == "completeness" else f"completeness {p.completeness:.4f}"
    return f"{rate} {_interval(p.interval)}" if bootstrapped else f"{rate} (not bootstrapped)"


def _point_rows(metrics: OperatingPointSummary) -> list[list[str]]:
    rows = []
    named = [("FPR at completeness", p) for p in metrics.fpr_at_completeness]
    named += [("completeness at FPR", p) for p in metrics.completeness_at_fpr]
    named += [("TPR0 (0 false positives)", metrics.tpr0), ("TPR10 (≤ 10 false positives)", metrics.tpr10)]
    for kind, p in named:
        target = _fmt(p.target_value) if p.target != "false_positives" else "—"
        if not p.resolved:
            has = f"{p.n_pos:,}" if p.target == "completeness" else f"{metrics.n_neg_hosts:,} distinct control hosts"
            rows.append([kind, target, f"unresolved: needs ≥ {p.needs()} (has {has})"] + ["—"] * 5)
            continue
        rows.append(
            [
                kind,
                target,
                _fmt(p.threshold),
                _headline_cell(p, metrics.bootstrap_samples > 0),
                f"{p.completeness:.4f} {_interval(p.completeness_interval_at_threshold)}",
                f"{p.fpr:.3g} {_interval(p.fpr_interval_at_threshold)}",
                f"{p.n_pos_flagged}/{p.n_pos}",
                f"{p.n_neg_flagged}/{p.n_neg}",
            ]
        )
    return rows


POINT_HEADER = [
    "operating point",
    "target",
    "threshold",
    "headline rate [95 %, covers]",
    "completeness [95 % at this threshold]",
    "FPR [95 % at this threshold]",
    "positives flagged",
    "negatives flagged",
]
BUDGET_HEADER = ["operating point", "expected true", "expected false (95 % high)", "purity (95 % low)"]
CONFUSER_SECTION = "False positives by confuser class"


def _budget_rows(metrics: EvaluationMetrics) -> list[list[str]]:
    return [
        [
            name,
            f"{b.expected_true:.1f}",
            f"{b.expected_false:.1f} ({b.expected_false_high:.1f})",
            f"{b.purity:.3f} ({b.purity_low:.3f})",
        ]
        for name, b in metrics.inspection_budget.items()
    ]


def probe_table(probes: Probes | None) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The shortcut probes per operating point: control FPR, blob flag rate, PSF-swap completeness."""
    if probes is None:
        return {}
    swap = probes.psf_swap.completeness if probes.psf_swap is not None else {}
    rows = []
    for name, fpr in probes.fpr_at_thresholds.items():
        s = swap.get(name)
        swapped = "—" if s is None else f"{s.survey:.3f} → {s.gaussian:.3f} ({s.change:+.3f})"
        rows.append([name, f"{fpr:.3g}", f"{probes.blob_flag_rates[name]:.3g}", swapped])
    title = (
        f"Shortcut probes (core-pixel AUC {probes.core_auc:.3f}, ring AUC {probes.ring_auc:.3f}, "
        f"core - ring >= {probes.core_minus_ring_auc_lower:+.3f} at 95 %)"
    )
    return {title: (["operating point", "control FPR", "blob flag rate", "completeness: survey → Gaussian PSF"], rows)}


def _strata_tables(metrics: EvaluationMetrics) -> dict[str, tuple[list[str], list[list[str]]]]:
    """One table per stratum: a row per bin, a column per resolved operating point ("flagged/n")."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    for stratum in metrics.strata_edges:
        per_point = {
            name: {(r.low, r.high): r for r in table.get(stratum, [])} for name, table in metrics.stratified.items()
        }
        bins = sorted(
            {b for rows in per_point.values() for b in rows}, key=lambda b: -math.inf if b[0] is None else b[0]
        )
        if not bins:
            continue
        rows = []
        for low, high in bins:
            found = [at.get((low, high)) for at in per_point.values()]
            cells = ["—" if b is None else f"{b.n_flagged}/{b.n}" for b in found]
            rows.append(
                [f"[{_fmt(low) if low is not None else '-∞'}, {_fmt(high) if high is not None else '∞'})", *cells]
            )
        tables[f"Completeness by {stratum}"] = (["bin", *per_point], rows)
    return tables


def confuser_cell(rate: ConfuserRate) -> str:
    """A class's FPR at one threshold with its exact interval and counts, or what an unresolved one needs."""
    if not rate.resolved:
        return f"unresolved (needs {rate.needs()})"
    return f"{rate.fpr:.3g} {_interval(rate.fpr_interval_at_threshold)} ({rate.n_flagged}/{rate.n})"


def confuser_table(columns: Mapping[str, Mapping[str, ConfuserRate]]) -> tuple[list[str], list[list[str]]]:
    """Rows: the confuser classes present (VALUES order) with their controls and distinct hosts; a column per
    entry of ``columns`` (an operating point, or one model at a point), each cell ``confuser_cell``."""
    classes = [c for c in VALUES if any(c in column for column in columns.values())]
    rows = []
    for value in classes:
        first = next(column[value] for column in columns.values() if value in column)
        cells = [confuser_cell(column[value]) if value in column else "—" for column in columns.values()]
        rows.append([value, f"{first.n:,}", f"{first.n_hosts:,}", *cells])
    return ["confuser class", "controls", "distinct hosts", *columns], rows


REAL_SECTION = "Real data: recall beside the simulation"


def real_cell(rate: RealRate | None) -> str:
    """A real set's flagged share with its exact interval and counts (k/n); a dash for none."""
    return "—" if rate is None else f"{rate.rate:.3f} {_interval(rate.interval)} ({rate.n_flagged}/{rate.n})"


def simulated_rate(result: RealSetResult, point: ReportedPoint) -> float:
    """The simulated rate a real set's rate stands beside: completeness for a lens set, FPR for a non-lens set."""
    return point.completeness if result.label == "lens" else point.fpr


#: The column of the simulated positives at a lens set's depth.
AT_DEPTH = "simulated at the set's depth [95 %] (k/n)"


def depth_cell(result: RealSetResult, point: str) -> list[str]:
    """A lens set's cell of the simulated positives at its depth at ``point`` (a dash where not reported); none for a
    non-lens set."""
    if result.label != "lens":
        return []
    depth = result.at_depth
    return [real_cell(depth.at_points.get(point) if depth is not None else None)]


def real_table(result: RealSetResult, points: Mapping[str, ReportedPoint]) -> tuple[list[str], list[list[str]]]:
    """Rows: the set's operating points; columns: threshold, the simulated rate (completeness, then at the set's
    depth, for a lens set; FPR for a non-lens set), the real rate, the visible subset's."""
    lens = result.label == "lens"
    header = [
        "operating point",
        "threshold",
        "simulated completeness" if lens else "simulated FPR",
        *([AT_DEPTH] if lens else []),
        f"real {'recall' if lens else 'flag rate'} [95 %] (k/n)",
        f"visible ({result.visible})" if result.visible else "visible subset",
    ]
    rows = [
        [
            name,
            _fmt(points[name].threshold),
            f"{simulated_rate(result, points[name]):.4g}",
            *depth_cell(result, name),
            real_cell(rates.all),
            real_cell(rates.visible),
        ]
        for name, rates in result.at_points.items()
    ]
    return header, rows


def gap_line(name: str, result: RealSetResult, points: Mapping[str, ReportedPoint]) -> str | None:
    """One line on a real set at its headline point: a lens set's simulated completeness, at its depth and its real
    recall, split into what depth costs and what the sim-to-real shift costs; a non-lens set's flag rate beside the
    simulated FPR and its two-sample test against the test controls' scores. None with nothing scored."""
    point = headline_real_point(result.at_points)
    if point is None:
        return None
    real = result.at_points[point].all.rate
    depth, versus = result.at_depth, result.versus_controls
    if depth is not None and point in depth.at_points:
        simulated, deep = points[point].completeness, depth.at_points[point].rate
        sigmas = "/".join(f"{v:.3g}" for v in depth.sky_sigma_real)
        return (
            f"{name} at {point}: simulated completeness {simulated:.3f}, {deep:.3f} at the set's depth (sky sigma "
            f"g/r/z {sigmas} nanomaggies), real recall {real:.3f}: depth costs {simulated - deep:+.3f}, the "
            f"sim-to-real shift {deep - real:+.3f}."
        )
    line = f"{name} at {point}: flag rate {real:.3f} beside the simulated FPR {points[point].fpr:.4g}."
    if versus is not None:
        line += (
            f" Scores against the test controls' (two-sample KS): D = {versus.statistic:.3f}, "
            f"p = {versus.p_value:.2g}; median {versus.median_real:.3g} ({versus.n_real} real) vs "
            f"{versus.median_controls:.3g} ({versus.n_controls} controls)."
        )
    return line


def real_score_plot(
    name: str, curves: Mapping[str, np.ndarray], points: Mapping[str, ReportedPoint], at_points: Sequence[str]
) -> bytes:
    """Score (logit) histograms of a real set beside its simulated reference (``curves``: label -> scores), each
    normalised to unit area, with the thresholds of ``at_points`` marked."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in curves.values()])
    bins = np.linspace(values.min(), values.max(), 40) if values.size and np.ptp(values) > 0 else 10
    for label, scores in curves.items():
        if len(scores):
            ax.hist(scores, bins=bins, density=True, histtype="step", lw=1.5, label=f"{label} ({len(scores)})")
    for i, point in enumerate(at_points):
        ax.axvline(points[point].threshold, color=f"C{i + 3}", ls="--", lw=1, label=f"threshold at {point}")
    ax.set(xlabel="score (logit)", ylabel="density", title=f"{name}: scores beside the simulation")
    ax.legend(fontsize=7)
    return png_bytes(fig)


@dataclass(frozen=True)
class RealSection:
    """The real sets in the report: the section's text, a table and a summary line per set, the refusals (a line per
    refused image) and the score plots."""

    text: str
    tables: dict[str, tuple[list[str], list[list[str]]]]
    lines: list[str]
    refused: list[str]
    plots: dict[str, bytes]


def _real_section(
    metrics: EvaluationMetrics, scores: pd.DataFrame, real_scores: Mapping[str, Mapping[str, np.ndarray]]
) -> RealSection:
    """The real sets of ``metrics``; ``real_scores`` (set name -> curve label -> scores) are plotted beside the test
    split's ``scores`` of the other class's reference: positives for a lens set, controls for a non-lens set."""
    text = (
        "Real cutouts scored by this model at the thresholds the simulated test split fixed (flag = score ≥ "
        "threshold): a lens set's flagged share is its recall, beside the simulated completeness at that threshold "
        "and the simulated positives' completeness at the set's depth (each given Gaussian pixel noise up to the "
        "set's sky sigma, 1.4826 × the MAD of sky pixels on both sides): simulated minus at-depth is what depth "
        "costs, at-depth minus real what the sim-to-real shift costs. A non-lens set's share is its flag rate, beside "
        "the simulated FPR, and its scores are tested against the test controls' (two-sample Kolmogorov-Smirnov). "
        "Intervals are exact (Clopper-Pearson) 95 % at each threshold. These files measure; they never train or tune."
    )
    if not metrics.real_sets:
        text += " No real set is declared (evaluate.real_sets): the simulated completeness stands alone (L12)."
    points = metrics.resolved_points()
    section = RealSection(text, {}, [], [], {})
    for name, result in metrics.real_sets.items():
        lens = result.label == "lens"
        kind = "confirmed lenses" if lens else "non-lenses"
        section.tables[f"{name}: {result.n_scored} of {result.n_images} {kind} scored ({result.input})"] = real_table(
            result, points
        )
        line = gap_line(name, result, points)
        section.lines.extend([line] if line is not None else [])
        section.refused.extend(f"{name}: {r.name}: {r.reason}" for r in result.refused)
        if name in real_scores:
            reference = scores.loc[scores["label"] == int(lens), "score"].to_numpy()
            curves = {f"test {'positives' if lens else 'controls'}": reference, **real_scores[name]}
            section.plots[f"real_scores_{name}"] = real_score_plot(name, curves, points, list(result.at_points))
    return section


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (cells' pipes escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _confuser_section(
    metrics: EvaluationMetrics, class_galleries: Mapping[str, Gallery]
) -> tuple[str, tuple[list[str], list[list[str]]] | None, dict[str, bytes]]:
    """The false positives by confuser class: its text, its table (None when metrics.json has no class rates)
    and its plots (the FPR plot, then each class's gallery)."""
    minimum = f"{metrics.min_expected_false_positives:g}"
    text = (
        "The FPR of each confuser class's test controls at each resolved operating point's threshold, with its exact "
        "(Clopper-Pearson) 95 % interval at this threshold and (flagged/controls); 'none' (plain hosts) is the "
        "reference. A class's rate is resolved when its distinct hosts × the point's FPR (its FPR target, or the "
        f"FPR measured at a completeness target) ≥ {minimum}."
    )
    plots = {}
    table = None
    if metrics.confuser_fpr:
        table = confuser_table(metrics.confuser_fpr)
        plots["confuser_fpr"] = confuser_plot(metrics.confuser_fpr)
    else:
        text += " This metrics.json has no FPR by confuser class."
    for value, gallery in class_galleries.items():
        plots[f"gallery_confuser_{value}"] = gallery_plot(gallery)
    return text, table, plots


def _figures_html(plots: Mapping[str, bytes]) -> str:
    return "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>"
        for name, png in plots.items()
    )


def write_report(
    out: Path,
    scores: pd.DataFrame,
    galleries: Sequence[Gallery],
    links: Sequence[tuple[str, str]] = (),
    title: str = "darkhalo evaluation",
    class_galleries: Mapping[str, Gallery] | None = None,
    real_galleries: Sequence[Gallery] = (),
    real_scores: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> None:
    """Write ``out/report.html``, ``out/report.md`` and ``out/plots/*.png`` from ``out/metrics.json``.

    metrics.json is read through ``EvaluationMetrics`` (a file that does not fit is refused naming the
    field); ``scores`` has columns label and score; ``links`` are (text, relative href) pairs, e.g. Data Docs;
    ``class_galleries`` are each confuser class's top-scored controls, by class, shown in that section;
    ``real_galleries`` the real sets' stamps, shown in theirs, and ``real_scores`` (set name -> curve label -> scores)
    their score histograms beside the test split's.
    """
    metrics = read_metrics(out / layout.METRICS)
    plots = {
        "roc": roc_plot({"": (scores, metrics)}),
        "operating_points": operating_point_plot(metrics),
        "completeness_vs_theta_e_over_psf": stratified_plot(metrics.stratified, "theta_e_over_psf"),
        "score_histograms": histogram_plot(scores),
    }
    for i, gallery in enumerate(galleries):
        plots[f"gallery_{i}"] = gallery_plot(gallery)
    confuser_text, confuser_rows, confuser_plots = _confuser_section(metrics, class_galleries or {})
    real = _real_section(metrics, scores, real_scores or {})
    real_plots = {**real.plots, **{f"gallery_real_{i}": gallery_plot(g) for i, g in enumerate(real_galleries)}}
    for name, png in {**plots, **confuser_plots, **real_plots}.items():
        with atomic_file(out / "plots" / f"{name}.png", "wb") as handle:
            handle.write(png)

    tables = {
        "Operating points": (POINT_HEADER, _point_rows(metrics)),
        "Inspection budget": (BUDGET_HEADER, _budget_rows(metrics)),
        **probe_table(metrics.probes),
        **_strata_tables(metrics),
    }
    minimum = f"{metrics.min_expected_false_positives:g}"
    summary = (
        f"{metrics.n_pos:,} positives and {metrics.n_neg:,} controls on {metrics.n_neg_hosts:,} distinct hosts "
        f"(test split); an FPR target is resolved only when distinct control hosts × FPR ≥ {minimum}, a "
        f"completeness target c only when positives × (1 − c) ≥ {minimum}. The headline interval is the "
        f"bootstrap ({metrics.bootstrap_samples:,} resamples, the threshold re-derived on each): it covers the rate "
        "at the target. The intervals at this threshold are Clopper-Pearson, exact only for the rate of the "
        f"threshold chosen. AUROC {metrics.auroc:.4f} is secondary: the operating points are the result. "
        "Verdicts on the invariants (L4, L9 and the rest) are in the generation's audit."
    )
    links_html = "".join(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>' for text, href in links)
    html_text = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}figure{display:inline-block;margin:6px}"
        f"</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        + "".join(f"<h2>{name}</h2>{_html_table(*table)}" for name, table in tables.items())
        + f"<h2>{CONFUSER_SECTION}</h2><p>{html.escape(confuser_text)}</p>"
        + (_html_table(*confuser_rows) if confuser_rows else "")
        + _figures_html(confuser_plots)
        + f"<h2>{REAL_SECTION}</h2><p>{html.escape(real.text)}</p>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in real.lines)
        + "".join(f"<h3>{html.escape(name)}</h3>{_html_table(*table)}" for name, table in real.tables.items())
        + (
            "<p>Refused (not scored):</p><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in real.refused) + "</ul>"
            if real.refused
            else ""
        )
        + _figures_html(real_plots)
        + f"<h2>Plots</h2>{_figures_html(plots)}"
        + (f"<h2>Links</h2><ul>{links_html}</ul>" if links else "")
        + "</body></html>\n"
    )
    md_text = (
        f"# {title}\n\n{summary}\n\n"
        + "".join(f"## {name}\n\n{md_table(*table)}\n\n" for name, table in tables.items())
        + f"## {CONFUSER_SECTION}\n\n{confuser_text}\n\n"
        + (f"{md_table(*confuser_rows)}\n\n" if confuser_rows else "")
        + "".join(f"![{name}](plots/{name}.png)\n\n" for name in confuser_plots)
        + f"## {REAL_SECTION}\n\n{real.text}\n\n"
        + "".join(f"{line}\n\n" for line in real.lines)
        + "".join(f"### {name}\n\n{md_table(*table)}\n\n" for name, table in real.tables.items())
        + ("Refused (not scored):\n\n" + "".join(f"- {r}\n" for r in real.refused) + "\n" if real.refused else "")
        + "".join(f"![{name}](plots/{name}.png)\n\n" for name in real_plots)
        + "## Plots\n\n"
        + "".join(f"![{name}](plots/{name}.png)\n\n" for name in plots)
        + ("## Links\n\n" + "".join(f"- [{text}]({href})\n" for text, href in links) if links else "")
    )
    write_text(out / "report.html", html_text)
    write_text(out / "report.md", md_text)
