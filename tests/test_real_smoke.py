"""The real Legacy Surveys path on the real files (specs/real_dr10_smoke.yaml): real rows through ingest,
edge validation and selection; arcs injected into real DR10 cutouts; a model trained on mock stamps
scoring them; the known-lens tables cross-matched with a recall report. No network: the cutouts come
from the converted folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REAL, SPECS, spec_data
from hosts import synthetic_parent

from darkhalo.audit.judges import point_source_test, psf_finding
from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.injection import Rendering, inject_batch
from darkhalo.metrics.evaluation import model_scorer
from darkhalo.runner import run_generation
from darkhalo.scanning import ScanSettings, host_slices, scan_slice
from darkhalo.spec import GenerationSpec, spec_from_dict
from darkhalo.stamps import decode_images
from darkhalo.surveys.known_lenses import BUNDLED
from darkhalo.surveys.legacy import read_catalog
from darkhalo.surveys.lens_tables import load_lens_table, recall_report
from darkhalo.surveys.npz_cutouts import convert_npz_folder, psfex_psfsize
from darkhalo.surveys.provider import provider_for
from darkhalo.training.model import build_model
from darkhalo.training.store import NORMALISATION, normalise
from data_contracts.invariants import l8_stamp_integrity

LENS_TABLES = (BUNDLED, *(REAL / "lenses" / n for n in ("SLACS_table.cat", "new_lenses.tsv", "training_lenses.tsv")))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real_dr10")
    convert_npz_folder(REAL / "cutouts", out, psfex_psfsize(REAL / "psf" / "psfex"))
    return out


def smoke_spec(converted: Path, psf: dict | None = None) -> GenerationSpec:
    """The committed spec, reading the freshly converted host rows and cutouts (and no service URL)."""
    data = yaml.safe_load((SPECS / "real_dr10_smoke.yaml").read_text())
    data["psf"] = psf or data["psf"]
    data["survey"]["catalogs"] = [str(REAL / "catalogs" / "tractor-1054p567.fits"), str(converted / "hosts.parquet")]
    data["survey"]["cutouts"] = {"dir": str(converted / "cutouts")}
    return spec_from_dict(data)


def test_the_committed_host_rows_are_what_the_converter_makes(converted: Path) -> None:
    committed = read_catalog(REAL / "catalogs" / "dr10_cutout_hosts.parquet")
    pd.testing.assert_frame_equal(committed, read_catalog(converted / "hosts.parquet"))


@pytest.mark.spark
def test_real_rows_go_through_ingest_edge_validation_and_selection(spark, converted: Path, tmp_path: Path) -> None:
    spec = smoke_spec(converted)
    survey, select = run_generation(spec, tmp_path, stop="select")
    assert survey.rows == {"catalog": 7}  # one DR9 tractor row + six DR10 cutout objects
    contract = json.loads((select.folder / "contract.json").read_text())
    assert contract["passed"], contract
    measured = contract["measured"]
    assert (measured["input"], measured["selected"], measured["rejected_by_cuts"], measured["quarantined"]) == (
        7,
        1,
        6,  # the cutout objects have no W1 flux: FLUX_W1 > 0 rejects them
        0,
    )
    parent = pd.read_parquet(select.folder / "parent_sample")
    assert (int(parent["RELEASE"][0]), int(parent["BRICKID"][0]), int(parent["OBJID"][0])) == (9011, 607466, 2657)
    assert not parent["KNOWN_LENS"].any()
    assert (select.folder / "validation" / "validation_result.json").is_file()
    report = recall_report(parent.assign(score=np.nan), [load_lens_table(p) for p in LENS_TABLES], 5.0, 0.0)
    assert report["in_sample"].tolist() == [0, 0, 0, 0]


def _train_tiny(images: np.ndarray, labels: np.ndarray, path: Path, steps: int = 2) -> list[float]:
    """A few AdamW steps of torchvision's ResNet18 on the stamps; saved as the trainer's model.pt."""
    torch.manual_seed(0)
    model = build_model("resnet18")
    x, y = normalise(torch.from_numpy(images)), torch.from_numpy(labels.astype(np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).reshape(-1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    torch.save({"arch": "resnet18", "state_dict": model.state_dict(), "normalisation": NORMALISATION}, path)
    return losses


def _mock_stamps(size: int, n_hosts: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Stamps of the embedded recipe on the mock survey: mock cutouts, half with injected arcs."""
    data = spec_data("embedded")
    data["stamps"] = {"size": size}
    mock = spec_from_dict(data)
    expansion = Expansion.of(mock)
    rows = expand_hosts(host_frame(synthetic_parent(n_hosts, seed=1), expansion=expansion), expansion=expansion)
    stamps = inject_batch(rows, provider_for(mock.survey, mock.seed), rendering=Rendering.of(mock)).to_pandas()
    return decode_images(stamps["image"].tolist(), size), stamps["label"].to_numpy()


