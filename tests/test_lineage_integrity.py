"""Lineage that proves what a stage read and wrote, and the audit of the whole chain.

Each test corrupts or changes exactly one thing and checks that exactly the intended check fires: an installed
output whose files differ from its lineage.json (an edited byte, a swapped model, a hand-edited contract.json, an
added or removed file) re-runs its stage, naming the file, or refuses a run that would read it; a stage's key
covers the code it runs (and its scratch with it) and the files outside the run it reads; the audit of a run
folder judges the chain: mixed lineages, failed stages, missing ones, and a clean chain.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path

import pytest
import torch
from conftest import REAL, spec_data, with_small_real_sets
from rich.console import Console
from toy_stages import TOY_STAGES
from typer.testing import CliRunner

from darkhalo.audit import judges
from darkhalo.audit.audit import audit_run, check_chain
from darkhalo.cli import app
from darkhalo.code_digest import module_files
from darkhalo.errors import EXIT_INCOMPLETE, EXIT_OK
from darkhalo.runner import RunError, StageFailed, run_generation
from darkhalo.spec import GenerationSpec, load_spec, spec_from_dict
from darkhalo.stages import STAGES, Stage
from darkhalo.stages import evaluate as evaluate_stage
from darkhalo.stages import inject as inject_stage
from darkhalo.stages import scan as scan_stage

SYNTHETIC_INJECT = Stage("inject", (), ("seed", "stamps"), "toy_stages.synthetic_inject", "synthetic stamps")
TRAIN = next(s for s in STAGES if s.name == "train")


@pytest.fixture
def spec() -> GenerationSpec:
    return spec_from_dict(spec_data())


def _run(spec: GenerationSpec, root: Path, stages=TOY_STAGES, **kwargs) -> tuple[list[str], str]:
    """The stages' statuses and what the console printed."""
    console = Console(file=io.StringIO(), width=400)
    outcomes = run_generation(spec, root, stages=stages, console=console, **kwargs)
    return [o.status for o in outcomes], console.file.getvalue()


def _statuses(run_dir: Path, stages=TOY_STAGES) -> dict[str, str]:
    checks, _ = check_chain(run_dir, spec_from_dict(spec_data()), stages)
    return {c.stage: c.status for c in checks}


# --- outputs verified before they are trusted ------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _hand_edit_contract(path: Path) -> None:
    record = json.loads(path.read_text())
    record["measured"] = {"note": "looks fine to me"}
    path.write_text(json.dumps(record))


