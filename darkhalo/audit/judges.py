"""Measure once, judge always: one judging function per artifact, the stage's gate and the audit's.

Each judge reads an artifact as written (a stage's output folder) and returns its contract findings against
the spec's current thresholds: catalog (schema, key, and the mock sky's truth table), parent sample (schema, not
empty, row balance), manifest (schema, both labels in every split, L1, L2, L5, L6, L11), stamps (schema, L3, L7,
L8), model inputs (L10), metrics (scores schema, L4, L9, L12), the scan (candidates, unscored and search schemas,
L13, L14). The runner calls a stage's judge on the stage's temporary folder before installing it; ``darkhalo
audit`` calls the same judge on the installed folder. What is expensive to measure again (L9's probes need the
model) is stored by the stage as a measurement (``metrics.json``'s probes) and judged here; no verdict is ever
read back.

Each judge declares the spec sections it reads and sees only those (darkhalo.spec_view).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch

from darkhalo import layout
from darkhalo.injection import Rendering, convergence_of_rows, host_cutouts, injection_kernels, render_rows
from darkhalo.lensing.psf import wing_deficits
from darkhalo.lensing.render import point_source_errors
from darkhalo.sky import SPLITS
from darkhalo.sparkio import run_tasks
from darkhalo.spec import GenerationSpec, MockSurvey, confuser_classes
from darkhalo.spec_view import SpecView
from darkhalo.stamps import N_BANDS, decode_images
from darkhalo.surveys.provider import CutoutProvider, provider_for
from data_contracts import catalog, parent_sample, reconciliation, sky_lenses
from data_contracts.candidates import Candidates, Unscored
from data_contracts.findings import Finding
from data_contracts.invariants import (
    l1_unpaired_controls,
    l2_resolvable_injections,
    l3_psf_wings,
    l4_operational_reporting,
    l5_sky_disjoint_splits,
    l6_host_matching,
    l7_realistic_arcs,
    l8_stamp_integrity,
    l9_no_shortcut,
    l10_no_label_leakage,
    l11_hard_negatives,
    l12_real_recall,
    l13_complete_scan,
    l14_sealed_truth,
)
from data_contracts.manifest import Manifest, check_splits
from data_contracts.schema import column_names, model_finding, schema_finding
from data_contracts.scores import Scores
from data_contracts.search import SearchResult
from data_contracts.sky_lenses import SkyLensTruth
from data_contracts.stamps import StampRecord
from data_contracts.survey import BANDS, KEY

#: Positives whose arcs L8 renders again at twice the resolution (a seeded sample, stage and audit alike).
CONVERGENCE_SAMPLE = 32
#: Stamps of each label whose cutouts the stage's gate fetches again and whose arcs it renders again
#: for L8 (a seeded sample: a corruption of 1 % of a label's stamps escapes it with probability 0.6 %;
#: every stamp's bytes, pixels and record are checked whole).
STAGE_STAMP_SAMPLE = 512
#: Stamps of each label the audit checks so (seeded; the stage's gate checked more).
AUDIT_STAMP_SAMPLE = 256
#: Manifest columns the invariants read back from the written manifest (each once).
MANIFEST_CHECK_COLUMNS = list(
    dict.fromkeys(
        [
            "RELEASE",
            "BRICKID",
            "OBJID",
            "label",
            "split",
            "healpix",
            "theta_e",
            *l6_host_matching.NEEDS,
            *l11_hard_negatives.NEEDS,
        ]
    )
)
#: The stamp record (every shard column but the image).
RECORD_COLUMNS = list(column_names(StampRecord))
#: Record columns a stamp shares with its manifest row (L8 checks them against it).
RECORD_KEY = ["host_id", *KEY, "config_id", "label", "split", "confuser"]

JudgeFunction = Callable[[Path, Path, SpecView, int | None], list[Finding]]


@dataclass(frozen=True)
class Judge:
    """The judge of one stage's artifact: the lessons it decides and the spec sections it reads.

    ``judge(folder, run_dir, spec, sample)``: ``folder`` holds the artifact, ``run_dir`` the
    upstream stages; ``sample`` bounds re-fetching work in the audit (None: everything)."""

    stage: str
    lessons: tuple[str, ...]
    sections: tuple[str, ...]
    judge: JudgeFunction


# --- catalog and parent sample: schemas, key, row balance ----------------------------------------


def judge_catalog(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """Every catalog part's columns, order and dtypes, and a unique sweep key over all of them; for a mock sky with
    sky lenses, its truth table against its contract and every truth row a catalog row."""
    parts = layout.parts(folder, layout.CATALOG)
    keys = pd.concat([pd.read_parquet(p, columns=list(KEY)) for p in parts], ignore_index=True)
    findings = [catalog.check_parts({p.name: pq.read_schema(p) for p in parts}), catalog.check_key(keys)]
    if isinstance(spec.survey, MockSurvey) and spec.survey.sky_lenses is not None:
        truth = pd.read_parquet(layout.artifact(folder, layout.SKY_LENSES))
        findings += [schema_finding(SkyLensTruth, truth, "sky_lenses"), sky_lenses.check_keys(truth, keys)]
    return findings


def judge_parent_sample(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The written parent sample against its contract (inside the cuts), and the recorded row balance.
    Nothing to judge when the edge validation stopped the stage before it selected (its own finding)."""
    if not (folder / layout.COUNTS).is_file():
        return []
    counts = json.loads(layout.artifact(folder, layout.COUNTS).read_text())
    parts = layout.parts(folder, layout.PARENT_SAMPLE)
    selected = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return [
        reconciliation.check_recorded(counts, len(selected)),
        parent_sample.check(selected, spec.selection.model_dump()),
    ]


