"""The contract of ``evaluate/metrics.json``: its pydantic model and L4's checks of it.

``EvaluationMetrics`` is the whole file; producers build it and the report and ``darkhalo compare``
read it (``read_metrics``). Its first part, ``OperatingPointSummary``, is what L4 judges: every
operating point with counts and intervals. A target the negatives cannot resolve carries
``resolved: false``, the negatives needed and no number (a number there is a problem, as is a
missing operating point or an AUROC without them). ``metrics_problems`` judges raw parsed JSON,
so a tampered file yields problems that name the field, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, ValidationError

#: L4's operating points: FPR is reported at these completeness targets ...
COMPLETENESS_TARGETS: tuple[float, ...] = (0.99, 0.95, 0.90, 0.85, 0.80, 0.70)
#: ... and completeness at these FPR targets.
FPR_TARGETS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)

#: The fields of an operating point that hold numbers only when it is resolved.
RESOLVED_NUMBERS = ("threshold", "completeness", "fpr", "n_pos_flagged", "n_neg_flagged")
RESOLVED_INTERVALS = ("completeness_interval", "fpr_interval")
NULL_WHEN_UNRESOLVED = (*RESOLVED_NUMBERS, *RESOLVED_INTERVALS, "bootstrap_interval")
#: Sections of metrics.json and the targets each must list exactly.
SECTIONS: dict[str, tuple[float, ...]] = {
    "fpr_at_completeness": COMPLETENESS_TARGETS,
    "completeness_at_fpr": FPR_TARGETS,
}
AUROC_ALONE = "auroc: reported without the operating points (AUROC is never the headline)"

#: A share in [0, 1] (completeness, FPR, purity, AUC).
Rate = Annotated[float, Field(ge=0, le=1)]
#: A [low, high] interval of a rate; L4 checks that it lies in [0, 1] and holds its rate.
Interval = Annotated[list[float], Field(min_length=2, max_length=2)]


class _Record(BaseModel):
    """Strict JSON types (no "1" for 1, no 1 for true), finite floats, no unknown fields, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ReportedPoint(_Record):
    """One operating point: its target, its threshold (model logit; flag = score >= threshold) and what
    it does to both classes, with exact and bootstrap 95 % intervals; numbers are null when unresolved."""

    target: Literal["completeness", "fpr", "false_positives"]
    target_value: float = Field(ge=0)
    resolved: bool
    threshold: float | None
    completeness: Rate | None
    fpr: Rate | None
    n_pos: PositiveInt
    n_neg: PositiveInt
    n_pos_flagged: NonNegativeInt | None
    n_neg_flagged: NonNegativeInt | None
    n_neg_needed: NonNegativeInt = Field(description="negatives an FPR target needs to be resolved (0 otherwise)")
    completeness_interval: Interval | None
    fpr_interval: Interval | None
    bootstrap_interval: Interval | None = Field(description="of the headline rate, threshold re-derived per resample")


class StratumBin(_Record):
    """Completeness of the positives in one right-open bin [low, high) of a stratum (None: unbounded)."""

    low: float | None
    high: float | None
    n: PositiveInt
    n_flagged: NonNegativeInt
    completeness: Rate
    interval: Interval


class InspectionBudget(_Record):
    """Expected candidates when a survey is cut at one operating point; ``_high`` / ``_low`` use the
    upper end of the FPR's exact interval."""

    survey_hosts: PositiveInt
    lens_prevalence: Rate = Field(description="lenses per host")
    expected_true: NonNegativeFloat
    expected_false: NonNegativeFloat
    purity: Rate
    expected_false_high: NonNegativeFloat
    purity_low: Rate


class SwappedCompleteness(_Record):
    """Completeness of the same positives with survey-PSF arcs and Gaussian-PSF arcs (change = Gaussian - survey)."""

    survey: Rate
    gaussian: Rate
    change: float = Field(ge=-1, le=1)


class PsfSwap(_Record):
    """The PSF-swap probe: a seeded sample of test positives re-injected with a Gaussian PSF."""

    n_positives: PositiveInt
    injection_psf: str
    completeness: dict[str, SwappedCompleteness] = Field(description="by operating point name")


class Probes(_Record):
    """The shortcut probes (L9), keyed by operating point name where per point; what L9 needs to be judged again."""

    core_auc: Rate = Field(description="out-of-fold AUROC of a classifier on the central core pixels alone")
    ring_auc: Rate = Field(description="the same classifier on the ring around the core")
    blob_flag_rates: dict[str, Rate] = Field(description="share of unlensed blobs flagged at each threshold")
    fpr_at_thresholds: dict[str, Rate] = Field(description="the controls' FPR at each threshold")
    psf_swap: PsfSwap | None = None
    core_size_pix: PositiveInt | None = Field(None, description="side of the central box the core probe sees (pix)")
    n_blobs: NonNegativeInt | None = Field(None, description="blobs the blob flag rates are shares of")
    fpr_floor: Rate | None = Field(None, description="smallest FPR the controls can show (1 / n_neg)")


