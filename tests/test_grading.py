"""Importing a grading round: each bad CSV is refused naming its file, row and field; the graded purity, its exact
interval and the mock sky's truth are counted right; ``darkhalo grades import`` prints them and exits 2 on bad input.
The page itself is driven in a real browser in tests/test_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from darkhalo import layout
from darkhalo.cli import app
from darkhalo.grading import GradesError, grade_page, import_grades
from data_contracts.candidates import Candidates, GradedCandidates
from data_contracts.schema import schema_finding

HEADER = "RELEASE,BRICKID,OBJID,rank,grade"


def candidates_frame(n: int, sky_lenses: tuple[int, ...] | None = ()) -> pd.DataFrame:
    """A valid Candidates frame of ``n`` hosts in rank order; ``sky_lenses`` are the ranks that are mock sky lenses
    (None: a real survey, no truth). Rank r has key (10000, 500 + r, 7 r); rank 2 is a known lens."""
    rng = np.random.default_rng(n)
    ranks = np.arange(1, n + 1)
    purity = np.linspace(0.9, 0.01, n)
    truth = pd.array([None] * n if sky_lenses is None else np.isin(ranks, sky_lenses), dtype="boolean")
    frame = pd.DataFrame(
        {
            "RELEASE": np.full(n, 10000, np.int16),
            "BRICKID": (500 + ranks).astype(np.int32),
            "OBJID": (7 * ranks).astype(np.int32),
            "RA": rng.uniform(0, 360, n),
            "DEC": rng.uniform(-30, 30, n),
            "score": np.linspace(5.0, -1.0, n),
            "rank": ranks.astype(np.int64),
            "completeness": np.linspace(0.2, 0.99, n),
            "fpr": np.linspace(1e-5, 0.5, n),
            "purity": purity,
            "known_lens": ranks == 2,
            "known_lens_name": np.where(ranks == 2, "DESI-123.4567+12.3456", ""),
            "sky_lens": truth,
        }
    )
    return Candidates.validate(frame)


def write_run(run_dir: Path, candidates: pd.DataFrame) -> Path:
    """A run folder holding ``candidates`` as its scan's candidates.parquet."""
    (run_dir / "scan").mkdir(parents=True)
    candidates.to_parquet(run_dir / "scan" / layout.CANDIDATES, index=False)
    return run_dir


def grades_csv(path: Path, grades: dict[int, str], lines: tuple[str, ...] = ()) -> Path:
    """A grades CSV as the page exports it: ``grades`` maps rank -> grade (keys as in candidates_frame)."""
    rows = [f"10000,{500 + r},{7 * r},{r},{g}" for r, g in grades.items()]
    path.write_text("\n".join([HEADER, *rows, *lines]) + "\n")
    return path


def test_graded_purity_interval_and_the_sky_truth(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", candidates_frame(20, sky_lenses=(1, 2, 6, 9, 15)))
    grades = {1: "A", 2: "not_lens", 3: "B", 4: "C", 5: "not_lens", 6: "B", 7: "A", 8: "not_lens", 9: "C"}
    result = import_grades(grades_csv(tmp_path / "grades.csv", grades), run)
    assert result.counts == {"A": 2, "B": 2, "C": 2, "not_lens": 3} and result.n_graded == 9
    assert result.purity == pytest.approx(4 / 9)
    # Clopper-Pearson 95 % for 4 of 9 (scipy.stats.binomtest(4, 9).proportion_ci())
    assert result.purity_interval == pytest.approx((0.1370, 0.7880), abs=1e-4)
    # graded sky lenses: ranks 1, 2, 6, 9 (15 is not graded); graded A or B among them: 1 and 6
    assert (result.sky_lenses_graded, result.sky_lenses_graded_lens, result.n_lens_grades) == (4, 2, 4)

    table = pd.read_parquet(run / "grades" / "grades.parquet")
    assert table["rank"].tolist() == list(grades) and table["grade"].tolist() == list(grades.values())
    assert table.loc[1, "known_lens_name"] == "DESI-123.4567+12.3456" and table.loc[1, "known_lens"]
    assert table["score"].tolist() == pytest.approx(np.linspace(5.0, -1.0, 20)[:9])
    assert table["sky_lens"].tolist() == [True, True, False, False, False, True, False, False, True]
    summary = json.loads((run / "grades" / "summary.json").read_text())
    assert summary["counts"] == result.counts and summary["n_lens_grades"] == 4
    assert summary["purity_interval"] == pytest.approx(list(result.purity_interval))


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [("grade", "maybe", "isin"), ("purity", 1.5, "less_than_or_equal_to"), ("rank", None, "in_rank_order")],
)
def test_the_written_grades_pass_their_contract_and_each_single_corruption_fails_it(
    tmp_path: Path, column: str, value: object, check: str
) -> None:
    run = write_run(tmp_path / "run", candidates_frame(8, sky_lenses=(2,)))
    import_grades(grades_csv(tmp_path / "grades.csv", {1: "A", 2: "B", 5: "not_lens"}), run)
    table = pd.read_parquet(run / "grades" / "grades.parquet")
    assert schema_finding(GradedCandidates, table, "graded_candidates").passed
    corrupt = table.iloc[::-1].reset_index(drop=True) if value is None else table.assign(**{column: value})
    finding = schema_finding(GradedCandidates, corrupt, "graded_candidates")
    assert not finding.passed and {row["check"].split("(")[0] for row in finding.evidence} == {check}


