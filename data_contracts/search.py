"""The contract of the scan's result (``scan/search.json``): what the search finds at each inspection budget and at
each of the evaluation's operating thresholds, beside what the simulation promised there.

Recalls count the mock sky's own lenses (``sky_*``, null on a real survey) and the known lenses among the parent
hosts (``known_*``). Each interval is Clopper-Pearson at the budget's or the point's threshold, binomial in the
lenses: at the embedded run's size it covers the population's recall 98.6 % of the time, conservative
(tests/test_scan.py).
"""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveInt

from data_contracts.metrics import Interval, Rate, _Record


class Found(_Record):
    """``n_found`` of ``n`` lenses at or above a threshold, the recall and its exact interval (null without lenses)."""

    n: NonNegativeInt
    n_found: NonNegativeInt
    recall: Rate | None
    interval: Interval | None


class BudgetResult(_Record):
    """The top ``n_inspected`` candidates: ``per_million`` of the scanned hosts, cut at the N-th score."""

    per_million: PositiveInt
    n_inspected: PositiveInt
    threshold: float = Field(description="the N-th candidate's score (model logit)")
    sim_completeness: Rate = Field(description="the evaluation's test positives at or above the threshold")
    sim_fpr: Rate = Field(description="the evaluation's test controls at or above the threshold")
    expected_purity: Rate = Field(description="the N-th candidate's purity column at the spec's lens prevalence")
    sky: Found | None = Field(description="the sky's own lenses in the top N (null on a real survey)")
    sky_purity: Rate | None = Field(description="sky lenses in the top N / N")
    sky_purity_interval: Interval | None
    known: Found


class PointResult(_Record):
    """An operating point of the evaluation applied to the scan: its threshold, what the simulation measured there
    and what the scan flags there."""

    threshold: float
    sim_completeness: Rate
    sim_fpr: Rate
    n_flagged: NonNegativeInt
    flagged_share: Rate = Field(description="scanned hosts flagged: the survey's FPR where lenses are rare")
    sky: Found | None
    known: Found


class SearchResult(_Record):
    """The whole search: hosts scanned and unscored, lenses present, the budgets and the operating points."""

    n_parent: PositiveInt
    n_scored: NonNegativeInt
    n_unscored: NonNegativeInt
    lens_prevalence: Rate = Field(description="the spec's lenses per host, behind the purity column")
    n_sky_lenses: NonNegativeInt | None = Field(description="the sky's own lenses among the scored hosts")
    n_sky_lenses_unscored: NonNegativeInt | None
    n_known_lenses: NonNegativeInt
    budgets: list[BudgetResult] = Field(min_length=1)
    points: dict[str, PointResult]
