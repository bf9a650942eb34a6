"""The survey-scale spec: its whole manifest, expanded in pandas as the manifest stage expands it,
has a test split that resolves completeness at FPR 1e-3 and 1e-4 (not 1e-5) and each confuser class's
FPR at 1e-2 (L11), and the pre-flight forecast says so before anything runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import SPECS
from typer.testing import CliRunner

from darkhalo.audit.judges import hard_negatives_finding
from darkhalo.audit.preflight import SAMPLE_HOSTS, forecast_test_split, planned_manifest, preflight, sampled_parent
from darkhalo.cli import app
from darkhalo.spec import GenerationSpec, confuser_classes, load_spec


def whole_manifest(spec: GenerationSpec) -> pd.DataFrame:
    """Every manifest row of the spec's mock sky: the pre-flight's sample taken whole."""
    parent, scanned = sampled_parent(spec, n_hosts=spec.survey.n_objects)
    assert scanned == spec.survey.n_objects
    return planned_manifest(spec, parent)


@pytest.fixture(scope="module")
def survey_scale() -> GenerationSpec:
    return load_spec(SPECS / "survey_scale.yaml")


@pytest.fixture(scope="module")
def manifest(survey_scale) -> pd.DataFrame:
    return whole_manifest(survey_scale)


@pytest.fixture(scope="module")
def test_split(manifest) -> pd.DataFrame:
    return manifest[manifest["split"] == "test"]


def test_the_survey_scale_test_split_resolves_1e_3_and_1e_4_on_distinct_hosts(survey_scale, test_split) -> None:
    test = test_split
    controls = test[test["label"] == 0]
    assert controls["host_id"].is_unique, "every test control is a distinct host"
    assert len(controls) >= 120_000
    assert int((test["label"] == 1).sum()) >= 10_000
    min_fp = survey_scale.evaluate.min_expected_false_positives
    assert len(controls) * 1e-4 >= min_fp > len(controls) * 1e-5


def test_the_forecast_matches_the_whole_expansion(survey_scale, test_split) -> None:
    test = test_split
    forecast = forecast_test_split(survey_scale)
    n_controls = test.loc[test["label"] == 0, "host_id"].nunique()
    assert forecast.test_control_hosts == pytest.approx(n_controls, rel=0.05)
    assert forecast.test_positives == pytest.approx(int((test["label"] == 1).sum()), rel=0.1)
    assert [forecast.resolves(f) for f in (1e-2, 1e-3, 1e-4, 1e-5)] == [True, True, True, False]


def test_the_whole_sky_meets_l11_as_the_pre_flight_foresees(survey_scale, manifest) -> None:
    whole = hard_negatives_finding(manifest, survey_scale)
    foreseen = next(f for f in preflight(survey_scale) if f.id == "L11")
    assert whole.passed and foreseen.passed, (whole.detail, foreseen.detail)
    sampled = SAMPLE_HOSTS / manifest["host_id"].nunique()  # the pre-flight's share of the parent sample
    for name in confuser_classes(survey_scale.survey):
        poisson = 3 / math.sqrt(whole.measured[name] * sampled)  # 3 sigma of the sample's count
        assert foreseen.measured[name] == pytest.approx(whole.measured[name], rel=poisson), name
    assert min(whole.measured[n] for n in confuser_classes(survey_scale.survey)) >= 1_000


def test_the_forecast_counts_distinct_control_hosts_not_control_stamps() -> None:
    """Gen 1's paired controls repeat each host's image once per grid config: 48 stamps, one negative."""
    spec = load_spec(SPECS / "gen1_resnet18_v3_color_relaxed.yaml")
    forecast = forecast_test_split(spec)
    assert forecast.test_positives > 20 * forecast.test_control_hosts
    assert not forecast.resolves(1e-3)


def test_spec_check_prints_which_fpr_targets_the_test_split_resolves() -> None:
    result = CliRunner().invoke(app, ["spec", "check", str(SPECS / "survey_scale.yaml"), str(SPECS / "embedded.yaml")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "test split forecast" in line]
    assert len(lines) == 2
    assert "resolves FPR 0.01, 0.001, 0.0001; unresolved: 1e-05 (needs 1,000,000)" in lines[0]
    assert "resolves FPR none" in lines[1]
