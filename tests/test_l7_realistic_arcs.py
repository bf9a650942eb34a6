"""L7 (realistic, visible arcs) on recorded arc S/N."""

from __future__ import annotations

import numpy as np
import pytest

from data_contracts.invariants import l7_realistic_arcs
from data_contracts.thresholds import L7Thresholds


def _snr(n: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(25), 0.6, n)


def test_l7_passes_prior_brightness_with_mostly_visible_arcs() -> None:
    finding = l7_realistic_arcs.check("prior", _snr(), L7Thresholds())
    assert finding.passed and finding.measured["invisible_share"] < 0.3


@pytest.mark.parametrize(
    ("brightness", "snr", "problem"),
    [
        ("host_relative", _snr(), "not drawn from a source-population prior"),
        ("prior", _snr() / 10, "S/N < 5"),
        ("prior", _snr() * 40, "S/N > 500"),
        ("prior", np.append(_snr(), np.nan), "lack a finite arc S/N"),
    ],
    ids=["host-relative", "invisible", "too-bright", "missing-snr"],
)
def test_l7_fails_each_way_with_the_reason(brightness: str, snr: np.ndarray, problem: str) -> None:
    finding = l7_realistic_arcs.check(brightness, snr, L7Thresholds())
    assert not finding.passed and problem in finding.detail