def test_a_real_survey_has_no_truth_to_count(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", candidates_frame(5, sky_lenses=None))
    result = import_grades(grades_csv(tmp_path / "grades.csv", {3: "A", 1: "not_lens"}), run)
    assert result.sky_lenses_graded is None and result.sky_lenses_graded_lens is None
    assert result.purity == 0.5 and result.purity_interval == pytest.approx((0.01258, 0.98742), abs=1e-5)
    assert pd.read_parquet(run / "grades" / "grades.parquet")["rank"].tolist() == [1, 3]  # rank order


@pytest.mark.parametrize(
    ("grades", "lines", "message"),
    [
        ({1: "A", 2: "D"}, (), "row 2 (line 3), grade: 'D' is not one of A, B, C, not_lens"),
        ({1: "a"}, (), "row 1 (line 2), grade: 'a' is not one of"),
        ({1: "A"}, ("10000,999,7,3,B",), "row 2 (line 3), RELEASE/BRICKID/OBJID: 10000_999_7 is not among"),
        ({1: "A"}, ("10000,502,14,3,B",), "row 2 (line 3), rank: 3 but candidate 10000_502_14 is rank 2"),
        ({1: "A", 2: "B"}, ("10000,501,7,1,C",), "row 3 (line 4), RELEASE/BRICKID/OBJID: 10000_501_7 graded twice"),
        ({1: "A"}, ("10000,502,x,2,B",), "row 2 (line 3), OBJID: 'x' is not an integer"),
        ({1: "A"}, ("10000,502,,2,B",), "row 2 (line 3), OBJID: '' is not an integer"),
        ({}, (), "no grades"),
    ],
    ids=["grade", "lower-case", "unknown key", "rank", "twice", "not an integer", "empty", "empty file"],
)
def test_a_bad_row_is_named(tmp_path: Path, grades: dict[int, str], lines: tuple[str, ...], message: str) -> None:
    run = write_run(tmp_path / "run", candidates_frame(5))
    path = grades_csv(tmp_path / "grades.csv", grades, lines)
    with pytest.raises(GradesError, match=re.escape(f"{path}: {message}")):
        import_grades(path, run)
    assert not (run / "grades").exists()


def test_an_unreadable_file_or_a_missing_column_is_named(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", candidates_frame(5))
    with pytest.raises(GradesError, match=re.escape(f"{tmp_path / 'absent.csv'}: unreadable grades CSV")):
        import_grades(tmp_path / "absent.csv", run)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(GradesError, match=re.escape(f"{tmp_path / 'binary.csv'}: unreadable grades CSV")):
        import_grades(tmp_path / "binary.csv", run)
    (tmp_path / "short.csv").write_text("RELEASE,BRICKID,OBJID,grade,note\n10000,501,7,A,x\n")
    with pytest.raises(GradesError, match=re.escape("missing ['rank'], unexpected ['note']")):
        import_grades(tmp_path / "short.csv", run)


def test_a_run_without_a_scan_names_the_stage(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"candidates.parquet: missing \(did the scan stage run\?\)"):
        import_grades(grades_csv(tmp_path / "grades.csv", {1: "A"}), tmp_path)


def test_the_page_refuses_stamps_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=re.escape("stamps must be (3, 3, S, S), one per candidate; got (3, 3, 8, 9)")):
        grade_page(candidates_frame(3), np.zeros((3, 3, 8, 9), np.float32), "t")


def test_the_cli_prints_the_summary_and_exits_2_on_bad_input(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", candidates_frame(6, sky_lenses=(1,)))
    good = grades_csv(tmp_path / "grades.csv", {1: "A", 2: "B", 3: "not_lens"})
    done = CliRunner().invoke(app, ["grades", "import", str(good), str(run)])
    assert done.exit_code == 0, done.output
    assert "graded purity (A or B): 2/3 = 0.667" in done.output
    assert "1 of 2 graded A or B are sky lenses; 1 of 1 graded sky lenses were graded A or B" in done.output
    bad = grades_csv(tmp_path / "bad.csv", {1: "maybe"})
    failed = CliRunner().invoke(app, ["grades", "import", str(bad), str(run)])
    assert failed.exit_code == 2 and "row 1 (line 2), grade: 'maybe'" in failed.output
    missing = CliRunner().invoke(app, ["grades", "import", str(good), str(tmp_path)])
    assert missing.exit_code == 2 and "did the scan stage run?" in missing.output
