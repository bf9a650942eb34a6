"""L10, no label leakage: the model is fed pixels and, at most, whitelisted observing conditions.

The trainer records what it fed the model (the train stage's ``model_inputs.json``):
``columns_read``, the shard columns its stamp store read; ``input_columns``, those the model's
input tensor was built from; ``forward_inputs``, one row per distinct forward call a pre-hook saw
(``n_args``, ``n_tensors`` positional and keyword, ``kwargs`` names, the input's per-stamp
``shape`` and ``channels``, ``calls``). This check fails on an input column that is label-derived
(even when a spec whitelists it) or neither the pixels nor a whitelisted condition, and on any
forward call that received more than one pixel tensor of the stamps' bands: an extra tensor, a
keyword argument or an extra channel is a non-pixel input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS
from data_contracts.stamps import IMAGE
from data_contracts.survey import BANDS
from data_contracts.thresholds import L10Thresholds

PIXELS = IMAGE
#: What every forward call may receive: one tensor, (band, y, x) with one channel per band.
FORWARD_ALLOWED = {"n_args": 1, "n_tensors": 1, "kwargs": [], "channels": len(BANDS)}
#: Columns that exist only because of the injection or the label (NaN or constant for controls).
LABEL_DERIVED: frozenset[str] = frozenset(
    {
        "label",
        "role",
        "config_id",
        "theta_e",
        "shear",
        "shear_phi",
        "lens_q",
        "lens_phi",
        "magnification",
        "psf_model",
    }
)
LABEL_DERIVED_PREFIXES: tuple[str, ...] = ("src_", "arc_")


def is_label_derived(column: str) -> bool:
    """True for the label and the injection's parameters and measures (src_*, arc_*, theta_e, ...)."""
    name = column.lower()
    return name in LABEL_DERIVED or name.startswith(LABEL_DERIVED_PREFIXES)


def column_problems(record: Mapping[str, Any], allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per input column that is not the pixels or an allowed condition (or was never read)."""
    read = set(record.get("columns_read", ()))
    inputs = list(record.get("input_columns", ()))
    rows = [] if PIXELS in inputs else [{"column": PIXELS, "why": "the pixels are not recorded as the model's input"}]
    for column in inputs:
        if is_label_derived(column):
            rows.append({"column": column, "why": "injection parameter or label-derived"})
        elif column != PIXELS and column not in allowed:
            rows.append({"column": column, "why": "not pixels and not a whitelisted observing condition"})
        elif column not in read:
            rows.append({"column": column, "why": "not among the columns the store read"})
    return rows


def forward_problems(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per distinct forward call that received anything beyond one pixel tensor of len(BANDS) channels."""
    calls = list(record.get("forward_inputs", ()))
    if not calls:
        return [{"forward_call": None, "why": "no forward call recorded: what the model was fed is unknown"}]
    rows = []
    for call in calls:
        why = []
        if call.get("n_args") != 1 or call.get("n_tensors") != 1:
            why.append(f"{call.get('n_args')} positional argument(s), {call.get('n_tensors')} tensor(s) (1 allowed)")
        if call.get("kwargs"):
            why.append(f"keyword argument(s) {', '.join(call['kwargs'])}")
        shape = call.get("shape") or []
        if len(shape) != 3 or shape[0] != len(BANDS):
            channels = shape[0] if shape else None
            why.append(f"input {shape}: {channels} channels ({len(BANDS)} allowed as (band, y, x): {', '.join(BANDS)})")
        if why:
            rows.append({"forward_call": dict(call), "why": "; ".join(why)})
    return rows


def check(record: Mapping[str, Any], thresholds: L10Thresholds) -> Finding:
    """Pass when every model input column is the pixels or an allowed condition (none label-derived) and
    every forward call received exactly one pixel tensor with one channel per band."""
    lesson = LESSONS["L10"]
    allowed = tuple(thresholds.allowed_conditions)
    offending = column_problems(record, allowed) + forward_problems(record)
    evidence, n = evidence_rows(offending)
    named = [row["column"] if "column" in row else f"forward call with {row['why']}" for row in offending]
    return Finding(
        id="L10",
        title=lesson.title,
        passed=not offending,
        measured={
            "input_columns": list(record.get("input_columns", ())),
            "forward_inputs": list(record.get("forward_inputs", ())),
        },
        threshold={"pixels": PIXELS, "allowed_conditions": list(allowed), "forward_inputs": FORWARD_ALLOWED},
        detail=(
            "the model was fed one pixel tensor (and whitelisted conditions) only"
            if not offending
            else f"model fed {n} forbidden input(s): " + "; ".join(named)
        ),
        evidence=evidence,
        n_offending=n,
    )