#: One corruption of the installed 'second' output each, and the file the re-run must name.
CORRUPTIONS = {
    "an edited byte": (lambda d: _flip_byte(d / "second.txt"), "second.txt"),
    "a hand-edited contract.json": (lambda d: _hand_edit_contract(d / "contract.json"), "contract.json"),
    "an added file": (lambda d: (d / "notes.txt").write_text("added by hand\n"), "notes.txt"),
    "a removed file": (lambda d: (d / "second.txt").unlink(), "second.txt"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_corrupted_output_is_inconsistent_and_reruns_naming_the_file(spec, tmp_path: Path, name: str) -> None:
    _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    before = (run_dir / "second" / "second.txt").read_bytes()
    corrupt, named = CORRUPTIONS[name]
    corrupt(run_dir / "second")
    checks, _ = check_chain(run_dir, spec, TOY_STAGES)
    assert [(c.stage, c.status) for c in checks] == [("first", "ok"), ("second", "inconsistent")]
    assert len(checks[1].problems) == 1 and named in checks[1].problems[0]
    statuses, printed = _run(spec, tmp_path)
    assert statuses == ["skipped", "ran"]
    assert "second: re-running" in printed and named in printed
    assert (run_dir / "second" / "second.txt").read_bytes() == before
    assert _statuses(run_dir) == {"first": "ok", "second": "ok"}


def test_an_edited_stamp_shard_byte_reruns_inject_naming_the_shard(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(judges.JUDGES, "inject")  # synthetic stamps have no manifest or cutouts to judge against
    _run(spec, tmp_path, stages=(SYNTHETIC_INJECT,))
    shard = tmp_path / spec.generation / "inject" / "stamps" / "part-00001.parquet"
    before = shard.read_bytes()
    _flip_byte(shard)
    statuses, printed = _run(spec, tmp_path, stages=(SYNTHETIC_INJECT,))
    assert statuses == ["ran"] and "stamps/part-00001.parquet differs" in printed
    assert shard.read_bytes() == before


def test_a_run_starting_after_a_tampered_upstream_refuses_naming_the_file_and_stage(spec, tmp_path: Path) -> None:
    _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    (run_dir / "first" / "first.txt").write_text("first seed=8\n")
    before = (run_dir / "second" / "lineage.json").read_text()
    with pytest.raises(RunError, match=r"stage 'first' .*first/first\.txt differs"):
        _run(spec, tmp_path, start="second")
    assert (run_dir / "second" / "lineage.json").read_text() == before  # nothing ran on the tampered input


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder with synthetic stamps and a model trained on them for one epoch (~10 s on a CPU)."""
    data = spec_data()
    data["stamps"] = {"size": 32}
    data["train"].update(epochs=1, batch_size=32)
    data["engine"] = {"device": "cpu"}
    spec = spec_from_dict(data)
    root = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on this shared 2-core machine mostly wait on each other
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.delitem(judges.JUDGES, "inject")
            run_generation(spec, root, stages=(SYNTHETIC_INJECT, TRAIN), console=Console(quiet=True))
    finally:
        torch.set_num_threads(threads)
    return root / spec.generation


@pytest.mark.parametrize("swapped", ["model.pt", "checkpoints/epoch-001.pt"])
def test_a_swapped_model_refuses_the_stage_that_reads_it(trained: Path, tmp_path: Path, swapped: str) -> None:
    run_dir = tmp_path / trained.name
    shutil.copytree(trained, run_dir)
    other = run_dir / "train" / ("checkpoints/epoch-001.pt" if swapped == "model.pt" else "model.pt")
    shutil.copyfile(other, run_dir / "train" / swapped)  # a valid torch file, not the one the stage wrote
    spec = load_spec(run_dir / "spec.yaml")
    reader = Stage("reader", ("train",), ("seed",), "toy_stages.first", "reads the model")
    with pytest.raises(RunError, match=rf"stage 'train' .*train/{swapped} differs"):
        run_generation(spec, tmp_path, stages=(SYNTHETIC_INJECT, TRAIN, reader), start="reader")


# --- the code and the external files in the key ----------------------------------------------------------


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package of toy stages, named afresh per test (so no import cache carries over): ``stage`` runs
    ``helper`` (imported inside ``run``, relatively); ``unrelated`` is imported by nothing; ``typing_only`` only
    under ``if TYPE_CHECKING:``; ``resumable`` counts attempts in its scratch; ``reads_file`` reads a file named by
    the environment outside the run."""
    package = tmp_path / f"lineage_toys_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    files = {
        "__init__.py": "",
        "helper.py": "def text():\n    return 'helper v1\\n'\n",
        "unrelated.py": "VALUE = 1\n",
        "typing_only.py": "VALUE = 1\n",
        "stage.py": (
            "from typing import TYPE_CHECKING\n"
            "from darkhalo.stages.base import StageResult\n"
            "if TYPE_CHECKING:\n    from . import typing_only\n"
            "def run(ctx):\n"
            "    from .helper import text\n"
            "    (ctx.out / 'out.txt').write_text(text())\n"
            "    return StageResult(rows={'out': 1})\n"
        ),
        "resumable.py": (
            "def run(ctx):\n"
            "    from . import helper  # noqa: F401  the code this stage runs\n"
            "    from toy_stages import run_counting\n"
            "    return run_counting(ctx)\n"
        ),
        "reads_file.py": (
            "import os\nfrom pathlib import Path\n"
            "from darkhalo.stages.base import StageResult\n"
            "def external_inputs(spec):\n    return [Path(os.environ['LINEAGE_TOY_INPUT'])]\n"
            "def run(ctx):\n"
            "    (ctx.out / 'out.txt').write_text('read\\n')\n"
            "    return StageResult(rows={'out': 1})\n"
        ),
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


def _toy(package: Path, module: str) -> tuple[Stage, ...]:
    return (Stage(module, (), ("seed",), f"{package.name}.{module}", f"toy {module}"),)


def test_the_code_of_a_stage_is_its_module_and_what_it_runs(toy_package: Path) -> None:
    name = toy_package.name
    assert set(module_files(f"{name}.stage")) >= {name, f"{name}.stage", f"{name}.helper", "darkhalo.stages.base"}
    assert not {f"{name}.unrelated", f"{name}.typing_only"} & set(module_files(f"{name}.stage"))


def test_a_fixed_bug_in_a_module_a_stage_runs_reruns_it_and_an_unrelated_edit_does_not(
    spec, tmp_path: Path, toy_package: Path
) -> None:
    stages, root = _toy(toy_package, "stage"), tmp_path / "runs"
    _run(spec, root, stages=stages)
    (toy_package / "unrelated.py").write_text("VALUE = 2\n")
    (toy_package / "typing_only.py").write_text("VALUE = 2\n")
    assert _run(spec, root, stages=stages)[0] == ["skipped"]
    (toy_package / "helper.py").write_text("def text():\n    return 'helper v2, fixed\\n'\n")
    statuses, printed = _run(spec, root, stages=stages)
    assert statuses == ["ran"] and "its code changed" in printed


def test_scratch_made_by_other_code_is_not_resumed(spec, tmp_path: Path, toy_package: Path) -> None:
    stages, root = _toy(toy_package, "resumable"), tmp_path / "runs"
    with pytest.raises(RuntimeError, match="first attempt fails"):
        _run(spec, root, stages=stages)
    (toy_package / "helper.py").write_text("def text():\n    return 'helper v2\\n'\n")
    with pytest.raises(RuntimeError, match="first attempt fails"):  # the old attempt's count is not resumed
        _run(spec, root, stages=stages)
    _run(spec, root, stages=stages)  # same code again: this attempt resumes the last one
    assert (root / spec.generation / "resumable" / "attempts.txt").read_text() == "2"


@pytest.mark.parametrize("change", ["a changed file", "an added file", "a removed file"])
def test_a_changed_external_folder_reruns_the_stage_that_reads_it(
    spec, tmp_path: Path, toy_package: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    folder = tmp_path / "psfex"
    folder.mkdir()
    (folder / "a_ooi_g_v1.fits").write_bytes(b"model g")
    (folder / "a_ooi_r_v1.fits").write_bytes(b"model r")
    monkeypatch.setenv("LINEAGE_TOY_INPUT", str(folder))
    stages, root = _toy(toy_package, "reads_file"), tmp_path / "runs"
    _run(spec, root, stages=stages)
    assert _run(spec, root, stages=stages)[0] == ["skipped"]
    {
        "a changed file": lambda: (folder / "a_ooi_g_v1.fits").write_bytes(b"model G"),
        "an added file": lambda: (folder / "a_ooi_z_v1.fits").write_bytes(b"model z"),
        "a removed file": lambda: (folder / "a_ooi_r_v1.fits").unlink(),
    }[change]()
    statuses, printed = _run(spec, root, stages=stages)
    assert statuses == ["ran"] and f"the file(s) {folder} changed" in printed


def test_the_stages_declare_the_files_outside_the_run_they_read() -> None:
    data = with_small_real_sets(spec_data("real_dr10_smoke"))
    data["psf"] = {"model": "pixelized", "psfex_dir": str(REAL / "psf" / "psfex")}
    spec = spec_from_dict(data)
    cutouts = Path("runs/real_dr10_cutouts/cutouts")
    assert inject_stage.external_inputs(spec) == [cutouts, REAL / "psf" / "psfex"]
    assert scan_stage.external_inputs(spec) == [cutouts]
    lenses = REAL / "ps1_sled_lenses"
    assert evaluate_stage.external_inputs(spec)[:3] == [
        lenses / "galaxies_sub6.yaml",
        lenses / "ps1_sled_lensed_galaxies_sub6.npz",
        lenses / "galaxies_sub6_index.csv",
    ]


# --- the audit of the whole chain -------------------------------------------------------------------


def test_a_folder_of_mixed_lineages_audits_inconsistent(spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(spec, tmp_path)
    data = spec_data()
    data["seed"] = 8
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "raise")  # the re-run installs a new 'first', then 'second' breaks
    with pytest.raises(RuntimeError, match="broke mid-write"):
        _run(spec_from_dict(data), tmp_path)
    result = audit_run(tmp_path / spec.generation, stages=TOY_STAGES)
    first, second = result.chain
    assert (first.status, second.status) == ("ok", "inconsistent")
    assert "made from another output of 'first'" in second.detail()
    assert result.verdict == "inconsistent" and result.exit_code == EXIT_INCOMPLETE


def test_a_stage_that_failed_after_its_install_audits_failed(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(spec, tmp_path)
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "fail_contract")
    with pytest.raises(StageFailed) as failure:
        _run(spec, tmp_path, force=True)
    result = audit_run(tmp_path / spec.generation, stages=TOY_STAGES)
    first, second = result.chain
    assert (first.status, second.status) == ("ok", "failed") and second.installed and not second.problems
    assert str(failure.value.kept) in second.failed_attempt and "(L9)" in second.failed_attempt
    assert not result.complete and result.exit_code == EXIT_INCOMPLETE


def test_a_failed_attempt_at_another_spec_is_history_not_a_failure(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(spec, tmp_path)
    data = spec_data()
    data["train"]["epochs"] = 9
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "fail_contract")
    with pytest.raises(StageFailed):
        _run(spec_from_dict(data), tmp_path)
    monkeypatch.delenv("TOY_BEHAVIOUR")
    assert _run(spec, tmp_path)[0] == ["skipped", "skipped"]  # back to the spec the installed outputs were made for
    assert _statuses(tmp_path / spec.generation) == {"first": "ok", "second": "ok"}


def test_an_empty_folder_with_a_spec_is_incomplete_never_a_pass(spec, tmp_path: Path) -> None:
    run_dir = tmp_path / spec.generation
    run_dir.mkdir()
    (run_dir / "spec.yaml").write_text(spec.to_yaml())
    cli = CliRunner().invoke(app, ["audit", str(run_dir)])
    assert cli.exit_code == EXIT_INCOMPLETE, cli.output
    written = json.loads((run_dir / "audit.json").read_text())
    assert written["verdict"] == "incomplete" and written["failed"] == []
    assert {c["status"] for c in written["chain"]} == {"missing"}
    assert [c["stage"] for c in written["chain"]] == [s.name for s in STAGES if s.name != "audit"]


def test_a_clean_complete_chain_audits_ok(spec, tmp_path: Path) -> None:
    _run(spec, tmp_path)
    result = audit_run(tmp_path / spec.generation, stages=TOY_STAGES)
    assert [c.status for c in result.chain] == ["ok", "ok"]
    assert result.verdict == "pass" and result.exit_code == EXIT_OK