def test_arcs_in_real_dr10_cutouts_are_scored_and_known_lenses_recalled(converted: Path, tmp_path: Path) -> None:
    spec = smoke_spec(converted)
    catalog = read_catalog(converted / "hosts.parquet")
    # The real cutouts at hand are all lens candidates; here they stand in as hosts (a search excludes them).
    expansion, rendering = Expansion.of(spec), Rendering.of(spec)
    hosts = host_frame(catalog.assign(KNOWN_LENS=False), expansion=expansion)
    hosts["role"] = np.where(np.arange(len(hosts)) % 2 == 0, "positive", "control")
    rows = expand_hosts(hosts, expansion=expansion)
    provider = provider_for(spec.survey, spec.seed)
    stamps = inject_batch(rows, provider, rendering=rendering).to_pandas()
    images = decode_images(stamps["image"].tolist(), spec.stamps.size)
    real = provider.cutouts(hosts, spec.stamps.size).images
    where = pd.Index(hosts["host_id"]).get_indexer(stamps["host_id"])
    positive = stamps["label"].to_numpy() == 1
    assert positive.sum() == 6 and (~positive).sum() == 3  # 3 positive hosts x 2 configs, 3 controls
    assert np.array_equal(images[~positive], real[where[~positive]])  # controls: the real cutout, bit for bit
    arcs = images[positive] - real[where[positive]]
    recorded = stamps.loc[positive, ["arc_flux_g", "arc_flux_r", "arc_flux_z"]].to_numpy()
    assert np.allclose(arcs.sum(axis=(2, 3)), recorded, rtol=1e-3)
    assert (stamps.loc[positive, "arc_snr"] > 5).all()  # magnified r 22-25.5 sources on the real DR10 sky
    assert np.allclose(stamps["psfsize_r"], psfex_psfsize(REAL / "psf" / "psfex")["r"])

    # the model comes from a mock run (the embedded recipe on mock cutouts), as a search would use it
    mock_images, mock_labels = _mock_stamps(spec.stamps.size)
    losses = _train_tiny(mock_images, mock_labels, tmp_path / "model.pt", steps=10)
    assert losses[-1] < losses[0]
    score = model_scorer(tmp_path / "model.pt", torch.device("cpu"), batch_size=4)
    stamp_scores = score(images)
    assert np.isfinite(stamp_scores).all() and np.array_equal(stamp_scores, score(images))

    threshold = float(stamp_scores[positive].min())  # every injected arc flagged on this tiny set
    sample = catalog.assign(score=score(real))  # the unlensed real cutouts of the lens candidates
    report = recall_report(sample, [load_lens_table(p) for p in LENS_TABLES], 5.0, threshold)
    assert report["table"].tolist() == ["known_lenses", "SLACS_table", "new_lenses", "training_lenses"]
    assert report["in_sample"].tolist() == [6, 0, 0, 1] and report["scored"].tolist() == [6, 0, 0, 1]
    lenscat = report.iloc[0]
    assert lenscat["flagged"] == int((sample["score"] >= threshold).sum())
    assert lenscat["recall_low"] <= lenscat["recall"] <= lenscat["recall_high"]
    assert np.isnan(report.iloc[1]["recall"])  # no SLACS lens has a cutout here: no recall, not 0


def test_a_scan_of_real_hosts_scores_those_with_cutouts_and_lists_the_others_with_the_missing_file(
    converted: Path, tmp_path: Path
) -> None:
    """The scan's task on the real survey's folder provider: the six DR10 hosts with cutouts scored as the scorer
    scores their cutouts, two hosts without one (their rows under other object ids) listed unscored naming the file
    each lacks."""
    spec = smoke_spec(converted)
    hosts = read_catalog(converted / "hosts.parquet")
    others = hosts.head(2).assign(OBJID=hosts["OBJID"].head(2) + 100_000)
    part = tmp_path / "part-00000.parquet"
    pd.concat([hosts, others], ignore_index=True).to_parquet(part, index=False)
    _train_tiny(*_mock_stamps(spec.stamps.size), tmp_path / "model.pt")
    settings = ScanSettings(spec.survey, spec.seed, spec.stamps.size, tmp_path / "model.pt", "cpu", 4)
    scanned = scan_slice(host_slices([part], 100)[0], settings)
    assert scanned["score"].notna().tolist() == [True] * 6 + [False] * 2
    cutouts = provider_for(spec.survey, spec.seed).cutouts(hosts, spec.stamps.size).images
    score = model_scorer(tmp_path / "model.pt", torch.device("cpu"), batch_size=4)
    assert np.allclose(scanned["score"].head(6), score(cutouts), atol=1e-5)
    for row in scanned.tail(2).itertuples():
        assert f"{row.RELEASE}_{row.BRICKID}_{row.OBJID}.fits" in row.reason


def test_the_pixelized_psf_injects_into_real_cutouts_with_real_psfex_models(converted: Path) -> None:
    spec = smoke_spec(converted)
    pixelized = smoke_spec(converted, psf={"model": "pixelized", "psfex_dir": str(REAL / "psf" / "psfex")})
    expansion = Expansion.of(spec)
    catalog = read_catalog(converted / "hosts.parquet").assign(KNOWN_LENS=False)
    hosts = host_frame(catalog, expansion=expansion).assign(role="positive")
    rows = expand_hosts(hosts.head(2), expansion=expansion)
    provider = provider_for(spec.survey, spec.seed)
    survey = inject_batch(rows, provider, rendering=Rendering.of(spec)).to_pandas()
    real = inject_batch(rows, provider, rendering=Rendering.of(pixelized)).to_pandas()
    assert (real["psf_model"] == "pixelized").all()
    assert np.allclose(real["arc_flux_r"], survey["arc_flux_r"], rtol=0.02)  # the same arcs, both PSFs unit-sum
    assert not np.array_equal(decode_images(real["image"].tolist(), 64), decode_images(survey["image"].tolist(), 64))
    # the real wings match the survey PSF's (L3), and the stage's point-source test passes (L8)
    assert psf_finding(pixelized).passed
    point_source = l8_stamp_integrity.check_point_source(*point_source_test(pixelized, 1.3), pixelized.invariants.L8)
    assert point_source.passed
