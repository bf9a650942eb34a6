"""darkhalo compare: which spec pairs share a test sky, the leak check, the side-by-side tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SPECS, spec_data

from darkhalo.compare import check_comparable, comparison_markdown, training_hosts_in_test
from darkhalo.metrics.summary import evaluation_metrics
from darkhalo.runner import RunError
from darkhalo.spec import load_spec, spec_from_dict


def test_the_shipped_pair_shares_seed_survey_and_splits() -> None:
    check_comparable(load_spec(SPECS / "compare_gen1_recipe.yaml"), load_spec(SPECS / "embedded.yaml"))


def test_a_pair_on_different_skies_is_refused() -> None:
    other = spec_data("embedded")
    other["splits"] = {"nside": 128}
    with pytest.raises(RunError, match="splits"):
        check_comparable(load_spec(SPECS / "compare_gen1_recipe.yaml"), spec_from_dict(other))


def test_training_hosts_in_the_test_set_are_counted(tmp_path) -> None:
    (tmp_path / "manifest" / "manifest").mkdir(parents=True)
    pd.DataFrame({"host_id": [1, 2, 3], "split": ["train", "val", "test"]}).to_parquet(
        tmp_path / "manifest" / "manifest" / "part-00000.parquet"
    )
    assert training_hosts_in_test(tmp_path, pd.DataFrame({"host_id": [3, 4]})) == 0
    assert training_hosts_in_test(tmp_path, pd.DataFrame({"host_id": [1, 2, 3]})) == 2


def _metrics(shift: float) -> dict:
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {
            "label": np.r_[np.ones(200, int), np.zeros(400, int)],
            "score": np.r_[rng.normal(shift, 1, 200), rng.normal(0, 1, 400)],
            "theta_e": np.r_[rng.uniform(0.8, 2, 200), np.full(400, np.nan)],
            "psfsize_r": np.full(600, 1.3),
        }
    )
    return evaluation_metrics(
        scores, min_expected_fp=10, confidence=0.95, bootstrap_samples=0, seed=0, survey_hosts=10**6, prevalence=1e-3
    )


def test_the_comparison_shows_resolved_points_as_numbers_and_unresolved_ones_as_such() -> None:
    results = {"gen1": {"metrics": _metrics(0.5), "findings": []}, "gen2": {"metrics": _metrics(3.0), "findings": []}}
    text = comparison_markdown(results, "gen2", 600)
    assert "| 0.01 |" in text and "unresolved (needs 1,000,000 negatives)" in text  # FPR 1e-5 with 400 controls
    gen2_fpr_at_90 = results["gen2"]["metrics"]["fpr_at_completeness"][2]["fpr"]
    assert f"{gen2_fpr_at_90:.4f}" in text
