"""The stamp shard format shared by inject (writes), train and evaluate (read).

A stamp is a float32 array (band, y, x) in nanomaggies, bands g, r, z, centred on its host
(pixel ``size // 2``). Shards are parquet files ``stamps/part-*.parquet`` with one row per stamp:
``stamp_id`` (int64, unique), ``label`` (int8: 1 injected arc, 0 control), ``split``
(train/val/test), ``image`` (the array's C-order float32 bytes, band-major) and metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from darkhalo import layout

N_BANDS = 3
CORE_COLUMNS = ("stamp_id", "label", "split", "image")


def encode_images(images: np.ndarray) -> pa.Array:
    """(N, 3, H, W) float32 -> a binary arrow array of N C-order byte strings."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != N_BANDS:
        raise ValueError(f"stamps must be (N, {N_BANDS}, H, W), got {images.shape}")
    row_bytes = images[0].nbytes if len(images) else 0
    flat = images.reshape(-1).view(np.uint8)
    offsets = np.arange(len(images) + 1, dtype=np.int32) * row_bytes
    return pa.BinaryArray.from_buffers(pa.binary(), len(images), [None, pa.py_buffer(offsets), pa.py_buffer(flat)])


def decode_images(column: pa.Array | pa.ChunkedArray | Sequence[bytes], size: int) -> np.ndarray:
    """A binary column of stamps -> (N, 3, size, size) float32 (one copy, no per-row Python work)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not isinstance(column, pa.Array):
        column = pa.array(list(column), type=pa.binary())
    expected = N_BANDS * size * size * 4
    n = len(column)
    if n == 0:
        return np.empty((0, N_BANDS, size, size), dtype=np.float32)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + n + 1]
    lengths = np.diff(offsets)
    if n and (lengths != expected).any():
        bad = int(np.flatnonzero(lengths != expected)[0])
        raise ValueError(
            f"stamp row {bad} holds {lengths[bad]} bytes, expected {expected} (3 x {size} x {size} float32)"
        )
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + n * expected]
    return data.view(np.float32).reshape(n, N_BANDS, size, size).copy()


def stamp_dataset(folder: Path) -> ds.Dataset:
    """The stamp shards of an inject stage folder (``folder/stamps/``) as one arrow dataset."""
    return ds.dataset(layout.parts(folder, layout.STAMPS), format="parquet")


def decode_checked(column: pa.Array | pa.ChunkedArray, stamp_ids: np.ndarray, size: int, source: object) -> np.ndarray:
    """``decode_images`` with errors a user can act on: the ``source`` (a file or folder) and the
    stamp_id of the first image with the wrong byte length or with non-finite pixels."""
    expected = N_BANDS * size * size * 4
    lengths = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(lengths != expected)
    if wrong.size:
        raise ValueError(
            f"{source}: stamp_id {stamp_ids[wrong[0]]} image holds {lengths[wrong[0]]} bytes, "
            f"expected {expected} ({N_BANDS} x {size} x {size} float32)"
        )
    images = decode_images(column, size)
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"{source}: stamp_id {stamp_ids[np.flatnonzero(~finite)[0]]} has non-finite pixels")
    return images
