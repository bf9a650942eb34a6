"""The audit: every spec in specs/ meets its declared verdicts (the CI gate), Gen 1 fails exactly
L1, L2, L3, L11 and L12 before anything runs, and a run folder is audited from its artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SPECS, spec_data
from toy_stages import PARENT_STAGE
from typer.testing import CliRunner

from darkhalo.audit.audit import audit_run, audit_spec
from darkhalo.cli import app
from darkhalo.runner import run_generation
from darkhalo.spec import load_spec, spec_from_dict
from darkhalo.stages import STAGES

ALL_SPECS = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_SPECS, ids=[p.stem for p in ALL_SPECS])
def test_every_spec_meets_its_expected_audit_verdicts(path: Path) -> None:
    result = audit_spec(load_spec(path), str(path))
    assert result.as_expected, f"{path.name}: failed {result.failed}, expected {result.expected_failures}"


def test_gen1_fails_l1_l2_l3_l11_l12_and_its_resolvable_share_is_near_the_post_mortems() -> None:
    result = audit_spec(load_spec(SPECS / "gen1_resnet18_v3_color_relaxed.yaml"), "gen1")
    assert result.failed == ["L1", "L2", "L3", "L11", "L12"]
    l2 = next(f for f in result.findings if f.id == "L2")
    assert 0.35 <= l2.measured <= 0.5
    l12 = next(f for f in result.findings if f.id == "L12")
    assert "no real lens set" in l12.detail and l12.measured == {"lens sets": 0, "non-lens sets": 0}


def test_a_waived_failure_is_shown_with_its_reason_and_does_not_fail() -> None:
    data = spec_data("gen1_resnet18_v3_color_relaxed")
    data["invariants"] = {"L3": {"waiver": "reproducing Gen 1 exactly, Gaussian PSF on purpose"}}
    data["expect"] = {"audit_failures": ["L1", "L2", "L11", "L12"]}
    result = audit_spec(spec_from_dict(data), "gen1-waived")
    l3 = next(f for f in result.findings if f.id == "L3")
    assert l3.verdict == "waived" and "on purpose" in l3.waiver and result.as_expected


def test_cli_audit_of_a_spec_prints_the_table_and_exits_by_verdict(tmp_path: Path) -> None:
    runner = CliRunner()
    failed = runner.invoke(
        app, ["audit", str(SPECS / "gen1_resnet18_v3_color_relaxed.yaml"), "--json", str(tmp_path / "a.json")]
    )
    assert failed.exit_code == 1 and "FAIL" in failed.output and "L2" in failed.output
    assert json.loads((tmp_path / "a.json").read_text())["failed"] == ["L1", "L2", "L3", "L11", "L12"]
    passed = runner.invoke(app, ["audit", str(SPECS / "gen2_resnet18_unpaired_survey_psf.yaml")])
    assert passed.exit_code == 0, passed.output
    bad = runner.invoke(app, ["audit", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and "missing.yaml" in bad.output


@pytest.mark.spark
def test_a_run_folder_is_audited_from_its_artifacts(spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_PARENT_ROWS", "200")
    data = spec_data("embedded")
    data["splits"] = {"nside": 128}
    data["grid"]["theta_e_arcsec"] = [1.0, 1.5, 2.0]
    spec = spec_from_dict(data)
    stages = (PARENT_STAGE, next(s for s in STAGES if s.name == "manifest"))
    run_generation(spec, tmp_path, stages=stages)
    run_dir = tmp_path / spec.generation
    result = audit_run(run_dir, stages=stages)  # the chain of the two stages that ran: whole
    verdicts = {f.id: f.verdict for f in result.findings}
    assert {verdicts[i] for i in ("L1", "L2", "L3", "L5", "L6")} == {"pass"} and result.passed
    assert "L4" in result.not_evaluated and "L9" in result.not_evaluated

    cli = CliRunner().invoke(app, ["audit", str(run_dir)])  # the generation's chain: no survey, inject, ...
    assert cli.exit_code == 3, cli.output
    written = json.loads((run_dir / "audit.json").read_text())
    assert written["failed"] == [] and not written["passed"] and not written["complete"]
    assert {c["stage"]: c["status"] for c in written["chain"]}["inject"] == "missing"
    report = (run_dir / "audit.md").read_text()
    assert "| L1 |" in report and "| inject | missing |" in report
