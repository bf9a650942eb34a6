"""Distributed training against one process: the same fit in ``PROCESSES`` torchrun ranks (DDP) and in one process.

The peer is ``fit`` in this process with as many torch threads (CPU) as the ranks together, or on one GPU;
the ranks each get one thread (CPU) or one GPU. Rates are each run's best epoch after the first (images/s of the
whole global batch), in alternating rounds so a busy shared machine disturbs both alike; the ratio is
distributed / one process. On CPU (stock ResNet18, 32x32, fp32) it says what gloo's gradient all-reduce costs
on this machine's cores; on a machine with N GPUs run it with ``DARKHALO_BENCH_PROCESSES=N``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from bench_train import _write_stamps

from darkhalo.spec import EvaluateSpec, TrainSpec
from darkhalo.training.device import resolve_device
from darkhalo.training.distributed import Job, train_in_processes
from darkhalo.training.loop import fit
from darkhalo.training.store import load_store

PROCESSES = int(os.environ.get("DARKHALO_BENCH_PROCESSES", "2"))
ROUNDS = 2


def main() -> dict:
    device = resolve_device("auto")
    cuda = device.type == "cuda"
    size, batch, steps, precision = (64, 512, 40, "bf16") if cuda else (32, 32, 12, "fp32")
    spec = TrainSpec(arch="resnet18", lr=3e-4, weight_decay=1e-4, batch_size=batch, epochs=3, precision=precision)
    min_fp = EvaluateSpec().min_expected_false_positives
    measured: dict = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "processes": PROCESSES}
    measured.update(stamp_size=size, batch_size=batch, steps_per_epoch=steps, rounds=ROUNDS, precision=precision)
    one, many, startup = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_stamps(folder, n_train=batch * steps, n_val=batch, size=size)
        for round_ in range(ROUNDS):
            if not cuda:
                torch.set_num_threads(PROCESSES)
            train, val = load_store(folder, "train", size, device), load_store(folder, "val", size, device)
            history = fit(train, val, spec, 0, folder / f"one-{round_}", min_fp).history
            one.append(max(row["images_per_s"] for row in history[1:]))
            job = Job(str(folder), size, spec.model_dump(mode="json"), 0, "auto", min_fp, str(folder / f"ddp-{round_}"))
            started = time.perf_counter()
            result = train_in_processes(job, PROCESSES, lambda line: None)
            wall = time.perf_counter() - started
            many.append(max(row["images_per_s"] for row in result.history[1:]))
            startup.append(wall - sum(row["epoch_s"] for row in result.history))
    measured["one_process_img_s"] = round(max(one), 1)
    measured["distributed_img_s"] = round(max(many), 1)
    measured["distributed_over_one_process"] = round(max(many) / max(one), 3)
    measured["distributed_startup_s"] = round(min(startup), 1)  # torchrun, imports, process group, store loads
    return measured


if __name__ == "__main__":
    print(main())
