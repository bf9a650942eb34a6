"""A catalogue of bad input across the stages: each kind is refused with an error naming the file,
row or field (or quarantined with its reason where the spec allows), and leaves nothing half-written.

Every case builds one bad thing from good material and calls the code that reads it. Cases already
covered where the code lives are referenced, not copied: select's per-row quarantine and failure
(tests/test_select_stage.py), SQL never taken from a spec (test_select_sql.py), bad stamp shards in
the trainer's store (test_training.py), BANDS orders of cutout files (test_cutout_fits.py).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from astropy.io import fits
from catalogs import synthetic_catalog, write_catalog
from conftest import REAL, spec_data
from cutout_server import CutoutServer, fits_bytes
from hosts import synthetic_parent
from rich.console import Console
from stamps_factory import toy_stamps, write_shards
from test_select_stage import SURVEY_AND_SELECT

from darkhalo.artifacts import contained
from darkhalo.audit.judges import judge_artifact
from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.metrics.evaluation import load_test_stamps, model_scorer
from darkhalo.runner import RunError, StageFailed, run_generation
from darkhalo.spec import GenerationSpec, SpecError, load_spec, spec_from_dict
from darkhalo.stages import StageContext
from darkhalo.stages import inject as inject_stage
from darkhalo.stages import manifest as manifest_stage
from darkhalo.stages.manifest import parent_files
from darkhalo.stages.select import read_catalog_parts
from darkhalo.surveys.cutout_fits import CutoutFileError, FolderCutoutProvider, write_cutout_fits
from darkhalo.surveys.edge_validation import validate_catalog
from darkhalo.surveys.http_cutouts import CutoutFetchError, HttpCutoutClient, cache_name
from darkhalo.surveys.legacy import CatalogError, catalog_paths, ingest_catalogs
from darkhalo.surveys.provider import Cutouts
from darkhalo.tables import ParquetFileError
from darkhalo.training.checkpoint import CheckpointError, save_checkpoint
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION, load_store
from data_contracts.manifest import Manifest
from data_contracts.schema import schema_finding

DR9 = REAL / "catalogs" / "tractor-1054p567.fits"
CPU = torch.device("cpu")


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _spec_file(tmp: Path, change: Callable[[dict], None]) -> Path:
    data = spec_data()
    change(data)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _set(section: str, key: str, value: object) -> Callable[[dict], None]:
    return lambda data: data[section].__setitem__(key, value)


# --- specs -----------------------------------------------------------------------------------------


def spec_unknown_key(tmp: Path):
    path = _spec_file(tmp, _set("grid", "theta_E_arcsec", [1.0]))
    return lambda: load_spec(path), SpecError, r"spec.yaml: .*unknown key 'theta_E_arcsec' at grid.*'theta_e_arcsec'\?"


def spec_odd_stamp_size(tmp: Path):
    path = _spec_file(tmp, lambda d: d.__setitem__("stamps", {"size": 17}))
    return lambda: load_spec(path), SpecError, r"stamps.size = 17: size must be even"


def spec_negative_learning_rate(tmp: Path):
    path = _spec_file(tmp, _set("train", "lr", -0.1))
    return lambda: load_spec(path), SpecError, r"train.lr = -0.1: Input should be greater than 0"


def spec_control_fraction_out_of_range(tmp: Path):
    path = _spec_file(tmp, _set("controls", "fraction", 1.5))
    return lambda: load_spec(path), SpecError, r"controls.fraction = 1.5"


def spec_unknown_variant(tmp: Path):
    path = _spec_file(tmp, _set("selection", "variant", "v3_colour_relaxed"))
    return lambda: load_spec(path), SpecError, r"selection.variant = 'v3_colour_relaxed'.*'v3_color_relaxed'\?"


def spec_not_a_mapping(tmp: Path):
    path = tmp / "list.yaml"
    path.write_text("- survey\n- selection\n")
    return lambda: load_spec(path), SpecError, r"list.yaml: a spec is a mapping of sections, got list"


def spec_missing_file(tmp: Path):
    return lambda: load_spec(tmp / "nope.yaml"), SpecError, r"nope.yaml: cannot read spec"


def spec_python_tag(tmp: Path):
    """A YAML python tag would run code under yaml.load; safe_load refuses it (and nothing runs)."""
    marker = tmp / "ran"
    path = tmp / "evil.yaml"
    path.write_text(f"generation: !!python/object/apply:os.system ['touch {marker}']\n")

    def load():
        try:
            load_spec(path)
        finally:
            assert not marker.exists(), "the python tag was executed"

    return load, SpecError, r"evil.yaml: not valid YAML: could not determine a constructor .*python/object/apply"


def spec_generation_escapes(tmp: Path):
    path = _spec_file(tmp, lambda d: d.__setitem__("generation", "../../outside"))
    return lambda: load_spec(path), SpecError, r"generation = '../../outside': String should match pattern"


# --- catalog files ---------------------------------------------------------------------------------


def _ingest(paths: list[Path], tmp: Path) -> Callable[[], object]:
    out = tmp / "catalog"

    def call():
        try:
            ingest_catalogs(paths, out)
        finally:
            assert not list(out.glob("*")), "a refused catalog left parts behind"

    return call


def fits_catalog_truncated(tmp: Path):
    good = shutil.copy(DR9, tmp / "a.fits")
    torn = tmp / "b.fits"
    data = DR9.read_bytes()
    torn.write_bytes(data[: len(data) - 2000])  # cut inside the table's rows, not just the padding
    return _ingest([Path(good), torn], tmp), CatalogError, r"b.fits: truncated: its \d+ rows need \d+ bytes"


def fits_catalog_garbage(tmp: Path):
    path = tmp / "noise.fits"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return _ingest([path], tmp), CatalogError, r"noise.fits: (cannot read as FITS|no binary table HDU)"


def fits_catalog_missing_column(tmp: Path):
    with fits.open(DR9) as hdus:
        table = hdus[1]
        columns = [c for c in table.columns if c.name.upper() != "PSFSIZE_R"]
        fits.BinTableHDU.from_columns(columns).writeto(tmp / "nopsf.fits")
    return _ingest([tmp / "nopsf.fits"], tmp), CatalogError, r"nopsf.fits: missing columns darkhalo needs: PSFSIZE_R$"


def parquet_catalog_mistyped_column(tmp: Path):
    frame = synthetic_catalog(10)
    frame["FLUX_R"] = frame["FLUX_R"].astype(str)
    frame.to_parquet(tmp / "sweep.parquet", index=False)
    return _ingest([tmp / "sweep.parquet"], tmp), CatalogError, r"sweep.parquet: .*FLUX_R is string, expected float32"


def parquet_catalog_truncated(tmp: Path):
    synthetic_catalog(50).to_parquet(tmp / "sweep.parquet", index=False)
    _truncate(tmp / "sweep.parquet")
    return _ingest([tmp / "sweep.parquet"], tmp), CatalogError, r"sweep.parquet: cannot read as parquet"


def catalog_wrong_kind_of_file(tmp: Path):
    (tmp / "sweep.csv").write_text("RA,DEC\n1,2\n")
    return _ingest([tmp / "sweep.csv"], tmp), CatalogError, r"sweep.csv: not a catalog \(expected .fits"


def catalog_glob_matches_nothing(tmp: Path):
    pattern = str(tmp / "sweep-*.fits")
    return lambda: catalog_paths([pattern]), CatalogError, r"sweep-\*.fits: no catalog file matches"


def survey_catalog_part_truncated(tmp: Path):
    parts = write_catalog(synthetic_catalog(40), tmp / "survey" / "catalog", parts=2)
    _truncate(parts[1])
    return lambda: read_catalog_parts(parts), ParquetFileError, r"part-00001.parquet: not a readable parquet file"


# --- parent sample, manifest -----------------------------------------------------------------------


def _parent(tmp: Path, frame: pd.DataFrame | None = None) -> Path:
    folder = tmp / "select" / "parent_sample"
    folder.mkdir(parents=True)
    (synthetic_parent(30) if frame is None else frame).to_parquet(folder / "part-00000.parquet", index=False)
    return folder / "part-00000.parquet"


def parent_sample_truncated(tmp: Path):
    _truncate(_parent(tmp))
    return lambda: parent_files(tmp / "select"), ParquetFileError, r"part-00000.parquet: not a readable parquet file"


def parent_sample_missing_column(tmp: Path):
    _parent(tmp, synthetic_parent(30).drop(columns=["PSFSIZE_R"]))
    return (
        lambda: parent_files(tmp / "select"),
        ValueError,
        r"part-00000.parquet: parent sample lacks column\(s\) PSFSIZE_R",
    )


def parent_sample_empty(tmp: Path):
    """An empty selection reaches the manifest stage: refused before Spark starts, naming the folder."""
    _parent(tmp, synthetic_parent(0))
    out = tmp / ".manifest.tmp"
    out.mkdir()
    ctx = StageContext(spec_from_dict(spec_data()), tmp, out, tmp / ".scratch", Console(quiet=True))
    return lambda: manifest_stage.run(ctx), ValueError, r"parent_sample: the parent sample is empty"


def parent_sample_absent(tmp: Path):
    (tmp / "select" / "parent_sample").mkdir(parents=True)
    return (
        lambda: parent_files(tmp / "select"),
        FileNotFoundError,
        r"parent_sample: no parquet parts \(did the select stage run\?\)",
    )


def _inject_context(tmp: Path) -> StageContext:
    out = tmp / ".inject.tmp"
    out.mkdir()
    return StageContext(spec_from_dict(spec_data()), tmp, out, tmp / ".scratch", Console(quiet=True))


def manifest_truncated(tmp: Path):
    folder = tmp / "manifest" / "manifest"
    folder.mkdir(parents=True)
    spec = spec_from_dict(spec_data())
    expansion = Expansion.of(spec)
    hosts = host_frame(synthetic_parent(30), expansion=expansion)
    expand_hosts(hosts, expansion=expansion).to_parquet(folder / "part-00000.parquet")
    _truncate(folder / "part-00000.parquet")
    ctx = _inject_context(tmp)
    return lambda: inject_stage.run(ctx), ParquetFileError, r"manifest/part-00000.parquet: not a readable parquet"


def manifest_absent(tmp: Path):
    (tmp / "manifest" / "manifest").mkdir(parents=True)
    ctx = _inject_context(tmp)
    return (
        lambda: inject_stage.run(ctx),
        FileNotFoundError,
        r"manifest/manifest: no parquet parts \(did the manifest stage run\?\)",
    )


# --- stamps ----------------------------------------------------------------------------------------


def _stamps(tmp: Path, split: str = "test", n: int = 10) -> list[Path]:
    images, labels = toy_stamps(n, 8, seed=0)
    return write_shards(tmp, images, labels, [split] * n, rows_per_shard=5)


def _replace_image(path: Path, row: int, change: Callable[[bytes], bytes]) -> None:
    table = pq.read_table(path)
    images = table["image"].to_pylist()
    images[row] = change(images[row])
    pq.write_table(
        table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, pa.binary())), path
    )


def stamp_of_wrong_byte_length(tmp: Path):
    _replace_image(_stamps(tmp)[1], 2, lambda b: b[:-4])
    return lambda: load_test_stamps(tmp, 8), ValueError, r"stamps: stamp_id 7 image holds 764 bytes, expected 768"


def stamp_with_nan_pixels(tmp: Path):
    nan = np.float32(np.nan).tobytes()
    _replace_image(_stamps(tmp)[0], 3, lambda b: b[:100] + nan + b[104:])
    return lambda: load_test_stamps(tmp, 8), ValueError, r"stamps: stamp_id 3 has non-finite pixels"


def stamps_truncated_at_evaluate(tmp: Path):
    _truncate(_stamps(tmp)[1])
    return lambda: load_test_stamps(tmp, 8), ParquetFileError, r"part-00001.parquet: not a readable parquet file"


def stamps_truncated_at_train(tmp: Path):
    _truncate(_stamps(tmp, "train")[0])
    return lambda: load_store(tmp, "train", 8, CPU), ParquetFileError, r"part-00000.parquet: not a readable parquet"


def stamps_without_test_split(tmp: Path):
    _stamps(tmp, "train")
    return lambda: load_test_stamps(tmp, 8), ValueError, r"stamps: no stamps in the test split"


# --- cutouts ---------------------------------------------------------------------------------------

HOST = pd.DataFrame({"RELEASE": [10000], "BRICKID": [1], "OBJID": [2], **{f"PSFSIZE_{b}": [1.3] for b in "GRZ"}})


def _cutout(tmp: Path, image: np.ndarray | None = None, invvar: np.ndarray | None = None, **header) -> Path:
    image = np.ones((3, 40, 40), np.float32) if image is None else image
    path = tmp / "10000_1_2.fits"
    write_cutout_fits(path, image, np.ones_like(image) if invvar is None else invvar, **header)
    return path


def _provider(tmp: Path) -> Callable[[], object]:
    return lambda: FolderCutoutProvider(tmp).cutouts(HOST, 32)


def cutout_garbage(tmp: Path):
    (tmp / "10000_1_2.fits").write_bytes(b"SIMPLE  = nonsense" * 200)
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: not a readable FITS file"


def cutout_truncated(tmp: Path):
    _truncate(_cutout(tmp), 0.7)  # inside the INVVAR data
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: not a readable FITS file"


def cutout_missing_band(tmp: Path):
    path = tmp / "10000_1_2.fits"
    primary = fits.PrimaryHDU(np.ones((2, 40, 40), np.float32))
    primary.header["BANDS"] = "gr"
    fits.HDUList([primary]).writeto(path)
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: missing band\(s\) z \(BANDS = 'gr'\)"


def cutout_not_a_cube(tmp: Path):
    fits.PrimaryHDU(np.ones((40, 40), np.float32)).writeto(tmp / "10000_1_2.fits")
    return (
        _provider(tmp),
        CutoutFileError,
        r"10000_1_2.fits: primary HDU must be a \(band, y, x\) cube, got shape \(40, 40\)",
    )


def cutout_nan_pixels(tmp: Path):
    image = np.ones((3, 40, 40), np.float32)
    image[1, 5, 5] = np.nan
    _cutout(tmp, image)
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: band r has non-finite pixels \(1 in all\)"


def cutout_smaller_than_the_stamp(tmp: Path):
    _cutout(tmp, np.ones((3, 20, 20), np.float32))
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: cutout 20x20 is smaller than the 32x32 stamp"


def cutout_negative_invvar(tmp: Path):
    _cutout(tmp, invvar=-np.ones((3, 40, 40), np.float32))
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: INVVAR has negative or non-finite values"


def cutout_file_missing(tmp: Path):
    return _provider(tmp), CutoutFileError, r"10000_1_2.fits: not a readable FITS file \(.*No such file"


def cutouts_of_the_wrong_shape(tmp: Path):
    images = np.ones((2, 3, 32, 30), np.float32)
    fwhm = np.ones((2, 3), np.float32)
    return (
        lambda: Cutouts(images, images, fwhm, fwhm),
        ValueError,
        r"images must be \(N, 3, S, S\), got \(2, 3, 32, 30\)",
    )


# --- checkpoints -----------------------------------------------------------------------------------


class Touch:
    """Unpickling this would create ``path``: the proof that a refused checkpoint ran nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _model_file(tmp: Path, **extra) -> Path:
    payload = {
        "format": 1,
        "arch": "resnet18",
        "normalisation": NORMALISATION,
        "state_dict": build_model("resnet18").state_dict(),
    }
    save_checkpoint(tmp / "model.pt", {**payload, **extra})
    return tmp / "model.pt"


