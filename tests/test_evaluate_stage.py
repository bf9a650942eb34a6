"""The evaluate stage after the model (scores, metrics, probes, findings, report) on synthetic test
stamps with two stand-in scorers: one that looks at the arc's annulus (honest) and one that looks
at central light (a shortcut the blob probe must catch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import spec_data

from darkhalo.spec import spec_from_dict
from darkhalo.stages.evaluate import evaluate, load_test_stamps
from darkhalo.stamps import encode_images
from data_contracts.schema import schema_finding
from data_contracts.scores import SCORES_SCHEMA

SIZE = 32
YY, XX = np.mgrid[:SIZE, :SIZE] - SIZE // 2
RADIUS = np.hypot(XX, YY)
ANNULUS = (RADIUS >= 7) & (RADIUS <= 11)
CENTRE = RADIUS <= 1.5


def _write_inject(folder: Path, n_pos: int = 200, n_neg: int = 1200, seed: int = 0) -> None:
    """Noise stamps (sigma 0.003 nmgy), a faint host; positives get a ring of arc light at r ~ 9 px (outside the core).

    Half the stamps are test, the rest train, so the reader's split filter is exercised."""
    rng = np.random.default_rng(seed)
    n = n_pos + n_neg
    images = rng.normal(0, 0.003, (n, 3, SIZE, SIZE)).astype(np.float32)
    images += (0.05 * np.exp(-0.5 * (RADIUS / 1.5) ** 2)).astype(np.float32)  # the host
    ring = np.exp(-0.5 * ((RADIUS - 9) / 0.8) ** 2)
    ring /= ring.sum()
    arc_flux = np.zeros((n, 3))
    arc_flux[:n_pos] = rng.uniform(0.3, 1.0, (n_pos, 1)) * np.array([0.6, 1.0, 1.4])
    images += (arc_flux[:, :, None, None] * ring).astype(np.float32)
    label = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(np.int8)
    split = np.where(np.arange(n) % 2 == 0, "test", "train")
    injected = np.where(label == 1, 1.0, np.nan)
    table = pa.table(
        {
            "stamp_id": pa.array(rng.permutation(n).astype(np.int64)),
            "label": pa.array(label),
            "split": pa.array(split),
            "image": encode_images(images),
            "theta_e": injected * rng.uniform(0.6, 2.0, n),
            "psfsize_r": rng.uniform(1.0, 1.5, n),
            "src_mag_r": injected * rng.uniform(22, 25, n),
            "host_mag_r": rng.uniform(18, 21, n),
            "arc_snr": injected * arc_flux[:, 1] * 100,
            **{f"arc_flux_{b}": np.where(label == 1, arc_flux[:, i], np.nan) for i, b in enumerate("grz")},
        }
    )
    (folder / "stamps").mkdir(parents=True)
    pq.write_table(table, folder / "stamps" / "part-00000.parquet")


def _annulus(images: np.ndarray) -> np.ndarray:
    """Arc light: annulus flux minus the flux a smooth host would put there (from the centre)."""
    return images[:, 1][:, ANNULUS].sum(axis=1) - 0.2 * images[:, 1][:, CENTRE].sum(axis=1)


def _central(images: np.ndarray) -> np.ndarray:
    """A shortcut: all the light inside r < 11 px, central excess included."""
    return images[:, 1][:, RADIUS <= 11].sum(axis=1)


@pytest.fixture(scope="module")
def inject_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "inject"
    _write_inject(folder)
    return folder


def _spec():
    data = spec_data()
    data["evaluate"]["bootstrap_samples"] = 50
    data["stamps"] = {"size": SIZE}
    data["psf"] = {"model": "moffat", "moffat_beta": 3.5, "kernel_size_pix": 31}
    return spec_from_dict(data)


def test_only_test_stamps_are_read_in_stamp_id_order(inject_dir: Path) -> None:
    meta, images = load_test_stamps(inject_dir)
    assert len(meta) == 700 and images.shape == (700, 3, SIZE, SIZE)
    assert (meta["split"] == "test").all() and meta["stamp_id"].is_monotonic_increasing
    assert "image" not in meta


def test_an_honest_scorer_passes_l4_and_l9_and_writes_every_artifact(inject_dir: Path, tmp_path: Path) -> None:
    meta, images = load_test_stamps(inject_dir)
    docs = inject_dir.parent / "select" / "validation" / "data_docs"
    (docs / "validations" / "x").mkdir(parents=True, exist_ok=True)
    for page in (docs / "index.html", docs / "validations" / "x" / "index.html"):
        page.write_text("<html></html>")
    result = evaluate(_spec(), meta, images, _annulus, tmp_path, inject_dir.parent)
    assert 'href="../select/validation/data_docs/index.html"' in (tmp_path / "report.html").read_text()
    verdicts = {f.id: f.verdict for f in result.findings}
    assert verdicts == {"schema:scores": "pass", "L4": "pass", "L9": "pass"}, result.findings
    for name in ("scores.parquet", "metrics.json", "report.html", "report.md", "plots/roc.png"):
        assert (tmp_path / name).is_file(), name
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == 700 and {"score", "theta_e", "arc_flux_r"} <= set(scores.columns)
    np.testing.assert_allclose(scores["score"], _annulus(images))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_neg"] == 600 and metrics["completeness_at_fpr"][0]["resolved"] is False  # 600 x 1e-2 < 10
    assert metrics["probes"]["core_auc"] < 0.7 and metrics["psf_swap"]["status"] == "not run"
    assert (tmp_path / "plots" / "gallery_2.png").is_file()  # the blob-probe gallery


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [("stamp_id", 7, "field_uniqueness"), ("score", np.inf, "finite"), ("split", "val", "equal_to")],
)
def test_the_scores_schema_catches_each_single_corruption(column: str, value: object, check: str) -> None:
    scores = pd.DataFrame(
        {
            "stamp_id": np.arange(4, dtype=np.int64),
            "label": np.array([1, 0, 1, 0], dtype=np.int8),
            "split": "test",
            "score": np.linspace(-1, 1, 4),
        }
    )
    assert schema_finding(SCORES_SCHEMA, scores, "scores").passed
    scores.loc[:1, column] = value
    finding = schema_finding(SCORES_SCHEMA, scores, "scores")
    assert finding.id == "schema:scores" and not finding.passed
    assert {row["column"] for row in finding.evidence} == {column} and check in finding.detail


def test_a_central_light_scorer_is_caught_by_the_blob_probe(inject_dir: Path, tmp_path: Path) -> None:
    meta, images = load_test_stamps(inject_dir)
    result = evaluate(_spec(), meta, images, _central, tmp_path, inject_dir.parent)
    l9 = next(f for f in result.findings if f.id == "L9")
    assert not l9.passed and {row["probe"] for row in l9.evidence} == {"blob"}
    assert next(f for f in result.findings if f.id == "L4").passed
