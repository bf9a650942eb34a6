"""Each artifact's pandera model: what its writer produces passes, and one wrong dtype, one column out
of order and one unexpected column are each caught naming the column; the Arrow and Spark schemas and
the column lists the stages use come from the same models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from catalogs import synthetic_catalog
from conftest import spec_data
from hosts import synthetic_parent

from darkhalo.expansion import MANIFEST_COLUMNS, Expansion, expand_hosts, host_frame
from darkhalo.injection import STAMP_COLUMNS, Rendering, inject_batch
from darkhalo.sparkio import spark_schema
from darkhalo.spec import spec_from_dict
from darkhalo.surveys.columns import SWEEP_COLUMNS
from darkhalo.surveys.provider import provider_for
from data_contracts.catalog import Catalog
from data_contracts.history import TrainingHistory
from data_contracts.manifest import Manifest
from data_contracts.parent_sample import ParentSample
from data_contracts.schema import arrow_schema, column_names, schema_finding
from data_contracts.scores import Scores
from data_contracts.stamps import IMAGE, StampRecord, shard_schema
from data_contracts.survey import flux_to_mag, mag_to_flux

SPEC = spec_from_dict(spec_data())


def _catalog() -> pd.DataFrame:
    return synthetic_catalog(60, seed=3)


def _parent_sample() -> pd.DataFrame:
    return _catalog().assign(KNOWN_LENS=False, KNOWN_LENS_NAME="")


def _manifest() -> pd.DataFrame:
    expansion = Expansion.of(SPEC)
    return expand_hosts(host_frame(synthetic_parent(30), expansion=expansion), expansion=expansion)


def _stamp_record() -> pd.DataFrame:
    manifest = _manifest()
    rows = pd.concat([manifest[manifest.label == 1].head(3), manifest[manifest.label == 0].head(3)])
    stamps = inject_batch(rows, provider_for(SPEC.survey, SPEC.seed), rendering=Rendering.of(SPEC))
    assert stamps.schema == shard_schema() and stamps.column_names == list(STAMP_COLUMNS)  # as the shards hold it
    return stamps.drop([IMAGE]).to_pandas()


def _scores() -> pd.DataFrame:
    labels = np.array([1, 0, 1, 0], dtype=np.int8)
    scores = [2.0, -1.0, 0.5, 0.0]
    columns = {"stamp_id": np.arange(4), "label": labels, "split": "test", "host_id": np.arange(4), "score": scores}
    return pd.DataFrame(columns)


def _history() -> pd.DataFrame:
    epochs = np.arange(1, 3)
    rates = np.array([0.9, np.nan])
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": [0.6, 0.4],
            "lr": [3e-4, 1e-4],
            "train_s": [2.0, 2.1],
            "images_per_s": [500.0, 480.0],
            "val_loss": [0.5, 0.45],
            "val_auroc": rates,
            "val_completeness": rates,
            "val_completeness_fpr": [1e-2, 1e-2],
            "val_completeness_resolved": [True, False],
            "select_fpr": rates,
            "select_completeness": rates,
            "val_s": [0.3, 0.3],
            "epoch_s": [2.3, 2.4],
        }
    )


# (model, a valid artifact, a column to retype and its wrong dtype, two columns to swap)
CASES = {
    "catalog": (Catalog, _catalog, ("OBJID", "int64"), ("RA", "DEC")),
    "parent_sample": (ParentSample, _parent_sample, ("PSFSIZE_R", "float64"), ("KNOWN_LENS", "KNOWN_LENS_NAME")),
    "manifest": (Manifest, _manifest, ("config_id", "int64"), ("theta_e", "src_reff")),
    "stamps": (StampRecord, _stamp_record, ("label", "int64"), ("arc_flux_g", "arc_flux_r")),
    "scores": (Scores, _scores, ("score", "float32"), ("split", "score")),
    "history": (TrainingHistory, _history, ("epoch", "int32"), ("val_s", "epoch_s")),
}


def _columns(finding) -> set[str]:
    return {row["column"] for row in finding.evidence}


@pytest.mark.parametrize("artifact", sorted(CASES))
def test_each_model_passes_its_artifact_and_names_each_corrupted_column(artifact: str) -> None:
    model, make, (retyped, dtype), swapped = CASES[artifact]
    frame = make()
    assert schema_finding(model, frame, artifact).passed, schema_finding(model, frame, artifact).detail

    wrong_dtype = schema_finding(model, frame.astype({retyped: dtype}), artifact)
    assert not wrong_dtype.passed and _columns(wrong_dtype) == {retyped}
    assert wrong_dtype.id == f"schema:{artifact}" and "dtype" in wrong_dtype.detail

    order = list(frame.columns)
    a, b = order.index(swapped[0]), order.index(swapped[1])
    order[a], order[b] = order[b], order[a]
    out_of_order = schema_finding(model, frame[order], artifact)
    assert not out_of_order.passed and _columns(out_of_order) == set(swapped)
    assert {row["check"] for row in out_of_order.evidence} == {"column_ordered"}

    extra = schema_finding(model, frame.assign(leak=1.0), artifact)
    if model is Scores:  # the scores keep the stamps' record columns beside their own
        assert extra.passed
    else:
        assert not extra.passed and _columns(extra) == {"leak"}


def test_the_stage_schemas_and_column_lists_come_from_the_models() -> None:
    assert list(SWEEP_COLUMNS) == list(column_names(Catalog)) and SWEEP_COLUMNS["RELEASE"] == "int16"
    assert column_names(Manifest) == MANIFEST_COLUMNS
    shard = shard_schema()
    assert shard.names == list(STAMP_COLUMNS) and shard.field(IMAGE).type == pa.binary()
    assert [n for n in STAMP_COLUMNS if n != IMAGE] == list(column_names(StampRecord))
    assert arrow_schema(StampRecord).field("label").type == pa.int8()
    spark = spark_schema(Manifest)
    assert spark.fieldNames() == list(MANIFEST_COLUMNS)
    assert spark["PSFSIZE_R"].dataType.simpleString() == "float" and spark["TYPE"].dataType.simpleString() == "string"
    assert spark_schema(shard)[IMAGE].dataType.simpleString() == "binary"


def test_magnitudes_and_nanomaggies_convert_both_ways() -> None:
    assert mag_to_flux(22.5) == pytest.approx(1.0) and mag_to_flux(20.0) == pytest.approx(10.0)
    np.testing.assert_allclose(flux_to_mag(mag_to_flux(np.array([18.0, 24.5]))), [18.0, 24.5])
    assert np.isnan(flux_to_mag(np.array([0.0, -1.0, np.nan]))).all()