def checkpoint_with_a_pickled_object(tmp: Path):
    marker = tmp / "ran"
    path = _model_file(tmp, extra=Touch(marker))

    def load():
        try:
            model_scorer(path, CPU, 8)
        finally:
            assert not marker.exists(), "the pickled object was executed"

    return load, CheckpointError, r"model.pt: refused, it holds pickled objects"


def checkpoint_torn(tmp: Path):
    _truncate(_model_file(tmp), 0.3)
    return lambda: model_scorer(tmp / "model.pt", CPU, 8), CheckpointError, r"model.pt: cannot read checkpoint"


def checkpoint_not_a_model(tmp: Path):
    torch.save({"weights": torch.zeros(3)}, tmp / "model.pt")
    return (
        lambda: model_scorer(tmp / "model.pt", CPU, 8),
        CheckpointError,
        r"model.pt: not a darkhalo model file \(lacks arch, normalisation, state_dict\)",
    )


# --- paths -----------------------------------------------------------------------------------------


def path_with_dotdot(tmp: Path):
    return lambda: contained(tmp / "run", "stage/../../elsewhere"), ValueError, r"'stage/../../elsewhere' escapes"


def path_absolute(tmp: Path):
    return lambda: contained(tmp / "run", "/etc/passwd"), ValueError, r"'/etc/passwd' escapes"


