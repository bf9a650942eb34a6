"""Measure once, judge always: one judging function per artifact, the stage's gate and the audit's.

Each judge reads an artifact as written (a stage's output folder) and returns its contract
findings against the spec's current thresholds: catalog (schema, key), parent sample (schema, row
balance), manifest (schema, L1, L2, L5, L6), stamps
(schema, L3, L7, L8), model inputs (L10), metrics (scores schema, L4, L9). The runner calls a
stage's judge on the stage's temporary folder before installing it; ``darkhalo audit`` calls the
same judge on the installed folder. What is expensive to measure again (L9's probes need the
model) is stored by the stage as a measurement (``metrics.json``'s probes) and judged here; no
verdict is ever read back.

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
from darkhalo.spec import GenerationSpec
from darkhalo.spec_view import SpecView
from darkhalo.stamps import N_BANDS, decode_images
from darkhalo.surveys.provider import CutoutProvider, provider_for
from data_contracts import catalog, parent_sample, reconciliation
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
)
from data_contracts.manifest import Manifest
from data_contracts.schema import column_names, schema_finding
from data_contracts.scores import Scores
from data_contracts.stamps import StampRecord
from data_contracts.survey import BANDS, KEY

#: Positives whose arcs L8 renders again at twice the resolution (a seeded sample, stage and audit alike).
CONVERGENCE_SAMPLE = 32
#: Stamps whose cutouts the audit fetches again for L8 (a seeded sample; the stage checks all).
AUDIT_STAMP_SAMPLE = 256
#: Manifest columns the invariants read back from the written manifest.
MANIFEST_CHECK_COLUMNS = [
    "RELEASE",
    "BRICKID",
    "OBJID",
    "label",
    "split",
    "healpix",
    "theta_e",
    *l6_host_matching.NEEDS,
]
#: The stamp record (every shard column but the image).
RECORD_COLUMNS = list(column_names(StampRecord))

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
    """Every catalog part's columns, order and dtypes, and a unique sweep key over all of them."""
    parts = layout.parts(folder, layout.CATALOG)
    keys = pd.concat([pd.read_parquet(p, columns=list(KEY)) for p in parts], ignore_index=True)
    return [catalog.check_parts({p.name: pq.read_schema(p) for p in parts}), catalog.check_key(keys)]


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


# --- manifest: schema, L1, L2, L5, L6 -------------------------------------------------------------


