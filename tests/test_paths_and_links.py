"""Paths are literal and links are never followed out of a run folder.

A runs folder named with glob characters (crash_run.LITERAL_RUNS) sits beside a decoy that the glob would match
(crash_run.DECOY_RUNS): reads take only the real folder's files and errors name it. Links at each place a run writes or
deletes (a stage folder, a file inside one, ``.scratch``, ``.failed``, ``grades``, a killed run's leftovers) point
at a canary folder outside the run; after runs, forced re-runs, killed runs and leftover cleanup the canary holds
exactly what it held before, and a link that would take a write outside is refused, naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, spec_data
from crash_run import DECOY_RUNS, LITERAL_RUNS
from test_grading import candidates_frame, grades_csv, write_run
from toy_stages import TOY_STAGES

from darkhalo import layout, tables
from darkhalo.grading import import_grades
from darkhalo.removal import OutsideRunFolder, make_folder, remove_tree
from darkhalo.runner import run_generation
from darkhalo.spec import spec_from_dict
from darkhalo.stages import Stage

RESUMABLE = (Stage("resumable", (), ("train",), "toy_stages.resumable", "resumable toy"),)


@pytest.fixture
def spec():
    return spec_from_dict(spec_data())


@pytest.fixture
def canary(tmp_path: Path):
    """A folder outside every run (a file, a sub-folder with a file) and a check that it is exactly as made."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("canary\n")
    (outside / "sub" / "data.bin").write_bytes(b"\x00canary data")
    before = _listing(outside)

    def intact() -> bool:
        return _listing(outside) == before

    intact.path = outside
    return intact


