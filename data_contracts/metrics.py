"""The contract of ``evaluate/metrics.json``: its pydantic model and L4's checks of it.

``EvaluationMetrics`` is the whole file; producers build it and the report and ``darkhalo compare``
read it (``read_metrics``). Its first part, ``OperatingPointSummary``, is what L4 judges: every
operating point with counts and intervals. A target the sample cannot resolve (an FPR target:
distinct control hosts x FPR below the minimum expected false positives; a completeness target:
positives x (1 - c) below the same minimum) carries ``resolved: false``, the sample size needed and
no number (a number there is a problem, as is a missing operating point or an AUROC without them).
Each point's headline ``interval`` is the bootstrap one (threshold re-derived per resample; the
exact one at the threshold where every resample agrees), the interval that covers the rate at the
target; the ``*_at_threshold`` intervals are Clopper-Pearson,
exact only for the rate at the threshold chosen. At every resolved point, ``confuser_fpr`` gives the FPR
of each confuser class's controls (data_contracts.confusers) at that threshold, exact, and resolved by the
same rule on the class's distinct hosts (``confuser_hosts_needed``). ``metrics_problems`` judges raw parsed
JSON, so a tampered file yields problems that name the field, never a crash.

``real_sets`` holds each real set's flag rate (k of n scored images, Clopper-Pearson) at each resolved point of
``REAL_POINTS``, the thresholds the simulated test split fixed: a lens set's rate is its recall, beside the
simulated completeness of that point and the simulated positives' completeness at the set's depth (``at_depth``,
counting n_pos); a non-lens set's is its flag rate, beside the simulated FPR, with its scores tested against the test
controls' (``versus_controls``). ``real_set_problems`` judges it (L12), apart from L4's ``metrics_problems``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt, ValidationError

from data_contracts.confusers import VALUES

#: L4's operating points: FPR is reported at these completeness targets ...
COMPLETENESS_TARGETS: tuple[float, ...] = (0.99, 0.95, 0.90, 0.85, 0.80, 0.70)
#: ... and completeness at these FPR targets.
FPR_TARGETS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)


def point_name(target: str, value: float) -> str:
    """An operating point's name, e.g. ``fpr=0.001`` or ``completeness=0.85``: the key of every per-point table."""
    return f"{target}={value:g}"


#: The operating points real sets are reported at (where resolved): the thresholds a survey search would use.
REAL_POINTS: tuple[str, ...] = (*(point_name("fpr", f) for f in FPR_TARGETS[:3]), point_name("completeness", 0.85))


def headline_real_point(resolved: Iterable[str]) -> str | None:
    """The point a one-line real summary quotes among the ``resolved`` names: completeness=0.85, else the first
    resolved point of REAL_POINTS; None when none is."""
    resolved = set(resolved)
    shown = [name for name in REAL_POINTS if name in resolved]
    return REAL_POINTS[-1] if REAL_POINTS[-1] in shown else next(iter(shown), None)


#: The fields of an operating point that hold numbers only when it is resolved.
RESOLVED_NUMBERS = ("threshold", "completeness", "fpr", "n_pos_flagged", "n_neg_flagged")
#: The exact intervals at a point's threshold, each with the rate it must hold.
RESOLVED_INTERVALS = {"completeness_interval_at_threshold": "completeness", "fpr_interval_at_threshold": "fpr"}
NULL_WHEN_UNRESOLVED = (*RESOLVED_NUMBERS, *RESOLVED_INTERVALS, "interval")
#: The fields of a confuser class's rate that hold numbers only when it is resolved.
CLASS_RATE_NUMBERS = ("n_flagged", "fpr", "fpr_interval_at_threshold")
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
#: A host's confuser class (data_contracts.confusers.VALUES).
Confuser = Literal[VALUES]


def sample_needed(min_expected: float, rate: float) -> int:
    """The smallest sample whose size x ``rate`` reaches ``min_expected``: the distinct control hosts an
    FPR target needs (rate = FPR), the positives a completeness target needs (rate = 1 - c). A target
    is resolved when its sample is at least this large."""
    return math.ceil(min_expected / rate - 1e-9)


