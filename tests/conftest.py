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
