"""``darkhalo survey compare-real``: the mock beside the real files (darkhalo.surveys.realism), run and written
as compare_real.md (the Markdown printed), compare_real.json (every number) and compare_real.png (profiles,
colour gradients, sky correlation per band and, given a model, the score histograms), each atomically."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from darkhalo.artifacts import atomic_file, write_json, write_text
from darkhalo.real_inputs import RealImages
from darkhalo.spec import DesiLrg, MockSurvey, V3ColorRelaxed
from darkhalo.surveys.mock_cutouts import MockCutoutProvider
from darkhalo.surveys.realism import (
    DR10_SET,
    MEASURE_SIZE,
    MOCK_SET,
    SCORE_FPR,
    comparison,
    dr10_cutouts,
    gap_table,
    markdown,
    mock_hosts,
    mock_lrg_hosts,
    real_stamps,
    score_sets,
    score_table,
)
from data_contracts.survey import BANDS, PIXEL_SCALE

if TYPE_CHECKING:
    from darkhalo.scoring import Target

#: Selection fields that are not cuts (every variant has them), left out of the mock hosts' rule.
NOT_CUTS = set(V3ColorRelaxed.model_fields) & set(DesiLrg.model_fields)


@dataclass(frozen=True)
class RealComparison:
    """compare-real's results: the background and PSF table (realism.comparison), the gap table
    (realism.gap_table), the scores by set (realism.score_sets; None without a model) and the mock hosts' rule."""

    background: pd.DataFrame
    gap: pd.DataFrame
    scores: dict[str, np.ndarray] | None
    mock_rule: str


def compare_real(
    real_dir: Path,
    survey: MockSurvey,
    seed: int,
    n_hosts: int,
    n_lrg_hosts: int,
    selection: Mapping[str, Any],
    host_sets: Mapping[str, RealImages],
    target: Target | None,
) -> RealComparison:
    """The mock (``survey``, ``seed``) beside ``real_dir``'s files and the real ``host_sets`` (see the module)."""
    background = comparison(real_dir, survey, seed, mock_hosts(survey, seed, n_hosts))
    real_sets = {DR10_SET: dr10_cutouts(real_dir / "cutouts"), **host_sets}
    hosts = mock_lrg_hosts(survey, seed, n_lrg_hosts, selection)
    provider = MockCutoutProvider(survey, seed)
    stamps = {MOCK_SET: provider.cutouts(hosts, MEASURE_SIZE).images}
    stamps |= {name: real_stamps(real, PIXEL_SCALE, MEASURE_SIZE) for name, real in real_sets.items()}
    scores = None if target is None else score_sets(target, real_sets, provider.cutouts(hosts, target.size).images)
    cuts = ", ".join(f"{k} {v}" for k, v in selection.items() if k not in NOT_CUTS)
    rule = f"the first {len(hosts)} mock galaxies (seed {seed}) inside the {selection['variant']} cuts ({cuts})"
    return RealComparison(background, gap_table(stamps), scores, rule)


def _cell(row: pd.Series) -> str:
    return "-" if row["n"] == 0 else f"{row['median']:.3g} [{row['p16']:.3g}, {row['p84']:.3g}]"


def gap_markdown(gap: pd.DataFrame) -> str:
    """The gap table with one column per set (median [16 %, 84 %]; each set's stamp count in its header)."""
    sets = list(dict.fromkeys(gap["set"]))
    counts = gap.groupby("set")["n"].max()
    lines = ["| quantity | band | " + " | ".join(f"{s} ({counts[s]})" for s in sets) + " |"]
    lines.append("|---|---|" + "---|" * len(sets))
    for (quantity, band), rows in gap.groupby(["quantity", "band"], sort=False):
        cells = rows.set_index("set").apply(_cell, axis=1)
        lines.append(f"| {quantity} | {band} | " + " | ".join(cells[s] for s in sets) + " |")
    return "\n".join(lines) + "\n"


def scores_markdown(table: pd.DataFrame) -> str:
    """Each real set's scores against the mock hosts': medians, KS, the flagged shares at the mock's FPR."""
    lines = [
        "| real set | hosts | median score | mock median | KS D | KS p "
        f"| flagged at mock FPR {SCORE_FPR:g} | mock flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        flagged = (
            f"{r.real_flagged:.1%}" if r.resolved else f"unresolved ({r.n_mock} mock hosts, needs {r.n_mock_needed})"
        )
        lines.append(
            f"| {r.set} | {r.n_real} | {r.real_median:.3g} | {r.mock_median:.3g} | {r.ks_statistic:.3f} "
            f"| {r.ks_pvalue:.2g} | {flagged} | {r.mock_flagged:.1%} |"
        )
    return "\n".join(lines) + "\n"


