"""What a stage is, what it is given and what it gives back.

A stage is a plain function ``run(ctx) -> StageResult`` in its own module: it reads its inputs
from upstream stage folders, writes its artifacts into ``ctx.out`` (a temporary folder the runner
renames into place) and returns row counts and the contract findings on what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from darkhalo.progress import Tracker, track
from darkhalo.spec import EngineSpec
from data_contracts.findings import Finding

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from darkhalo.spec import GenerationSpec
    from darkhalo.spec_view import SpecView


@dataclass(frozen=True)
class Stage:
    """A registered stage: its name, upstream stages, the spec sections it reads, its module.

    ``sections`` name spec sections whole (``psf``) or down to a field (``evaluate.batch_size``); the
    stage sees only those and its lineage digest covers exactly those. ``module`` names a module with
    ``run(ctx) -> StageResult`` and, optionally, ``external_inputs(spec) -> list[Path]`` (files and folders
    outside the run it reads, for lineage: a folder is known by its listing, a path that is absent as absent).
    Its artifact's judge (darkhalo.audit.judges) is its gate.
    """

    name: str
    inputs: tuple[str, ...]
    sections: tuple[str, ...]
    module: str
    description: str


@dataclass
class StageContext:
    """Everything a stage gets: its view of the spec, where its inputs are, where to write, a console.

    ``spec`` shows only the sections the stage declares (darkhalo.spec_view); ``engine`` says where
    Spark and torch run, which changes no result and so is no part of any stage's lineage. ``out``
    is the temporary folder the stage writes its artifacts into. ``scratch`` is a folder that
    survives a failed or killed attempt with the same lineage (for resumable work such as training
    checkpoints); the runner removes it once the stage's output is installed.
    """

    spec: SpecView | GenerationSpec
    run_dir: Path
    out: Path
    scratch: Path
    console: Console = field(default_factory=lambda: Console(stderr=True))
    engine: EngineSpec = field(default_factory=EngineSpec)

    def input(self, stage: str) -> Path:
        """The final folder of an upstream stage's outputs."""
        return self.run_dir / stage

    def spark(self) -> SparkSession:
        """The process's Spark session for the engine (started on first use)."""
        from darkhalo.spark import get_spark

        return get_spark(self.engine)

    def track(self, description: str, total: float | None, unit: str = "stamps") -> AbstractContextManager[Tracker]:
        """A progress bar on the stage console (darkhalo.progress.track): ``with ctx.track(...) as bar:``."""
        return track(self.console, description, total, unit)


@dataclass
class StageResult:
    """What a stage reports: rows per artifact, contract findings, extra measured values."""

    rows: dict[str, int]
    findings: list[Finding] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)


StageFunction = Callable[[StageContext], StageResult]
