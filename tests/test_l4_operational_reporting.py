"""L4 on metrics.json: a valid summary passes; each single corruption fails with id L4."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.metrics.summary import summarise
from data_contracts.invariants.l4_operational_reporting import check
from data_contracts.thresholds import InvariantThresholds


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    """A summary as parsed from metrics.json."""
    rng = np.random.default_rng(5)
    return summarise(
        rng.normal(2, 1, 300), rng.normal(0, 1, 1000), min_expected_fp=10, confidence=0.95, bootstrap_samples=30, seed=0
    ).model_dump(mode="json")


def _drop_point(m: dict) -> None:
    del m["fpr_at_completeness"][2]  # completeness 0.90


def _number_for_unresolved(m: dict) -> None:
    point = m["completeness_at_fpr"][3]  # 1e-5 with 1000 negatives
    assert not point["resolved"]
    point["completeness"] = 0.004


def _auroc_alone(m: dict) -> None:
    del m["fpr_at_completeness"], m["completeness_at_fpr"]


def _claims_resolved(m: dict) -> None:
    m["completeness_at_fpr"][1]["resolved"] = True  # 1000 x 1e-3 = 1 expected false positive


def _no_interval(m: dict) -> None:
    m["completeness_at_fpr"][0]["completeness_interval"] = None


def _interval_misses_rate(m: dict) -> None:
    m["fpr_at_completeness"][0]["fpr_interval"] = [0.0, 0.0001]


def _count_as_text(m: dict) -> None:
    m["n_neg"] = "1000"


def _resolved_as_number(m: dict) -> None:
    m["fpr_at_completeness"][1]["resolved"] = 1


def _no_tpr10(m: dict) -> None:
    del m["tpr10"]


def _rate_above_one(m: dict) -> None:
    m["completeness_at_fpr"][0]["completeness"] = 1.5


CORRUPTIONS: dict[str, tuple[Callable[[dict], None], str]] = {
    "missing operating point": (_drop_point, "operating point 0.9 is missing"),
    "number for an unresolved target": (_number_for_unresolved, "unresolved but reports completeness"),
    "AUROC without operating points": (_auroc_alone, "auroc: reported without the operating points"),
    "resolved claimed without negatives": (_claims_resolved, "resolved is True but n_neg x FPR = 1"),
    "missing interval": (_no_interval, "completeness_interval: needs [low, high]"),
    "interval not containing its rate": (_interval_misses_rate, "does not contain the rate"),
    "count as text": (_count_as_text, "n_neg: Input should be a valid integer, got '1000'"),
    "resolved as a number": (_resolved_as_number, "fpr_at_completeness[1].resolved: Input should be a valid boolean"),
    "missing Bologna point": (_no_tpr10, "tpr10: missing"),
    "rate above one": (_rate_above_one, "completeness_at_fpr[0].completeness: Input should be less than or equal to 1"),
}


def test_a_complete_summary_passes(metrics: dict) -> None:
    finding = check(metrics)
    assert finding.id == "L4" and finding.passed and finding.measured == 0


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_single_corruption_fails_l4(metrics: dict, name: str) -> None:
    corrupt, message = CORRUPTIONS[name]
    broken = copy.deepcopy(metrics)
    corrupt(broken)
    finding = check(broken)
    assert finding.id == "L4" and not finding.passed and finding.blocking
    assert any(message in row["problem"] for row in finding.evidence), finding.evidence


@pytest.mark.parametrize("parsed", [None, [], "metrics"])
def test_a_file_that_is_no_object_is_a_finding_not_a_crash(parsed: object) -> None:
    finding = check(parsed)
    assert not finding.passed and finding.evidence[0]["problem"].startswith("metrics: Input should be")


def test_a_waiver_is_shown_not_hidden(metrics: dict) -> None:
    broken = copy.deepcopy(metrics)
    _drop_point(broken)
    invariants = InvariantThresholds(L4={"waiver": "reporting deliberately cut short for a smoke test"})
    (finding,) = invariants.judged([check(broken)])  # the one place a waiver takes effect
    assert finding.verdict == "waived" and not finding.passed and not finding.blocking


@settings(max_examples=40, deadline=None)
@given(
    pos=st.lists(st.integers(0, 4).map(float), min_size=1, max_size=30),
    neg=st.lists(st.integers(0, 4).map(float), min_size=1, max_size=3000),
    min_fp=st.sampled_from([1.0, 10.0]),
)
def test_any_summary_of_any_scores_passes_l4(pos: list[float], neg: list[float], min_fp: float) -> None:
    metrics = summarise(
        np.array(pos), np.array(neg), min_expected_fp=min_fp, confidence=0.95, bootstrap_samples=3, seed=1
    ).model_dump(mode="json")
    assert check(metrics).passed, check(metrics).evidence
