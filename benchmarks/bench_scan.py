"""The scan's work: parent hosts cut out and scored per second of wall time on 2 cores (local[2] Spark tasks,
darkhalo.scanning.scan_slice), and the cost model of a full DR10 LRG search from the measured rates.

The parent sample: specs/embedded.yaml's mock sky (sky lenses included) at ``N_OBJECTS`` objects, selected as the
stage does; the model an untrained ResNet18 of the embedded recipe (its cost does not depend on its weights), 64x64
stamps.

Peer: the same slices through ``scan_slice`` in a plain loop in this process (one core, one torch thread): the cost
without Spark. Its CPU seconds per host split into the survey provider's cutouts and the model's scoring give the
cost model: a survey of ``DR10_HOSTS`` hosts on C CPU cores takes hosts x (cutout + score) / C; with the scorer on
a GPU, hosts x cutout / C plus the GPU's scoring time (measured when the machine has CUDA, else not given).
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from darkhalo import layout, tables
from darkhalo.metrics.evaluation import model_scorer
from darkhalo.runner import run_generation
from darkhalo.scanning import ScanSettings, host_slices, scan_slice
from darkhalo.spark import get_spark
from darkhalo.sparkio import run_tasks
from darkhalo.spec import spec_from_dict
from darkhalo.surveys.provider import provider_for
from darkhalo.training.checkpoint import save_checkpoint
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION

REPO = Path(__file__).resolve().parents[1]
#: Mock objects whose LRGs make the parent sample (~0.1 parent hosts an object).
N_OBJECTS = 100_000
#: Hosts of the peer's loop timed part by part (cutouts, then scoring).
BREAKDOWN_HOSTS = 1024
#: The DR10 LRG parent sample a full search scans (order of magnitude: DESI's LRG targets over the DR10 footprint).
DR10_HOSTS = 20_000_000
#: Stamps scored per step on a GPU for its rate.
GPU_BATCH = 4096


def _spec():
    data = yaml.safe_load((REPO / "specs" / "embedded.yaml").read_text())
    data["generation"] = "bench_scan"
    data["survey"]["n_objects"] = N_OBJECTS
    data["engine"] = {"spark_master": "local[2]", "device": "cpu"}
    return spec_from_dict(data)


def _model(path: Path, arch: str) -> Path:
    torch.manual_seed(0)
    payload = {"format": 1, "arch": arch, "normalisation": NORMALISATION, "state_dict": build_model(arch).state_dict()}
    save_checkpoint(path, payload)
    return path


def _gpu_rate(model: Path, size: int) -> float | None:
    """Stamps scored per second on the CUDA device (None without one)."""
    if not torch.cuda.is_available():
        return None
    score = model_scorer(model, torch.device("cuda"), 1024)
    stamps = np.random.default_rng(0).normal(0, 0.01, (GPU_BATCH, 3, size, size)).astype(np.float32)
    score(stamps)  # warm-up
    started = time.perf_counter()
    for _ in range(5):
        score(stamps)
    torch.cuda.synchronize()
    return 5 * GPU_BATCH / (time.perf_counter() - started)


def main() -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_scan_") as tmp:
        root = Path(tmp)
        spec = _spec()
        run_generation(spec, root, stop="select")
        parts = layout.parts(root / spec.generation / "select", layout.PARENT_SAMPLE)
        n_hosts = sum(tables.num_rows(p) for p in parts)
        settings = ScanSettings(
            spec.survey, spec.seed, spec.stamps.size, _model(root / "model.pt", spec.train.arch), "cpu", 1024
        )
        slices = host_slices(parts, spec.scan.hosts_per_task)
        spark = get_spark(spec.engine)
        started = time.perf_counter()
        scanned = pd.concat(run_tasks(spark, slices, partial(scan_slice, settings=settings)), ignore_index=True)
        spark_s = time.perf_counter() - started
        assert len(scanned) == n_hosts and scanned["score"].notna().all()

        clock = time.process_time()
        for piece in slices:
            scan_slice(piece, settings)
        peer_cpu_s = time.process_time() - clock

        hosts = tables.read_table(parts[0]).slice(0, BREAKDOWN_HOSTS).to_pandas()
        provider = provider_for(spec.survey, spec.seed)
        score = model_scorer(settings.model, torch.device("cpu"), settings.batch_size)
        clock = time.process_time()
        images = provider.cutouts(hosts, spec.stamps.size).images
        cutout_s = (time.process_time() - clock) / len(hosts)
        clock = time.process_time()
        score(images)
        score_s = (time.process_time() - clock) / len(hosts)
        gpu = _gpu_rate(settings.model, spec.stamps.size)
    per_host = cutout_s + score_s
    return {
        "hosts": n_hosts,
        "spark_local2_hosts_per_s": n_hosts / spark_s,
        "peer_hosts_per_cpu_s": n_hosts / peer_cpu_s,
        "ratio_per_core": n_hosts / spark_s / 2 / (n_hosts / peer_cpu_s),
        "cpu_ms_per_host": {"cutout": 1e3 * cutout_s, "score": 1e3 * score_s},
        "dr10_hosts": DR10_HOSTS,
        "dr10_cpu_core_hours": DR10_HOSTS * per_host / 3600,
        "dr10_hours_on_100_cores": DR10_HOSTS * per_host / 100 / 3600,
        "gpu_stamps_per_s": gpu,
        "dr10_hours_gpu_plus_100_cores": None
        if gpu is None
        else max(DR10_HOSTS * cutout_s / 100, DR10_HOSTS / gpu) / 3600,
    }
