"""Synthetic stamp shards for trainer tests: a separable toy set (positives carry a bright ring).

Every stamp is sky noise (DR10-like sigma per band, nanomaggies) plus a round host at the centre;
a positive adds a thin ring of radius ``size / 5`` pixels at ``ring_snr`` sigma per pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from darkhalo.stamps import encode_images

SKY_SIGMA = np.array([0.002, 0.003, 0.008], dtype=np.float32)  # g, r, z nanomaggies per pixel


def toy_stamps(n: int, size: int, seed: int, ring_snr: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, size, size) float32 nanomaggies, labels (n,) int8 alternating 1, 0)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2 == 0).astype(np.int8)
    y, x = np.mgrid[:size, :size] - size // 2
    r = np.hypot(x, y)
    host = np.exp(-0.5 * (r / 2.0) ** 2)
    ring = np.exp(-0.5 * ((r - size / 5) / 0.7) ** 2)
    images = rng.normal(size=(n, 3, size, size)).astype(np.float32) * SKY_SIGMA[None, :, None, None]
    images += (rng.uniform(0.5, 2.0, size=(n, 1, 1, 1)) * host).astype(np.float32)
    images += (labels[:, None, None, None] * ring_snr * SKY_SIGMA[None, :, None, None] * ring).astype(np.float32)
    return images.astype(np.float32), labels


def write_shards(
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    splits: list[str] | np.ndarray,
    rows_per_shard: int = 64,
    stamp_ids: np.ndarray | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """Write ``folder/stamps/part-*.parquet`` in the stamps format (plus ``extra`` metadata columns)."""
    (folder / "stamps").mkdir(parents=True, exist_ok=True)
    ids = np.arange(len(images), dtype=np.int64) if stamp_ids is None else stamp_ids
    columns = {
        "stamp_id": pa.array(ids, type=pa.int64()),
        "label": pa.array(labels, type=pa.int8()),
        "split": pa.array(list(splits), type=pa.string()),
        "image": encode_images(images),
        **{name: pa.array(values) for name, values in (extra or {}).items()},
    }
    table = pa.table(columns)
    paths = []
    for part, start in enumerate(range(0, len(images), rows_per_shard)):
        path = folder / "stamps" / f"part-{part:05d}.parquet"
        pq.write_table(table.slice(start, rows_per_shard), path)
        paths.append(path)
    return paths


@pytest.fixture
def one_torch_thread():
    """Train with one CPU thread: on this shared 2-core machine two threads mostly wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
