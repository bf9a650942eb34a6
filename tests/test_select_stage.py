"""The select stage end to end: edge validation (GE), quarantine or failure, SQL, known lenses, contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from catalogs import synthetic_catalog, write_catalog
from conftest import REAL, spec_data
from rich.console import Console

from darkhalo import layout
from darkhalo.audit.judges import judge_artifact
from darkhalo.runner import StageFailed, run_generation
from darkhalo.spec import V3ColorRelaxed, spec_from_dict
from darkhalo.stages import STAGES, Stage, StageContext
from darkhalo.stages.select import read_catalog_parts, run
from darkhalo.surveys.columns import KEY, SWEEP_COLUMNS
from darkhalo.surveys.known_lenses import BUNDLED, load_known_lenses
from darkhalo.surveys.legacy import ingest_catalogs
from data_contracts import reconciliation
from data_contracts.parent_sample import cuts_mask

pytestmark = pytest.mark.spark

N = 400
V3 = V3ColorRelaxed(variant="v3_color_relaxed").model_dump()

#: One corruption per bad-row kind: (row, column, value) and the reason the suite must give.
CORRUPTIONS = {
    "nan_flux": (3, "FLUX_R", np.nan, "FLUX_R: expect_column_values_to_not_be_null"),
    "inf_flux": (5, "FLUX_W1", np.inf, "FLUX_W1: expect_column_values_to_be_between"),
    "negative_ivar": (7, "FLUX_IVAR_Z", -1.0, "FLUX_IVAR_Z: expect_column_values_to_be_between"),
    "mw_zero": (11, "MW_TRANSMISSION_G", 0.0, "MW_TRANSMISSION_G: expect_column_values_to_be_between"),
    "mw_above_one": (13, "MW_TRANSMISSION_W1", 1.2, "MW_TRANSMISSION_W1: expect_column_values_to_be_between"),
    "psfsize_zero": (17, "PSFSIZE_R", 0.0, "PSFSIZE_R: expect_column_values_to_be_between"),
    "psfsize_negative": (19, "PSFSIZE_Z", -0.5, "PSFSIZE_Z: expect_column_values_to_be_between"),
    "bad_type": (23, "TYPE", "GAL", "TYPE: expect_column_values_to_be_in_set"),
}


def _context(tmp_path: Path, catalog: pd.DataFrame, **selection) -> StageContext:
    data = spec_data()
    data["selection"] = {"variant": "v3_color_relaxed", **selection}
    run_dir = tmp_path / "run"
    write_catalog(catalog, run_dir / "survey" / "catalog", parts=2)
    out = run_dir / ".select.tmp"
    out.mkdir()
    return StageContext(spec_from_dict(data), run_dir, out, run_dir / ".scratch", Console(quiet=True))


def _corrupt(catalog: pd.DataFrame, kinds: list[str]) -> pd.DataFrame:
    catalog = catalog.copy()
    for kind in kinds:
        row, column, value, _ = CORRUPTIONS[kind]
        catalog.loc[row, column] = value
    return catalog


def _parent(ctx: StageContext) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((ctx.out / "parent_sample").glob("part-*.parquet"))])


def test_a_clean_catalog_is_selected_with_validation_docs_and_contract(tmp_path: Path) -> None:
    catalog = synthetic_catalog(N, seed=5)
    ctx = _context(tmp_path, catalog)
    result = run(ctx)
    findings = [*result.findings, *judge_artifact("select", ctx.out, ctx.run_dir, ctx.spec)]  # the stage and its gate
    assert [f.verdict for f in findings] == ["pass", "pass", "pass"]
    assert [f.id for f in findings] == ["edge:survey_catalog", "select:reconciliation", "schema:parent_sample"]
    assert json.loads((ctx.out / "counts.json").read_text())["input"] == N
    parent = _parent(ctx)
    expected = catalog[cuts_mask(catalog, ctx.spec.selection.model_dump())]
    assert sorted(parent["OBJID"]) == sorted(expected["OBJID"])
    assert list(parent.columns) == [*SWEEP_COLUMNS, "KNOWN_LENS", "KNOWN_LENS_NAME"]
    assert {c: str(parent[c].dtype) for c in SWEEP_COLUMNS} == {c: str(catalog[c].dtype) for c in SWEEP_COLUMNS}
    m = result.measured
    assert (m["input"], m["quarantined"], m["selected"]) == (N, 0, len(expected))
    assert m["input"] == m["selected"] + m["rejected_by_cuts"] + m["quarantined"]
    assert result.rows == {"catalog": N, "quarantine": 0, "parent_sample": len(expected)}
    assert not (ctx.out / "quarantine.parquet").exists()
    record = json.loads((ctx.out / "validation" / "validation_result.json").read_text())
    assert record["success"] is True and len(record["results"]) == m["edge_expectations"]
    assert (ctx.out / "validation" / "data_docs" / "index.html").is_file()
    assert list((ctx.out / "validation" / "data_docs" / "validations").rglob("*.html"))


def test_each_bad_row_kind_is_quarantined_with_only_its_own_reason(tmp_path: Path) -> None:
    catalog = _corrupt(synthetic_catalog(N, seed=6), list(CORRUPTIONS))
    catalog.loc[29, ["BRICKID", "OBJID"]] = catalog.loc[31, ["BRICKID", "OBJID"]].to_numpy()  # a repeated key
    ctx = _context(tmp_path, catalog, quarantine_bad_rows=True)
    result = run(ctx)
    findings = [*result.findings, *judge_artifact("select", ctx.out, ctx.run_dir, ctx.spec)]
    assert [f.verdict for f in findings] == ["pass", "pass", "pass"]
    quarantine = pd.read_parquet(ctx.out / "quarantine.parquet")
    reasons = dict(zip(quarantine["OBJID"], quarantine["REASON"], strict=True))
    expected = {int(catalog.at[row, "OBJID"]): reason for row, _, _, reason in CORRUPTIONS.values()}
    unique_reason = "RELEASE+BRICKID+OBJID: expect_compound_columns_to_be_unique"
    assert reasons == {**expected, int(catalog.at[31, "OBJID"]): unique_reason}
    assert len(quarantine) == len(CORRUPTIONS) + 2  # both rows sharing a key
    assert set(quarantine["SOURCE_FILE"]) == {"part-00000.parquet"}
    assert quarantine.loc[quarantine["OBJID"] == catalog.at[3, "OBJID"], "SOURCE_ROW"].item() == 3
    m = result.measured
    assert m["quarantined"] == len(CORRUPTIONS) + 2
    assert m["input"] == m["selected"] + m["rejected_by_cuts"] + m["quarantined"] == N
    assert not set(_parent(ctx)["OBJID"]) & set(quarantine["OBJID"])


@pytest.mark.parametrize("kind", ["nan_flux", "bad_type"])
def test_without_quarantine_the_stage_fails_naming_file_row_and_field(tmp_path: Path, kind: str) -> None:
    ctx = _context(tmp_path, _corrupt(synthetic_catalog(N, seed=7), [kind]))
    result = run(ctx)
    (finding,) = result.findings
    row, _, _, reason = CORRUPTIONS[kind]
    assert finding.blocking and finding.n_offending == 1
    assert f"part-00000.parquet row {row}: {reason}" in finding.title
    assert finding.evidence[0]["file"] == "part-00000.parquet" and finding.evidence[0]["row"] == row
    assert not (ctx.out / "parent_sample").exists()
    assert (ctx.out / "validation" / "data_docs" / "index.html").is_file()  # kept for inspection


def test_a_missing_column_condemns_the_catalog_even_with_quarantine(tmp_path: Path) -> None:
    catalog = synthetic_catalog(N, seed=8).drop(columns=["PSFSIZE_R"])
    ctx = _context(tmp_path, catalog, quarantine_bad_rows=True)
    (finding,) = run(ctx).findings
    assert finding.blocking
    assert "PSFSIZE_R: expect_column_to_exist" in finding.title


def test_hosts_near_a_known_lens_are_flagged_with_its_name(tmp_path: Path) -> None:
    catalog = synthetic_catalog(N, seed=9)
    selected = np.flatnonzero(cuts_mask(catalog, V3))
    near, far = selected[:2]
    lens = load_known_lenses(BUNDLED).iloc[100]
    catalog.loc[near, ["RA", "DEC"]] = [lens["ra"], lens["dec"] + 2.0 / 3600]  # 2" away
    catalog.loc[far, ["RA", "DEC"]] = [lens["ra"], lens["dec"] + 8.0 / 3600]  # 8" away
    ctx = _context(tmp_path, catalog, known_lens_radius_arcsec=5.0)
    run(ctx)
    parent = _parent(ctx).set_index("OBJID")
    assert parent.at[catalog.at[near, "OBJID"], "KNOWN_LENS"]
    assert parent.at[catalog.at[near, "OBJID"], "KNOWN_LENS_NAME"] == lens["name"]
    assert not parent.at[catalog.at[far, "OBJID"], "KNOWN_LENS"]
    assert parent.at[catalog.at[far, "OBJID"], "KNOWN_LENS_NAME"] == ""
    assert int(parent["KNOWN_LENS"].sum()) == 1


def test_a_spec_csv_of_known_lenses_is_used_instead_of_the_bundled_one(tmp_path: Path) -> None:
    catalog = synthetic_catalog(N, seed=9)
    host = np.flatnonzero(cuts_mask(catalog, V3))[0]
    table = tmp_path / "mine.csv"
    table.write_text(f"name,ra,dec\nMY-LENS,{catalog.at[host, 'RA']},{catalog.at[host, 'DEC']}\n")
    ctx = _context(tmp_path, catalog, known_lenses=str(table))
    run(ctx)
    parent = _parent(ctx)
    assert parent.loc[parent["KNOWN_LENS"], "KNOWN_LENS_NAME"].tolist() == ["MY-LENS"]


def test_catalog_parts_keep_their_file_and_row(tmp_path: Path) -> None:
    catalog = synthetic_catalog(10, seed=1)
    write_catalog(catalog, tmp_path / layout.CATALOG, parts=2)
    frame, origin = read_catalog_parts(layout.parts(tmp_path, layout.CATALOG))
    assert origin["file"].tolist() == ["part-00000.parquet"] * 5 + ["part-00001.parquet"] * 5
    assert origin["row"].tolist() == [0, 1, 2, 3, 4] * 2
    pd.testing.assert_frame_equal(frame[list(KEY)], catalog[list(KEY)])


SURVEY_AND_SELECT = (
    Stage("survey", (), ("seed", "survey"), "toy_stages.synthetic_survey", "synthetic sweep catalog"),
    next(s for s in STAGES if s.name == "select"),
)


def test_the_runner_installs_the_select_stage_with_its_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_from_dict(spec_data())
    monkeypatch.chdir(tmp_path)  # a relative runs folder, as `darkhalo run` defaults to
    outcomes = run_generation(spec, Path("."), stages=SURVEY_AND_SELECT, console=Console(quiet=True))
    assert [o.status for o in outcomes] == ["ran", "ran"]
    folder = tmp_path / spec.generation / "select"
    contract = json.loads((folder / "contract.json").read_text())
    assert contract["passed"] and contract["measured"]["input"] == 300
    lineage = json.loads((folder / "lineage.json").read_text())
    assert any(k.endswith("known_lenses.csv") for k in lineage["external_inputs"])
    assert "parent_sample/part-00000.parquet" in lineage["outputs"]
    assert "validation/validation_result.json" in lineage["outputs"]


def test_select_reruns_when_its_lens_table_changes_not_when_it_is_only_touched(tmp_path: Path) -> None:
    """External inputs are known by their bytes: a reinstalled package rewrites its files' times."""
    table = tmp_path / "lenses.csv"
    table.write_bytes(BUNDLED.read_bytes())
    data = spec_data()
    data["selection"]["known_lenses"] = str(table)
    spec = spec_from_dict(data)

    def statuses() -> list[str]:
        outcomes = run_generation(spec, tmp_path / "runs", stages=SURVEY_AND_SELECT, console=Console(quiet=True))
        return [o.status for o in outcomes]

    assert statuses() == ["ran", "ran"]
    os.utime(table, ns=(0, 0))
    assert statuses() == ["skipped", "skipped"]
    table.write_text(table.read_text() + "J0000+0000,0.0,0.0,-,galaxy,confident,test\n")
    assert statuses() == ["skipped", "ran"]