def path_through_a_link(tmp: Path):
    (tmp / "run").mkdir()
    (tmp / "run" / "out").symlink_to(tmp)
    return lambda: contained(tmp / "run", "out/secret"), ValueError, r"'out/secret' escapes"


def generation_escaping_the_runs_folder(tmp: Path):
    """A spec object built around validation (model_construct) still cannot place a run outside runs/."""
    valid = spec_from_dict(spec_data())
    rogue = GenerationSpec.model_construct(**{**dict(valid), "generation": "../escaped"})
    runs = tmp / "runs"

    def run():
        try:
            run_generation(rogue, runs, stages=())
        finally:
            assert not (tmp / "escaped").exists()

    return run, RunError, r"generation name: path '../escaped' escapes"


CASES: dict[str, Callable[[Path], tuple[Callable[[], object], type[Exception], str]]] = {
    f.__name__: f
    for f in (
        spec_unknown_key,
        spec_odd_stamp_size,
        spec_negative_learning_rate,
        spec_control_fraction_out_of_range,
        spec_unknown_variant,
        spec_not_a_mapping,
        spec_missing_file,
        spec_python_tag,
        spec_generation_escapes,
        fits_catalog_truncated,
        fits_catalog_garbage,
        fits_catalog_missing_column,
        parquet_catalog_mistyped_column,
        parquet_catalog_truncated,
        catalog_wrong_kind_of_file,
        catalog_glob_matches_nothing,
        survey_catalog_part_truncated,
        parent_sample_truncated,
        parent_sample_missing_column,
        parent_sample_empty,
        parent_sample_absent,
        manifest_truncated,
        manifest_absent,
        stamp_of_wrong_byte_length,
        stamp_with_nan_pixels,
        stamps_truncated_at_evaluate,
        stamps_truncated_at_train,
        stamps_without_test_split,
        cutout_garbage,
        cutout_truncated,
        cutout_missing_band,
        cutout_not_a_cube,
        cutout_nan_pixels,
        cutout_smaller_than_the_stamp,
        cutout_negative_invvar,
        cutout_file_missing,
        cutouts_of_the_wrong_shape,
        checkpoint_with_a_pickled_object,
        checkpoint_torn,
        checkpoint_not_a_model,
        path_with_dotdot,
        path_absolute,
        path_through_a_link,
        generation_escaping_the_runs_folder,
    )
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_is_refused_naming_the_thing(kind: str, tmp_path: Path) -> None:
    call, error, message = CASES[kind](tmp_path)
    with pytest.raises(error, match=re.compile(message, re.DOTALL)):
        call()


def test_the_inputs_the_cases_start_from_are_good(tmp_path: Path) -> None:
    """The same material, uncorrupted, is accepted: each case's error comes from its one corruption."""
    assert load_spec(_spec_file(tmp_path, lambda d: None)).generation == "embedded"
    assert ingest_catalogs([DR9], tmp_path / "catalog")[str(DR9)] > 0
    _parent(tmp_path)
    assert parent_files(tmp_path / "select")
    stamps = tmp_path / "stamps_ok"
    _stamps(stamps)
    meta, images = load_test_stamps(stamps, 8)
    assert len(meta) == 10 and np.isfinite(images).all()
    cutouts = tmp_path / "cutouts"
    cutouts.mkdir()
    _cutout(cutouts)
    assert FolderCutoutProvider(cutouts).cutouts(HOST, 32).images.shape == (1, 3, 32, 32)
    model = tmp_path / "model"
    model.mkdir()
    assert model_scorer(_model_file(model), CPU, 8)(images[:2]).shape == (2,)
    assert contained(tmp_path, "run/stage/file") == (tmp_path / "run/stage/file").resolve()


def test_a_manifest_with_a_duplicated_stamp_id_fails_its_schema_naming_the_column() -> None:
    spec = spec_from_dict(spec_data())
    expansion = Expansion.of(spec)
    manifest = expand_hosts(host_frame(synthetic_parent(40), expansion=expansion), expansion=expansion)
    assert schema_finding(Manifest, manifest, "manifest").passed
    manifest.loc[5, "stamp_id"] = manifest.loc[4, "stamp_id"]
    finding = schema_finding(Manifest, manifest, "manifest")
    assert not finding.passed
    assert {row["column"] for row in finding.evidence} == {"stamp_id"}


# --- survey catalog rows: Great Expectations at the select stage's edge ----------------------------

#: Row-level corruptions, each at its own row: (row, column, value, the reason named for that row).
ROW_CORRUPTIONS = {
    "nan_flux": (3, "FLUX_G", np.nan, "FLUX_G: expect_column_values_to_not_be_null"),
    "inf_flux": (5, "FLUX_Z", -np.inf, "FLUX_Z: expect_column_values_to_be_between"),
    "negative_psfsize": (8, "PSFSIZE_G", -1.2, "PSFSIZE_G: expect_column_values_to_be_between"),
    "dec_beyond_the_pole": (12, "DEC", 91.0, "DEC: expect_column_values_to_be_between"),
    "ra_negative": (14, "RA", -0.5, "RA: expect_column_values_to_be_between"),
    "null_type": (16, "TYPE", None, "TYPE: expect_column_values_to_not_be_null"),
}
DUPLICATED = (20, 21)  # row 21 takes row 20's key


@pytest.fixture(scope="module")
def edge_report(tmp_path_factory):
    catalog = synthetic_catalog(40, seed=1)
    for row, column, value, _ in ROW_CORRUPTIONS.values():
        catalog.loc[row, column] = value
    catalog.loc[DUPLICATED[1], ["RELEASE", "BRICKID", "OBJID"]] = catalog.loc[
        DUPLICATED[0], ["RELEASE", "BRICKID", "OBJID"]
    ]
    return validate_catalog(catalog, tmp_path_factory.mktemp("edge"))


@pytest.mark.parametrize("kind", list(ROW_CORRUPTIONS))
def test_a_bad_catalog_row_is_named_with_only_its_own_reason(edge_report, kind: str) -> None:
    row, _, _, reason = ROW_CORRUPTIONS[kind]
    assert edge_report.row_reasons[row] == [reason]


def test_a_duplicated_key_names_both_rows_and_nothing_else_fails(edge_report) -> None:
    key = "RELEASE+BRICKID+OBJID: expect_compound_columns_to_be_unique"
    assert all(edge_report.row_reasons[row] == [key] for row in DUPLICATED)
    expected = {row for row, *_ in ROW_CORRUPTIONS.values()} | set(DUPLICATED)
    assert set(edge_report.row_reasons) == expected and not edge_report.table_problems


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("missing_column", "PSFSIZE_R: expect_column_to_exist"),
        ("mistyped_column", "OBJID: expect_column_values_to_be_of_type"),
    ],
)
def test_a_missing_or_mistyped_column_condemns_the_catalog_by_name(kind: str, problem: str, tmp_path: Path) -> None:
    catalog = synthetic_catalog(20)
    if kind == "missing_column":
        catalog = catalog.drop(columns=["PSFSIZE_R"])
    else:
        catalog["OBJID"] = catalog["OBJID"].astype(float)
    report = validate_catalog(catalog, tmp_path)
    assert problem in report.table_problems and not report.row_reasons