class _Record(BaseModel):
    """Strict JSON types (no "1" for 1, no 1 for true), finite floats, no unknown fields, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ReportedPoint(_Record):
    """One operating point: its target, its threshold (model logit; flag = score >= threshold) and what
    it does to both classes. Its headline rate (FPR at a completeness target, completeness otherwise)
    has the covering bootstrap ``interval``; both rates have exact intervals at this threshold. Numbers
    are null when unresolved."""

    target: Literal["completeness", "fpr", "false_positives"]
    target_value: float = Field(ge=0)
    resolved: bool
    threshold: float | None
    completeness: Rate | None
    fpr: Rate | None
    interval: Interval | None = Field(
        description="the 95 % interval of the headline rate, the one that covers it: percentile bootstrap with "
        "the threshold re-derived on every resample (where every resample agrees, e.g. no control flagged, "
        "the exact interval at this threshold instead); null when unresolved or when bootstrap_samples is 0 "
        "(then there is no headline interval, only the intervals at this threshold)"
    )
    n_pos: PositiveInt
    n_neg: PositiveInt
    n_pos_flagged: NonNegativeInt | None
    n_neg_flagged: NonNegativeInt | None
    n_neg_needed: NonNegativeInt = Field(
        description="distinct control hosts an FPR target needs to be resolved (0 for other targets)"
    )
    n_pos_needed: NonNegativeInt = Field(
        description="positives a completeness target needs to be resolved (0 otherwise)"
    )
    completeness_interval_at_threshold: Interval | None = Field(
        description="Clopper-Pearson of n_pos_flagged / n_pos: exact for the completeness of this threshold only; "
        "it does not cover the completeness at an FPR target, whose threshold scatters with the data"
    )
    fpr_interval_at_threshold: Interval | None = Field(
        description="Clopper-Pearson of n_neg_flagged / n_neg: exact for the FPR of this threshold only; "
        "it does not cover the FPR at a completeness target, whose threshold scatters with the data"
    )

    def needs(self) -> str:
        """The sample an unresolved point lacks: ``1,000 positives`` (a completeness target) or ``100,000
        negatives`` (an FPR target; each a distinct control host)."""
        if self.target == "completeness":
            return f"{self.n_pos_needed:,} positives"
        return f"{self.n_neg_needed:,} negatives"


def confuser_hosts_needed(point: ReportedPoint, min_expected: float) -> int | None:
    """The distinct hosts a confuser class needs for its FPR at the resolved ``point`` to be resolved: hosts x
    the point's FPR target (an FPR target) or its measured FPR (a completeness target) reach ``min_expected``
    expected false positives. None when that FPR is 0: no class size resolves it."""
    rate = point.target_value if point.target == "fpr" else point.fpr
    return sample_needed(min_expected, rate) if rate else None


class ConfuserRate(_Record):
    """The FPR of one confuser class's test controls at one resolved operating point's threshold (flag = score
    >= threshold), with its exact interval at this threshold; numbers are null when unresolved."""

    n: PositiveInt = Field(description="test controls of this class")
    n_hosts: PositiveInt = Field(description="distinct hosts among them: the sample the resolution counts")
    resolved: bool = Field(description="n_hosts >= n_hosts_needed")
    n_hosts_needed: PositiveInt | None = Field(
        description="confuser_hosts_needed at this point; null when the point flags no control"
    )
    n_flagged: NonNegativeInt | None
    fpr: Rate | None = Field(description="n_flagged / n")
    fpr_interval_at_threshold: Interval | None = Field(
        description="Clopper-Pearson of n_flagged / n: exact for the class's FPR at this threshold (chosen from "
        "all controls, this class among them)"
    )

    def needs(self) -> str:
        """The sample an unresolved class rate lacks: ``1,000 hosts`` (distinct, of this class)."""
        needed = self.n_hosts_needed
        return "a control flagged at this threshold" if needed is None else f"{needed:,} hosts"


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
    upper end of the FPR's exact interval at the point's threshold (the survey is cut at that threshold)."""

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
    core_minus_ring_auc_lower: float = Field(
        ge=-1, le=1, description="one-sided 95 % lower bound of core_auc - ring_auc (paired bootstrap of the stamps)"
    )
    blob_flag_rates: dict[str, Rate] = Field(description="share of unlensed blobs flagged at each threshold")
    fpr_at_thresholds: dict[str, Rate] = Field(description="the controls' FPR at each threshold")
    psf_swap: PsfSwap | None = None
    core_size_pix: PositiveInt | None = Field(None, description="side of the central box the core probe sees (pix)")
    n_blobs: NonNegativeInt | None = Field(None, description="blobs the blob flag rates are shares of")
    fpr_floor: Rate | None = Field(None, description="smallest FPR the controls can show (1 / n_neg)")


