"""The command line as a user meets it: help, spec checks, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, SPECS, spec_data
from typer.testing import CliRunner

from darkhalo.cli import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "darkhalo", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for command in ("run", "stages", "spec"):
        assert command in done.stdout


def test_spec_check_accepts_every_spec_in_specs() -> None:
    result = runner.invoke(app, ["spec", "check", *map(str, sorted(SPECS.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == len(list(SPECS.glob("*.yaml")))


def test_spec_check_names_a_typo_and_exits_2(tmp_path: Path) -> None:
    data = spec_data()
    data["controls"]["contrl_fraction"] = 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["spec", "check", str(bad)])
    assert result.exit_code == 2
    assert "contrl_fraction" in result.output and "controls" in result.output


def test_run_with_an_unknown_stage_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(SPECS / "embedded.yaml"), "--out", str(tmp_path), "--from", "slect"])
    assert result.exit_code == 2
    assert "unknown stage 'slect'" in result.output


def test_spec_show_fills_in_defaults() -> None:
    result = runner.invoke(app, ["spec", "show", str(SPECS / "embedded.yaml")])
    assert result.exit_code == 0
    shown = yaml.safe_load(result.output)
    assert shown["invariants"]["L2"]["min_share"] == 0.8
    assert shown["engine"]["spark_master"] == "local[*]"
