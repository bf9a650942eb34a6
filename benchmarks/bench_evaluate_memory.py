"""Peak memory of the streamed evaluation at two test-set sizes against holding the split whole (the peer).

Each size is a synthetic inject folder: noise stamps of 64 x 64 in the stamp shard format (shards of
4,096 rows, the stamps' metadata columns; half positives with an arc flux for the blob probe). Each
measurement runs in a fresh process and reports its peak RSS (``ru_maxrss``) and the RSS after the
imports. The streamed run is ``evaluate`` with the spec's default budget (``engine.memory_mb``, 1024),
probes on (blob probe, core and ring pixels; no PSF swap: it needs a manifest) and a cheap numpy scorer
(r-band light in an annulus): a ResNet18 on CPU would take hours at 120,000 stamps, and the model's own
memory is set by ``evaluate.batch_size``, not by the split. The peer is ``load_test_stamps`` (the whole
split in memory), measured at the smaller size; at the larger its pixels alone are given.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SIZES = (20_000, 120_000)
SIZE = 64
SHARD_ROWS = 4096
STAMP_BYTES = 3 * SIZE * SIZE * 4
YY, XX = np.mgrid[:SIZE, :SIZE] - SIZE // 2
ANNULUS = np.abs(np.hypot(XX, YY) - 8) < 2


def _write_split(folder: Path, n: int) -> None:
    """``n`` test stamps: one block of sky noise (DR10-like sigma) reused with a different offset per shard."""
    from darkhalo.stamps import encode_images
    from data_contracts.stamps import shard_schema

    rng = np.random.default_rng(0)
    noise = (rng.normal(size=(SHARD_ROWS, 3, SIZE, SIZE)) * np.array([0.002, 0.003, 0.008])[:, None, None]).astype(
        np.float32
    )
    schema = shard_schema()
    (folder / "stamps").mkdir(parents=True)
    for part, start in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - start)
        ids = np.arange(start, start + rows, dtype=np.int64)
        positive = ids % 2 == 0
        arc = np.where(positive, 0.5, np.nan)
        columns = {
            "stamp_id": ids,
            "label": positive.astype(np.int8),
            "split": np.full(rows, "test"),
            "image": encode_images(noise[:rows] + np.float32(1e-4 * part)),
            "RELEASE": np.full(rows, 10000, dtype=np.int16),
            "BRICKID": np.full(rows, part, dtype=np.int32),
            "OBJID": np.arange(rows, dtype=np.int32),
            "host_id": ids,
            "RA": rng.uniform(0, 360, rows),
            "DEC": rng.uniform(-10, 10, rows),
            "config_id": (ids % 48).astype(np.int32),
            "theta_e": np.where(positive, rng.uniform(0.5, 2.0, rows), np.nan),
            "psfsize_r": rng.uniform(1.0, 1.6, rows),
            "src_mag_r": np.where(positive, rng.uniform(22, 25, rows), np.nan),
            "host_mag_r": rng.uniform(18, 21, rows),
            **{f"arc_flux_{b}": arc for b in "grz"},
            "arc_snr": np.where(positive, 20.0, np.nan),
            "magnification": np.where(positive, 5.0, np.nan),
            "psf_model": np.full(rows, "survey"),
        }
        table = pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names})
        pq.write_table(table, folder / "stamps" / f"part-{part:05d}.parquet")


def _annulus_light(images: np.ndarray) -> np.ndarray:
    return images[:, 1][:, ANNULUS].sum(axis=1).astype(np.float64)


def _peak_rss(inject: str, streamed: bool) -> dict[str, float]:
    """In a fresh process: RSS after the imports and peak RSS (MiB) of a streamed evaluation or a whole load."""
    from darkhalo.metrics.evaluation import ShardedSplit, evaluate, load_test_stamps
    from darkhalo.spec import load_spec

    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731 (KiB on Linux)
    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "embedded.yaml")
    spec = spec.model_copy(update={"evaluate": spec.evaluate.model_copy(update={"bootstrap_samples": 100})})
    spec = spec.model_copy(update={"stamps": spec.stamps.model_copy(update={"size": SIZE})})
    before = rss()
    if streamed:
        with tempfile.TemporaryDirectory() as out:
            evaluate(spec, ShardedSplit.open(Path(inject), SIZE), _annulus_light, Path(out), Path(out))
    else:
        load_test_stamps(Path(inject), SIZE)
    return {"rss_after_imports_mib": round(before, 1), "peak_rss_mib": round(rss(), 1)}


def _measure(inject: Path, streamed: bool) -> dict[str, float]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peak_rss, str(inject), streamed).result()


def main() -> dict:
    from darkhalo.spec import EngineSpec

    budget = EngineSpec().memory_mb
    results: dict = {"stamp_side": SIZE, "memory_mb": budget, "scorer": "numpy annulus light (not the ResNet18)"}
    with tempfile.TemporaryDirectory() as scratch:
        for n in SIZES:
            inject = Path(scratch) / f"inject-{n}"
            _write_split(inject, n)
            streamed = _measure(inject, True)
            results[f"streamed_{n}"] = streamed
            results[f"pixels_{n}_mib"] = round(n * STAMP_BYTES / 2**20, 1)
            if n == SIZES[0]:
                results[f"peer_whole_split_{n}"] = _measure(inject, False)
            for path in (inject / "stamps").glob("*.parquet"):
                path.unlink()
    small, large = (results[f"streamed_{n}"]["peak_rss_mib"] for n in SIZES)
    peer = results[f"peer_whole_split_{SIZES[0]}"]["peak_rss_mib"]
    results["ratio_streamed_vs_whole_at_small"] = round(small / peer, 3)
    results["ratio_streamed_vs_pixels_at_large"] = round(large / results[f"pixels_{SIZES[1]}_mib"], 3)
    results["growth_streamed_large_over_small"] = round(large / small, 3)
    return results