class OperatingPointSummary(_Record):
    """What L4 judges: every operating point of L4, Bologna TPR0/TPR10, AUROC (secondary) and the FPR per
    confuser class at each resolved point (empty where a file records none).

    Fields beyond these are ignored here, so L4 can judge a whole metrics.json with this model."""

    model_config = ConfigDict(extra="ignore")

    n_pos: PositiveInt
    n_neg: PositiveInt
    n_neg_hosts: PositiveInt = Field(
        description="distinct hosts among the n_neg controls: a repeated image is no independent negative, "
        "so the FPR resolution counts these"
    )
    confidence: float = Field(gt=0, lt=1, description="of every interval")
    min_expected_false_positives: float = Field(
        gt=0,
        description="n_neg_hosts x FPR an FPR target needs to be resolved, and n_pos x (1 - c) a completeness target",
    )
    bootstrap_samples: NonNegativeInt = Field(description="resamples of the headline intervals; 0: none reported")
    seed: int
    fpr_at_completeness: list[ReportedPoint]
    completeness_at_fpr: list[ReportedPoint]
    tpr0: ReportedPoint = Field(description="completeness with no false positive")
    tpr10: ReportedPoint = Field(description="completeness with at most ten false positives")
    auroc: Rate
    confuser_fpr: dict[str, dict[Confuser, ConfuserRate]] = Field(
        default_factory=dict, description="resolved point name -> confuser class present among the test controls -> FPR"
    )

    def sections(self) -> dict[str, list[ReportedPoint]]:
        """L4's sections by name (the keys of SECTIONS)."""
        return {"fpr_at_completeness": self.fpr_at_completeness, "completeness_at_fpr": self.completeness_at_fpr}

    def resolved_points(self) -> dict[str, ReportedPoint]:
        """Every resolved L4 point by name, e.g. ``completeness=0.9`` or ``fpr=0.01``: the keys of the
        stratified, inspection-budget and probe tables."""
        points = (p for section in self.sections().values() for p in section if p.resolved)
        return {point_name(p.target, p.target_value): p for p in points}


class RealRate(_Record):
    """``n_flagged`` of ``n`` real images flagged at a threshold (score >= it), with the exact interval of the rate."""

    n: PositiveInt
    n_flagged: NonNegativeInt
    rate: Rate = Field(description="n_flagged / n")
    interval: Interval = Field(description="Clopper-Pearson of n_flagged / n at this threshold")


class RealRates(_Record):
    """A real set's rate at one operating point: on every scored image and on the visible subset (when declared)."""

    all: RealRate
    visible: RealRate | None = Field(description="null when no visible subset is declared or none of it is scored")


class RefusedReal(_Record):
    """A real image that was not scored, and why."""

    name: str
    reason: str


#: Per band g, r, z: a sky noise sigma (nanomaggies per pixel).
BandSigmas = Annotated[list[NonNegativeFloat], Field(min_length=3, max_length=3)]


class RealAtDepth(_Record):
    """The simulated test positives at a lens set's depth: each given Gaussian pixel noise that brings its sky sigma
    to the set's (none where it is noisier already), scored at the same thresholds. Simulated completeness minus
    this is what depth costs; this minus the real recall, what the sim-to-real shift costs."""

    sky_sigma_real: BandSigmas = Field(description="median over the set's scored stamps of their sky sigma")
    sky_sigma_simulated: BandSigmas = Field(description="median over the test positives of their sky sigma")
    added_sigma: BandSigmas = Field(description="median over the test positives of the noise sigma added")
    at_points: dict[str, RealRate] = Field(description="resolved point of REAL_POINTS -> the noised positives' rate")


class RealVersusControls(_Record):
    """A non-lens set's scores (logits) against the simulated test controls': the two-sample Kolmogorov-Smirnov
    test (two-sided), so a shift between mock and real negatives shows beyond the flag rates."""

    test: Literal["ks_2samp"]
    statistic: Rate = Field(description="the largest gap between the two empirical CDFs")
    p_value: Rate
    n_real: PositiveInt
    n_controls: PositiveInt
    median_real: float
    median_controls: float