def judge_manifest(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The manifest's schema part by part, then L1, L2, L5, L6 over the columns they read."""
    parts = layout.parts(folder, layout.MANIFEST)
    findings = [_manifest_schema(parts)]
    checked = pd.concat([pd.read_parquet(p, columns=MANIFEST_CHECK_COLUMNS) for p in parts], ignore_index=True)
    return [
        *findings,
        l1_unpaired_controls.check(checked),
        l2_resolvable_injections.check(checked[checked["label"] == 1], spec.invariants.L2),
        l5_sky_disjoint_splits.check(checked),
        l6_host_matching.check(checked, spec.invariants.L6),
    ]


def _manifest_schema(parts: list[Path]) -> Finding:
    """The manifest schema, part by part (the first failing part is named)."""
    finding = None
    for path in parts:
        finding = schema_finding(Manifest, pd.read_parquet(path), "manifest")
        if not finding.passed:
            return Finding(**{**finding.__dict__, "detail": f"{path.name}: {finding.detail}"})
    assert finding is not None  # layout.parts found at least one part
    return finding


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


def written_stamp_problems(rows: pd.DataFrame, spec: SpecView, provider: CutoutProvider) -> pd.DataFrame:
    """L8 on written stamps: ``rows`` are a shard's (stamp_id, image) joined to their manifest rows
    (null where the manifest has no such stamp); each host's cutout is fetched again from the survey
    and each arc rendered again from its manifest row. Returns (stamp_id, problem) per row, problem
    "" when the stamp is its cutout plus its arc (controls bit-identical to their cutouts)."""
    rows = rows.reset_index(drop=True)
    size = spec.stamps.size
    expected = N_BANDS * size * size * 4
    image = pa.array(rows["image"].tolist(), type=pa.binary())
    lengths = pc.binary_length(image).fill_null(0).to_numpy(zero_copy_only=False)
    known = rows["host_id"].notna().to_numpy()
    problems = np.full(len(rows), "", dtype=object)
    problems[lengths != expected] = f"image is not {expected} bytes"
    problems[~known] = "stamp not in the manifest"
    whole = np.flatnonzero(known & (lengths == expected))
    if whole.size:
        subset = rows.iloc[whole].reset_index(drop=True)
        subset["host_id"] = subset["host_id"].astype(np.int64)
        cut = host_cutouts(subset, provider, size)
        arcs = render_rows(subset, cut, rendering=Rendering.of(spec))
        images = decode_images(image.take(pa.array(whole)), size)
        problems[whole] = l8_stamp_integrity.stamp_problems(images, cut.images, arcs.images, subset["label"].to_numpy())
    return pd.DataFrame({"stamp_id": rows["stamp_id"].to_numpy(np.int64), "problem": problems.astype(str)})


def _problems_of_ids(ids: np.ndarray, shards: list[Path], manifest: list[Path], spec: SpecView) -> pd.DataFrame:
    """``written_stamp_problems`` for the stamps ``ids``, read from the shards and the manifest here."""
    wanted = pc.field("stamp_id").isin(ids)
    stamps = ds.dataset(shards, format="parquet").to_table(columns=["stamp_id", "image"], filter=wanted)
    rows = ds.dataset(manifest, format="parquet").to_table(filter=wanted)
    joined = stamps.to_pandas().merge(rows.to_pandas(), on="stamp_id", how="left", validate="1:1")
    return written_stamp_problems(joined, spec, provider_for(spec.survey, spec.seed))


def stamp_problems_of(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> pd.DataFrame:
    """(stamp_id, problem) for every written stamp, ``injection.batch_size`` stamps a Spark task (each
    reads its stamps' bytes itself, so no image passes through the JVM), or for a seeded sample of
    ``sample`` stamps in this process."""
    shards = layout.parts(folder, layout.STAMPS)
    manifest = layout.parts(run_dir / "manifest", layout.MANIFEST)
    ids = ds.dataset(shards, format="parquet").to_table(columns=["stamp_id"])["stamp_id"].to_numpy()
    if sample is not None:
        rng = np.random.default_rng([spec.seed, 8])
        return _problems_of_ids(np.sort(rng.choice(ids, min(sample, ids.size), replace=False)), shards, manifest, spec)
    from darkhalo.spark import get_spark

    step = spec.injection.batch_size
    chunks = [np.sort(ids)[i : i + step] for i in range(0, len(ids), step)]
    tasks = get_spark(spec.engine).sparkContext.parallelize(chunks, max(1, len(chunks)))
    found = tasks.map(lambda chunk: _problems_of_ids(chunk, shards, manifest, spec)).collect()
    return pd.concat(found, ignore_index=True).sort_values("stamp_id", ignore_index=True)


def judge_stamps(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The stamps' metadata schema, L3 (the injection PSF against real PSFs), L7 (arc S/N shares),
    L8 (written stamps against cutouts fetched again, every manifest row stamped, the point-source
    test, the convergence test, unique rows)."""
    shards = layout.parts(folder, layout.STAMPS)
    record = pd.concat([pd.read_parquet(p, columns=RECORD_COLUMNS) for p in shards], ignore_index=True)
    positives = record[record["label"] == 1]
    problems = stamp_problems_of(folder, run_dir, spec, sample)
    planned = ds.dataset(layout.parts(run_dir / "manifest", layout.MANIFEST), format="parquet")
    unmade = np.setdiff1d(planned.to_table(columns=["stamp_id"])["stamp_id"].to_numpy(), record["stamp_id"])
    fwhm = float(np.median(record["psfsize_r"])) if len(record) else 1.3
    offsets, ratios = point_source_test(spec, fwhm)
    converged = convergence_test(run_dir, spec)
    return [
        schema_finding(StampRecord, record, "stamps"),
        psf_finding(spec),
        l7_realistic_arcs.check(spec.source.brightness, positives["arc_snr"].to_numpy(), spec.invariants.L7),
        l8_stamp_integrity.check(
            [
                l8_stamp_integrity.check_recorded(problems["stamp_id"].to_numpy(), problems["problem"].to_numpy()),
                l8_stamp_integrity.check_recorded(unmade, np.full(unmade.size, "manifest row without a stamp")),
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


# --- metrics: scores schema, L4, L9 --------------------------------------------------------------


def judge_metrics(folder: Path, run_dir: Path, spec: SpecView, sample: int | None) -> list[Finding]:
    """The scores' schema, L4 on metrics.json as written, L9 on the probe measurements it stores."""
    scores = pd.read_parquet(layout.artifact(folder, layout.SCORES))
    metrics = json.loads(layout.artifact(folder, layout.METRICS).read_text())
    findings = [
        schema_finding(Scores, scores, "scores"),
        l4_operational_reporting.check(metrics),
    ]
    probes = metrics.get("probes") if isinstance(metrics, dict) else None
    if probes is not None:
        findings.append(l9_no_shortcut.check(probes, spec.invariants.L9))
    return findings


JUDGES: dict[str, Judge] = {
    judge.stage: judge
    for judge in (
        Judge("survey", (), (), judge_catalog),
        Judge("select", (), ("selection",), judge_parent_sample),
        Judge(
            "manifest",
            ("L1", "L2", "L5", "L6"),
            ("invariants.L2", "invariants.L6"),
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
        Judge("evaluate", ("L4", "L9"), ("invariants.L9",), judge_metrics),
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