# --- manifest: schema, L1, L2, L5, L6, L11 --------------------------------------------------------


def judge_manifest(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The manifest's schema part by part, then L1, L2, L5, L6, L11 over the columns they read."""
    parts = layout.parts(folder, layout.MANIFEST)
    checked = pd.concat([pd.read_parquet(p, columns=MANIFEST_CHECK_COLUMNS) for p in parts], ignore_index=True)
    return [
        _manifest_schema(parts, checked),
        l1_unpaired_controls.check(checked),
        l2_resolvable_injections.check(checked[checked["label"] == 1], spec.invariants.L2),
        l5_sky_disjoint_splits.check(checked),
        l6_host_matching.check(checked, spec.invariants.L6),
        hard_negatives_finding(checked, spec),
    ]


def hard_negatives_finding(manifest: pd.DataFrame, spec: SpecView | GenerationSpec, scale: float = 1.0) -> Finding:
    """L11 on a manifest (its counts times ``scale`` when it is a pre-flight's sample of the survey)."""
    return l11_hard_negatives.check(
        manifest,
        confuser_classes(spec.survey),
        spec.invariants.L11,
        spec.evaluate.min_expected_false_positives,
        scale,
    )


def _manifest_schema(parts: list[Path], checked: pd.DataFrame) -> Finding:
    """The manifest schema, part by part (the first failing part is named), then both labels in every split."""
    for path in parts:
        finding = schema_finding(Manifest, pd.read_parquet(path), "manifest")
        if not finding.passed:
            return Finding(**{**finding.__dict__, "detail": f"{path.name}: {finding.detail}"})
    return check_splits(checked, SPLITS)


# --- stamps: schema, L3, L7, L8 ------------------------------------------------------------------


def psf_wing_measures(spec: SpecView | GenerationSpec) -> pd.DataFrame:
    """L3's measure: the injection PSF's deficits (1 - EE at 2 x PSFSIZE and 3") at each real reference
    model's band and PSFSIZE, beside the reference's own (data_contracts' decam_psfex_wings.csv)."""
    reference = l3_psf_wings.reference()
    fwhm = np.repeat(reference["fwhm_arcsec"].to_numpy(np.float64)[:, None], N_BANDS, axis=1)
    beta = np.full_like(fwhm, spec.psf.moffat_beta)
    kernels = injection_kernels(spec.psf, spec.stamps.pixel_scale, fwhm, beta)
    band = reference["band"].map({b: i for i, b in enumerate(BANDS)}).to_numpy()
    own = kernels[torch.arange(len(reference)), torch.as_tensor(band)].double()
    deficits = wing_deficits(own, spec.stamps.pixel_scale, torch.as_tensor(fwhm[:, 0])).numpy()
    return reference.assign(psf_wing_2fwhm=deficits[:, 0], psf_wing_3as=deficits[:, 1])


def psf_finding(spec: SpecView | GenerationSpec) -> Finding:
    """L3 from the spec's injection PSF alone (pre-flight and the stamps' judge alike)."""
    return l3_psf_wings.check(psf_wing_measures(spec), spec.invariants.L3)


def point_source_test(spec: SpecView | GenerationSpec, fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    """The L8 point-source test of the injection PSF at one FWHM (arcsec), every band: centroid
    offsets (pix) and flux kept, seeded by the spec. A pixelized (real) kernel's point source is
    expected at the kernel's own centroid."""
    psf = spec.psf
    kernels = injection_kernels(psf, spec.stamps.pixel_scale, np.full((1, 3), fwhm), np.full((1, 3), psf.moffat_beta))
    generator = torch.Generator().manual_seed(spec.seed)
    offsets, ratios = point_source_errors(
        kernels, spec.stamps.pixel_scale, generator, own_centroid=psf.model == "pixelized"
    )
    return offsets.numpy().ravel(), ratios.numpy().ravel()


def convergence_test(run_dir: Path, spec: SpecView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L8's convergence measure on a seeded sample of ``CONVERGENCE_SAMPLE`` of the manifest's
    positives, their cutouts fetched again: (stamp_id, L1 change, magnification ratio) when each arc
    is rendered again at twice the resolution."""
    manifest = ds.dataset(layout.parts(run_dir / "manifest", layout.MANIFEST), format="parquet")
    ids = manifest.to_table(columns=["stamp_id"], filter=pc.field("label") == 1)["stamp_id"].to_numpy()
    rng = np.random.default_rng([spec.seed, 18])
    chosen = np.sort(rng.choice(ids, min(CONVERGENCE_SAMPLE, ids.size), replace=False))
    if not chosen.size:
        return chosen, np.zeros(0), np.zeros(0)
    rows = manifest.to_table(filter=pc.field("stamp_id").isin(chosen)).to_pandas()
    rows = rows.sort_values("stamp_id", ignore_index=True)
    cut = host_cutouts(rows, provider_for(spec.survey, spec.seed), spec.stamps.size)
    l1, ratio = convergence_of_rows(rows, cut, Rendering.of(spec))
    return rows["stamp_id"].to_numpy(), l1, ratio


def _sized_images(image: pa.Array, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stamp image column's per-row problems ("" or the wrong byte length), the rows of the right
    length and their decoded images (n, 3, size, size)."""
    expected = N_BANDS * size * size * 4
    lengths = pc.binary_length(image).fill_null(0).to_numpy(zero_copy_only=False)
    problems = np.full(len(image), "", dtype=object)
    problems[lengths != expected] = f"image is not {expected} bytes"
    whole = np.flatnonzero(lengths == expected)
    return problems, whole, decode_images(image.take(pa.array(whole, type=pa.int64())), size)


def shard_problems(
    shard: Path, sampled: np.ndarray, manifest: list[Path], spec: SpecView
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """L8 on one written shard, read once, a row group at a time: (stamp_id, problem) for every stamp
    (problem "" unless its image has the wrong byte length or non-finite pixels), and for its stamps
    among ``sampled`` against their cutouts fetched again and arcs rendered again
    (``written_stamp_problems``, their manifest rows read here)."""
    file, size = pq.ParquetFile(shard), spec.stamps.size
    every, picked = [], []
    for group in range(file.num_row_groups):
        table = file.read_row_group(group, columns=["stamp_id", "image"])
        problems, whole, images = _sized_images(table["image"].combine_chunks(), size)
        problems[whole] = l8_stamp_integrity.finite_problems(images)
        ids = table["stamp_id"].to_numpy()
        every.append(pd.DataFrame({"stamp_id": ids, "problem": problems.astype(str)}))
        picked.append(table.filter(pa.array(np.isin(ids, sampled))))
    pixels = pd.concat(every, ignore_index=True) if every else pd.DataFrame({"stamp_id": [], "problem": []})
    stamps = pa.concat_tables(picked).to_pandas() if picked else pd.DataFrame({"stamp_id": [], "image": []})
    if stamps.empty:
        return pixels, pd.DataFrame({"stamp_id": np.zeros(0, np.int64), "problem": np.zeros(0, str)})
    rows = ds.dataset(manifest, format="parquet").to_table(filter=pc.field("stamp_id").isin(stamps["stamp_id"]))
    joined = stamps.merge(rows.to_pandas(), on="stamp_id", how="left", validate="1:1")
    return pixels, written_stamp_problems(joined, spec, provider_for(spec.survey, spec.seed))


def record_problems(record: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """(stamp_id, problem) for every written stamp's record against its manifest row: problem "" unless
    the stamp is not in the manifest or its host, config, label, split or confuser class differ from the row's."""
    joined = record[["stamp_id", *RECORD_KEY]].merge(
        manifest[["stamp_id", *RECORD_KEY]], on="stamp_id", how="left", suffixes=("", "_planned"), indicator=True
    )
    differs = np.zeros(len(joined), dtype=bool)
    for column in RECORD_KEY:
        differs |= joined[column].to_numpy() != joined[f"{column}_planned"].to_numpy()
    problems = np.where(differs, "record differs from its manifest row (host, config, label, split or confuser)", "")
    problems = np.where(joined["_merge"] == "left_only", "stamp not in the manifest", problems)
    return pd.DataFrame({"stamp_id": joined["stamp_id"].to_numpy(np.int64), "problem": problems.astype(str)})


def written_stamp_problems(rows: pd.DataFrame, spec: SpecView, provider: CutoutProvider) -> pd.DataFrame:
    """L8 on written stamps: ``rows`` are a shard's (stamp_id, image) joined to their manifest rows
    (null where the manifest has no such stamp); each host's cutout is fetched again from the survey
    and each arc rendered again from its manifest row. Returns (stamp_id, problem) per row, problem
    "" when the stamp is its cutout plus its arc (controls bit-identical to their cutouts)."""
    rows = rows.reset_index(drop=True)
    size = spec.stamps.size
    problems, whole, images = _sized_images(pa.array(rows["image"].tolist(), type=pa.binary()), size)
    known = rows["host_id"].notna().to_numpy()
    problems[~known] = "stamp not in the manifest"
    checked = np.flatnonzero(known[whole])
    if checked.size:
        subset = rows.iloc[whole[checked]].reset_index(drop=True)
        subset["host_id"] = subset["host_id"].astype(np.int64)
        cut = host_cutouts(subset, provider, size)
        arcs = render_rows(subset, cut, rendering=Rendering.of(spec))
        labels = subset["label"].to_numpy()
        problems[whole[checked]] = l8_stamp_integrity.stamp_problems(images[checked], cut.images, arcs.images, labels)
    return pd.DataFrame({"stamp_id": rows["stamp_id"].to_numpy(np.int64), "problem": problems.astype(str)})


def sampled_ids(record: pd.DataFrame, seed: int, per_label: int) -> np.ndarray:
    """A seeded sample of ``per_label`` stamp ids of each label (all of a label that has fewer), sorted."""
    rng = np.random.default_rng([seed, 8])
    chosen = [
        rng.choice(ids, min(per_label, ids.size), replace=False)
        for ids in (record.loc[record["label"] == label, "stamp_id"].to_numpy() for label in (0, 1))
    ]
    return np.sort(np.concatenate(chosen))


def stamp_findings(
    folder: Path, run_dir: Path, spec: SpecView, sample: int | None, record: pd.DataFrame
) -> list[Finding]:
    """L8's stamp parts: every manifest row stamped; every written stamp's byte length and finite
    pixels and its record against its manifest row; a seeded sample of ``sample`` stamps of each label
    (None: ``STAGE_STAMP_SAMPLE``) against cutouts fetched again and arcs rendered again. One Spark
    task per shard reads its stamps once (so no image passes through the JVM)."""
    from darkhalo.spark import get_spark

    shards = layout.parts(folder, layout.STAMPS)
    manifest = layout.parts(run_dir / "manifest", layout.MANIFEST)
    planned = ds.dataset(manifest, format="parquet").to_table(columns=["stamp_id", *RECORD_KEY]).to_pandas()
    ids = sampled_ids(record, spec.seed, STAGE_STAMP_SAMPLE if sample is None else sample)
    found = run_tasks(get_spark(spec.engine), shards, lambda shard: shard_problems(shard, ids, manifest, spec))
    pixels, exact = (pd.concat([f[i] for f in found], ignore_index=True) for i in (0, 1))
    keys = record_problems(record, planned)
    unmade = np.setdiff1d(planned["stamp_id"].to_numpy(), record["stamp_id"].to_numpy())
    return [
        l8_stamp_integrity.check_recorded(
            unmade, np.full(unmade.size, "manifest row without a stamp"), "every manifest row stamped"
        ),
        l8_stamp_integrity.check_recorded(
            pixels["stamp_id"].to_numpy(), pixels["problem"].to_numpy(), "every stamp: byte length, finite pixels"
        ),
        l8_stamp_integrity.check_recorded(
            keys["stamp_id"].to_numpy(), keys["problem"].to_numpy(), "every stamp: its manifest row's record"
        ),
        l8_stamp_integrity.check_recorded(
            exact["stamp_id"].to_numpy(),
            exact["problem"].to_numpy(),
            "seeded sample: controls untouched, positives = cutout + arc",
        ),
    ]


def judge_stamps(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The stamps' metadata schema, L3 (the injection PSF against real PSFs), L7 (arc S/N shares),
    L8 (the stamp parts of ``stamp_findings``, the point-source test, the convergence test, unique rows)."""
    shards = layout.parts(folder, layout.STAMPS)
    record = pd.concat([pd.read_parquet(p, columns=RECORD_COLUMNS) for p in shards], ignore_index=True)
    positives = record[record["label"] == 1]
    fwhm = float(np.median(record["psfsize_r"])) if len(record) else 1.3
    offsets, ratios = point_source_test(spec, fwhm)
    converged = convergence_test(run_dir, spec)
    return [
        schema_finding(StampRecord, record, "stamps"),
        psf_finding(spec),
        l7_realistic_arcs.check(spec.source.brightness, positives["arc_snr"].to_numpy(), spec.invariants.L7),
        l8_stamp_integrity.check(
            [
                *stamp_findings(folder, run_dir, spec, sample, record),
                l8_stamp_integrity.check_point_source(offsets, ratios, spec.invariants.L8),
                l8_stamp_integrity.check_convergence(*converged, spec.invariants.L8),
                l8_stamp_integrity.check_unique_rows(record),
            ]
        ),
    ]


# --- model inputs: L10 ---------------------------------------------------------------------------


def judge_model_inputs(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """L10 on what the trainer recorded it fed the model (``model_inputs.json``)."""
    record = json.loads(layout.artifact(folder, layout.MODEL_INPUTS).read_text())
    return [l10_no_label_leakage.check(record, spec.invariants.L10)]


# --- metrics: scores schema, L4, L9, L12 ---------------------------------------------------------


def judge_metrics(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The scores' schema, L4 on metrics.json as written, L9 on the probe measurements it stores, L12 on its real
    sets' rates."""
    scores = pd.read_parquet(layout.artifact(folder, layout.SCORES))
    metrics = json.loads(layout.artifact(folder, layout.METRICS).read_text())
    control_hosts = scores.loc[scores["label"] == 0, "host_id"].nunique() if "host_id" in scores else None
    findings = [
        schema_finding(Scores, scores, "scores"),
        l4_operational_reporting.check(metrics, control_hosts),
        l12_real_recall.check(metrics, spec.invariants.L12),
    ]
    probes = metrics.get("probes") if isinstance(metrics, dict) else None
    if probes is not None:
        findings.append(l9_no_shortcut.check(probes, spec.invariants.L9))
    return findings


# --- the scan: schemas, L13, L14 ------------------------------------------------------------------


def judge_scan(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The candidates' and the unscored hosts' schemas, search.json's, L13 against the installed parent sample and
    L14 over every installed stage's recorded reads."""
    candidates = pd.read_parquet(layout.artifact(folder, layout.CANDIDATES))
    unscored = pd.read_parquet(layout.artifact(folder, layout.UNSCORED))
    parent_parts = layout.parts(run_dir / "select", layout.PARENT_SAMPLE)
    parent = pd.concat([pd.read_parquet(p, columns=list(KEY)) for p in parent_parts], ignore_index=True)
    lineages = {
        stage.name: json.loads((stage / "lineage.json").read_text())
        for stage in sorted(run_dir.iterdir())
        if not stage.name.startswith(".") and (stage / "lineage.json").is_file()
    }
    return [
        schema_finding(Candidates, candidates, "candidates"),
        schema_finding(Unscored, unscored, "unscored"),
        model_finding(SearchResult, layout.artifact(folder, layout.SEARCH), "search"),
        l13_complete_scan.check(parent, candidates, unscored),
        l14_sealed_truth.check(lineages, f"survey/{layout.SKY_LENSES}"),
    ]


JUDGES: dict[str, Judge] = {
    judge.stage: judge
    for judge in (
        Judge("survey", (), ("survey",), judge_catalog),
        Judge("select", (), ("selection",), judge_parent_sample),
        Judge(
            "manifest",
            ("L1", "L2", "L5", "L6", "L11"),
            ("survey", "invariants.L2", "invariants.L6", "invariants.L11", "evaluate.min_expected_false_positives"),
            judge_manifest,
        ),
        Judge(
            "inject",
            ("L3", "L7", "L8"),
            (
                "seed",
                "survey",
                "stamps",
                "psf",
                "injection",
                "engine",
                "source.brightness",
                "invariants.L3",
                "invariants.L7",
                "invariants.L8",
            ),
            judge_stamps,
        ),
        Judge("train", ("L10",), ("invariants.L10",), judge_model_inputs),
        Judge("evaluate", ("L4", "L9", "L12"), ("invariants.L9", "invariants.L12"), judge_metrics),
        Judge("scan", ("L13", "L14"), (), judge_scan),
    )
}


def judge_artifact(
    stage: str, folder: Path, run_dir: Path, spec: GenerationSpec, sample: int | None = None
) -> list[Finding]:
    """The findings of ``stage``'s judge on the artifact in ``folder`` (none for a stage without one)."""
    judge = JUDGES.get(stage)
    if judge is None:
        return []
    return judge.judge(folder, run_dir, SpecView.of(spec, judge.sections, f"the {stage} judge"), sample)
