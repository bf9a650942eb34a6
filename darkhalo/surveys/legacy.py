"""Real Legacy Surveys catalogs (DR8/DR9/DR10 sweep and tractor FITS, or parquet) as sweep-column parquet.

FITS tables are read with astropy: big-endian columns become native, padded strings are stripped,
lower-case tractor names map to the sweep's upper-case ones. A file that lacks a column darkhalo
needs is refused naming the file and every missing column (DR8 has no PSFSIZE, SHAPE_R or SERSIC).
Only columns whose absence is harmless get a default (``OPTIONAL_DEFAULTS``). Each file is written
once, atomically, as ``out/part-NNNNN.parquet`` with exactly ``SWEEP_COLUMNS`` and their dtypes.
Tractor files keep only BRICK_PRIMARY rows, as the sweeps do.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits

from darkhalo.artifacts import atomic_file
from darkhalo.surveys.columns import SWEEP_COLUMNS

#: Columns a catalog may lack, with the value that stands for "not measured": FITBITS is new in
#: DR9 (0: no fitting flags), REF_CAT is blank where no reference catalog (Gaia, Tycho-2) matched.
OPTIONAL_DEFAULTS: dict[str, int | str] = {"FITBITS": 0, "REF_CAT": ""}

#: Early DECaLS (DR1/DR2) tractor files keep fluxes in per-band arrays; their names say so.
_ARRAY_SCHEMA_HINTS = ("DECAM_FLUX", "WISE_FLUX")


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the file and what is wrong."""


def catalog_paths(patterns: list[str]) -> list[Path]:
    """Expand a survey spec's catalog paths and globs (sorted per pattern); a pattern matching nothing fails."""
    paths: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern))
        if not matched:
            raise CatalogError(
                f"{pattern}: no catalog file matches this glob pattern (survey catalog entries are glob patterns: "
                "write [*], [?] or [[] for a literal *, ? or [)"
            )
        paths.extend(Path(p) for p in matched)
    return paths


def ingest_catalogs(paths: list[Path], out: Path) -> dict[str, int]:
    """Convert each catalog to ``out/part-NNNNN.parquet`` (sweep columns); rows written per input path.

    Every file's columns are checked before the first part is written, so a file lacking a column
    leaves no parts; files are then converted one at a time (one sweep in memory at once).
    """
    for path in paths:
        check_columns(Path(path))
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for index, path in enumerate(paths):
        frame = read_catalog(Path(path))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        with atomic_file(out / f"part-{index:05d}.parquet", "wb") as handle:
            pq.write_table(table, handle)
        counts[str(path)] = len(frame)
    return counts


def _is_parquet(path: Path) -> bool:
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith(".parquet"):
        return True
    if suffixes.endswith((".fits", ".fits.gz", ".fit")):
        return False
    raise CatalogError(f"{path}: not a catalog (expected .fits, .fits.gz or .parquet)")


def check_columns(path: Path) -> None:
    """Refuse a catalog lacking a needed column (or, for parquet, with a wrong dtype) from its header."""
    if _is_parquet(path):
        _parquet_schema(path)
        return
    with _fits_table(path) as hdus:
        _require(path, {name.upper() for name in _bintable(path, hdus).columns.names})


def read_catalog(path: Path) -> pd.DataFrame:
    """One sweep/tractor FITS or sweep-column parquet file as a frame of exactly ``SWEEP_COLUMNS``."""
    return _read_parquet(path) if _is_parquet(path) else _read_fits(path)


def count_rows(path: Path) -> int:
    """A catalog file's row count, from its parquet footer or its binary table's header."""
    if _is_parquet(path):
        return pq.ParquetFile(path).metadata.num_rows
    with _fits_table(path) as hdus:
        return int(_bintable(path, hdus).header["NAXIS2"])


def _fits_table(path: Path) -> fits.HDUList:
    try:
        return fits.open(path, memmap=True)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: cannot read as FITS ({exc})") from exc


def _bintable(path: Path, hdus: fits.HDUList) -> fits.BinTableHDU:
    index = next((i for i, h in enumerate(hdus) if isinstance(h, fits.BinTableHDU)), None)
    if index is None:
        raise CatalogError(f"{path}: no binary table HDU")
    table = hdus[index]
    if not path.name.lower().endswith(".gz"):  # astropy only warns when a table's rows run past the end
        needed = hdus.fileinfo(index)["datLoc"] + table.header["NAXIS1"] * table.header["NAXIS2"]
        needed += table.header.get("PCOUNT", 0)
        if needed > path.stat().st_size:
            raise CatalogError(
                f"{path}: truncated: its {table.header['NAXIS2']} rows need {needed} bytes, the file has "
                f"{path.stat().st_size}"
            )
    return table


