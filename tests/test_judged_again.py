"""Measure once, judge always, on one finished run of the real chain (survey -> audit, ~75 s).

- Tightening a lesson's threshold and re-running makes ``darkhalo run`` and ``darkhalo audit RUN``
  fail naming it, with no stage re-run but the audit; loosening it back passes.
- Tampering with an installed artifact (stamps in reversed band order, on another host's cutout, a
  manifest that pairs a control with a positive, a removed operating point...) makes ``darkhalo
  audit RUN`` fail naming the lesson: the audit judges the artifacts as written, not the verdicts
  the stages recorded.
- The run itself is the proof that every stage's reads of the spec stay within the sections it
  declares: each stage sees a view that raises on any other section (darkhalo.spec_view).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from crash_run import tiny_spec
from rich.console import Console
from typer.testing import CliRunner

from darkhalo import layout
from darkhalo.audit.judges import judge_artifact
from darkhalo.cli import app
from darkhalo.runner import StageFailed, run_generation
from darkhalo.spec import GenerationSpec, load_spec, spec_from_dict
from darkhalo.stages import STAGE_NAMES
from darkhalo.stamps import decode_images, encode_images

pytestmark = pytest.mark.spark


def _spec(**invariants: dict) -> GenerationSpec:
    data = tiny_spec().model_dump(mode="json")
    data.setdefault("evaluate", {})["bootstrap_samples"] = 50
    for lesson, values in invariants.items():
        data["invariants"][lesson].update(values)
    return spec_from_dict(data)


@pytest.fixture(scope="module")
def finished(spark, tmp_path_factory) -> Path:
    """A finished, passing run of the whole chain (every stage saw only its declared sections)."""
    root = tmp_path_factory.mktemp("finished")
    spec = _spec()
    outcomes = run_generation(spec, root, console=Console(quiet=True))
    assert [o.stage for o in outcomes] == list(STAGE_NAMES) and {o.status for o in outcomes} == {"ran"}
    return root / spec.generation


def _copy(finished: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / finished.name
    shutil.copytree(finished, run_dir)
    return run_dir


def _lineages(run_dir: Path) -> dict[str, str]:
    return {name: (run_dir / name / "lineage.json").read_text() for name in STAGE_NAMES if name != "audit"}


def _cli_audit(run_dir: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["audit", str(run_dir), "--json", str(run_dir / "cli-audit.json")])
    return result.exit_code, json.loads((run_dir / "cli-audit.json").read_text())


#: Per lesson (and part): a tightened threshold that the finished run no longer meets.
TIGHTENED = {
    "L2": {"min_ratio": 2.5},  # theta_E 1.0-2.0" over PSF FWHM ~1.3"
    "L3": {"rel_tolerance": 0.05},  # the survey PSF falls 0.48 short of real wings beyond 3" at 31 pix
    "L7": {"max_plausible_snr": 8.0},  # arcs of S/N 11-72
    "L8": {"position_tolerance_pix": 1e-9},  # point sources land within ~1e-6 pix
    "L8 convergence": {"convergence_l1": 1e-9},  # arcs move by ~1e-4 of their flux at twice the resolution
    "L12": {"min_real_lenses": 7},  # the small PS1 set's 6 lenses scored
}
# L9's bounds are AUCs above 0.5, and this run's 21 test stamps give an out-of-fold core AUC near or
# below 0.5 (0.40 here), which no bound can fail: L9 is shown judged from the stored probes by
# tampering with them instead (TAMPERED).


@pytest.mark.parametrize("name", list(TIGHTENED))
def test_a_tightened_threshold_fails_run_and_audit_without_rerunning_the_stage(
    finished: Path, tmp_path: Path, name: str
) -> None:
    lesson = name.split()[0]
    run_dir = _copy(finished, tmp_path)
    before = _lineages(run_dir)
    with pytest.raises(StageFailed) as failure:
        run_generation(_spec(**{lesson: TIGHTENED[name]}), tmp_path, console=Console(quiet=True))
    assert failure.value.stage == "audit" and [f.id for f in failure.value.findings] == [lesson]
    assert _lineages(run_dir) == before  # no stage re-ran but the audit
    code, audit = _cli_audit(run_dir)
    assert code == 1 and audit["failed"] == [lesson]

    outcomes = run_generation(_spec(), tmp_path, console=Console(quiet=True))  # loosened back
    assert {o.status for o in outcomes} == {"skipped"}  # the passing audit of this spec is still installed
    code, audit = _cli_audit(run_dir)
    assert code == 0 and audit["failed"] == []


def _rewrite_shard(run_dir: Path, change: Callable[[np.ndarray, pd.DataFrame], np.ndarray]) -> None:
    """Rewrite the first stamp shard with ``change(images, rows)`` applied to its images."""
    path = layout.parts(run_dir / "inject", layout.STAMPS)[0]
    table = pq.read_table(path)
    rows = table.drop(["image"]).to_pandas()
    images = change(decode_images(table["image"], 32), rows)
    index = table.schema.get_field_index("image")
    pq.write_table(table.set_column(index, "image", encode_images(images)), path)


def _reversed_bands(images: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(images[:, ::-1])


def _other_hosts(images: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    controls = np.flatnonzero(rows["label"].to_numpy() == 0)
    out = images.copy()
    out[controls] = images[np.roll(controls, 1)]  # each control holds the next control's cutout
    return out


def _manifest(run_dir: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    for path in layout.parts(run_dir / "manifest", layout.MANIFEST):
        frame = pd.read_parquet(path)
        frame = change(frame)
        frame.to_parquet(path, index=False)


def _parquet(run_dir: Path, stage: str, artifact: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = layout.parts(run_dir / stage, artifact)[0]
    change(pd.read_parquet(path)).to_parquet(path, index=False)


def _pair_a_control(frame: pd.DataFrame) -> pd.DataFrame:
    """Give one control the sweep key of a positive host in its split (a paired control)."""
    key = ["RELEASE", "BRICKID", "OBJID"]
    for _, rows in frame.groupby("split"):
        positives, controls = rows[rows["label"] == 1], rows[rows["label"] == 0]
        if len(positives) and len(controls):
            frame.loc[controls.index[0], key] = positives.iloc[0][key].to_numpy()
            return frame
    raise AssertionError("no split with both classes")


def _split_a_pixel(frame: pd.DataFrame) -> pd.DataFrame:
    """Move one host of a HEALPix pixel that holds several hosts into another split."""
    crowded = frame.groupby("healpix")["host_id"].nunique()
    pixel = crowded[crowded > 1].index[0]
    host = frame.loc[frame["healpix"] == pixel, "host_id"].iloc[0]
    other = next(s for s in ("train", "val", "test") if s != frame.loc[frame["host_id"] == host, "split"].iloc[0])
    frame.loc[frame["host_id"] == host, "split"] = other
    return frame


def _deeper_positives(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame["label"] == 1, "PSFDEPTH_R"] *= 30.0  # positives 3.7 mag deeper than controls
    return frame


def _metrics(run_dir: Path, change: Callable[[dict], None]) -> None:
    path = run_dir / "evaluate" / layout.METRICS
    metrics = json.loads(path.read_text())
    change(metrics)
    path.write_text(json.dumps(metrics))


def _drop_point(metrics: dict) -> None:
    metrics["completeness_at_fpr"] = [p for p in metrics["completeness_at_fpr"] if p["target_value"] != 1e-3]


def _number_on_unresolved(metrics: dict) -> None:
    point = next(p for p in metrics["completeness_at_fpr"] if not p["resolved"])
    point["completeness"] = 0.9


def _separating_core(metrics: dict) -> None:
    # the central pixels alone would tell lenses from controls, further than the ring at 95 % confidence
    metrics["probes"] |= {"core_auc": 0.95, "core_minus_ring_auc_lower": 0.2}


def _label_fed(run_dir: Path) -> None:
    path = run_dir / "train" / layout.MODEL_INPUTS
    record = json.loads(path.read_text())
    record["input_columns"].append("arc_snr")
    record["columns_read"].append("arc_snr")
    path.write_text(json.dumps(record))


def _drop_candidate(run_dir: Path) -> None:
    path = run_dir / "scan" / layout.CANDIDATES
    pd.read_parquet(path).iloc[:-1].to_parquet(path, index=False)  # the lowest-ranked: the ranks stay whole


def _truth_read_by_training(run_dir: Path) -> None:
    path = run_dir / "train" / "lineage.json"
    record = json.loads(path.read_text())
    record["artifacts_read"].append(f"survey/{layout.SKY_LENSES}")
    path.write_text(json.dumps(record))


TAMPERED: dict[str, tuple[Callable[[Path], None], str]] = {
    "a repeated catalog key": (
        lambda r: _parquet(r, "survey", layout.CATALOG, lambda f: pd.concat([f, f.iloc[:1]], ignore_index=True)),
        "schema:catalog:key",
    ),
    "a parent-sample host with no PSF size": (
        lambda r: _parquet(
            r, "select", layout.PARENT_SAMPLE, lambda f: f.assign(PSFSIZE_R=f["PSFSIZE_R"].where(f.index > 0, -1.0))
        ),
        "schema:parent_sample",
    ),
    "stamps in reversed band order": (lambda r: _rewrite_shard(r, _reversed_bands), "L8"),
    "controls on another host's cutout": (lambda r: _rewrite_shard(r, _other_hosts), "L8"),
    "a paired control in the manifest": (lambda r: _manifest(r, _pair_a_control), "L1"),
    "a sky pixel in two splits": (lambda r: _manifest(r, _split_a_pixel), "L5"),
    "positive hosts deeper than controls": (lambda r: _manifest(r, _deeper_positives), "L6"),
    "a removed operating point": (lambda r: _metrics(r, _drop_point), "L4"),
    "a number on an unresolved target": (lambda r: _metrics(r, _number_on_unresolved), "L4"),
    "a core probe that separates the classes": (lambda r: _metrics(r, _separating_core), "L9"),
    "the real sets removed": (lambda r: _metrics(r, lambda m: m.pop("real_sets")), "L12"),
    "a label-derived model input": (_label_fed, "L10"),
    "a parent host missing from the scan": (_drop_candidate, "L13"),
    "the sky's truth read by the trainer": (_truth_read_by_training, "L14"),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_a_tampered_artifact_fails_the_audit_naming_its_lesson(finished: Path, tmp_path: Path, name: str) -> None:
    run_dir = _copy(finished, tmp_path)
    assert _cli_audit(run_dir)[0] == 0
    tamper, lesson = TAMPERED[name]
    tamper(run_dir)
    code, audit = _cli_audit(run_dir)
    assert code == 1 and lesson in audit["failed"], audit["failed"]


@pytest.mark.parametrize("name", ["a parent host missing from the scan", "the sky's truth read by the trainer"])
def test_the_scan_judge_fires_only_the_lesson_its_one_corruption_breaks(
    finished: Path, tmp_path: Path, name: str
) -> None:
    run_dir = _copy(finished, tmp_path)
    tamper, lesson = TAMPERED[name]
    spec = load_spec(run_dir / "spec.yaml")
    assert not [f.id for f in judge_artifact("scan", run_dir / "scan", run_dir, spec) if f.blocking]
    tamper(run_dir)
    assert [f.id for f in judge_artifact("scan", run_dir / "scan", run_dir, spec) if f.blocking] == [lesson]


def test_the_scan_ranks_every_parent_host_once_and_flags_exactly_the_sky_lenses_among_them(finished: Path) -> None:
    parent = pd.concat(pd.read_parquet(p) for p in layout.parts(finished / "select", layout.PARENT_SAMPLE))
    candidates = pd.read_parquet(finished / "scan" / layout.CANDIDATES)
    truth = pd.read_parquet(finished / "survey" / layout.SKY_LENSES)
    key = ["RELEASE", "BRICKID", "OBJID"]
    assert len(candidates) == len(parent) and candidates.merge(parent[key], on=key).shape[0] == len(parent)
    in_sky = candidates.merge(truth[key].assign(truth=True), on=key, how="left")["truth"].notna()
    assert in_sky.sum() > 0 and (candidates["sky_lens"].astype(bool) == in_sky).all()
    search = json.loads((finished / "scan" / layout.SEARCH).read_text())
    assert search["n_sky_lenses"] == int(in_sky.sum()) and search["n_scored"] == len(parent)
    page = (finished / "scan" / layout.GRADE_PAGE).read_text()
    assert page.count("data:image/png;base64,") >= 2 * min(len(candidates), 200)
