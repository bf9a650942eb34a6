"""L10, no label leakage: the model is fed pixels and, at most, whitelisted observing conditions.

The trainer records the columns it actually fed the model; this check fails on any other column,
and on an injection parameter or label-derived column even when a spec whitelists it.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_contracts.findings import Finding, evidence_rows
from data_contracts.lessons import LESSONS

PIXELS = "image"
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


def check(model_input_columns: Sequence[str], allowed: Sequence[str]) -> Finding:
    """Pass when every model input is the pixels or an allowed condition, and none is label-derived."""
    lesson = LESSONS["L10"]
    offending = []
    for column in model_input_columns:
        if is_label_derived(column):
            offending.append({"column": column, "why": "injection parameter or label-derived"})
        elif column != PIXELS and column not in allowed:
            offending.append({"column": column, "why": "not pixels and not a whitelisted observing condition"})
    evidence, n = evidence_rows(offending)
    return Finding(
        id="L10",
        title=lesson.title,
        passed=not offending,
        measured=list(model_input_columns),
        threshold={"pixels": PIXELS, "allowed_conditions": list(allowed)},
        detail=(
            "model inputs are the pixels and whitelisted conditions only"
            if not offending
            else f"model fed {n} forbidden column(s): " + ", ".join(r["column"] for r in offending)
        ),
        evidence=evidence,
        n_offending=n,
    )
