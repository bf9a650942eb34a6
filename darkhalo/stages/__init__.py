"""The stages of a generation, in order. Each lives in its own module (imported when it runs), reads
only the spec sections it declares, and is gated by its artifact's judge (darkhalo.audit.judges)."""

from __future__ import annotations

from darkhalo.audit.judges import JUDGES
from darkhalo.audit.preflight import SECTIONS as PREFLIGHT_SECTIONS
from darkhalo.spec_view import minimal
from darkhalo.stages.base import Stage, StageContext, StageResult

#: The audit reads what every judge and the pre-flight read, the thresholds and the expected verdicts.
AUDIT_SECTIONS: tuple[str, ...] = minimal(
    ["invariants", "expect", *PREFLIGHT_SECTIONS, *(s for j in JUDGES.values() for s in j.sections)]
)

STAGES: tuple[Stage, ...] = (
    Stage(
        "survey",
        inputs=(),
        sections=("seed", "survey"),
        module="darkhalo.stages.survey",
        description="the survey catalog (mock sky or real sweep files), validated at the edge",
    ),
    Stage(
        "select",
        inputs=("survey",),
        sections=("selection",),
        module="darkhalo.stages.select",
        description="the parent sample: LRG cuts in Spark SQL, known lenses flagged",
    ),
    Stage(
        "manifest",
        inputs=("select",),
        sections=("seed", "survey", "grid", "controls", "splits", "source"),
        module="darkhalo.stages.manifest",
        description="one row per stamp: grid configs on hosts, controls, sky-disjoint splits",
    ),
    Stage(
        "inject",
        inputs=("manifest",),
        sections=("seed", "survey", "stamps", "psf", "injection"),
        module="darkhalo.stages.inject",
        description="stamps: cutouts with simulated arcs rendered through the PSF",
    ),
    Stage(
        "train",
        inputs=("inject",),
        sections=("seed", "stamps.size", "train", "evaluate.min_expected_false_positives"),
        module="darkhalo.stages.train",
        description="the ResNet18 classifier, a checkpoint per epoch, history",
    ),
    Stage(
        "evaluate",
        inputs=("manifest", "inject", "train"),
        sections=("seed", "survey", "evaluate", "stamps", "psf", "injection", "invariants.L9.core_size_pix"),
        module="darkhalo.stages.evaluate",
        description="test-split scores, operating points with intervals, probes, report",
    ),
    Stage(
        "scan",
        inputs=("survey", "select", "train", "evaluate"),
        sections=("seed", "survey", "stamps", "scan", "evaluate"),
        module="darkhalo.stages.scan",
        description="the search: every parent host scored and ranked, the top candidates on a grading page",
    ),
    Stage(
        "audit",
        inputs=("survey", "select", "manifest", "inject", "train", "evaluate", "scan"),
        sections=AUDIT_SECTIONS,
        module="darkhalo.stages.audit",
        description="every invariant over every artifact, against the spec",
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)

__all__ = ["STAGES", "STAGE_NAMES", "Stage", "StageContext", "StageResult"]