def report_markdown(result: RealComparison) -> str:
    """The Markdown that compare-real prints: the background and PSF table, the gap, the scores."""
    parts = [
        "## Background and PSF\n\n" + markdown(result.background),
        f"## The gap: real hosts beside mock LRG-like hosts\n\nMock hosts: {result.mock_rule}. "
        f'Stamps {MEASURE_SIZE} x {MEASURE_SIZE} at {PIXEL_SCALE}"/pixel; median [16 %, 84 %] over each set.\n\n'
        + gap_markdown(result.gap),
    ]
    if result.scores is not None:
        parts.append(
            "## Model scores (logits): real hosts against mock hosts\n\n" + scores_markdown(score_table(result.scores))
        )
    return "\n".join(parts)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def report_json(result: RealComparison) -> dict[str, Any]:
    """Every number of ``result`` as JSON-ready data (NaN as null)."""
    scores = None if result.scores is None else _records(score_table(result.scores))
    return {
        "mock_hosts": result.mock_rule,
        "background_and_psf": _records(result.background),
        "gap": _records(result.gap),
        "scores": scores,
    }


def report_figure(result: RealComparison) -> Figure:
    """Profiles per band, colour gradients, sky correlation per band and (given a model) score histograms."""
    gap = result.gap
    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3)
    sets = list(dict.fromkeys(gap["set"]))
    colour_of = {name: f"C{i}" for i, name in enumerate(sets)}
    for ax, band in zip(axes[0], BANDS, strict=True):
        for name in sets:
            rows = gap[(gap["set"] == name) & (gap["band"] == band) & (gap["measure"] == "profile")]
            ax.plot(rows["radius"], rows["median"], marker="o", color=colour_of[name], label=name)
            ax.fill_between(rows["radius"], rows["p16"], rows["p84"], color=colour_of[name], alpha=0.2)
        ax.set(yscale="log", xlabel="radius (arcsec)", ylabel="surface brightness / r flux (arcsec^-2)", title=band)
    offsets = np.linspace(-0.25, 0.25, len(sets))
    gradient = gap["measure"] == "gradient"
    colours = list(dict.fromkeys(gap.loc[gradient, "band"]))
    lags = list(dict.fromkeys(gap.loc[gap["measure"] == "correlation", "quantity"]))
    for name, dx in zip(sets, offsets, strict=True):
        rows = gap[(gap["set"] == name) & gradient]
        errors = [rows["median"] - rows["p16"], rows["p84"] - rows["median"]]
        x = np.arange(len(rows)) + dx
        axes[1, 0].errorbar(x, rows["median"], yerr=errors, fmt="o", color=colour_of[name], label=name)
        for marker, lag in zip("o^sv", lags, strict=False):
            rows = gap[(gap["set"] == name) & (gap["quantity"] == lag)]
            label = lag if name == sets[0] else None
            x = np.arange(len(rows)) + dx
            axes[1, 1].plot(x, rows["median"], marker=marker, linestyle="none", color=colour_of[name], label=label)
    axes[1, 0].set_xticks(np.arange(len(colours)), colours)
    axes[1, 0].set(title="colour gradient (inner minus outer)", ylabel="mag")
    axes[1, 1].set_xticks(np.arange(len(BANDS)), BANDS)
    axes[1, 1].set(title="sky noise correlation (colours as the sets)", ylabel="correlation")
    axes[1, 1].legend(fontsize="small")
    if result.scores is None:
        axes[1, 2].set_axis_off()
    else:
        bins = np.histogram_bin_edges(np.concatenate(list(result.scores.values())), bins=30)
        for name, scores in result.scores.items():
            label = f"{name} ({len(scores)})"
            axes[1, 2].hist(scores, bins=bins, density=True, histtype="step", color=colour_of[name], label=label)
        axes[1, 2].set(title="model scores", xlabel="logit", ylabel="density")
        axes[1, 2].legend(fontsize="small")
    axes[0, 0].legend(fontsize="small")
    axes[1, 0].legend(fontsize="small")
    return fig


def write_report(out_dir: Path, result: RealComparison) -> None:
    """compare_real.md, compare_real.json and compare_real.png into ``out_dir``, each atomically."""
    write_text(out_dir / "compare_real.md", report_markdown(result))
    write_json(out_dir / "compare_real.json", report_json(result))
    with atomic_file(out_dir / "compare_real.png", "wb") as handle:
        report_figure(result).savefig(handle, format="png", dpi=100)
