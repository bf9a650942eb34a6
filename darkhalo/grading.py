"""Grading a scan's top candidates: the self-contained grading page (``scan/grade.html``) and the import of its
exported grades into ``grades/grades.parquet`` and ``grades/summary.json`` with the graded purity.

The page shows one candidate at a time as two grz colour stamps (a soft asinh stretch that shows the galaxy, a hard
one that brings out faint arcs), grades by keyboard, keeps the grades in the browser's localStorage under the page's
title and exports ``grades.csv`` with exactly the columns of ``data_contracts.candidates.Grades``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from astropy.visualization import make_lupton_rgb

from darkhalo import layout
from darkhalo.artifacts import atomic_file, write_json
from darkhalo.metrics.intervals import clopper_pearson
from darkhalo.removal import make_folder
from data_contracts.candidates import GRADES, LENS_GRADES, Candidates, GradedCandidates, Grades
from data_contracts.survey import KEY

KEY_FIELD = "/".join(KEY)
COLUMNS = list(Grades.to_schema().columns)
#: The key that gives each grade on the page: its first letter (a, b, c, n).
GRADE_KEYS = {grade[0].lower(): grade for grade in GRADES}
#: Per-band weights (g, r, z, the stamps' band order) of the Legacy Surveys viewer's colour images: they bring the
#: three bands' sky noise to about the same level, so the colours look as astronomers know them.
BAND_WEIGHTS = np.array([6.0, 3.4, 2.2], dtype=np.float32)
#: The two stretches as (Lupton's stretch in weighted nanomaggies per pixel, Q): soft shows the galaxy unsaturated,
#: hard saturates its core and lifts features a few sky sigmas above the noise.
STRETCHES = {"soft": (0.2, 8.0), "hard": (0.05, 3.0)}
#: The candidates' columns carried into grades.parquet beside the grades.
CARRIED = [c for c in GradedCandidates.to_schema().columns if c not in COLUMNS]


class GradesError(ValueError):
    """A grades CSV that cannot be imported into a run (the message names the file, row and field)."""


def stamp_png(stamp: np.ndarray, stretch: str) -> bytes:
    """A (3, S, S) grz stamp (nanomaggies) as an S x S RGB PNG (z -> red, r -> green, g -> blue, north up)."""
    weighted = np.clip(stamp, 0, None) * BAND_WEIGHTS[:, None, None]
    soft, q = STRETCHES[stretch]
    with np.errstate(invalid="ignore"):  # astropy divides by the intensity before masking its zeros
        image = make_lupton_rgb(weighted[2], weighted[1], weighted[0], minimum=0, stretch=soft, Q=q)
    buffer = io.BytesIO()
    mpimg.imsave(buffer, image, format="png", origin="lower")
    return buffer.getvalue()


def _base64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _caption(row: pd.Series) -> str:
    known = f" · known lens {row['known_lens_name']}" if row["known_lens"] else ""
    return (
        f"#{row['rank']} · score {row['score']:.3f} · expected purity {row['purity']:.3g} · "
        f"RA {row['RA']:.5f} Dec {row['DEC']:+.5f}{known}"
    )


def _candidate_html(index: int, row: pd.Series, stamp: np.ndarray) -> str:
    images = "".join(
        f"<figure><img alt='{name} stretch' src='data:image/png;base64,{_base64(stamp_png(stamp, name))}'>"
        f"<figcaption>{name}</figcaption></figure>"
        for name in STRETCHES
    )
    return (
        f"<section class='candidate' data-index='{index}' hidden>{images}"
        f"<p class='caption'>{html.escape(_caption(row))}</p><p class='grade'></p></section>"
    )


_STYLE = (
    "body{font-family:sans-serif;background:#111;color:#ddd;margin:1em 2em}figure{display:inline-block;margin:0 8px}"
    "img{width:256px;height:256px;image-rendering:pixelated}figcaption{text-align:center}"
    ".grade{font-size:1.4em;font-weight:bold}kbd{border:1px solid #888;border-radius:3px;padding:0 4px}"
)

_SCRIPT = """
const candidates = JSON.parse(document.getElementById("candidates").textContent);
const config = JSON.parse(document.getElementById("config").textContent);
const storeKey = "darkhalo-grades:" + document.title;
const grades = JSON.parse(localStorage.getItem(storeKey) || "{}");
const sections = document.querySelectorAll("section.candidate");
const id = (c) => config.key.map((k) => c[k]).join("_");
let at = candidates.findIndex((c) => !(id(c) in grades));
if (at < 0) at = 0;

