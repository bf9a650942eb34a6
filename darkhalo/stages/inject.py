"""Phase 4c: stamps. Spark ``mapInPandas`` over the manifest: cutouts from the survey provider,
arcs rendered in batches (darkhalo.injection), shards ``inject/stamps/part-*.parquet`` in the
darkhalo.stamps format sorted by stamp_id, with the per-stamp record the invariants read.

Contracts: the stamp metadata schema, L3 (injection PSF wings against the survey PSF), L7
(realistic, visible arcs), L8 (stamp integrity, incl. a point source through the injection PSF).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from darkhalo import tables
from darkhalo.injection import STAMP_COLUMNS, WING_COLUMNS, inject_batch, injection_kernels
from darkhalo.lensing.render import point_source_errors
from darkhalo.sparkio import spark_schema, write_sorted_parquet
from darkhalo.spec import GenerationSpec
from darkhalo.stages.base import StageContext, StageResult
from darkhalo.surveys.provider import provider_for
from data_contracts.findings import Finding
from data_contracts.invariants import l3_psf_wings, l7_realistic_arcs, l8_stamp_integrity
from data_contracts.schema import schema_finding
from data_contracts.stamps import STAMP_METADATA_SCHEMA

RECORD_COLUMNS = [c for c in STAMP_COLUMNS if c != "image"]


def inject_batches(batches: Iterator[pd.DataFrame], spec: GenerationSpec) -> Iterator[pd.DataFrame]:
    """mapInPandas body: manifest rows -> stamps, ``spec.injection.batch_size`` rows per render."""
    provider = provider_for(spec.survey, spec.seed)
    step = spec.injection.batch_size
    for batch in batches:
        for start in range(0, len(batch), step):
            yield inject_batch(batch.iloc[start : start + step], spec, provider)


def stamps_schema():
    """The Spark schema of the stamp rows (``image`` binary)."""
    from pyspark.sql.types import BinaryType, StructField, StructType

    example = pd.DataFrame({c: pd.Series(dtype=t) for c, t in STAMP_DTYPES.items()})
    fields = [StructField("image", BinaryType()) if f.name == "image" else f for f in spark_schema(example).fields]
    return StructType(fields)


STAMP_DTYPES = {
    "stamp_id": "int64",
    "label": "int8",
    "split": "object",
    "image": "object",
    "RELEASE": "int16",
    "BRICKID": "int32",
    "OBJID": "int32",
    "host_id": "int64",
    "RA": "float64",
    "DEC": "float64",
    "config_id": "int32",
    **{c: "float64" for c in STAMP_COLUMNS[11:20]},
    "psf_model": "object",
    **{c: "float64" for c in WING_COLUMNS},
    "l8_problem": "object",
}


def point_source_test(spec: GenerationSpec, fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    """The L8 point-source test (darkhalo.lensing.render.point_source_errors) of the injection PSF
    at one FWHM (arcsec), every band: centroid offsets (pix) and flux kept, seeded by the spec. A
    pixelized (real) kernel's point source is expected at the kernel's own centroid."""
    kernels = injection_kernels(spec.psf.model, np.full((1, 3), fwhm), np.full((1, 3), spec.psf.moffat_beta), spec)
    generator = torch.Generator().manual_seed(spec.seed)
    offsets, ratios = point_source_errors(
        kernels, spec.stamps.pixel_scale, generator, own_centroid=spec.psf.model == "pixelized"
    )
    return offsets.numpy().ravel(), ratios.numpy().ravel()


def run(ctx: StageContext) -> StageResult:
    spec = ctx.spec
    parts = sorted((ctx.input("manifest") / "manifest").glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(
            f"{ctx.input('manifest') / 'manifest'}: no manifest parts (did the manifest stage run?)"
        )
    n_rows = sum(tables.num_rows(p) for p in parts)
    ctx.console.print(f"  injecting {n_rows:,} stamps ({spec.stamps.size}x{spec.stamps.size}, PSF {spec.psf.model})")
    # one Spark task per render batch or so, so every core renders (the manifest may be one file)
    n_tasks = max(1, -(-n_rows // spec.injection.batch_size))
    manifest = ctx.spark().read.parquet(*[str(p) for p in parts]).repartition(n_tasks, "stamp_id")
    stamps = manifest.mapInPandas(lambda batches: inject_batches(batches, spec), stamps_schema())
    shards = write_sorted_parquet(stamps, ctx.out / "stamps", "stamp_id", spec.injection.shard_rows, n_rows)
    record = pd.concat([pd.read_parquet(p, columns=RECORD_COLUMNS) for p in shards], ignore_index=True)
    image_bytes = np.concatenate([_image_lengths(p) for p in shards])
    return StageResult(
        rows={"stamps": len(record)}, findings=stamp_findings(record, image_bytes, spec), measured=_summary(record)
    )


def _image_lengths(path: Path) -> np.ndarray:
    """The stored byte length of each image in a stamp shard."""
    return pc.binary_length(pq.read_table(path, columns=["image"])["image"]).to_numpy()


def stamp_findings(record: pd.DataFrame, image_bytes: np.ndarray, spec: GenerationSpec) -> list[Finding]:
    """The stamps' contract: metadata schema, L3, L7, L8."""
    positives = record[record["label"] == 1]
    fwhm = float(np.median(record["psfsize_r"])) if len(record) else 1.3
    offsets, ratios = point_source_test(spec, fwhm)
    expected_bytes = 3 * spec.stamps.size**2 * 4
    problems = np.where(image_bytes != expected_bytes, f"image is not {expected_bytes} bytes", record["l8_problem"])
    return [
        schema_finding(STAMP_METADATA_SCHEMA, record, "stamps"),
        l3_psf_wings.check(positives, spec.invariants.L3),
        l7_realistic_arcs.check(spec.source.brightness, positives["arc_snr"].to_numpy(), spec.invariants.L7),
        l8_stamp_integrity.check(
            [
                l8_stamp_integrity.check_recorded(record["stamp_id"].to_numpy(), problems),
                l8_stamp_integrity.check_point_source(offsets, ratios, spec.invariants.L8),
                l8_stamp_integrity.check_unique_rows(record),
            ]
        ),
    ]


def _summary(record: pd.DataFrame) -> dict[str, object]:
    positives = record[record["label"] == 1]
    return {
        "stamps_by_split_label": {
            f"{split}/{'positive' if label else 'control'}": int(n)
            for (split, label), n in record.groupby(["split", "label"]).size().items()
        },
        "arc_snr_median": float(positives["arc_snr"].median()) if len(positives) else None,
        "magnification_median": float(positives["magnification"].median()) if len(positives) else None,
    }
