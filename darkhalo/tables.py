"""Reading parquet parts written by an earlier stage, with errors that name the file.

pyarrow reports a truncated or foreign file as "Parquet magic bytes not found in footer" without
saying which file; these wrappers say which, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ParquetFileError(ValueError):
    """A parquet part that cannot be read (truncated, corrupt or not parquet); the message names it."""


def _refuse(path: Path, exc: Exception) -> ParquetFileError:
    return ParquetFileError(f"{path}: not a readable parquet file, truncated or corrupt ({exc}); re-run its stage")


def read_schema(path: Path) -> pa.Schema:
    """The arrow schema of a parquet file."""
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _refuse(path, exc) from None


def num_rows(path: Path) -> int:
    """Rows in a parquet file, from its footer."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        raise _refuse(path, exc) from None


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A parquet file (or some of its columns) as an arrow table."""
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _refuse(path, exc) from None
