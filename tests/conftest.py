"""Shared fixtures: the repository's paths, the real survey files, one Spark session per process."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"
REAL = REPO / "tests" / "data" / "real"  # copies of the real survey files the tests use


def spec_data(name: str = "embedded") -> dict[str, Any]:
    """A spec file of specs/ as plain data (a fresh copy, safe to mutate)."""
    return copy.deepcopy(yaml.safe_load((SPECS / f"{name}.yaml").read_text()))


#: The small real sets of tests/data/real (6 PS1 lenses, 3 of them visible; 4 DES LRGs), scored in seconds where
#: data/real's 222 images take ~30 s of resampling.
SMALL_REAL_SETS = [
    {
        "name": "ps1_sled_lensed_galaxies",
        "input": str(REAL / "ps1_sled_lenses" / "galaxies_sub6.yaml"),
        "label": "lens",
        "visible": {
            "index": str(REAL / "ps1_sled_lenses" / "galaxies_sub6_index.csv"),
            "column": "image_sep_arcsec",
            "min": 2.0,
        },
    },
    {"name": "des_lrg_hosts", "input": str(REAL / "des_lrg_hosts" / "lrg_hosts_sub4.yaml"), "label": "non_lens"},
]


def with_small_real_sets(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a spec as plain data) scoring ``SMALL_REAL_SETS``, L12 counting their six lenses as enough."""
    data.setdefault("evaluate", {})["real_sets"] = copy.deepcopy(SMALL_REAL_SETS)
    data.setdefault("invariants", {}).setdefault("L12", {})["min_real_lenses"] = 6
    return data


@pytest.fixture(scope="session")
def spark():
    """The process's local Spark session (started once, ~5 s)."""
    from darkhalo.spark import get_spark, stop_spark

    session = get_spark()
    yield session
    stop_spark()


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """Small real survey files (tests/data/real; see its MANIFEST.txt)."""
    return REAL