class RealSetResult(_Record):
    """One real set scored at the simulated operating thresholds (evaluate.real_sets)."""

    label: Literal["lens", "non_lens"] = Field(description="lens: the rate is a recall; non_lens: a flag rate")
    input: str = Field(description="its input description file")
    n_images: PositiveInt
    n_scored: NonNegativeInt = Field(description="images scored: n_images less the refused")
    refused: list[RefusedReal]
    visible: str | None = Field(description="the visible subset's rule, e.g. 'image_sep_arcsec >= 2'; null: none")
    n_visible: NonNegativeInt | None = Field(description="scored images in the visible subset")
    at_points: dict[str, RealRates] = Field(description="resolved point of REAL_POINTS -> the set's rates there")
    at_depth: RealAtDepth | None = Field(
        None, description="lens sets with a scored image: the simulated positives at the set's depth; else null"
    )
    versus_controls: RealVersusControls | None = Field(
        None, description="non-lens sets with a scored image: its scores against the test controls'; else null"
    )


class EvaluationMetrics(OperatingPointSummary):
    """The whole metrics.json: the operating points plus, at every resolved one (by name), the
    completeness per stratum bin and the inspection budget; the shortcut probes when they ran; the real sets."""

    model_config = ConfigDict(extra="forbid")

    strata_edges: dict[str, list[float | None]] = Field(description="bin edges per stratum; None is infinite")
    stratified: dict[str, dict[str, list[StratumBin]]] = Field(description="point name -> stratum -> bins")
    inspection_budget: dict[str, InspectionBudget]
    probes: Probes | None = None
    real_sets: dict[str, RealSetResult] = Field(default_factory=dict, description="real set name -> its rates")


class RealSummary(OperatingPointSummary):
    """What L12 judges: the operating points (for which are resolved) and the real sets."""

    real_sets: dict[str, RealSetResult] = Field(default_factory=dict)


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


#: Per target kind, the resolution rule L4 checks: (the summary's sample field, the rate it multiplies,
#: what the product counts, the point's field for the sample needed).
RESOLUTION_RULES = {
    "fpr": ("n_neg_hosts", "FPR", "expected false positives", "n_neg_needed"),
    "completeness": ("n_pos", "(1 - c)", "expected missed positives", "n_pos_needed"),
}


def _resolution_problems(where: str, point: ReportedPoint, summary: OperatingPointSummary) -> list[str]:
    """Problems when an FPR or completeness point's ``resolved`` disagrees with its sample, or its need is 0."""
    if point.target not in RESOLUTION_RULES:
        return []
    size_field, rate_name, counts, needed_field = RESOLUTION_RULES[point.target]
    size = getattr(summary, size_field)
    rate = point.target_value if point.target == "fpr" else 1 - point.target_value
    minimum = summary.min_expected_false_positives
    problems = []
    if point.resolved != (size >= sample_needed(minimum, rate)):
        problems.append(
            f"{where}.resolved is {point.resolved} but {size_field} x {rate_name} = {size * rate:g} "
            f"against a minimum of {minimum:g} {counts}"
        )
    if getattr(point, needed_field) == 0:
        problems.append(f"{where}.{needed_field}: must be a positive integer, got 0")
    return problems


def _point_problems(where: str, point: ReportedPoint, summary: OperatingPointSummary, bootstrap: bool) -> list[str]:
    problems = _resolution_problems(where, point, summary)
    if not point.resolved:
        numbers = [k for k in NULL_WHEN_UNRESOLVED if getattr(point, k) is not None]
        if numbers:
            problems.append(f"{where}: unresolved but reports {', '.join(numbers)} (must be null)")
        return problems
    for key in RESOLVED_NUMBERS:
        if getattr(point, key) is None:
            problems.append(f"{where}.{key}: a resolved point needs a finite number, got None")
    for key, rate in RESOLVED_INTERVALS.items():
        problems += _interval_problems(f"{where}.{key}", getattr(point, key), getattr(point, rate))
    if bootstrap:
        problems += _interval_problems(f"{where}.interval", point.interval, None)
    elif point.interval is not None:
        problems.append(f"{where}.interval: bootstrap_samples is 0 but an interval is reported (must be null)")
    return problems


