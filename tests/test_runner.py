"""The runner: order, lineage, skipping, atomic installs, interrupted and failing stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, spec_data
from toy_stages import TOY_STAGES

from darkhalo.runner import RunError, StageFailed, run_generation, select_stages
from darkhalo.spec import spec_from_dict
from darkhalo.stages import STAGE_NAMES


@pytest.fixture
def spec():
    return spec_from_dict(spec_data())


def _run(spec, root: Path, **kwargs):
    return run_generation(spec, root, stages=TOY_STAGES, **kwargs)


def test_stages_are_registered_in_pipeline_order() -> None:
    assert STAGE_NAMES == ("survey", "select", "manifest", "inject", "train", "evaluate", "scan", "audit")


def test_a_run_installs_outputs_with_contract_and_lineage(spec, tmp_path: Path) -> None:
    outcomes = _run(spec, tmp_path)
    assert [o.status for o in outcomes] == ["ran", "ran"]
    run_dir = tmp_path / spec.generation
    assert (run_dir / "spec.yaml").read_text() == spec.to_yaml()
    second = run_dir / "second"
    assert (second / "second.txt").read_text().startswith("second seed=7")
    lineage = json.loads((second / "lineage.json").read_text())
    assert lineage["spec_digest"] == spec.digest("seed", "train")
    assert set(lineage["inputs"]) == {"first"}
    assert lineage["rows"] == {"second": 1} and lineage["wall_s"] >= 0
    assert set(lineage["outputs"]) == {"second.txt"}
    contract = json.loads((second / "contract.json").read_text())
    assert contract["passed"] and contract["checks"][0]["verdict"] == "pass"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_an_up_to_date_stage_is_skipped_and_force_reruns_it(spec, tmp_path: Path) -> None:
    _run(spec, tmp_path)
    assert [o.status for o in _run(spec, tmp_path)] == ["skipped", "skipped"]
    assert [o.status for o in _run(spec, tmp_path, force=True)] == ["ran", "ran"]


def test_a_changed_section_reruns_its_stage_and_what_reads_it(spec, tmp_path: Path) -> None:
    _run(spec, tmp_path)
    data = spec_data()
    data["train"]["epochs"] = 9  # only 'second' depends on train
    assert [o.status for o in _run(spec_from_dict(data), tmp_path)] == ["skipped", "ran"]
    data["seed"] = 8  # 'first' depends on the seed; 'second' reads a changed 'first'
    assert [o.status for o in _run(spec_from_dict(data), tmp_path)] == ["ran", "ran"]


def test_from_and_to_select_a_range(spec, tmp_path: Path) -> None:
    assert [o.stage for o in _run(spec, tmp_path, stop="first")] == ["first"]
    assert [o.stage for o in _run(spec, tmp_path, start="second")] == ["second"]
    with pytest.raises(RunError, match="unknown stage 'thrid'"):
        select_stages(TOY_STAGES, start="thrid")


def test_starting_after_a_missing_or_stale_upstream_is_refused(spec, tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"'first' .* missing or out of date"):
        _run(spec, tmp_path, start="second")
    _run(spec, tmp_path, stop="first")
    data = spec_data()
    data["seed"] = 99
    with pytest.raises(RunError, match="run with --from first"):
        _run(spec_from_dict(data), tmp_path, start="second")


def test_a_stage_that_raises_mid_write_leaves_nothing_at_its_final_path(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "raise")
    with pytest.raises(RuntimeError, match="broke mid-write"):
        _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    assert (run_dir / "first" / "lineage.json").is_file()
    assert not (run_dir / "second").exists()
    assert not list(run_dir.glob(".second.tmp-*"))


def test_a_rerun_that_fails_keeps_the_previous_output_intact(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(spec, tmp_path)
    before = (tmp_path / spec.generation / "second" / "second.txt").read_text()
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "raise")
    with pytest.raises(RuntimeError):
        _run(spec, tmp_path, force=True)
    assert (tmp_path / spec.generation / "second" / "second.txt").read_text() == before


def test_a_stage_killed_mid_write_leaves_nothing_and_the_rerun_completes(spec, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from conftest import spec_data; from toy_stages import TOY_STAGES; "
        "from darkhalo.runner import run_generation; from darkhalo.spec import spec_from_dict; "
        "run_generation(spec_from_dict(spec_data()), Path(sys.argv[1]), stages=TOY_STAGES)"
    )
    env = {
        **os.environ,
        "TOY_STAGE": "second",
        "TOY_BEHAVIOUR": "kill",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
    }
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=False)
    assert killed.returncode == -9
    run_dir = tmp_path / spec.generation
    assert not (run_dir / "second").exists()
    assert list(run_dir.glob(".second.tmp-*")), "the killed stage's temporary folder is left behind"
    outcomes = _run(spec, tmp_path)
    assert [o.status for o in outcomes] == ["skipped", "ran"]
    assert not list(run_dir.glob(".second.tmp-*"))
    uninterrupted = tmp_path / "clean"
    _run(spec, uninterrupted)
    assert (run_dir / "second" / "second.txt").read_bytes() == (
        uninterrupted / spec.generation / "second" / "second.txt"
    ).read_bytes()


def test_a_failed_contract_installs_nothing_and_keeps_the_output_aside(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "fail_contract")
    with pytest.raises(StageFailed) as info:
        _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    assert not (run_dir / "second").exists()
    assert info.value.kept.parent == run_dir / ".failed"
    contract = json.loads((info.value.kept / "contract.json").read_text())
    assert contract["passed"] is False and contract["checks"][0]["verdict"] == "FAIL"
    assert "L9" in str(info.value)


def test_a_waived_failure_is_installed_and_shows_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = spec_data()
    reason = "toy probe is not meaningful on a toy stage"
    data["invariants"] = {"L9": {"waiver": reason}}
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "fail_contract")
    spec = spec_from_dict(data)
    _run(spec, tmp_path)
    contract = json.loads((tmp_path / spec.generation / "second" / "contract.json").read_text())
    assert contract["passed"] is True
    assert contract["checks"][0]["verdict"] == "waived"
    assert contract["checks"][0]["waiver"] == reason


def test_a_killed_install_is_recovered_from_the_moved_aside_output(spec, tmp_path: Path) -> None:
    _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    (run_dir / "second").rename(run_dir / ".second.old-deadbeef")  # as if killed mid-install
    assert [o.status for o in _run(spec, tmp_path)] == ["skipped", "skipped"]
    assert (run_dir / "second" / "second.txt").is_file()


def test_two_runs_on_one_run_directory_are_refused(spec, tmp_path: Path) -> None:
    import fcntl

    run_dir = tmp_path / spec.generation
    run_dir.mkdir(parents=True)
    with (run_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(RunError, match="another darkhalo run"):
            _run(spec, tmp_path)


def test_scratch_survives_a_failed_attempt_and_is_removed_after_install(spec, tmp_path: Path) -> None:
    from darkhalo.stages import Stage

    stages = (Stage("resumable", (), ("train",), "toy_stages.resumable", "resumable toy"),)
    with pytest.raises(RuntimeError, match="first attempt fails"):
        run_generation(spec, tmp_path, stages=stages)
    run_dir = tmp_path / spec.generation
    assert list((run_dir / ".scratch" / "resumable").glob("*/attempts.txt"))
    run_generation(spec, tmp_path, stages=stages)
    assert (run_dir / "resumable" / "attempts.txt").read_text() == "2"
    assert not (run_dir / ".scratch" / "resumable").exists()


def test_scratch_of_another_spec_is_not_resumed(spec, tmp_path: Path) -> None:
    from darkhalo.stages import Stage

    stages = (Stage("resumable", (), ("train",), "toy_stages.resumable", "resumable toy"),)
    with pytest.raises(RuntimeError):
        run_generation(spec, tmp_path, stages=stages)
    data = spec_data()
    data["train"]["epochs"] = 11
    with pytest.raises(RuntimeError, match="first attempt fails"):
        run_generation(spec_from_dict(data), tmp_path, stages=stages)