def _listing(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` by relative path: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _run(spec, root: Path, **kwargs):
    return run_generation(spec, root, stages=TOY_STAGES, **kwargs)


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())


def test_a_stage_folder_linked_outside_is_replaced_by_a_forced_rerun_and_the_outside_kept(
    spec, tmp_path: Path, canary
) -> None:
    """The user moved ``second`` to a bigger disk and linked it: it is read through the link, and a forced
    re-run installs a real folder in its place, unlinking the link."""
    _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    (run_dir / "second").rename(canary.path / "second")
    _link(run_dir / "second", canary.path / "second")
    before = _listing(canary.path)
    assert [o.status for o in _run(spec, tmp_path)] == ["skipped", "skipped"]
    assert [o.status for o in _run(spec, tmp_path, force=True)] == ["ran", "ran"]
    assert not (run_dir / "second").is_symlink() and (run_dir / "second" / "second.txt").is_file()
    assert _listing(canary.path) == before
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == [".lock"]


def test_links_inside_a_stage_folder_are_unlinked_with_it(spec, tmp_path: Path, canary) -> None:
    _run(spec, tmp_path)
    first = tmp_path / spec.generation / "first"
    _link(first / "extra.txt", canary.path / "keep.txt")
    _link(first / "more", canary.path / "sub")
    _run(spec, tmp_path, force=True)
    assert not (first / "extra.txt").exists() and not (first / "more").exists()
    assert canary()


@pytest.mark.parametrize("linked", [".scratch", ".scratch/resumable"])
def test_scratch_linked_outside_is_refused_and_nothing_there_is_deleted(
    spec, tmp_path: Path, canary, linked: str
) -> None:
    """Another key's scratch would be removed: through a link it would be outside data, so the run refuses."""
    (canary.path / "resumable" / "0123456789abcdef").mkdir(parents=True)
    (canary.path / "resumable" / "0123456789abcdef" / "attempts.txt").write_text("1")
    before = _listing(canary.path)
    run_dir = tmp_path / spec.generation
    _link(run_dir / linked, canary.path if linked == ".scratch" else canary.path / "resumable")
    with pytest.raises(OutsideRunFolder, match=r"\.scratch.* outside the run folder"):
        run_generation(spec, tmp_path, stages=RESUMABLE, force=True)
    assert _listing(canary.path) == before


def test_a_failed_output_is_not_moved_through_a_failed_folder_link(
    spec, tmp_path: Path, canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_STAGE", "second")
    monkeypatch.setenv("TOY_BEHAVIOUR", "fail_contract")
    _link(tmp_path / spec.generation / ".failed", canary.path)
    with pytest.raises(OutsideRunFolder, match=r"\.failed leads through a symbolic link"):
        _run(spec, tmp_path)
    assert canary()


@pytest.mark.parametrize("final_there", [True, False])
def test_a_killed_installs_leftover_link_is_unlinked_or_put_back(
    spec, tmp_path: Path, canary, final_there: bool
) -> None:
    """Killed after moving a linked stage folder aside: with the new output installed the link is unlinked,
    without it the link is put back; the outside is untouched either way. A temporary folder left as a link
    is unlinked too."""
    _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    _link(run_dir / ".second.old-deadbeef", canary.path)
    _link(run_dir / ".first.tmp-1-deadbeef", canary.path / "sub")
    if not final_there:
        (run_dir / "second").rename(tmp_path / "second-aside")
    _run(spec, tmp_path, stop="first")
    assert not [p.name for p in run_dir.iterdir() if ".old-" in p.name or ".tmp-" in p.name]
    assert (run_dir / "second").is_symlink() != final_there
    assert canary()


def test_a_run_killed_in_a_linked_stage_folder_is_cleaned_up_without_touching_the_outside(
    spec, tmp_path: Path, canary
) -> None:
    _run(spec, tmp_path)
    run_dir = tmp_path / spec.generation
    (run_dir / "second").rename(canary.path / "second")
    _link(run_dir / "second", canary.path / "second")
    before = _listing(canary.path)
    script = (
        "import sys; from pathlib import Path; from conftest import spec_data; from toy_stages import TOY_STAGES; "
        "from darkhalo.runner import run_generation; from darkhalo.spec import spec_from_dict; "
        "run_generation(spec_from_dict(spec_data()), Path(sys.argv[1]), stages=TOY_STAGES, force=True)"
    )
    env = {**os.environ, "TOY_STAGE": "second", "TOY_BEHAVIOUR": "kill"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    assert subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=False).returncode == -9
    assert list(run_dir.glob(".second.tmp-*")), "the killed stage's temporary folder is left behind"
    assert [o.status for o in _run(spec, tmp_path, force=True)] == ["ran", "ran"]
    assert not (run_dir / "second").is_symlink() and not list(run_dir.glob(".second.*"))
    assert _listing(canary.path) == before


def test_grades_are_not_written_through_a_link_leading_outside(tmp_path: Path, canary) -> None:
    run = write_run(tmp_path / "run", candidates_frame(4))
    _link(run / layout.GRADES_DIR, canary.path)
    with pytest.raises(OutsideRunFolder, match="grades"):
        import_grades(grades_csv(tmp_path / "grades.csv", {1: "A"}), run)
    assert canary()


def test_remove_tree_refuses_a_folder_reached_through_a_link_and_the_run_folder_itself(tmp_path: Path, canary) -> None:
    run_dir = tmp_path / "run"
    _link(run_dir / "elsewhere", canary.path)
    with pytest.raises(OutsideRunFolder, match="elsewhere leads through a symbolic link"):
        remove_tree(run_dir / "elsewhere" / "sub", run_dir)
    with pytest.raises(OutsideRunFolder, match="the run folder itself"):
        remove_tree(run_dir, run_dir)
    with pytest.raises(OutsideRunFolder, match="not inside the run folder"):
        remove_tree(canary.path / "sub", run_dir)
    remove_tree(run_dir / "elsewhere", run_dir)
    assert not os.path.lexists(run_dir / "elsewhere") and canary()


def test_make_folder_refuses_a_link_leading_outside_and_accepts_one_inside(tmp_path: Path, canary) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "real").mkdir(parents=True)
    _link(run_dir / "inside", run_dir / "real")
    assert make_folder(run_dir / "inside" / "new", run_dir).is_dir()
    _link(run_dir / "out", canary.path)
    with pytest.raises(OutsideRunFolder, match="out leads through a symbolic link"):
        make_folder(run_dir / "out" / "new", run_dir)
    assert canary()


def _part(folder: Path, value: int) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"v": [value]}), folder / "part-00000.parquet")
    return folder / "part-00000.parquet"


def test_artifact_lookups_take_a_globby_runs_folder_literally(tmp_path: Path) -> None:
    """The decoy holds the parts that a pattern would find; the literal folder holds none, or a broken one."""
    stage = tmp_path / LITERAL_RUNS / "gen" / "survey"
    _part(tmp_path / DECOY_RUNS / "gen" / "survey" / layout.CATALOG, 2)
    (stage / layout.CATALOG).mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        layout.parts(stage, layout.CATALOG)
    assert str(stage / layout.CATALOG) in str(info.value)
    broken = stage / layout.CATALOG / "part-00000.parquet"
    broken.write_bytes(b"PAR1 truncated")
    with pytest.raises(tables.ParquetFileError) as info:
        tables.read_table(layout.parts(stage, layout.CATALOG)[0])
    assert str(broken) in str(info.value)


@pytest.mark.spark
def test_a_spark_read_takes_a_globby_path_literally(spark, tmp_path: Path) -> None:
    """Hadoop globs a plain path string (the decoy is read); sparkio.read_parquet reads the file it names."""
    from darkhalo.sparkio import read_parquet

    part = _part(tmp_path / LITERAL_RUNS / "t", 1)
    _part(tmp_path / DECOY_RUNS / "t", 2)
    assert [r.v for r in spark.read.parquet(str(part)).collect()] == [2]
    assert [r.v for r in read_parquet(spark, [part]).collect()] == [1]