def test_the_runner_keeps_a_failed_edge_validation_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_SURVEY_NAN_ROW", "4")
    spec = spec_from_dict(spec_data())
    with pytest.raises(StageFailed, match=r"part-00000\.parquet row 4: FLUX_R") as caught:
        run_generation(spec, tmp_path, stages=SURVEY_AND_SELECT, console=Console(quiet=True))
    assert not (tmp_path / spec.generation / "select").exists()
    assert (caught.value.kept / "validation" / "data_docs" / "index.html").is_file()


def test_reconciliation_fails_when_a_row_is_unaccounted_for() -> None:
    assert reconciliation.check(100, 30, 60, 10).passed
    lost = reconciliation.check(100, 30, 59, 10)
    assert not lost.passed and (lost.measured, lost.threshold) == (99, 100)
    assert not reconciliation.check(100, 30, 80, -10).passed


def test_an_empty_selection_writes_one_empty_part_with_the_full_schema(tmp_path: Path) -> None:
    ctx = _context(tmp_path, synthetic_catalog(N, seed=12), z_mag_max=11.0)
    result = run(ctx)
    assert result.rows["parent_sample"] == 0 and all(f.passed for f in result.findings)
    (part,) = (ctx.out / "parent_sample").glob("part-*.parquet")
    empty = pd.read_parquet(part)
    assert len(empty) == 0 and list(empty.columns) == [*SWEEP_COLUMNS, "KNOWN_LENS", "KNOWN_LENS_NAME"]


@pytest.mark.parametrize("variant", ["v3_color_relaxed", "desi_lrg_north"])
def test_a_real_dr9_tractor_file_goes_through_ingest_and_select(tmp_path: Path, variant: str) -> None:
    run_dir = tmp_path / "run"
    ingest_catalogs([REAL / "catalogs" / "tractor-1054p567.fits"], run_dir / "survey" / "catalog")
    data = spec_data()
    data["selection"] = {"variant": variant}
    spec = spec_from_dict(data)
    (run_dir / ".select.tmp").mkdir()
    ctx = StageContext(spec, run_dir, run_dir / ".select.tmp", run_dir / ".scratch", Console(quiet=True))
    result = run(ctx)
    assert all(f.passed for f in result.findings)
    catalog = pd.read_parquet(run_dir / "survey" / "catalog")
    expected = int(cuts_mask(catalog, spec.selection.model_dump()).sum())
    assert result.measured["input"] == 1 and result.measured["selected"] == expected