@pytest.mark.spark
def test_a_quarantined_row_reconciles_through_the_runner(spark, tmp_path: Path, monkeypatch) -> None:
    """With quarantine on, a NaN flux is set aside with its file, row and reason, the select stage is
    installed, and input = selected + rejected by cuts + quarantined."""
    monkeypatch.setenv("TOY_SURVEY_NAN_ROW", "7")
    data = spec_data()
    data["selection"]["quarantine_bad_rows"] = True
    spec = spec_from_dict(data)
    run_generation(spec, tmp_path, stages=SURVEY_AND_SELECT, console=Console(quiet=True))
    out = tmp_path / spec.generation / "select"
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert quarantine[["SOURCE_FILE", "SOURCE_ROW", "REASON"]].to_dict("records") == [
        {"SOURCE_FILE": "part-00000.parquet", "SOURCE_ROW": 7, "REASON": "FLUX_R: expect_column_values_to_not_be_null"}
    ]
    counts = json.loads((out / "contract.json").read_text())["measured"]
    assert counts["input"] == 300 and counts["quarantined"] == 1
    assert counts["selected"] + counts["rejected_by_cuts"] + counts["quarantined"] == counts["input"]
    parent = pd.read_parquet(out / "parent_sample")
    assert len(parent) == counts["selected"] and parent["FLUX_R"].notna().all()