def _confuser_rate_problems(where: str, rate: ConfuserRate, needed: int | None) -> list[str]:
    """Problems when a class rate disagrees with its resolution rule (``needed``: confuser_hosts_needed), its
    counts or its interval."""
    problems = []
    if rate.n_hosts > rate.n:
        problems.append(f"{where}.n_hosts: {rate.n_hosts} distinct hosts among {rate.n} controls")
    if rate.n_hosts_needed != needed:
        problems.append(f"{where}.n_hosts_needed: {rate.n_hosts_needed}, but the point's FPR needs {needed}")
    if rate.resolved != (needed is not None and rate.n_hosts >= needed):
        problems.append(f"{where}.resolved is {rate.resolved} but the class has {rate.n_hosts} hosts, {needed} needed")
    if not rate.resolved:
        numbers = [k for k in CLASS_RATE_NUMBERS if getattr(rate, k) is not None]
        return problems + ([f"{where}: unresolved but reports {', '.join(numbers)} (must be null)"] if numbers else [])
    missing = [k for k in CLASS_RATE_NUMBERS if getattr(rate, k) is None]
    problems += [f"{where}.{k}: a resolved class rate needs a number, got None" for k in missing]
    if rate.n_flagged is not None and rate.n_flagged > rate.n:
        problems.append(f"{where}.n_flagged: {rate.n_flagged} flagged among {rate.n} controls")
    if rate.fpr_interval_at_threshold is not None:
        problems += _interval_problems(f"{where}.fpr_interval_at_threshold", rate.fpr_interval_at_threshold, rate.fpr)
    return problems


def _confuser_problems(summary: OperatingPointSummary) -> list[str]:
    """Problems of ``confuser_fpr``: when present, an entry per resolved point, each class agreeing with its rule."""
    points, rates = summary.resolved_points(), summary.confuser_fpr
    if not rates:
        return []
    problems = [f"confuser_fpr: resolved point {name} is missing" for name in points if name not in rates]
    for name, classes in rates.items():
        if name not in points:
            problems.append(f"confuser_fpr.{name}: not a resolved operating point")
            continue
        needed = confuser_hosts_needed(points[name], summary.min_expected_false_positives)
        for value, rate in classes.items():
            problems += _confuser_rate_problems(f"confuser_fpr.{name}.{value}", rate, needed)
    return problems


def metrics_problems(metrics: Any) -> list[str]:
    """Every way ``metrics`` (parsed metrics.json) breaks the L4 contract; empty when it holds.

    A value that does not fit OperatingPointSummary is a problem naming its field; a summary that
    fits must list every target, count no more distinct control hosts than controls, and each point must
    agree with its resolution rule (n_neg_hosts x FPR, n_pos x (1 - c)) and with its intervals; so must each
    confuser class's rate (its hosts x the point's FPR)."""
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
    if summary.n_neg_hosts > summary.n_neg:
        problems.append(f"n_neg_hosts: {summary.n_neg_hosts} distinct control hosts among {summary.n_neg} controls")
    bootstrap = summary.bootstrap_samples > 0
    missing_points = False
    for section, points in summary.sections().items():
        for target in SECTIONS[section]:
            if not any(math.isclose(p.target_value, target, rel_tol=1e-9) for p in points):
                problems.append(f"{section}: operating point {target:g} is missing")
                missing_points = True
        for i, point in enumerate(points):
            problems += _point_problems(f"{section}[{i}]", point, summary, bootstrap)
    for key, point in (("tpr0", summary.tpr0), ("tpr10", summary.tpr10)):
        problems += _point_problems(key, point, summary, bootstrap)
    problems += _confuser_problems(summary)
    if missing_points:
        problems.append(AUROC_ALONE)
    return problems


def _real_rate_problems(where: str, rate: RealRate, n: int | None) -> list[str]:
    """Problems of one real rate: k above n, n other than the images it counts (``n``), a rate that is not k / n,
    an interval that does not hold it."""
    problems = []
    if rate.n_flagged > rate.n:
        problems.append(f"{where}.n_flagged: {rate.n_flagged} flagged among {rate.n} images")
    if n is not None and rate.n != n:
        problems.append(f"{where}.n: {rate.n}, but {n} images are counted")
    if not math.isclose(rate.rate, rate.n_flagged / rate.n, rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"{where}.rate: {rate.rate} is not {rate.n_flagged}/{rate.n}")
    return problems + _interval_problems(f"{where}.interval", rate.interval, rate.rate)


