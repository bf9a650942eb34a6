"""Writing artifacts so that nothing is ever half-written, fingerprinting what was written, and checking the
fingerprints again before what was written is trusted."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from darkhalo.errors import naming
from darkhalo.removal import within

#: What a stage's output was checked against and what it measured (findings, row counts).
CONTRACT = "contract.json"
#: What a stage's output was made from and the sha256 of every file it wrote; the runner writes it last.
LINEAGE = "lineage.json"
#: Files a stage's runner adds beside the artifacts; they describe the artifacts, so they are left
#: out of the artifacts' digest (contract.json has its own sha256 in lineage.json).
RECORD_FILES = (CONTRACT, LINEAGE)
#: Where the runner keeps, per attempt, a stage's output that failed its contract (``<stage>-<UTC time>/``).
FAILED_DIR = ".failed"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of ``path``; on success it is fsynced and renamed over ``path``.

    A ``path`` that exists and is no regular file (a device such as /dev/null or /dev/full, a FIFO) is written
    in place: renaming over it would replace the device. An OSError names ``path`` (a full disk names no file).
    """
    with naming(path):
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            with path.open(mode) as handle:
                yield handle
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, mode) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False)
        handle.write("\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_file(path) as handle:
        handle.write(text)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(folder: Path) -> dict[str, str]:
    """sha256 of every artifact file under ``folder`` by relative path (record files excluded)."""
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in RECORD_FILES and not p.name.startswith(".")
    }


def digest_of(files: dict[str, str]) -> str:
    """One sha256 over a {relative path: sha256} listing."""
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def contained(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refusing any path that would land outside ``root`` (``..``, absolute, links)."""
    target = (root / relative).resolve()
    if not within(target, root.resolve()):
        raise ValueError(f"path {str(relative)!r} escapes {root}")
    return target


def outputs_record(folder: Path) -> dict[str, Any]:
    """What lineage.json records of a finished output folder: every artifact's sha256 (``outputs``), one digest over
    them (``outputs_digest``, what a downstream stage's lineage names) and the sha256 of its contract.json."""
    outputs = artifact_files(folder)
    return {"outputs": outputs, "outputs_digest": digest_of(outputs), "contract_sha256": file_sha256(folder / CONTRACT)}


def read_lineage(folder: Path) -> dict[str, Any] | None:
    """A stage folder's lineage record, or None when there is no readable one (no complete output there)."""
    try:
        record = json.loads((folder / LINEAGE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def output_mismatch(folder: Path, record: dict[str, Any]) -> str | None:
    """How the files of ``folder`` differ from its lineage ``record``, naming the first file that does (its
    contract.json, an artifact changed or removed, a file added), or None when every one hashes as recorded."""
    recorded, contract = record.get("outputs"), record.get("contract_sha256")
    if not isinstance(recorded, dict) or not isinstance(contract, str):
        return f"{folder / LINEAGE} records no digest of its outputs (made by an older darkhalo, or edited)"
    if digest_of(recorded) != record.get("outputs_digest"):
        return f"{folder / LINEAGE}: its outputs do not add up to its outputs_digest (edited after the stage wrote it)"
    if not (folder / CONTRACT).is_file():
        return f"{folder / CONTRACT} is missing"
    if file_sha256(folder / CONTRACT) != contract:
        return f"{folder / CONTRACT} differs from the sha256 in {LINEAGE} (edited after the stage wrote it)"
    found = artifact_files(folder)
    for name, sha in sorted(recorded.items()):
        if name not in found:
            return f"{folder / name} is missing (removed after the stage wrote it)"
        if found[name] != sha:
            return f"{folder / name} differs from the sha256 in {LINEAGE} (edited or replaced after the stage wrote it)"
    added = sorted(set(found) - set(recorded))
    if added:
        return f"{folder / added[0]} is not among the outputs in {LINEAGE} (added after the stage wrote them)"
    return None
