"""L10 on the trainer's record of what it fed the model: valid records pass, and each single leak
(a label-derived or non-whitelisted input column, an extra channel, an extra tensor) is caught and named."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_contracts.invariants.l10_no_label_leakage import BANDS, check
from data_contracts.thresholds import L10Thresholds


def _call(size: int = 32, calls: int = 12, **changes: Any) -> dict[str, Any]:
    row = {"n_args": 1, "n_tensors": 1, "kwargs": [], "shape": [3, size, size], "channels": 3, "calls": calls}
    return {**row, **changes}


def _record(**changes: Any) -> dict[str, Any]:
    """What the trainer writes to model_inputs.json for a pixels-only model (see test_train_stage)."""
    record = {
        "columns_read": ["stamp_id", "label", "split", "image"],
        "input_columns": ["image"],
        "forward_inputs": [_call()],
    }
    return {**record, **changes}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    size=st.sampled_from([8, 32, 64, 101]),
    calls=st.integers(1, 100_000),
    metadata=st.lists(st.sampled_from(["theta_e", "arc_snr", "psfsize_r", "config_id"]), unique=True),
    conditions=st.lists(st.sampled_from(["PSFSIZE_R", "PSFDEPTH_R", "EBV"]), unique=True),
)
def test_valid_records_pass(size: int, calls: int, metadata: list[str], conditions: list[str]) -> None:
    """Pixels, plus whitelisted conditions; reading a label-derived column is not feeding it."""
    record = {
        "columns_read": ["stamp_id", "label", "split", *metadata, *conditions, "image"],
        "input_columns": ["image", *conditions],
        "forward_inputs": [_call(size, calls)],
    }
    finding = check(record, L10Thresholds(allowed_conditions=tuple(conditions)))
    assert finding.id == "L10" and finding.passed and finding.n_offending == 0
    assert finding.measured == {"input_columns": record["input_columns"], "forward_inputs": record["forward_inputs"]}
    assert finding.threshold["allowed_conditions"] == conditions and finding.threshold["pixels"] == "image"
    assert finding.threshold["forward_inputs"]["channels"] == len(BANDS) == 3


def _input_column(column: str):
    def corrupt(record: dict[str, Any]) -> None:
        record["columns_read"].append(column)
        record["input_columns"].append(column)

    return corrupt


def _forward(**changes: Any):
    def corrupt(record: dict[str, Any]) -> None:
        record["forward_inputs"].append(_call(calls=1, **changes))  # one call in many is enough

    return corrupt


def _unread_input(record: dict[str, Any]) -> None:
    record["columns_read"].remove("image")


def _no_calls(record: dict[str, Any]) -> None:
    record["forward_inputs"] = []


@pytest.mark.parametrize(
    ("corrupt", "allowed", "offender", "why"),
    [
        (_input_column("theta_e"), (), "theta_e", "injection parameter or label-derived"),
        (_input_column("arc_snr"), (), "arc_snr", "injection parameter or label-derived"),
        (_input_column("src_mag_r"), (), "src_mag_r", "injection parameter or label-derived"),
        (_input_column("label"), (), "label", "injection parameter or label-derived"),
        (_input_column("arc_snr"), ("arc_snr",), "arc_snr", "label-derived"),  # whitelisting a leak is no help
        (_input_column("PSFSIZE_R"), (), "PSFSIZE_R", "not a whitelisted observing condition"),
        (_unread_input, (), "image", "not among the columns the store read"),
        (_forward(shape=[4, 32, 32], channels=4), (), None, "4 channels"),
        (_forward(n_args=2, n_tensors=2), (), None, "2 positional argument(s), 2 tensor(s)"),
        (_forward(n_tensors=2, kwargs=["psf"]), (), None, "keyword argument(s) psf"),
        (_forward(shape=[3, 32], channels=3), (), None, "input [3, 32]"),
        (_no_calls, (), None, "no forward call recorded"),
    ],
    ids=[
        "theta_e",
        "arc_snr",
        "src_mag",
        "label",
        "whitelisted-arc_snr",
        "unlisted-condition",
        "unread-input",
        "4th-channel",
        "second-tensor",
        "keyword-tensor",
        "not-a-stamp",
        "no-calls",
    ],
)
def test_each_single_leak_fails_l10_and_is_named(corrupt, allowed: tuple[str, ...], offender, why: str) -> None:
    record = copy.deepcopy(_record())
    corrupt(record)
    finding = check(record, L10Thresholds(allowed_conditions=allowed))
    assert finding.id == "L10" and not finding.passed and finding.blocking
    assert finding.n_offending == 1 and why in finding.evidence[0]["why"]
    if offender is not None:
        assert finding.evidence[0]["column"] == offender and offender in finding.detail
    else:
        assert "forward_call" in finding.evidence[0] and why in finding.detail
    assert finding.measured["forward_inputs"] == record["forward_inputs"]  # what was fed is shown
