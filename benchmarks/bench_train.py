"""Trainer throughput: the model alone against the whole training path from the stamp store.

``model_only``: optimizer steps on one synthetic batch already on the device (the peer).
``end_to_end``: ``fit``'s second epoch on stamps loaded by ``load_store`` from parquet shards
(per-epoch shuffle, gather, flip/rot90 augmentation on the device, the same steps). The ratio
end_to_end / model_only is what the data path costs (target >= 0.8 on a GPU). Both ResNet18
variants; on CUDA at Gen 1's shape (64x64, batch 512, bf16), on CPU tiny (32x32, fp32). Each
rate is the best of REPEATS windows (epochs for end_to_end), and CPU runs use one torch thread,
so a busy shared machine disturbs the ratio less.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from darkhalo.spec import EvaluateSpec, TrainSpec
from darkhalo.stamps import encode_images
from darkhalo.training.device import resolve_device
from darkhalo.training.loop import Trainer, fit
from darkhalo.training.model import ARCHS
from darkhalo.training.store import load_store

WARMUP_STEPS = 2
REPEATS = 3


def main() -> dict:
    device = resolve_device("auto")
    if device.type == "cpu":
        torch.set_num_threads(1)
    size, batch, steps = (64, 512, 40) if device.type == "cuda" else (32, 16, 6)
    measured: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    measured.update(stamp_size=size, batch_size=batch, steps_per_window=steps, repeats=REPEATS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_stamps(folder, n_train=batch * steps, n_val=batch, size=size)
        train = load_store(folder, "train", size, device)
        val = load_store(folder, "val", size, device)
        measured["store_on_device"] = train.on_device
        for arch in ARCHS:
            spec = TrainSpec(
                arch=arch, lr=3e-4, weight_decay=1e-4, batch_size=batch, epochs=1 + REPEATS, precision="bf16"
            )
            model_only = _model_only(spec, device, size, steps)
            checkpoints = folder / f"checkpoints-{arch}"
            history = fit(train, val, spec, 0, checkpoints, EvaluateSpec().min_expected_false_positives).history
            end_to_end = max(row["images_per_s"] for row in history[1:])  # epoch 1 warms the kernels up
            measured[f"{arch}_precision"] = "bf16" if spec.precision == "bf16" and device.type == "cuda" else "fp32"
            measured[f"{arch}_model_only_img_s"] = round(model_only, 1)
            measured[f"{arch}_end_to_end_img_s"] = round(end_to_end, 1)
            measured[f"{arch}_end_to_end_over_model_only"] = round(end_to_end / model_only, 3)
    return measured


def _model_only(spec: TrainSpec, device: torch.device, size: int, steps: int) -> float:
    """Images/s of ``steps`` optimizer steps on one fixed synthetic batch on the device (best window)."""
    trainer = Trainer.build(spec, device, seed=0, total_steps=REPEATS * steps + WARMUP_STEPS + 1)
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(spec.batch_size, 3, size, size, generator=gen, device=device)
    labels = (torch.arange(spec.batch_size, device=device) % 2).float()
    for _ in range(WARMUP_STEPS):
        trainer.step(images, labels)
    float(trainer.step(images, labels))  # wait for the device before timing
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        total = torch.zeros((), device=device)
        for _ in range(steps):
            total += trainer.step(images, labels)
        float(total)
        rates.append(steps * spec.batch_size / (time.perf_counter() - started))
    return max(rates)


def _write_stamps(folder: Path, n_train: int, n_val: int, size: int) -> None:
    """Noise stamps (r-band-like sky sigma, nanomaggies) in the stamps shard format."""
    n = n_train + n_val
    rng = np.random.default_rng(0)
    images = (rng.normal(size=(n, 3, size, size)) * 0.003).astype(np.float32)
    table = pa.table(
        {
            "stamp_id": np.arange(n, dtype=np.int64),
            "label": (np.arange(n) % 2).astype(np.int8),
            "split": ["train"] * n_train + ["val"] * n_val,
            "image": encode_images(images),
        }
    )
    (folder / "stamps").mkdir()
    pq.write_table(table, folder / "stamps" / "part-00000.parquet", row_group_size=4096)


if __name__ == "__main__":
    print(main())