function show() {
  sections.forEach((s, i) => { s.hidden = i !== at; });
  const grade = grades[id(candidates[at])];
  sections[at].querySelector(".grade").textContent = grade ? "graded " + grade : "not graded";
  const done = candidates.filter((c) => id(c) in grades).length;
  document.getElementById("progress").textContent =
    "graded " + done + " of " + candidates.length + " · showing " + (at + 1);
}
function move(step) { at = Math.min(Math.max(at + step, 0), candidates.length - 1); show(); }
function grade(value) {
  grades[id(candidates[at])] = value;
  localStorage.setItem(storeKey, JSON.stringify(grades));
  move(1);
}
function exportGrades() {
  const rows = candidates.filter((c) => id(c) in grades)
    .map((c) => config.columns.map((k) => (k === "grade" ? grades[id(c)] : c[k])).join(","));
  const blob = new Blob([[config.columns.join(","), ...rows].join("\\n") + "\\n"], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "grades.csv";
  link.click();
}
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key in config.grade_keys) grade(config.grade_keys[event.key]);
  else if (event.key === "ArrowRight" || event.key === " ") move(1);
  else if (event.key === "ArrowLeft") move(-1);
  else if (event.key === "e") exportGrades();
  else return;
  event.preventDefault();
});
document.getElementById("export").addEventListener("click", exportGrades);
show();
"""


def _json_script(element_id: str, data: object) -> str:
    text = json.dumps(data).replace("</", "<\\/")
    return f"<script type='application/json' id='{element_id}'>{text}</script>"


def grade_page(candidates: pd.DataFrame, stamps: np.ndarray, title: str) -> str:
    """The grading page (self-contained HTML) of ``candidates`` (the top K rows of a Candidates frame, rank order)
    with their stamps (K, 3, S, S) float32 nanomaggies, bands g, r, z."""
    candidates = Candidates.validate(candidates)
    if stamps.ndim != 4 or stamps.shape[:2] != (len(candidates), 3) or stamps.shape[2] != stamps.shape[3]:
        raise ValueError(f"stamps must be ({len(candidates)}, 3, S, S), one per candidate; got {stamps.shape}")
    if not len(candidates):
        raise ValueError("no candidates to grade")
    keys = candidates[[*KEY, "rank"]].astype(np.int64).to_dict("records")
    help_keys = ", ".join(f"<kbd>{key}</kbd> {grade}" for key, grade in GRADE_KEYS.items())
    sections = "".join(_candidate_html(i, row, stamps[i]) for i, (_, row) in enumerate(candidates.iterrows()))
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='help'>Grade: {help_keys} (each grade moves on) · <kbd>→</kbd> or <kbd>space</kbd> next · "
        "<kbd>←</kbd> back · <kbd>e</kbd> export grades.csv. Grades are kept in this browser across reloads.</p>"
        f"<p><span id='progress'></span> <button id='export'>export grades.csv</button></p>{sections}"
        + _json_script("candidates", keys)
        + _json_script("config", {"grade_keys": GRADE_KEYS, "key": KEY, "columns": COLUMNS})
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


@dataclass(frozen=True)
class GradingResult:
    """A grading round: counts per grade, the graded purity (share graded A or B) with its exact 95 % interval and,
    on a mock sky, how the grades met its truth (None on a real survey)."""

    csv: str
    n_graded: int
    counts: dict[str, int]
    purity: float
    purity_interval: tuple[float, float]
    #: Graded candidates that are the mock sky's own lenses, and those of them graded A or B.
    sky_lenses_graded: int | None
    sky_lenses_graded_lens: int | None

    @property
    def n_lens_grades(self) -> int:
        """Candidates graded A or B."""
        return sum(self.counts[g] for g in LENS_GRADES)


def _fail(path: Path, row: int, field: str, message: str) -> GradesError:
    return GradesError(f"{path}: row {row} (line {row + 1}), {field}: {message}")


def read_grades(csv_path: Path, candidates: pd.DataFrame) -> pd.DataFrame:
    """The grades CSV joined with ``candidates`` (KEY, rank and CARRIED columns), in the CSV's order; each row is
    checked in turn (integer fields, a grade of GRADES, a key among the candidates at its rank, graded once)."""
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise GradesError(f"{csv_path}: unreadable grades CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    extra = [c for c in raw.columns if c not in COLUMNS]
    if missing or extra:
        raise GradesError(f"{csv_path}: columns must be {', '.join(COLUMNS)}; missing {missing}, unexpected {extra}")
    if raw.empty:
        raise GradesError(f"{csv_path}: no grades")
    integers = [*KEY, "rank"]
    for row, record in enumerate(raw[integers].to_dict("records"), start=1):
        for field, value in record.items():
            if not value.strip().lstrip("+-").isdigit():
                raise _fail(csv_path, row, field, f"{value!r} is not an integer")
    grades = raw[COLUMNS].astype(dict.fromkeys(integers, np.int64))
    scan = candidates.astype(dict.fromkeys(KEY, np.int64)).rename(columns={"rank": "scan_rank"})
    joined = grades.merge(scan, on=list(KEY), how="left")  # a left merge keeps the CSV's row order
    first_row: dict[tuple[int, ...], int] = {}
    for row, record in enumerate(joined[[*COLUMNS, "scan_rank"]].itertuples(index=False), start=1):
        key = tuple(record[: len(KEY)])
        name = "_".join(map(str, key))
        if record.grade not in GRADES:
            raise _fail(csv_path, row, "grade", f"{record.grade!r} is not one of {', '.join(GRADES)}")
        if pd.isna(record.scan_rank):
            raise _fail(csv_path, row, KEY_FIELD, f"{name} is not among the run's candidates")
        if record.rank != record.scan_rank:
            raise _fail(csv_path, row, "rank", f"{record.rank} but candidate {name} is rank {int(record.scan_rank)}")
        if key in first_row:
            raise _fail(csv_path, row, KEY_FIELD, f"{name} graded twice (first at row {first_row[key]})")
        first_row[key] = row
    Grades.validate(joined[COLUMNS])
    return joined.drop(columns="scan_rank")


def import_grades(csv_path: Path, run_dir: Path) -> GradingResult:
    """Check a grading page's export against ``run_dir``'s candidates, write ``grades/grades.parquet`` (the grades in
    rank order with the candidates' position, score, purity and truth) and ``grades/summary.json``, and summarise;
    a ``grades`` folder that is a link leading outside ``run_dir`` is refused (removal.OutsideRunFolder)."""
    source = layout.artifact(run_dir / "scan", layout.CANDIDATES)
    candidates = pd.read_parquet(source, columns=[*KEY, "rank", *CARRIED])
    joined = read_grades(csv_path, candidates).sort_values("rank", ignore_index=True)
    counts = {g: int((joined["grade"] == g).sum()) for g in GRADES}
    lens = joined["grade"].isin(LENS_GRADES)
    truth = joined["sky_lens"].notna()
    sky = joined["sky_lens"].fillna(False).astype(bool)
    result = GradingResult(
        csv=str(csv_path),
        n_graded=len(joined),
        counts=counts,
        purity=float(lens.mean()),
        purity_interval=clopper_pearson(int(lens.sum()), len(joined)),
        sky_lenses_graded=int(sky.sum()) if truth.any() else None,
        sky_lenses_graded_lens=int((sky & lens).sum()) if truth.any() else None,
    )
    out = make_folder(run_dir / layout.GRADES_DIR, run_dir)
    with atomic_file(out / layout.GRADES_TABLE, "wb") as handle:
        GradedCandidates.validate(joined).to_parquet(handle, index=False)
    write_json(out / layout.GRADES_SUMMARY, asdict(result) | {"n_lens_grades": result.n_lens_grades})
    return result
