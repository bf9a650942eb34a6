"""The train stage through the runner on a tiny spec and a synthetic inject folder; resume via scratch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import spec_data
from stamps_factory import one_torch_thread

from darkhalo.runner import run_generation
from darkhalo.spec import spec_from_dict
from darkhalo.stages import STAGES, Stage, StageContext
from darkhalo.stages import train as train_stage
from darkhalo.stages.evaluate import model_scorer
from darkhalo.training.checkpoint import load_model
from darkhalo.training.loop import fit
from darkhalo.training.store import load_store

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
INJECT = Stage("inject", (), ("seed", "stamps"), "toy_stages.synthetic_inject", "synthetic stamps")
TRAIN = next(s for s in STAGES if s.name == "train")


@pytest.fixture
def spec():
    data = spec_data()
    data["stamps"] = {"size": 32}
    data["train"].update(epochs=2, batch_size=32)
    data["engine"] = {"device": "cpu"}
    return spec_from_dict(data)


def test_the_train_stage_writes_model_history_and_checkpoints(spec, tmp_path: Path) -> None:
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


def test_the_stage_resumes_from_the_checkpoints_in_its_scratch(spec, tmp_path: Path) -> None:
    run_generation(spec, tmp_path, stages=(INJECT,))
    run_dir = tmp_path / spec.generation
    scratch = tmp_path / "scratch"
    train = load_store(run_dir / "inject", "train", 32, torch.device("cpu"))
    val = load_store(run_dir / "inject", "val", 32, torch.device("cpu"))
    fit(train, val, spec.train, spec.seed, scratch / "checkpoints")  # an attempt that finished training
    first = (scratch / "checkpoints" / "epoch-002.pt").read_bytes()
    (scratch / "checkpoints" / "epoch-002.pt").unlink()  # as if killed during epoch 2
    out = tmp_path / "out"
    out.mkdir()
    result = train_stage.run(StageContext(spec, run_dir, out, scratch))
    assert result.measured["resumed_from_epoch"] == 1
    redone = torch.load(out / "checkpoints" / "epoch-002.pt", weights_only=True)
    original = torch.load(io.BytesIO(first), weights_only=True)
    for name, tensor in original["state_dict"].items():
        assert torch.equal(tensor, redone["state_dict"][name]), name