# --- empty stage outputs: refused by the stage's gate, never installed --------------------------------


@pytest.mark.spark
def test_a_selection_that_keeps_no_host_is_refused_by_the_select_gate(spark, tmp_path: Path) -> None:
    """Cuts no mock galaxy passes (z < 11) leave an empty parent sample: the select stage fails its contract on the
    parent sample alone, naming the cuts, and nothing is installed for the manifest stage to crash on."""
    data = spec_data()
    data["selection"]["z_mag_max"] = 11.0
    spec = spec_from_dict(data)
    with pytest.raises(StageFailed) as failure:
        run_generation(spec, tmp_path, stages=SURVEY_AND_SELECT, console=Console(quiet=True))
    assert failure.value.stage == "select" and "stage 'select' failed its contract" in str(failure.value)
    assert [(f.id, f.measured, f.detail) for f in failure.value.findings] == [
        ("schema:parent_sample", 0, "no rows: the v3_color_relaxed cuts kept no host")
    ]
    assert not (tmp_path / spec.generation / "select").exists()


def _manifest_folder(tmp: Path, spec: GenerationSpec, keep: Callable[[pd.DataFrame], pd.Series]) -> Path:
    """manifest/manifest/part-00000.parquet of 300 synthetic parent hosts expanded by ``spec``, rows ``keep``."""
    folder = tmp / "manifest"
    (folder / "manifest").mkdir(parents=True)
    expansion = Expansion.of(spec)
    rows = expand_hosts(host_frame(synthetic_parent(300, seed=spec.seed), expansion=expansion), expansion=expansion)
    rows[keep(rows)].to_parquet(folder / "manifest" / "part-00000.parquet", index=False)
    return folder


