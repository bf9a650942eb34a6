"""L12 real-data recall reported: a spec declares a real lens set, and its metrics.json reports recall on one at
every resolved real operating point, with its interval (data_contracts.lessons). Its detail shows each real set's
rate beside the simulated one: a lens set's recall beside the simulated completeness, a non-lens set's flag rate
beside the simulated FPR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from data_contracts.findings import Finding, problems_finding
from data_contracts.lessons import LESSONS
from data_contracts.metrics import REAL_POINTS, RealSummary, headline_real_point, real_set_problems
from data_contracts.thresholds import L12Thresholds

LESSON = LESSONS["L12"]


def check_spec(labels: Mapping[str, str]) -> Finding:
    """Pre-flight: ``labels`` (each declared real set's name -> ``lens`` or ``non_lens``) hold a lens set."""
    lenses = [name for name, label in labels.items() if label == "lens"]
    detail = (
        f"real lens set(s) declared: {', '.join(lenses)}"
        if lenses
        else "the spec declares no real lens set (evaluate.real_sets): its simulated completeness would stand alone"
    )
    return Finding(
        id=LESSON.id,
        title=LESSON.title,
        passed=bool(lenses),
        measured={"lens sets": len(lenses), "non-lens sets": len(labels) - len(lenses)},
        threshold={"lens sets": 1},
        detail=detail,
        n_offending=not lenses,
    )


def beside_simulation(summary: RealSummary) -> str:
    """One line: at the headline point (completeness=0.85, else the first resolved of REAL_POINTS), each scored real
    set's rate with its interval beside the simulated rate: a lens set's recall beside the simulated completeness,
    a non-lens set's flag rate beside the simulated FPR."""
    points = summary.resolved_points()
    point = headline_real_point(points)
    shown = []
    for name, result in summary.real_sets.items():
        if point is None or point not in result.at_points:
            continue
        rate, lens = result.at_points[point].all, result.label == "lens"
        low, high = rate.interval
        simulated = f"completeness {points[point].completeness:.3g}" if lens else f"FPR {points[point].fpr:.3g}"
        kind = "recall" if lens else "flag rate"
        shown.append(f"{name} {kind} {rate.rate:.3g} [{low:.3g}, {high:.3g}] beside the simulated {simulated}")
    return f"at {point}: " + "; ".join(shown) if shown else "no real set scored at a resolved point"


def check(metrics: Any, thresholds: L12Thresholds) -> Finding:
    """Parsed metrics.json: its real sets fit the contract (``real_set_problems``: every set with a scored image
    reports its rate at every resolved point of REAL_POINTS, with its interval), and a lens set among them has at
    least ``thresholds.min_real_lenses`` scored images."""
    summary, problems = real_set_problems(metrics)
    results = summary.real_sets.items() if summary is not None else ()
    lenses = {name: r.n_scored for name, r in results if r.label == "lens" and r.n_scored >= thresholds.min_real_lenses}
    if summary is not None and not lenses:
        problems.append(f"no real lens set with >= {thresholds.min_real_lenses} scored images is reported")
    threshold = {"scored lens images": thresholds.min_real_lenses}
    passed = f"real recall at each resolved point of {', '.join(REAL_POINTS)}"
    passed += f"; {beside_simulation(summary)}" if summary is not None else ""
    return problems_finding(LESSON.id, LESSON.title, problems, lenses, threshold, passed)
