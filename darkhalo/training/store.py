"""The stamp store: one split's stamps in one contiguous, normalised float32 tensor, batched by index.

The store lives on the GPU when it fits, else in (pinned, for CUDA) host memory, else in a
memory-mapped file in a spill folder, so an epoch is a seeded permutation and a gather per batch,
with no DataLoader workers. It asks the shards for ``READ_COLUMNS`` only, so injection parameters,
arc S/N and other metadata are never read, and it records what it did read (``columns_read``, from
the schemas of the tables as read) and which of those the model's input tensor was built from
(``input_columns``): the evidence L10 judges. Under distributed training each rank's store holds its ``Shard``
of the split, disjoint from every other rank's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from darkhalo import layout, tables
from darkhalo.hashing import hash64
from darkhalo.stamps import CORE_COLUMNS, N_BANDS, decode_checked

#: The only shard columns the store asks for: identity, label (the target), split (row choice), pixels.
READ_COLUMNS: tuple[str, ...] = CORE_COLUMNS
#: The column the images (the model's input tensor) are decoded from.
PIXEL_COLUMN = "image"

#: The hash stream that deals stamps to training processes.
SHARD_STREAM = "train-shard"

#: The per-stamp normalisation's name, recorded in every checkpoint and checked at inference.
NORMALISATION = "robust_median_mad_clip50"
MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian x 1.4826 = its sigma
SIGMA_FLOOR = 1e-6  # nanomaggies; a band with no spread (blank) maps to zeros, not NaN
CLIP = 50.0  # sky sigmas; bright host cores saturate here instead of dominating the loss

#: Share of the GPU's free memory the store may take (the rest is for the model and activations).
GPU_SHARE = 0.6
#: Share of the host's free memory the store may take before it spills to a memory-mapped file.
HOST_SHARE = 0.5
#: Rows decoded and normalised per chunk while loading (bounds host and device memory use).
LOAD_CHUNK = 4096


def normalise(images: torch.Tensor) -> torch.Tensor:
    """Per stamp and band: subtract the median, divide by 1.4826 x MAD, clip to +-50 (in sky sigmas).

    ``images`` is (N, 3, S, S) float32 nanomaggies; the result is dimensionless. The median (the
    lower one for an even pixel count) and the MAD are over the band's whole stamp, so they track
    the sky level and noise, not the host. Used unchanged at train and at inference (NORMALISATION).
    """
    flat = images.flatten(2)
    centred = flat - flat.median(dim=2, keepdim=True).values
    sigma = (MAD_TO_SIGMA * centred.abs().median(dim=2, keepdim=True).values).clamp_min(SIGMA_FLOOR)
    return (centred / sigma).clamp_(-CLIP, CLIP).view_as(images)


@dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world`` training processes. The split's stamps are dealt to the ranks in the order of a
    hash of their ids, so the shards are disjoint, together hold the whole split, differ in size by at most one,
    and mix the classes as the split does (stamp ids follow hosts and configs, which a plain stride would not)."""

    rank: int = 0
    world: int = 1

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """The ascending positions of this shard's stamps among the split's sorted stamp ids ``ids``."""
        if self.world == 1:
            return np.arange(ids.size)
        dealt = np.argsort(hash64(0, ids, stream=SHARD_STREAM), kind="stable")
        return np.sort(dealt[self.rank :: self.world])


#: The one process of a run that is not distributed.
ONE_PROCESS = Shard()


