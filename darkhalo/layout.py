"""Where each artifact of a run lives, relative to its stage's folder: the one registry of run paths.

A stage folder ``runs/<generation>/<stage>/`` holds its artifacts under the names below; writers
and readers both take the names from here, and readers ask for them through ``parts`` and
``artifact``, so a missing artifact is reported the same way everywhere (the folder and the stage
that makes it).
"""

from __future__ import annotations

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
MODEL = "model.pt"  # train/
MODEL_INPUTS = "model_inputs.json"  # train/: what the trainer fed the model (L10's measure)
HISTORY = "history.parquet"  # train/
SCORES = "scores.parquet"  # evaluate/
METRICS = "metrics.json"  # evaluate/

#: The stage that writes each artifact (named in the error when one is missing).
MADE_BY = {
    CATALOG: "survey",
    PARENT_SAMPLE: "select",
    VALIDATION: "select",
    QUARANTINE: "select",
    COUNTS: "select",
    MANIFEST: "manifest",
    STAMPS: "inject",
    MODEL: "train",
    MODEL_INPUTS: "train",
    HISTORY: "train",
    SCORES: "evaluate",
    METRICS: "evaluate",
}


def parts(stage_dir: Path, artifact: str) -> list[Path]:
    """The parquet parts of ``artifact`` in a stage folder, sorted; a clear error when there are none."""
    folder = stage_dir / artifact
    found = sorted(folder.glob("*.parquet"))
    if not found:
        raise FileNotFoundError(f"{folder}: no parquet parts (did the {MADE_BY[artifact]} stage run?)")
    return found


def artifact(stage_dir: Path, name: str) -> Path:
    """A single-file artifact of a stage folder; a clear error when it is missing."""
    path = stage_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (did the {MADE_BY[name]} stage run?)")
    return path
