"""Training in ``engine.train_processes`` processes: torchrun starts one rank per process (one GPU each on CUDA,
cuda:LOCAL_RANK, with NCCL; gloo on CPU), each rank loads its Shard of the train and val stamps and runs
``fit`` with DistributedDataParallel; rank 0 writes the checkpoints and the result, so the train stage installs
what a single process would have written.

The run's process launches torchrun (``train_in_processes``) on one machine; the ranks run this module
(``python -m darkhalo.training.distributed JOB``), reading the job (JSON) and writing the result beside it (a
checkpoint-safe payload, read back with ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import darkhalo
from darkhalo.artifacts import write_json, write_text
from darkhalo.spec import TrainSpec
from darkhalo.training.checkpoint import load_checkpoint, save_checkpoint
from darkhalo.training.device import resolve_device
from darkhalo.training.loop import EpochCallback, FitResult, epoch_line, fit
from darkhalo.training.store import Shard, load_store

#: Lines of the ranks' output quoted when torchrun fails.
TAIL_LINES = 20


@dataclass(frozen=True)
class Job:
    """One distributed fit: the inject stage folder, the stamp side (pixels), the train section, seed, device
    choice, the resolvability rule, and the scratch folder for checkpoints, spill files and the result."""

    stamps: str
    size: int
    train: dict[str, Any]
    seed: int
    device: str
    min_expected_fp: float
    scratch: str

    @property
    def folder(self) -> Path:
        return Path(self.scratch)

    def write(self) -> Path:
        path = self.folder / "job.json"
        write_json(path, dataclasses.asdict(self))
        return path

    @classmethod
    def read(cls, path: Path) -> Job:
        return cls(**json.loads(path.read_text()))


def _result_path(job: Job) -> Path:
    return job.folder / "result.pt"


def _error_path(job: Job, rank: int) -> Path:
    return job.folder / f"error-rank{rank}.txt"


class DistributedTrainingError(RuntimeError):
    """A rank of a distributed fit failed; the message names the rank and its error."""


def rank_device(choice: str, local_rank: int) -> torch.device:
    """The device of the rank with ``local_rank`` on its machine: its own GPU on CUDA, else the CPU."""
    device = resolve_device(choice)
    return torch.device("cuda", local_rank) if device.type == "cuda" else device


def train_in_processes(job: Job, processes: int, on_line: Callable[[str], None]) -> FitResult:
    """Run ``job`` in ``processes`` torchrun ranks on this machine; every line they print goes to ``on_line``.

    Raises DistributedTrainingError with the first failed rank's error, or torchrun's exit code and the last lines of
    its output when no rank recorded one.
    """
    job_file = job.write()
    for stale in (_result_path(job), *(_error_path(job, rank) for rank in range(processes))):
        stale.unlink(missing_ok=True)
    env = dict(os.environ)
    package_root = str(Path(darkhalo.__file__).resolve().parents[1])  # the ranks import this very darkhalo
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "darkhalo.training.distributed",
        str(job_file),
    ]
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace"
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            tail.append(line.rstrip())
            on_line(line.rstrip())
    if child.returncode != 0:
        failed = [(rank, path.read_text()) for rank in range(processes) if (path := _error_path(job, rank)).is_file()]
        if failed:
            rank, message = failed[0]
            raise DistributedTrainingError(f"distributed training failed on rank {rank} of {processes}: {message}")
        raise DistributedTrainingError(
            f"distributed training ({processes} processes under torchrun) failed with exit code "
            f"{child.returncode}; its last lines:\n  " + "\n  ".join(tail)
        )
    return FitResult.from_dict(load_checkpoint(_result_path(job)))


def run_rank(job: Job, on_epoch: EpochCallback | None) -> None:
    """One rank's part of ``job`` (torchrun's environment says which): load its shards, fit, and on rank 0 write
    the result."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = rank_device(job.device, int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        shard = Shard(rank, world)
        stamps = Path(job.stamps)
        train = load_store(stamps, "train", job.size, device, job.folder / f"store-train-{rank}.npy", shard)
        val = load_store(stamps, "val", job.size, device, job.folder / f"store-val-{rank}.npy", shard)
        result = fit(
            train,
            val,
            TrainSpec.model_validate(job.train),
            job.seed,
            job.folder / "checkpoints",
            job.min_expected_fp,
            on_epoch=on_epoch if rank == 0 else None,
        )
        if rank == 0:
            save_checkpoint(_result_path(job), result.to_dict())
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(argv: list[str]) -> None:
    """A rank's entry point: ``python -m darkhalo.training.distributed JOB``; rank 0 prints each epoch's line."""
    job = Job.read(Path(argv[0]))
    epochs = TrainSpec.model_validate(job.train).epochs
    try:
        run_rank(job, lambda row: print(epoch_line(row, epochs), flush=True))
    except Exception as exc:  # the launcher reports it: torchrun's own summary names no cause
        write_text(_error_path(job, int(os.environ["RANK"])), f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