@dataclass
class StampStore:
    """One split's stamps, normalised, sorted by stamp_id; ``batch(index)`` gives model-ready tensors."""

    images: torch.Tensor  # (N, 3, S, S) float32: on ``device``, in host memory or memory-mapped
    labels: torch.Tensor  # (N,) float32 0/1 on ``device``
    stamp_ids: np.ndarray  # (N,) int64, ascending
    device: torch.device
    columns_read: tuple[str, ...] = ()  # the shard columns loading read, in the order first read
    input_columns: tuple[str, ...] = ()  # those that ``images`` was built from
    shard: Shard = ONE_PROCESS  # which rows of the split this store holds
    split_positions: np.ndarray | None = None  # each row's position in the whole split (sorted); None: the split
    split_rows: int = 0  # stamps in the whole split (every shard's); 0: this store's own count
    split_digest: str = ""  # sha256 of the whole split's stamp ids; "": this store's own

    def __len__(self) -> int:
        return len(self.stamp_ids)

    @property
    def on_device(self) -> bool:
        """True when the images live on the compute device (no host-to-device copy per batch)."""
        return self.images.device == self.device

    @property
    def split_size(self) -> int:
        """Stamps in the whole split, every shard's together."""
        return self.split_rows or len(self)

    def digest(self) -> str:
        """sha256 of the whole split's stamp ids: which stamps (not their pixels) the split holds, the same on
        every shard."""
        return self.split_digest or _ids_digest(self.stamp_ids)

    def shuffled(self, generator: torch.Generator) -> torch.Tensor:
        """A permutation of the rows drawn from ``generator`` (on the generator's device)."""
        return torch.randperm(len(self), generator=generator, device=generator.device)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the rows ``index`` on the compute device."""
        index = index.to(self.device)
        if self.on_device:
            return self.images[index], self.labels[index]
        return self.images[index.cpu()].to(self.device, non_blocking=True), self.labels[index]


def _ids_digest(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


def load_store(
    folder: Path, split: str, size: int, device: torch.device, spill: Path | None = None, shard: Shard = ONE_PROCESS
) -> StampStore:
    """Load the ``split`` rows of an inject stage folder's stamp shards (``shard``'s share of them) into a StampStore
    on ``device``.

    ``spill`` is the file (``.npy``) the images are memory-mapped to when they fit neither the
    GPU nor host memory. Raises ValueError naming the file and stamp for missing columns, bad labels, duplicate ids,
    wrongly sized or non-finite images (in any shard's rows: every rank checks the whole split).
    """
    files = layout.parts(folder, layout.STAMPS)
    columns_read: dict[str, None] = {}  # an ordered set, filled by the readers
    ids, labels, counts = _index(files, split, columns_read)
    if not ids.size:
        raise ValueError(f"no '{split}' stamps in {folder / layout.STAMPS}")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
        raise ValueError(f"stamp_id {sorted_ids[dup[0]]} appears more than once in the '{split}' shards of {folder}")
    destination = np.empty_like(order)
    destination[order] = np.arange(order.size)
    mine = shard.positions(sorted_ids)
    slot = np.full(ids.size, -1)  # each sorted position's row in this store (-1: another shard's)
    slot[mine] = np.arange(mine.size)

    shape = (mine.size, N_BANDS, size, size)
    images = _allocate(shape, device, spill)
    start = 0
    for path, count in zip(files, counts, strict=True):
        file_start = start
        for chunk_ids, chunk in _read_images(path, split, size, columns_read):
            rows = slice(start, start + len(chunk_ids))
            if not np.array_equal(chunk_ids, ids[rows]):
                raise ValueError(f"{path}: rows changed while loading (stamp ids differ between reads)")
            at = slot[destination[rows]]
            kept = at >= 0
            if kept.any():
                normed = normalise(torch.from_numpy(chunk[kept]).to(device))
                images[torch.from_numpy(at[kept]).to(images.device)] = normed.to(images.device)
            start = rows.stop
        if start - file_start != count:
            raise ValueError(f"{path}: rows changed while loading ({count} '{split}' rows, then {start - file_start})")
    label_tensor = torch.from_numpy(labels[order][mine].astype(np.float32)).to(device)
    return StampStore(
        images=images,
        labels=label_tensor,
        stamp_ids=sorted_ids[mine],
        device=device,
        columns_read=tuple(columns_read),
        input_columns=(PIXEL_COLUMN,),
        shard=shard,
        split_positions=mine,
        split_rows=ids.size,
        split_digest=_ids_digest(sorted_ids),
    )


def _index(files: list[Path], split: str, read: dict[str, None]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Stamp ids, labels and per-file counts of the ``split`` rows, in file order; adds the columns it
    read to ``read``."""
    ids, labels, counts = [], [], []
    for path in files:
        schema = tables.read_schema(path)
        missing = [c for c in READ_COLUMNS if c not in schema.names]
        if missing:
            raise ValueError(f"{path}: stamp shard lacks column(s) {', '.join(missing)}")
        table = tables.read_table(path, columns=[c for c in READ_COLUMNS if c != PIXEL_COLUMN])
        read.update(dict.fromkeys(table.schema.names))
        table = table.filter(pc.equal(table["split"], split))
        file_ids = table["stamp_id"].to_numpy().astype(np.int64)
        file_labels = table["label"].to_numpy()
        bad = np.flatnonzero((file_labels != 0) & (file_labels != 1))
        if bad.size:
            raise ValueError(f"{path}: stamp_id {file_ids[bad[0]]} has label {file_labels[bad[0]]}, expected 0 or 1")
        ids.append(file_ids)
        labels.append(file_labels.astype(np.int8))
        counts.append(len(file_ids))
    return np.concatenate(ids), np.concatenate(labels), counts


def _read_images(path: Path, split: str, size: int, read: dict[str, None]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(stamp ids, decoded images) of the ``split`` rows of one shard, in chunks of LOAD_CHUNK rows;
    adds the columns it read to ``read``."""
    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=LOAD_CHUNK, columns=[c for c in READ_COLUMNS if c != "label"]):
        read.update(dict.fromkeys(batch.schema.names))
        batch = batch.filter(pc.equal(batch.column("split"), pa.scalar(split)))
        if not batch.num_rows:
            continue
        chunk_ids = batch.column("stamp_id").to_numpy().astype(np.int64)
        images = decode_checked(batch.column(PIXEL_COLUMN), chunk_ids, size, path)
        yield chunk_ids, images


def _allocate(shape: tuple[int, ...], device: torch.device, spill: Path | None) -> torch.Tensor:
    """An empty float32 tensor: on the GPU if it fits GPU_SHARE of free memory, else in host memory
    (pinned for CUDA) if it fits HOST_SHARE of free RAM, else a memory map at ``spill``."""
    nbytes = int(np.prod(shape)) * 4
    if device.type == "cuda" and nbytes <= GPU_SHARE * torch.cuda.mem_get_info(device)[0]:
        return torch.empty(shape, dtype=torch.float32, device=device)
    if nbytes <= HOST_SHARE * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"):
        return torch.empty(shape, dtype=torch.float32, pin_memory=device.type == "cuda")
    if spill is None:
        raise MemoryError(f"{nbytes / 2**30:.1f} GiB of stamps fit neither {device} nor host memory, and no spill file")
    spill.parent.mkdir(parents=True, exist_ok=True)
    return torch.from_numpy(np.lib.format.open_memmap(spill, mode="w+", dtype=np.float32, shape=shape))