EMPTIED = {
    "val": (
        lambda rows: rows["split"] != "val",
        "the val split has no positive stamps; the val split has no control stamps",
    ),
    "test_controls": (
        lambda rows: (rows["split"] != "test") | (rows["label"] == 1),
        "the test split has no control stamps",
    ),
}


@pytest.mark.parametrize("emptied", list(EMPTIED))
def test_a_manifest_with_an_empty_split_is_refused_by_its_gate(emptied: str, tmp_path: Path) -> None:
    """A split (or one label of it) without stamps would crash training or evaluation: the manifest's gate (and
    audit) fails its schema finding alone, naming the split and label; the whole manifest passes."""
    data = spec_data()
    data["splits"] = {"nside": 128}
    spec = spec_from_dict(data)
    keep, detail = EMPTIED[emptied]

    def blocking(folder: Path) -> list[tuple[str, str]]:
        findings = spec.invariants.judged(judge_artifact("manifest", folder, tmp_path, spec))  # the spec's waivers
        return [(f.id, f.detail) for f in findings if f.blocking]

    assert blocking(_manifest_folder(tmp_path / "whole", spec, lambda rows: rows["split"] != "")) == []
    assert blocking(_manifest_folder(tmp_path, spec, keep)) == [("schema:manifest", detail)]


