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
    m["completeness_at_fpr"][0]["completeness_interval_at_threshold"] = None


def _no_headline_interval(m: dict) -> None:
    m["fpr_at_completeness"][2]["interval"] = None


def _interval_misses_rate(m: dict) -> None:
    m["fpr_at_completeness"][1]["fpr_interval_at_threshold"] = [0.0, 0.0001]


def _completeness_claims_resolved(m: dict) -> None:
    m["fpr_at_completeness"][0]["resolved"] = True  # 300 x (1 - 0.99) = 3 expected missed positives


def _no_positives_needed(m: dict) -> None:
    m["fpr_at_completeness"][3]["n_pos_needed"] = 0


def _repeated_control_hosts(m: dict) -> None:
    m["n_neg_hosts"] = 500  # each control host's image twice: 500 x 1e-2 = 5 expected false positives


def _more_hosts_than_controls(m: dict) -> None:
    m["n_neg_hosts"] = 1001


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
    "resolved claimed without negatives": (_claims_resolved, "resolved is True but n_neg_hosts x FPR = 1 "),
    "resolved claimed without positives": (_completeness_claims_resolved, "resolved is True but n_pos x (1 - c) = 3 "),
    "positives needed as zero": (_no_positives_needed, "fpr_at_completeness[3].n_pos_needed: must be a positive"),
    "controls repeating hosts": (_repeated_control_hosts, "completeness_at_fpr[0].resolved is True but n_neg_hosts"),
    "more hosts than controls": (_more_hosts_than_controls, "n_neg_hosts: 1001 distinct control hosts among 1000"),
    "missing interval": (_no_interval, "completeness_interval_at_threshold: needs [low, high]"),
    "missing headline interval": (_no_headline_interval, "fpr_at_completeness[2].interval: needs [low, high]"),
    "interval not containing its rate": (_interval_misses_rate, "does not contain the rate"),
    "count as text": (_count_as_text, "n_neg: Input should be a valid integer, got '1000'"),
    "resolved as a number": (_resolved_as_number, "fpr_at_completeness[1].resolved: Input should be a valid boolean"),
    "missing Bologna point": (_no_tpr10, "tpr10: missing"),
    "rate above one": (_rate_above_one, "completeness_at_fpr[0].completeness: Input should be less than or equal to 1"),
}


def test_a_complete_summary_passes(metrics: dict) -> None:
    finding = check(metrics)
    assert finding.id == "L4" and finding.passed and finding.measured == 0
    assert [p["resolved"] for p in metrics["fpr_at_completeness"]] == [False, *[True] * 5]


@pytest.mark.parametrize("name", ["controls repeating hosts", "more hosts than controls"])
def test_a_control_host_corruption_is_the_only_problem(metrics: dict, name: str) -> None:
    corrupt, message = CORRUPTIONS[name]
    broken = copy.deepcopy(metrics)
    corrupt(broken)
    (problem,) = check(broken).evidence
    assert message in problem["problem"]


def test_a_host_count_the_scores_do_not_show_is_the_only_problem(metrics: dict) -> None:
    """The judge counts the scored controls' distinct hosts: one control host repeated is one negative fewer."""
    assert check(metrics, control_hosts=metrics["n_neg_hosts"]).passed
    finding = check(metrics, control_hosts=metrics["n_neg_hosts"] - 1)
    (problem,) = finding.evidence
    assert not finding.passed and f"sit on {metrics['n_neg_hosts'] - 1} distinct hosts" in problem["problem"]


def test_an_interval_without_resamples_is_a_problem(metrics: dict) -> None:
    broken = copy.deepcopy(metrics)
    broken["bootstrap_samples"] = 0
    problems = [row["problem"] for row in check(broken).evidence]
    resolved = [f"fpr_at_completeness[{i}]" for i in range(1, 6)] + ["completeness_at_fpr[0]", "tpr0", "tpr10"]
    assert problems == [
        f"{w}.interval: bootstrap_samples is 0 but an interval is reported (must be null)" for w in resolved
    ]


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
