"""The train stage through the runner on a tiny spec and a synthetic inject folder; resume via scratch;
the resolvability rule from the evaluate section; L10 on what the model was actually fed."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import spec_data
from stamps_factory import one_torch_thread

from darkhalo.audit import judges
from darkhalo.metrics.evaluation import model_scorer
from darkhalo.runner import StageFailed, run_generation
from darkhalo.spec import GenerationSpec, spec_from_dict
from darkhalo.spec_view import SpecView
from darkhalo.stages import STAGES, Stage, StageContext
from darkhalo.stages import train as train_stage
from darkhalo.training import loop
from darkhalo.training.checkpoint import load_model
from darkhalo.training.loop import fit
from darkhalo.training.model import build_model
from darkhalo.training.store import StampStore, load_store
from data_contracts.invariants import l10_no_label_leakage
from data_contracts.thresholds import L10Thresholds

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
INJECT = Stage("inject", (), ("seed", "stamps"), "toy_stages.synthetic_inject", "synthetic stamps")
TRAIN = next(s for s in STAGES if s.name == "train")


def _spec(epochs: int = 2, **evaluate) -> GenerationSpec:
    data = spec_data()
    data["stamps"] = {"size": 32}
    data["train"].update(epochs=epochs, batch_size=32)
    data.setdefault("evaluate", {}).update(evaluate)
    data["engine"] = {"device": "cpu"}
    return spec_from_dict(data)


@pytest.fixture
def spec() -> GenerationSpec:
    return _spec()


@pytest.fixture(autouse=True)
def no_stamps_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy inject stage writes stamps without the manifest and cutouts the stamps' judge checks them against."""
    monkeypatch.delitem(judges.JUDGES, "inject")


def _inject(spec: GenerationSpec, root: Path) -> Path:
    run_generation(spec, root, stages=(INJECT,))
    return root / spec.generation


def _run_train(spec: GenerationSpec, run_dir: Path, out: Path, scratch: Path):
    """The stage as the runner calls it: seeing only the spec sections it declares."""
    out.mkdir(parents=True)
    view = SpecView.of(spec, TRAIN.sections, "stage 'train'")
    return train_stage.run(StageContext(view, run_dir, out, scratch, engine=spec.engine))