def _read_fits(path: Path) -> pd.DataFrame:
    with _fits_table(path) as hdus:
        data = _bintable(path, hdus).data
        by_upper = {name.upper(): name for name in data.columns.names}
        _require(path, set(by_upper))
        if "BRICK_PRIMARY" in by_upper:  # a tractor file: keep what a sweep keeps
            data = data[np.asarray(data[by_upper["BRICK_PRIMARY"]], dtype=bool)]
        columns = {}
        for name, dtype in SWEEP_COLUMNS.items():
            if name not in by_upper:
                columns[name] = _default_column(name, len(data))
                continue
            columns[name] = _native(path, name, np.asarray(data[by_upper[name]]), dtype)
    return pd.DataFrame(columns)


def _require(path: Path, present: set[str]) -> None:
    missing = [c for c in SWEEP_COLUMNS if c not in present and c not in OPTIONAL_DEFAULTS]
    if not missing:
        return
    hint = ""
    if any(h in present for h in _ARRAY_SCHEMA_HINTS):
        hint = " (early DECaLS DR1/DR2 per-band array columns such as DECAM_FLUX are not supported)"
    elif "PSFSIZE_R" in missing and "SHAPEDEV_R" in present:
        hint = " (a DR8-era catalog: PSFSIZE, SHAPE_R and SERSIC arrived in DR9; use DR9 or DR10 files)"
    raise CatalogError(f"{path}: missing columns darkhalo needs{hint}: {', '.join(missing)}")


def _native(path: Path, name: str, values: np.ndarray, dtype: str) -> np.ndarray:
    """A FITS column in native byte order and the sweep dtype (strings decoded and stripped)."""
    if values.ndim != 1:
        raise CatalogError(f"{path}: column {name} has shape {values.shape[1:]} per row, expected a scalar")
    if dtype == "str":
        if values.dtype.kind == "S":
            values = np.char.decode(values, "ascii")
        if values.dtype.kind != "U":
            raise CatalogError(f"{path}: column {name} holds {values.dtype}, expected text")
        return np.char.strip(values).astype(object)
    target = np.dtype(dtype)
    if values.dtype.kind not in ("iu" if target.kind in "iu" else "iuf"):
        raise CatalogError(f"{path}: column {name} holds {values.dtype}, expected {target}")
    native = values.astype(values.dtype.newbyteorder("="))
    cast = native.astype(target)
    if target.kind in "iu" and not np.array_equal(cast, native):
        raise CatalogError(f"{path}: column {name} has values outside {target}")
    return cast


def _parquet_schema(path: Path) -> pa.Schema:
    """A parquet file's schema, refused unless it has the sweep columns with their dtypes."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CatalogError(f"{path}: cannot read as parquet ({exc})") from exc
    problems = []
    for name, dtype in SWEEP_COLUMNS.items():
        if name not in schema.names:
            if name not in OPTIONAL_DEFAULTS:
                problems.append(f"{name} missing")
            continue
        found = schema.field(name).type
        if dtype == "str":
            ok = pa.types.is_string(found) or pa.types.is_large_string(found)
        else:
            ok = found == pa.from_numpy_dtype(np.dtype(dtype))
        if not ok:
            problems.append(f"{name} is {found}, expected {dtype}")
    if problems:
        raise CatalogError(f"{path}: not a sweep-column parquet file: {'; '.join(problems)}")
    return schema


def _read_parquet(path: Path) -> pd.DataFrame:
    schema = _parquet_schema(path)
    present = [c for c in SWEEP_COLUMNS if c in schema.names]
    frame = pq.read_table(path, columns=present).to_pandas()
    for name in OPTIONAL_DEFAULTS:
        if name not in frame:
            frame[name] = _default_column(name, len(frame))
    return frame[list(SWEEP_COLUMNS)]


def _default_column(name: str, n: int) -> np.ndarray:
    dtype = SWEEP_COLUMNS[name]
    return np.full(n, OPTIONAL_DEFAULTS[name], dtype=object if dtype == "str" else dtype)
