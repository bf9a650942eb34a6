"""The inject stage end to end: stamps/s wall on 2 cores (local[2] Spark), its gate included.

The manifest: specs/embedded.yaml on a mock survey of ``N_OBJECTS`` objects at specs/survey_scale.yaml's
density (800 a square degree; ~39,000 stamps, 64x64 grz, in 10 shards) with the survey-scale mix: test
split 81 % of the hosts at 92 % controls, train/val at 50 % (~83 % controls in all). The stage's
``run`` on it through a StageContext, then its gate (darkhalo.audit.judges, the runner's call), each
timed in wall seconds.

Peer: the same stamps through ``inject_batch`` in a plain loop in this process (one core, one torch
thread), each shard written by pyarrow as the stage writes it: the cost without Spark. Its CPU
seconds per stamp, split into cutouts (the survey provider), arcs (darkhalo.injection.render_rows),
the rest of ``inject_batch`` (stamps and their record into Arrow) and the parquet write, give the
stage's breakdown; the stage's plumbing is its 2-core wall time beyond the peer's work spread over 2
cores.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from darkhalo import layout
from darkhalo.audit.judges import judge_artifact
from darkhalo.injection import Rendering, host_cutouts, inject_batch, render_rows
from darkhalo.runner import run_generation
from darkhalo.sparkio import key_ranges, write_part
from darkhalo.spec import spec_from_dict
from darkhalo.spec_view import SpecView
from darkhalo.stages import STAGES, inject
from darkhalo.stages.base import StageContext
from darkhalo.surveys.provider import provider_for
from data_contracts.stamps import shard_schema

REPO = Path(__file__).resolve().parents[1]
#: Mock objects whose LRGs make the manifest (~0.1 stamps an object).
N_OBJECTS = 400_000
#: Stamps of the peer's loop timed part by part (the rest of the peer is timed whole).
BREAKDOWN_STAMPS = 2048


def _spec():
    data = yaml.safe_load((REPO / "specs" / "embedded.yaml").read_text())
    data["generation"] = "bench_inject"
    data["survey"]["n_objects"] = N_OBJECTS
    data["survey"]["ra_range"] = [100.0, 200.0]  # 500 deg2 with the default dec range
    data["controls"]["test_fraction"] = 0.92
    data["splits"]["fractions"] = {"train": 0.16, "val": 0.03, "test": 0.81}
    data["engine"] = {"spark_master": "local[2]"}
    return spec_from_dict(data)


def _stage(spec, run_dir: Path, out: Path) -> tuple[float, float, list]:
    """Wall seconds of the stage's run and of its gate, and the gate's findings."""
    stage = next(s for s in STAGES if s.name == "inject")
    view = SpecView.of(spec, stage.sections, "stage 'inject'")
    ctx = StageContext(view, run_dir, out, out.with_name("scratch"), engine=spec.engine)
    ctx.spark()  # the session's start-up is no part of the stage
    started = time.perf_counter()
    inject.run(ctx)
    ran = time.perf_counter()
    findings = judge_artifact("inject", out, run_dir, spec)
    return ran - started, time.perf_counter() - ran, findings


def _peer(spec, run_dir: Path, out: Path) -> tuple[float, dict[str, float]]:
    """The peer: CPU seconds for every stamp, and CPU seconds per stamp of each part (first stamps)."""
    rendering, schema, step = Rendering.of(spec), shard_schema(), spec.injection.batch_size
    manifest = layout.parts(run_dir / "manifest", layout.MANIFEST)
    rows = pd.concat([pd.read_parquet(p) for p in manifest]).sort_values("stamp_id", ignore_index=True)
    provider = provider_for(spec.survey, spec.seed)
    parts = dict.fromkeys(("cutouts", "arcs"), 0.0)
    for start in range(0, BREAKDOWN_STAMPS, step):
        batch = rows.iloc[start : start + step].reset_index(drop=True)
        clock = time.process_time()
        cut = host_cutouts(batch, provider, spec.stamps.size)
        parts["cutouts"] += time.process_time() - clock
        clock = time.process_time()
        render_rows(batch, cut, rendering=rendering)
        parts["arcs"] += time.process_time() - clock
    ranges = key_ranges(rows["stamp_id"].to_numpy(), spec.injection.shard_rows)
    clock, writing = time.process_time(), 0.0
    for index, (first, last) in enumerate(ranges):
        shard = rows[rows["stamp_id"].between(first, last)]
        tables = [
            inject_batch(shard.iloc[s : s + step], provider, rendering=rendering) for s in range(0, len(shard), step)
        ]
        written = time.process_time()
        write_part(out / f"part-{index:05d}.parquet", tables, schema)
        writing += time.process_time() - written
    total = time.process_time() - clock
    per_stamp = {k: v / BREAKDOWN_STAMPS for k, v in parts.items()}
    per_stamp["parquet_write"] = writing / len(rows)
    per_stamp["assembly"] = (total - writing) / len(rows) - per_stamp["cutouts"] - per_stamp["arcs"]
    return total, per_stamp


def main() -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_inject_") as tmp:
        root = Path(tmp)
        spec = _spec()
        run_generation(spec, root, stop="manifest")
        run_dir = root / spec.generation
        manifest = layout.parts(run_dir / "manifest", layout.MANIFEST)
        labels = pd.concat([pd.read_parquet(p, columns=["label"]) for p in manifest])
        n = len(labels)
        stage_s, gate_s, findings = _stage(spec, run_dir, root / "inject_out")
        peer_dir = root / "peer"
        peer_dir.mkdir()
        peer_cpu_s, per_stamp = _peer(spec, run_dir, peer_dir)
        shutil.rmtree(peer_dir)
    compute_s = peer_cpu_s / 2  # the peer's work spread over the stage's 2 cores
    return {
        "stamps": n,
        "controls_share": round(float((labels["label"] == 0).mean()), 3),
        "mock_survey_objects": N_OBJECTS,
        "stage_run_s": round(stage_s, 2),
        "gate_s": round(gate_s, 2),
        "stamps_per_s_end_to_end": round(n / (stage_s + gate_s), 1),
        "stamps_per_s_stage_run": round(n / stage_s, 1),
        "gate_findings": {f.id: f.passed for f in findings},
        "peer_stamps_per_cpu_s": round(n / peer_cpu_s, 1),
        "stage_vs_peer_per_core": round((n / (2 * stage_s)) / (n / peer_cpu_s), 2),
        "cpu_ms_per_stamp": {k: round(1e3 * v, 3) for k, v in per_stamp.items()},
        "stage_plumbing_s": round(stage_s - compute_s, 2),
    }
