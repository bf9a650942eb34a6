"""Counter-based random numbers: every draw is a pure function of (seed, keys, stream).

A row's nuisance parameters, split and role depend only on the generation seed, the host key and
the config id, never on how rows are batched or partitioned, so any Spark layout reproduces the same
manifest bit for bit. The mixer is splitmix64 (Steele et al. 2014), applied key by key.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

#: Bit layout of a host id: RELEASE (16 bits) | BRICKID (21 bits) | OBJID (26 bits) = 63 bits.
_BRICKID_BITS = 21
_OBJID_BITS = 26


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def stream_id(name: str) -> int:
    """A stable 64-bit number for a stream name (so draws for different purposes are independent)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def hash64(seed: int, *keys: np.ndarray | int, stream: str) -> np.ndarray:
    """uint64 hash of (seed, stream, keys...), broadcast over the key arrays."""
    h = splitmix64(np.asarray(np.uint64(seed % 2**64) ^ np.uint64(stream_id(stream))))
    for key in keys:
        h = splitmix64(h ^ np.asarray(key).astype(np.int64).astype(np.uint64))
    return np.asarray(h, dtype=np.uint64)


def uniform(seed: int, *keys: np.ndarray | int, stream: str) -> np.ndarray:
    """Uniform floats in [0, 1) (53 random bits), one per broadcast key tuple."""
    return (hash64(seed, *keys, stream=stream) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def host_ids(release: np.ndarray, brickid: np.ndarray, objid: np.ndarray) -> np.ndarray:
    """The sweep key (RELEASE, BRICKID, OBJID) packed into one non-negative int64."""
    release, brickid, objid = (np.asarray(a, dtype=np.int64) for a in (release, brickid, objid))
    if (brickid >= 2**_BRICKID_BITS).any() or (objid >= 2**_OBJID_BITS).any() or (release >= 2**16).any():
        raise ValueError("host key out of range for packing (RELEASE < 2^16, BRICKID < 2^21, OBJID < 2^26)")
    if (release < 0).any() or (brickid < 0).any() or (objid < 0).any():
        raise ValueError("host key parts must be non-negative")
    return (release << (_BRICKID_BITS + _OBJID_BITS)) | (brickid << _OBJID_BITS) | objid