# --- the cutout service (HTTP) ---------------------------------------------------------------------
# Timeouts, garbage bodies, missing bands, wrong shapes, huge bodies, 5xx and 4xx replies are in
# tests/test_http_cutouts.py; these add what a flaky or poisoned source can also do.


GOOD_CUTOUT = fits_bytes(np.zeros((3, 16, 16)))
NAN_CUTOUT = fits_bytes(np.where(np.arange(3 * 16 * 16).reshape(3, 16, 16) == 300, np.nan, 0.0))

HTTP_CASES = {
    "body_cut_short": (GOOD_CUTOUT[:3000], len(GOOD_CUTOUT), r"\?ra=.*failed 3 time\(s\): body cut short: 3000 of", 3),
    "nan_pixels": (NAN_CUTOUT, None, r"fits-cutout\?ra=.*unusable cutout: band r has non-finite pixels", 1),
}


@pytest.mark.parametrize("kind", list(HTTP_CASES))
def test_a_bad_service_reply_is_refused_naming_the_url_and_not_cached(kind: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    body, declared, message, requests = HTTP_CASES[kind]
    server = CutoutServer(default=(200, body, declared))
    try:
        client = HttpCutoutClient(server.url, tmp_path / "cache", timeout_s=2.0, retries=2, backoff_s=0.01)
        with pytest.raises(CutoutFetchError, match=message):
            client.fetch(150.0, 2.0, 16)
        assert len(server.requests) == requests
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    finally:
        server.close()


def test_a_poisoned_cache_file_is_named_and_nothing_is_fetched(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = CutoutServer(default=(200, GOOD_CUTOUT, None))
    try:
        client = HttpCutoutClient(server.url, tmp_path / "cache", timeout_s=2.0, retries=0)
        assert client.fetch(150.0, 2.0, 16).image.shape == (3, 16, 16)  # the good reply is cached
        cached = tmp_path / "cache" / cache_name(150.0, 2.0, 16)
        _truncate(cached, 0.5)
        with pytest.raises(CutoutFileError, match=re.escape(cached.name)):
            client.fetch(150.0, 2.0, 16)
        assert len(server.requests) == 1
    finally:
        server.close()
