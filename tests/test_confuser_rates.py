"""The FPR per confuser class at each resolved operating point: against a direct count, its resolution rule,
and the contract refusing each single corruption of a class's record."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from darkhalo.metrics.intervals import clopper_pearson
from darkhalo.metrics.summary import evaluation_metrics
from data_contracts.confusers import PLAIN, UNLABELLED
from data_contracts.metrics import EvaluationMetrics, metrics_problems, read_metrics, sample_needed

KWARGS = dict(min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3)
#: Controls per class of the synthetic test set, and how far each class's scores sit above the plain hosts'.
CLASSES = {PLAIN: (1500, 0.0), "spiral": (900, 1.0), "ring": (60, 0.5), UNLABELLED: (540, 0.2)}


def _scores(shift: float = 2.0, seed: int = 3) -> pd.DataFrame:
    """300 positives on plain hosts and 3,000 controls in CLASSES; the unlabelled controls are 3 images of each
    of 180 hosts, so their distinct hosts are a third of their controls."""
    rng = np.random.default_rng(seed)
    confuser = np.concatenate([np.full(n, value) for value, (n, _) in CLASSES.items()])
    controls = np.concatenate([rng.normal(mu, 1, n) for n, mu in CLASSES.values()])
    hosts = np.arange(confuser.size) + 300
    unlabelled = confuser == UNLABELLED
    hosts[unlabelled] = 10**6 + np.arange(unlabelled.sum()) // 3
    return pd.DataFrame(
        {
            "label": np.r_[np.ones(300, int), np.zeros(confuser.size, int)],
            "score": np.r_[rng.normal(shift, 1, 300), controls],
            "host_id": np.r_[np.arange(300), hosts],
            "confuser": np.r_[np.full(300, PLAIN), confuser],
        }
    )


def test_each_class_rate_is_the_direct_count_at_each_resolved_threshold() -> None:
    scores = _scores()
    metrics = evaluation_metrics(scores, **KWARGS)
    points = metrics.resolved_points()
    assert set(metrics.confuser_fpr) == set(points) and "fpr=0.01" in points and "fpr=0.001" not in points
    controls = scores[scores["label"] == 0]
    for name, point in points.items():
        rates = metrics.confuser_fpr[name]
        assert list(rates) == list(CLASSES)  # every class present, in VALUES order, plain as the reference
        reference = point.target_value if point.target == "fpr" else point.fpr
        for value, rate in rates.items():
            members = controls[controls["confuser"] == value]
            hosts = members["host_id"].nunique()
            assert (rate.n, rate.n_hosts) == (len(members), hosts)
            assert rate.n_hosts_needed == sample_needed(10, reference)
            assert rate.resolved == (hosts * reference >= 10 - 1e-9)
            if not rate.resolved:
                assert rate.n_flagged is rate.fpr is rate.fpr_interval_at_threshold is None
                assert rate.needs() == f"{rate.n_hosts_needed:,} hosts"
                continue
            k = int((members["score"] >= point.threshold).sum())
            assert (rate.n_flagged, rate.fpr) == (k, k / len(members))
            assert rate.fpr_interval_at_threshold == list(clopper_pearson(k, len(members)))
        assert sum(r.n for r in rates.values()) == point.n_neg
    at_fpr = metrics.confuser_fpr["fpr=0.01"]  # 1,000 hosts needed: only the plain hosts have them
    assert [v for v, r in at_fpr.items() if r.resolved] == [PLAIN]
    assert at_fpr[UNLABELLED].n_hosts == 180 and at_fpr["ring"].needs() == "1,000 hosts"
    spiral = metrics.confuser_fpr["completeness=0.9"]["spiral"]  # the harder class is flagged more
    assert spiral.resolved and spiral.fpr > 2 * metrics.confuser_fpr["completeness=0.9"][PLAIN].fpr
    assert metrics_problems(metrics.model_dump(mode="json")) == []


def test_a_threshold_that_flags_no_control_resolves_no_class() -> None:
    metrics = evaluation_metrics(_scores(shift=12.0), **KWARGS)
    rate = metrics.confuser_fpr["completeness=0.7"]["spiral"]
    assert metrics.resolved_points()["completeness=0.7"].fpr == 0
    assert not rate.resolved and rate.n_hosts_needed is None and rate.needs() == "a control flagged at this threshold"
    assert metrics_problems(metrics.model_dump(mode="json")) == []


def test_classes_absent_from_the_controls_are_not_listed() -> None:
    scores = _scores()
    scores = scores[scores["confuser"] != "ring"]
    rates = evaluation_metrics(scores, **KWARGS).confuser_fpr["completeness=0.9"]
    assert list(rates) == [PLAIN, "spiral", UNLABELLED]


def test_scores_without_a_confuser_column_or_with_an_unknown_class_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^scores: no confuser column"):
        evaluation_metrics(_scores().drop(columns="confuser"), **KWARGS)
    scores = _scores()
    scores.loc[400, "confuser"] = "bar"
    with pytest.raises(ValueError, match=r"^scores: confuser value\(s\) \['bar'\] are not in"):
        evaluation_metrics(scores, **KWARGS)


@pytest.fixture(scope="module")
def written() -> dict:
    return evaluation_metrics(_scores(), **KWARGS).model_dump(mode="json")


WHERE = "confuser_fpr.completeness=0.9.spiral"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("n_flagged", 901, f"{WHERE}.n_flagged: 901 flagged among 900 controls"),
        ("fpr_interval_at_threshold", [0.9, 0.95], f"{WHERE}.fpr_interval_at_threshold: [0.9, 0.95] does not contain"),
        ("n_hosts", 20, f"{WHERE}.resolved is True but the class has 20 hosts, 29 needed"),
        ("n_hosts", 901, f"{WHERE}.n_hosts: 901 distinct hosts among 900 controls"),
        ("n_hosts_needed", 1, f"{WHERE}.n_hosts_needed: 1, but the point's FPR needs 29"),
        ("fpr", None, f"{WHERE}.fpr: a resolved class rate needs a number, got None"),
    ],
)
def test_the_contract_catches_each_single_corruption_of_a_class_rate(
    written: dict, field: str, value: object, problem: str
) -> None:
    corrupted = copy.deepcopy(written)
    rate = corrupted["confuser_fpr"]["completeness=0.9"]["spiral"]
    assert rate["resolved"] and rate["n_hosts_needed"] == 29  # 900 hosts x FPR 0.35 at completeness 0.9
    rate[field] = value
    (found,) = metrics_problems(corrupted)
    assert found.startswith(problem), found


def test_the_contract_catches_an_unresolved_class_rate_with_numbers_and_misplaced_points(written: dict) -> None:
    corrupted = copy.deepcopy(written)
    corrupted["confuser_fpr"]["fpr=0.01"]["ring"] |= {"n_flagged": 2, "fpr": 2 / 60}
    assert metrics_problems(corrupted) == [
        "confuser_fpr.fpr=0.01.ring: unresolved but reports n_flagged, fpr (must be null)"
    ]
    corrupted = copy.deepcopy(written)
    corrupted["confuser_fpr"]["fpr=0.001"] = corrupted["confuser_fpr"].pop("fpr=0.01")
    assert metrics_problems(corrupted) == [
        "confuser_fpr: resolved point fpr=0.01 is missing",
        "confuser_fpr.fpr=0.001: not a resolved operating point",
    ]
    corrupted = copy.deepcopy(written)
    corrupted["confuser_fpr"]["fpr=0.01"]["bar"] = corrupted["confuser_fpr"]["fpr=0.01"]["ring"]
    (problem,) = metrics_problems(corrupted)
    assert problem.startswith("confuser_fpr.fpr=0.01.bar.[key]: Input should be 'none', 'spiral'"), problem


def test_a_metrics_json_from_before_confusers_still_reads(tmp_path: Path, written: dict) -> None:
    old = {k: v for k, v in written.items() if k != "confuser_fpr"}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    metrics = read_metrics(tmp_path / "metrics.json")
    assert metrics.confuser_fpr == {} and metrics_problems(old) == []
    assert metrics == EvaluationMetrics.model_validate(written).model_copy(update={"confuser_fpr": {}})