class OperatingPointSummary(_Record):
    """What L4 judges: every operating point of L4, Bologna TPR0/TPR10 and AUROC (secondary).

    Fields beyond these are ignored here, so L4 can judge a whole metrics.json with this model."""

    model_config = ConfigDict(extra="ignore")

    n_pos: PositiveInt
    n_neg: PositiveInt
    confidence: float = Field(gt=0, lt=1, description="of every interval")
    min_expected_false_positives: float = Field(gt=0, description="n_neg x FPR an FPR target needs to be resolved")
    bootstrap_samples: NonNegativeInt
    seed: int
    fpr_at_completeness: list[ReportedPoint]
    completeness_at_fpr: list[ReportedPoint]
    tpr0: ReportedPoint = Field(description="completeness with no false positive")
    tpr10: ReportedPoint = Field(description="completeness with at most ten false positives")
    auroc: Rate

    def sections(self) -> dict[str, list[ReportedPoint]]:
        """L4's sections by name (the keys of SECTIONS)."""
        return {"fpr_at_completeness": self.fpr_at_completeness, "completeness_at_fpr": self.completeness_at_fpr}

    def resolved_points(self) -> dict[str, ReportedPoint]:
        """Every resolved L4 point by name, e.g. ``completeness=0.9`` or ``fpr=0.01``: the keys of the
        stratified, inspection-budget and probe tables."""
        points = (p for section in self.sections().values() for p in section if p.resolved)
        return {f"{p.target}={p.target_value:g}": p for p in points}


class EvaluationMetrics(OperatingPointSummary):
    """The whole metrics.json: the operating points plus, at every resolved one (by name), the
    completeness per stratum bin and the inspection budget; the shortcut probes when they ran."""

    model_config = ConfigDict(extra="forbid")

    strata_edges: dict[str, list[float | None]] = Field(description="bin edges per stratum; None is infinite")
    stratified: dict[str, dict[str, list[StratumBin]]] = Field(description="point name -> stratum -> bins")
    inspection_budget: dict[str, InspectionBudget]
    probes: Probes | None = None


def field_problems(error: ValidationError) -> list[str]:
    """One line per validation error: the field's path (``completeness_at_fpr[3].fpr``), what is wrong, the value."""
    problems = []
    for e in error.errors(include_url=False):
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in e["loc"]).lstrip(".")
        seen = "" if e["type"] == "missing" else f", got {repr(e['input'])[:60]}"
        problems.append(f"{path or 'metrics'}: {'missing' if e['type'] == 'missing' else e['msg']}{seen}")
    return problems


def read_metrics(path: Path) -> EvaluationMetrics:
    """``path`` (a metrics.json) as the model; a file that does not fit is refused naming it and each bad field."""
    try:
        return EvaluationMetrics.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise ValueError(f"{path}: not a valid metrics.json: {'; '.join(field_problems(error))}") from None


def _interval_problems(where: str, interval: list[float] | None, value: float | None) -> list[str]:
    if interval is None:
        return [f"{where}: needs [low, high] numbers, got None"]
    low, high = interval
    if not 0 <= low <= high <= 1:
        return [f"{where}: [{low}, {high}] is not an interval inside [0, 1]"]
    if value is not None and not low - 1e-12 <= value <= high + 1e-12:
        return [f"{where}: [{low}, {high}] does not contain the rate {value}"]
    return []


def _point_problems(where: str, point: ReportedPoint, n_neg: int, min_expected_fp: float, bootstrap: bool) -> list[str]:
    problems = []
    if point.target == "fpr":
        expected_fp = n_neg * point.target_value
        if point.resolved != (expected_fp >= min_expected_fp):
            problems.append(
                f"{where}.resolved is {point.resolved} but n_neg x FPR = {expected_fp:g} "
                f"against a minimum of {min_expected_fp:g} expected false positives"
            )
        if point.n_neg_needed == 0:
            problems.append(f"{where}.n_neg_needed: must be a positive integer, got 0")
    if not point.resolved:
        numbers = [k for k in NULL_WHEN_UNRESOLVED if getattr(point, k) is not None]
        if numbers:
            problems.append(f"{where}: unresolved but reports {', '.join(numbers)} (must be null)")
        return problems
    for key in RESOLVED_NUMBERS:
        if getattr(point, key) is None:
            problems.append(f"{where}.{key}: a resolved point needs a finite number, got None")
    problems += _interval_problems(f"{where}.completeness_interval", point.completeness_interval, point.completeness)
    problems += _interval_problems(f"{where}.fpr_interval", point.fpr_interval, point.fpr)
    if bootstrap:
        problems += _interval_problems(f"{where}.bootstrap_interval", point.bootstrap_interval, None)
    return problems


def metrics_problems(metrics: Any) -> list[str]:
    """Every way ``metrics`` (parsed metrics.json) breaks the L4 contract; empty when it holds.

    A value that does not fit OperatingPointSummary is a problem naming its field; a summary that
    fits must list every target, and each point must agree with n_neg x FPR and with its intervals."""
    try:
        summary = OperatingPointSummary.model_validate(metrics)
    except ValidationError as error:
        problems = field_problems(error)
        missing = {e["loc"] for e in error.errors() if e["type"] == "missing"}
        sections_missing = any((section,) in missing for section in SECTIONS)
        if sections_missing and isinstance(metrics, Mapping) and metrics.get("auroc") is not None:
            problems.append(AUROC_ALONE)
        return problems
    problems = []
    bootstrap = summary.bootstrap_samples > 0
    min_fp = summary.min_expected_false_positives
    missing_points = False
    for section, points in summary.sections().items():
        for target in SECTIONS[section]:
            if not any(math.isclose(p.target_value, target, rel_tol=1e-9) for p in points):
                problems.append(f"{section}: operating point {target:g} is missing")
                missing_points = True
        for i, point in enumerate(points):
            problems += _point_problems(f"{section}[{i}]", point, summary.n_neg, min_fp, bootstrap)
    for key, point in (("tpr0", summary.tpr0), ("tpr10", summary.tpr10)):
        problems += _point_problems(key, point, summary.n_neg, min_fp, bootstrap)
    if missing_points:
        problems.append(AUROC_ALONE)
    return problems
