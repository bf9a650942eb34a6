"""L10: the model is fed pixels (and whitelisted conditions) only; each single leak is caught."""

from __future__ import annotations

import pytest

from darkhalo.training.store import MODEL_INPUT_COLUMNS
from data_contracts.invariants.l10_no_label_leakage import check


def test_the_trainers_inputs_pass() -> None:
    finding = check(list(MODEL_INPUT_COLUMNS), ())
    assert finding.id == "L10" and finding.passed and finding.n_offending == 0
    assert finding.measured == ["image"]


def test_a_whitelisted_observing_condition_passes() -> None:
    assert check(["image", "PSFSIZE_R"], ("PSFSIZE_R",)).passed


@pytest.mark.parametrize(
    ("extra", "allowed", "why"),
    [
        ("theta_e", (), "injection parameter"),
        ("arc_snr", (), "injection parameter"),
        ("src_mag_r", (), "injection parameter"),
        ("label", (), "injection parameter"),
        ("PSFSIZE_R", (), "not a whitelisted observing condition"),
        ("arc_snr", ("arc_snr",), "injection parameter"),  # whitelisting a leak does not make it safe
    ],
)
def test_one_leaked_column_fails_and_is_named(extra: str, allowed: tuple[str, ...], why: str) -> None:
    finding = check(["image", extra], allowed)
    assert not finding.passed and finding.blocking and finding.id == "L10"
    assert finding.n_offending == 1 and finding.evidence[0]["column"] == extra
    assert why in finding.evidence[0]["why"] and extra in finding.detail
