"""The stages of a generation, in order. Each lives in its own module (imported when it runs)."""

from __future__ import annotations

from darkhalo.stages.base import Stage, StageContext, StageResult

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
        sections=("seed", "grid", "controls", "splits", "source"),
        module="darkhalo.stages.manifest",
        description="one row per stamp: grid configs on hosts, controls, sky-disjoint splits",
    ),
    Stage(
        "inject",
        inputs=("manifest",),
        sections=("seed", "survey", "stamps", "psf", "source", "injection"),
        module="darkhalo.stages.inject",
        description="stamps: cutouts with simulated arcs rendered through the PSF",
    ),
    Stage(
        "train",
        inputs=("inject",),
        sections=("seed", "train"),
        module="darkhalo.stages.train",
        description="the ResNet18 classifier, a checkpoint per epoch, history",
    ),
    Stage(
        "evaluate",
        inputs=("manifest", "inject", "train"),
        sections=("seed", "evaluate", "stamps", "psf", "invariants"),
        module="darkhalo.stages.evaluate",
        description="test-split scores, operating points with intervals, probes, report",
    ),
    Stage(
        "audit",
        inputs=("survey", "select", "manifest", "inject", "train", "evaluate"),
        sections=("invariants", "expect"),
        module="darkhalo.stages.audit",
        description="every invariant over every artifact, against the spec",
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)

__all__ = ["STAGES", "STAGE_NAMES", "Stage", "StageContext", "StageResult"]