def _points_problems(where: str, at_points: Mapping[str, object], expected: list[str], required: bool) -> list[str]:
    """Rates reported off the ``expected`` points (the resolved ones of REAL_POINTS) or, when ``required``, missing
    at one of them."""
    resolved = ", ".join(REAL_POINTS)
    off = [f"{where}.{name}: not a resolved point of {resolved}" for name in at_points if name not in expected]
    missing = [name for name in expected if name not in at_points] if required else []
    return off + [f"{where}: resolved point {name} is missing" for name in missing]


def _comparison_problems(where: str, result: RealSetResult, summary: RealSummary, expected: list[str]) -> list[str]:
    """Problems of a set's comparison with the simulation: a lens set with scored images needs ``at_depth`` (its
    rates counting the summary's n_pos positives), a non-lens one ``versus_controls`` (counting its scored images and
    the n_neg controls); neither belongs to the other kind or to a set with nothing scored."""
    lens, scored = result.label == "lens", result.n_scored > 0
    problems = []
    fields = {"at_depth": (result.at_depth, lens), "versus_controls": (result.versus_controls, not lens)}
    for field, (value, wanted) in fields.items():
        if (value is None) == (wanted and scored):
            problems.append(f"{where}.{field}: " + ("missing" if value is None else "reported for a set it is not for"))
    if result.at_depth is not None:
        depth = f"{where}.at_depth.at_points"
        problems += _points_problems(depth, result.at_depth.at_points, expected, required=True)
        for name, rate in result.at_depth.at_points.items():
            problems += _real_rate_problems(f"{depth}.{name}", rate, summary.n_pos)
    shift = result.versus_controls
    if shift is not None and (shift.n_real, shift.n_controls) != (result.n_scored, summary.n_neg):
        problems.append(
            f"{where}.versus_controls: {shift.n_real} real and {shift.n_controls} controls, but {result.n_scored} "
            f"images are scored and {summary.n_neg} controls tested"
        )
    return problems


def _real_set_problems(where: str, result: RealSetResult, summary: RealSummary, expected: list[str]) -> list[str]:
    """Problems of one real set: counts that do not add up, rates missing at or reported off the ``expected``
    points (the resolved ones of REAL_POINTS), and its comparison with the simulation (``_comparison_problems``)."""
    problems = []
    if result.n_scored + len(result.refused) != result.n_images:
        problems.append(
            f"{where}: {result.n_scored} scored + {len(result.refused)} refused is not its {result.n_images} images"
        )
    if (result.visible is None) != (result.n_visible is None):
        problems.append(f"{where}: visible and n_visible must be given together")
    if result.n_visible is not None and result.n_visible > result.n_scored:
        problems.append(f"{where}.n_visible: {result.n_visible} visible among {result.n_scored} scored")
    problems += _points_problems(f"{where}.at_points", result.at_points, expected, required=result.n_scored > 0)
    for name, rates in result.at_points.items():
        problems += _real_rate_problems(f"{where}.at_points.{name}.all", rates.all, result.n_scored)
        if rates.visible is not None:
            problems += _real_rate_problems(f"{where}.at_points.{name}.visible", rates.visible, result.n_visible)
        elif result.n_visible:
            problems.append(f"{where}.at_points.{name}.visible: {result.n_visible} visible images but no rate")
    return problems + _comparison_problems(where, result, summary, expected)


def real_set_problems(metrics: Any) -> tuple[RealSummary | None, list[str]]:
    """``metrics`` (parsed metrics.json) read as ``RealSummary`` and every way its ``real_sets`` break the contract
    (a value that does not fit is a problem naming its field; the summary is then None)."""
    try:
        summary = RealSummary.model_validate(metrics)
    except ValidationError as error:
        return None, field_problems(error)
    expected = [name for name in REAL_POINTS if name in summary.resolved_points()]
    problems = []
    for name, result in summary.real_sets.items():
        problems += _real_set_problems(f"real_sets.{name}", result, summary, expected)
    return summary, problems
