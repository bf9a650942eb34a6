"""The search's numbers: each candidate's simulated completeness, FPR and expected purity at its own score, and what
the ranked list finds in the top N for each inspection budget and at each of the evaluation's operating thresholds
(data_contracts.search), with a Markdown report and a plot of recall against candidates inspected.

The simulated rates come from the evaluation's test stamps (``evaluate/scores.parquet``): a candidate's
``completeness`` and ``fpr`` are the shares of test positives and controls scoring at least its score. Its purity
uses the same counts, each rate given half a count (Jeffreys' estimate), so a score above every test control does
not claim a purity of 1 from no evidence: p c / (p c + (1 - p) f).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from darkhalo.metrics.intervals import clopper_pearson
from darkhalo.metrics.operating_points import Sample
from darkhalo.metrics.report import md_table, png_bytes
from data_contracts.metrics import ReportedPoint
from data_contracts.search import BudgetResult, Found, PointResult, SearchResult


def share_at_least(sample: Sample, scores: np.ndarray) -> np.ndarray:
    """The share of ``sample`` scoring >= each of ``scores``."""
    return sample.flagged(np.asarray(scores, dtype=np.float64)) / sample.n


def expected_purity(prevalence: float, pos: Sample, neg: Sample, scores: np.ndarray) -> np.ndarray:
    """The share of lenses among hosts scoring >= each of ``scores`` at ``prevalence`` lenses per host, from the
    test positives' and controls' counts there (Jeffreys: (k + 1/2) / (n + 1))."""
    scores = np.asarray(scores, dtype=np.float64)
    c = (pos.flagged(scores) + 0.5) / (pos.n + 1)
    f = (neg.flagged(scores) + 0.5) / (neg.n + 1)
    return prevalence * c / (prevalence * c + (1 - prevalence) * f)


def inspected(per_million: int, n_hosts: int) -> int:
    """Candidates inspected at a budget of ``per_million`` per million hosts, for ``n_hosts`` scanned (at least 1)."""
    return max(1, round(per_million * n_hosts / 1e6))


def found(flags: pd.Series, n: int, confidence: float = 0.95) -> Found:
    """Lenses (True rows of ``flags``) in a cut of the ranked list, out of ``n`` in the whole list."""
    k = int(flags.sum())
    if not n:
        return Found(n=0, n_found=k, recall=None, interval=None)
    return Found(n=n, n_found=k, recall=k / n, interval=list(clopper_pearson(k, n, confidence)))


def search_result(
    candidates: pd.DataFrame,
    unscored: pd.DataFrame,
    points: Mapping[str, ReportedPoint],
    budgets: Sequence[int],
    prevalence: float,
    confidence: float = 0.95,
    sky_unscored: int | None = None,
) -> SearchResult:
    """The search's result for a ranked ``candidates`` frame (data_contracts.candidates, whose simulated rates at each
    score it quotes at the budgets' thresholds) and its ``unscored`` hosts, against the evaluation's resolved
    ``points``."""
    truth = candidates["sky_lens"]
    has_truth = bool(truth.notna().all()) and len(candidates) > 0
    sky = truth.fillna(False).astype(bool)
    n_sky = int(sky.sum()) if has_truth else None
    known = candidates["known_lens"]
    n_known = int(known.sum())
    scores = candidates["score"].to_numpy()
    rows = []
    for per_million in budgets:
        n = min(inspected(per_million, len(candidates) + len(unscored)), len(candidates))
        if n == 0:
            continue
        top = slice(0, n)
        k_sky = int(sky.iloc[top].sum())
        last = candidates.iloc[n - 1]
        rows.append(
            BudgetResult(
                per_million=per_million,
                n_inspected=n,
                threshold=float(last["score"]),
                sim_completeness=float(last["completeness"]),
                sim_fpr=float(last["fpr"]),
                expected_purity=float(last["purity"]),
                sky=found(sky.iloc[top], n_sky, confidence) if has_truth else None,
                sky_purity=k_sky / n if has_truth else None,
                sky_purity_interval=list(clopper_pearson(k_sky, n, confidence)) if has_truth else None,
                known=found(known.iloc[top], n_known, confidence),
            )
        )
    at_points = {}
    for name, point in points.items():
        flagged = scores >= point.threshold
        at_points[name] = PointResult(
            threshold=point.threshold,
            sim_completeness=point.completeness,
            sim_fpr=point.fpr,
            n_flagged=int(flagged.sum()),
            flagged_share=float(flagged.mean()) if len(scores) else 0.0,
            sky=found(sky[flagged], n_sky, confidence) if has_truth else None,
            known=found(known[flagged], n_known, confidence),
        )
    return SearchResult(
        n_parent=len(candidates) + len(unscored),
        n_scored=len(candidates),
        n_unscored=len(unscored),
        lens_prevalence=prevalence,
        n_sky_lenses=n_sky,
        n_sky_lenses_unscored=sky_unscored if has_truth else None,
        n_known_lenses=n_known,
        budgets=rows,
        points=at_points,
    )


def _found_cell(result: Found | None) -> str:
    if result is None:
        return "—"
    if result.recall is None:
        return f"{result.n_found} (none present)"
    low, high = result.interval
    return f"{result.n_found}/{result.n} = {100 * result.recall:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"


def headline(result: SearchResult) -> str:
    """The console's lines for the search: the sky's own lenses found at each budget, beside the simulation."""
    if result.n_sky_lenses is None:
        return f"{result.n_scored:,} hosts scanned; no sky truth (a real survey): grade the candidates"
    lines = [f"the sky's own lenses found ({result.n_sky_lenses} among {result.n_scored:,} hosts scanned):"]
    lines += [
        f"  top {b.n_inspected:,} ({b.per_million:,} per million): {_found_cell(b.sky)}; simulated completeness "
        f"there {100 * b.sim_completeness:.1f} %"
        for b in result.budgets
    ]
    return "\n".join(lines)


def search_markdown(result: SearchResult, generation: str) -> str:
    """The scan's report: the budgets table, the operating-points table (the sim-to-scan gap) and the plot."""
    budget_rows = [
        [
            f"{b.per_million:,}",
            f"{b.n_inspected:,}",
            f"{b.threshold:.3f}",
            _found_cell(b.sky),
            "—" if b.sky_purity is None else f"{100 * b.sky_purity:.1f} %",
            f"{100 * b.sim_completeness:.1f} %",
            f"{100 * b.expected_purity:.1f} %",
            _found_cell(b.known),
        ]
        for b in result.budgets
    ]
    point_rows = [
        [
            name,
            f"{p.threshold:.3f}",
            f"{100 * p.sim_completeness:.1f} %",
            _found_cell(p.sky),
            f"{p.sim_fpr:.2g}",
            f"{p.n_flagged:,} ({p.flagged_share:.2g})",
            _found_cell(p.known),
        ]
        for name, p in result.points.items()
    ]
    sky = (
        "no sky truth (a real survey)"
        if result.n_sky_lenses is None
        else f"{result.n_sky_lenses} of the sky's own lenses among them ({result.n_sky_lenses_unscored} more unscored)"
    )
    return "\n".join(
        [
            f"# Search of {generation}",
            "",
            f"{result.n_scored:,} of {result.n_parent:,} parent hosts scored ({result.n_unscored:,} unscored, listed "
            f"in unscored.parquet); {sky}; {result.n_known_lenses} known lenses or candidates among them. Expected "
            f"purity at {result.lens_prevalence:g} lenses per host.",
            "",
            "## The top N at each inspection budget",
            "",
            md_table(
                [
                    "per million",
                    "N",
                    "threshold",
                    "sky lenses found (recall, 95 %)",
                    "sky purity",
                    "sim completeness there",
                    "expected purity",
                    "known lenses",
                ],
                budget_rows,
            ),
            "",
            "## At the evaluation's operating thresholds: the sim-to-scan gap",
            "",
            md_table(
                ["point", "threshold", "sim completeness", "sky recall (95 %)", "sim FPR", "flagged (share)", "known"],
                point_rows,
            ),
            "",
            "![recall against candidates inspected](plots/search.png)",
            "",
        ]
    )


def search_plot(candidates: pd.DataFrame) -> bytes:
    """Recall of the sky's lenses (and of known lenses) against candidates inspected, beside the simulated
    completeness at the same thresholds."""
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    n = np.arange(1, len(candidates) + 1)
    ax.plot(n, candidates["completeness"], color="0.5", ls="--", label="simulated completeness at the N-th score")
    for column, label, colour in (("sky_lens", "sky's own lenses", "C0"), ("known_lens", "known lenses", "C1")):
        flags = candidates[column].fillna(False).astype(bool).to_numpy()
        if flags.any():
            ax.step(n, np.cumsum(flags) / flags.sum(), where="post", color=colour, label=f"{label} ({flags.sum()})")
    ax.set_xscale("log")
    ax.set_xlim(1, max(len(candidates), 2))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("candidates inspected (top N)")
    ax.set_ylabel("recall")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return png_bytes(fig)
