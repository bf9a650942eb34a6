"""Where each artifact of a run lives, relative to its stage's folder: the one registry of run paths.

A stage folder ``runs/<generation>/<stage>/`` holds its artifacts under the names below; writers
and readers both take the names from here, and readers ask for them through ``parts`` and
``artifact``, so a missing artifact is reported the same way everywhere (the folder and the stage
that makes it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

#: Folders of parquet parts.
CATALOG = "catalog"  # survey/: the sweep columns
PARENT_SAMPLE = "parent_sample"  # select/
MANIFEST = "manifest"  # manifest/
STAMPS = "stamps"  # inject/
#: Single files and folders.
VALIDATION = "validation"  # select/: the edge validation's result and Data Docs
QUARANTINE = "quarantine.parquet"  # select/: catalog rows set aside with their reasons
COUNTS = "counts.json"  # select/: input, selected, rejected by cuts, quarantined (the row balance)
SKY_LENSES = "sky_lenses.parquet"  # survey/: the mock sky's own lenses (its truth: read by the scan and audit only)
MODEL = "model.pt"  # train/
MODEL_INPUTS = "model_inputs.json"  # train/: what the trainer fed the model (L10's measure)
HISTORY = "history.parquet"  # train/
SCORES = "scores.parquet"  # evaluate/
METRICS = "metrics.json"  # evaluate/
CANDIDATES = "candidates.parquet"  # scan/: every scored parent host, ranked
UNSCORED = "unscored.parquet"  # scan/: parent hosts without a usable cutout, with the reason
SEARCH = "search.json"  # scan/: the search's result (recall and purity in the top N, the sim-to-scan gap)
GRADE_PAGE = "grade.html"  # scan/: the top candidates for grading in a browser
#: A grading round, brought back by ``darkhalo grades import`` into ``runs/<generation>/grades/`` (no stage's output).
GRADES_DIR = "grades"
GRADES_TABLE = "grades.parquet"  # the grades joined with their candidates
GRADES_SUMMARY = "summary.json"  # counts per grade and the graded purity

#: The stage that writes each artifact (named in the error when one is missing).
MADE_BY = {
    CATALOG: "survey",
    PARENT_SAMPLE: "select",
    VALIDATION: "select",
    QUARANTINE: "select",
    COUNTS: "select",
    MANIFEST: "manifest",
    STAMPS: "inject",
    SKY_LENSES: "survey",
    MODEL: "train",
    MODEL_INPUTS: "train",
    HISTORY: "train",
    SCORES: "evaluate",
    METRICS: "evaluate",
    CANDIDATES: "scan",
    UNSCORED: "scan",
    SEARCH: "scan",
    GRADE_PAGE: "scan",
}


#: The artifacts opened through ``parts`` and ``artifact`` inside ``recording_reads`` ("stage/artifact").
_READS: ContextVar[set[str] | None] = ContextVar("darkhalo_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Collect, as ``"<stage>/<artifact>"``, every artifact opened through ``parts`` or ``artifact`` in the block:
    the runner records a stage's reads in its lineage, where L14 judges who read the sky's truth."""
    reads: set[str] = set()
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def _note(stage_dir: Path, name: str) -> None:
    """Add ``<stage>/<name>`` to the reads being recorded (a stage's temporary output folder, ``.<stage>.tmp-*``,
    counts as its stage)."""
    reads = _READS.get()
    if reads is not None:
        stage = stage_dir.name[1:].split(".tmp-")[0] if stage_dir.name.startswith(".") else stage_dir.name
        reads.add(f"{stage}/{name}")


def parts(stage_dir: Path, artifact: str) -> list[Path]:
    """The parquet parts of ``artifact`` in a stage folder, sorted; a clear error when there are none."""
    _note(stage_dir, artifact)
    folder = stage_dir / artifact
    found = sorted(folder.glob("*.parquet"))
    if not found:
        raise FileNotFoundError(f"{folder}: no parquet parts (did the {MADE_BY[artifact]} stage run?)")
    return found


def artifact(stage_dir: Path, name: str) -> Path:
    """A single-file artifact of a stage folder; a clear error when it is missing."""
    _note(stage_dir, name)
    path = stage_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (did the {MADE_BY[name]} stage run?)")
    return path