def test_the_train_stage_writes_model_history_checkpoints_and_model_inputs(spec, tmp_path: Path) -> None:
    outcomes = run_generation(spec, tmp_path, stages=(INJECT, TRAIN))
    assert [o.status for o in outcomes] == ["ran", "ran"]
    out = tmp_path / spec.generation / "train"
    history = pd.read_parquet(out / "history.parquet")
    assert list(history["epoch"]) == [1, 2]
    for column in ("train_loss", "val_loss", "val_auroc", "val_completeness", "val_completeness_resolved"):
        assert column in history.columns
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-001.pt", "epoch-002.pt"]
    payload = torch.load(out / "model.pt", weights_only=True)
    contract = json.loads((out / "contract.json").read_text())
    assert contract["passed"] and [c["id"] for c in contract["checks"]] == ["L10"]
    assert contract["measured"]["best_epoch"] == payload["epoch"]
    assert "AUROC not used" in payload["selection"]
    assert contract["rows"] == {"train_stamps": 96, "val_stamps": 64, "epochs": 2}
    model = load_model(out / "model.pt")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    score = model_scorer(out / "model.pt", torch.device("cpu"), batch_size=8)  # the evaluate stage's reader
    assert score(np.zeros((3, 3, 32, 32), dtype=np.float32)).shape == (3,)
    assert not (tmp_path / spec.generation / ".scratch").exists()

    record = json.loads((out / "model_inputs.json").read_text())  # the shards also hold theta_e and arc_snr
    calls = 2 * (96 // 32 + 64 // 32)  # per epoch: 3 train steps, 2 val batches
    assert record == {
        "columns_read": ["stamp_id", "label", "split", "image"],
        "input_columns": ["image"],
        "forward_inputs": [
            {"n_args": 1, "n_tensors": 1, "kwargs": [], "shape": [3, 32, 32], "channels": 3, "calls": calls}
        ],
    }
    assert l10_no_label_leakage.check(record, spec.invariants.L10).passed


def test_the_stage_resumes_from_the_checkpoints_in_its_scratch(spec, tmp_path: Path) -> None:
    run_dir = _inject(spec, tmp_path)
    scratch = tmp_path / "scratch"
    train = load_store(run_dir / "inject", "train", 32, torch.device("cpu"))
    val = load_store(run_dir / "inject", "val", 32, torch.device("cpu"))
    fit(train, val, spec.train, spec.seed, scratch / "checkpoints", spec.evaluate.min_expected_false_positives)
    first = (scratch / "checkpoints" / "epoch-002.pt").read_bytes()  # an attempt that finished training
    (scratch / "checkpoints" / "epoch-002.pt").unlink()  # as if killed during epoch 2
    result = _run_train(spec, run_dir, tmp_path / "out", scratch)
    assert result.measured["resumed_from_epoch"] == 1
    redone = torch.load(tmp_path / "out" / "checkpoints" / "epoch-002.pt", weights_only=True)
    original = torch.load(io.BytesIO(first), weights_only=True)
    for name, tensor in original["state_dict"].items():
        assert torch.equal(tensor, redone["state_dict"][name]), name
    record = json.loads((tmp_path / "out" / "model_inputs.json").read_text())
    assert record["forward_inputs"][0]["calls"] == 2 * (3 + 2)  # epoch 1's calls came with its checkpoint


@pytest.mark.parametrize(
    ("min_expected_fp", "select_fpr", "reason"),
    [
        (4.0, 4 / 32, "highest val completeness"),  # 32 val negatives resolve FPR 0.125, not 0.01
        (16.0, 16 / 32, "highest val completeness"),
        (40.0, math.nan, "no FPR is resolvable with 32 val negatives (need 40)"),
    ],
)
def test_the_resolvability_rule_comes_from_the_evaluate_section(
    tmp_path: Path, min_expected_fp: float, select_fpr: float, reason: str
) -> None:
    spec = _spec(epochs=1, min_expected_false_positives=min_expected_fp)
    result = _run_train(spec, _inject(spec, tmp_path), tmp_path / "out", tmp_path / "scratch")
    history = pd.read_parquet(tmp_path / "out" / "history.parquet")
    np.testing.assert_equal(history["select_fpr"].to_numpy(), [select_fpr])
    assert reason in result.measured["best_reason"]


def test_a_label_channel_fed_to_the_model_fails_l10(spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that appends the label as a 4th channel (and a model widened to take it) trains fine;
    the forward hook sees 4 channels, and the train stage's gate refuses the output."""
    batch = StampStore.batch

    def with_label_channel(self: StampStore, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch(self, index)
        label_plane = labels.view(-1, 1, 1, 1).expand(-1, 1, *images.shape[-2:])
        return torch.cat([images, label_plane], dim=1), labels

    def four_channel_model(arch: str) -> torch.nn.Module:
        model = build_model(arch)
        model.conv1 = torch.nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return model

    monkeypatch.setattr(StampStore, "batch", with_label_channel)
    monkeypatch.setattr(loop, "build_model", four_channel_model)
    with pytest.raises(StageFailed) as failed:
        run_generation(spec, tmp_path, stages=(INJECT, TRAIN))
    assert failed.value.stage == "train" and [f.id for f in failed.value.findings] == ["L10"]
    assert not (tmp_path / spec.generation / "train").exists()
    record = json.loads((failed.value.kept / "model_inputs.json").read_text())
    assert record["input_columns"] == ["image"]  # the columns alone would not show it
    finding = l10_no_label_leakage.check(record, L10Thresholds())
    assert not finding.passed and finding.n_offending == 1
    assert finding.evidence[0]["forward_call"]["channels"] == 4 and "4 channels" in finding.detail
