"""The stamp shard format: images survive the parquet round trip bit for bit; bad rows are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhalo.stamps import decode_images, encode_images, stamp_dataset


def test_images_round_trip_through_parquet_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(7, 3, 16, 16)).astype(np.float32)
    images[0, 1, 2, 3] = np.float32(1e-38)  # subnormal-adjacent values survive too
    (tmp_path / "stamps").mkdir()
    table = pa.table({"stamp_id": np.arange(7), "label": np.int8([1, 0] * 3 + [1]), "image": encode_images(images)})
    pq.write_table(table.slice(0, 4), tmp_path / "stamps" / "part-00000.parquet")
    pq.write_table(table.slice(4), tmp_path / "stamps" / "part-00001.parquet")
    back = stamp_dataset(tmp_path).to_table()
    decoded = decode_images(back["image"], 16)
    assert decoded.dtype == np.float32 and decoded.tobytes() == images.tobytes()
    assert decode_images(back["image"].combine_chunks().slice(2, 3), 16).tobytes() == images[2:5].tobytes()


def test_a_row_of_the_wrong_size_is_named() -> None:
    good = np.zeros((2, 3, 8, 8), dtype=np.float32)
    column = pa.array([good[0].tobytes(), good[1].tobytes()[:-4]], type=pa.binary())
    with pytest.raises(ValueError, match="stamp row 1 holds 764 bytes, expected 768"):
        decode_images(column, 8)


def test_only_three_band_stacks_are_encoded() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        encode_images(np.zeros((2, 4, 8, 8), dtype=np.float32))
    assert decode_images(encode_images(np.zeros((0, 3, 8, 8), dtype=np.float32)), 8).shape == (0, 3, 8, 8)
