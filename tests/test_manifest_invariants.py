"""L1, L2, L5, L6, L11 and the manifest schema: valid manifests pass every check, and each single
corruption trips its own id and no other."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import spec_data
from hosts import synthetic_parent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darkhalo.expansion import Expansion, expand_hosts, host_frame
from darkhalo.spec import spec_from_dict
from data_contracts.confusers import CLASSES, PLAIN
from data_contracts.invariants import (
    l1_unpaired_controls,
    l2_resolvable_injections,
    l5_sky_disjoint_splits,
    l6_host_matching,
    l11_hard_negatives,
)
from data_contracts.manifest import Manifest
from data_contracts.schema import schema_finding
from data_contracts.thresholds import L2Thresholds, L6Thresholds, L11Thresholds

#: L11 on a small sky: each class resolving FPR 0.5 at 1 expected false positive (2 test control hosts).
L11_SMALL = L11Thresholds(resolve_fpr=0.5)


def _spec(seed: int = 3, fraction: float = 0.5):
    data = spec_data("gen2_resnet18_unpaired_survey_psf")
    data["seed"] = seed
    data["controls"]["fraction"] = fraction
    data["controls"].pop("test_fraction", None)
    data["splits"] = {"nside": 128, "fractions": {"train": 0.5, "val": 0.1, "test": 0.4}}
    data["survey"]["confusers"] = dict.fromkeys(CLASSES, 0.1)  # enough of each class in a small sky
    data["grid"]["theta_e_arcsec"] = [1.0, 1.25, 1.5, 2.0]  # all resolvable for PSFSIZE_R <= 2"
    return spec_from_dict(data)


def _valid(seed: int = 3, n: int = 1500, fraction: float = 0.5) -> pd.DataFrame:
    spec = _spec(seed, fraction)
    parent = synthetic_parent(n, seed=seed)
    parent["PSFSIZE_R"] = parent["PSFSIZE_R"].clip(upper=1.9).astype(np.float32)
    expansion = Expansion.of(spec)
    return expand_hosts(host_frame(parent, expansion=expansion), expansion=expansion)


def _findings(manifest: pd.DataFrame) -> dict[str, bool]:
    checks = [
        schema_finding(Manifest, manifest, "manifest"),
        l1_unpaired_controls.check(manifest),
        l2_resolvable_injections.check(manifest[manifest.label == 1], L2Thresholds()),
        l5_sky_disjoint_splits.check(manifest),
        l6_host_matching.check(manifest, L6Thresholds()),
        l11_hard_negatives.check(manifest, CLASSES, L11_SMALL, 1),
    ]
    return {f.id: f.passed for f in checks}


def _failing(manifest: pd.DataFrame) -> set[str]:
    return {name for name, passed in _findings(manifest).items() if not passed}


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(600, 2500), fraction=st.sampled_from([0.3, 0.5, 0.7]))
def test_valid_manifests_pass_every_check(seed: int, n: int, fraction: float) -> None:
    assert _failing(_valid(seed, n, fraction)) == set()


def _pair_a_control(m: pd.DataFrame) -> pd.DataFrame:
    """One control stamp moved onto a positive host (same split): a paired control."""
    m = m.copy()
    pos = m[m.label == 1].iloc[0]
    ctrl = m.index[(m.label == 0) & (m.split == pos.split)][0]
    for column in ("RELEASE", "BRICKID", "OBJID", "healpix"):
        m.loc[ctrl, column] = pos[column]
    m.loc[ctrl, "host_id"] = pos["host_id"] + 0  # same host
    m.loc[ctrl, "config_id"] = -1
    return m


def _unresolvable(m: pd.DataFrame) -> pd.DataFrame:
    """Every positive's theta_E shrunk to 0.3": the Gen 1 grid's smallest value."""
    m = m.copy()
    m.loc[m.label == 1, "theta_e"] = 0.3
    return m


def _split_leak(m: pd.DataFrame) -> pd.DataFrame:
    """One stamp of a multi-stamp host moved to another split (host and pixel now span two)."""
    m = m.copy()
    counts = m.groupby("host_id").size()
    host = counts[counts > 1].index[0]
    row = m.index[m.host_id == host][0]
    m.loc[row, "split"] = "test" if m.loc[row, "split"] != "test" else "train"
    return m


def _mismatched_hosts(m: pd.DataFrame) -> pd.DataFrame:
    """Control hosts made 1.5 mag fainter in r (FLUX_R and FLUX_Z scaled together: colour kept)."""
    m = m.copy()
    ctrl = m.label == 0
    for band in ("R", "Z"):
        m.loc[ctrl, f"FLUX_{band}"] = (m.loc[ctrl, f"FLUX_{band}"] * 10 ** (-0.6)).astype(np.float32)
    return m


def _nan_parameter(m: pd.DataFrame) -> pd.DataFrame:
    """One positive's source flux set to NaN."""
    m = m.copy()
    m.loc[m.index[m.label == 1][0], "src_flux_r"] = np.nan
    return m


def _rings_relabelled_plain(m: pd.DataFrame) -> pd.DataFrame:
    """Every test control of the ring class recorded as a plain host: one enabled class missing."""
    m = m.copy()
    m.loc[(m.split == "test") & (m.label == 0) & (m.confuser == "ring"), "confuser"] = PLAIN
    return m


def _unknown_confuser(m: pd.DataFrame) -> pd.DataFrame:
    """One stamp's confuser class outside the known values."""
    m = m.copy()
    m.loc[m.index[0], "confuser"] = "galaxy_zoo"
    return m


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_pair_a_control, "L1"),
        (_unresolvable, "L2"),
        (_split_leak, "L5"),
        (_mismatched_hosts, "L6"),
        (_rings_relabelled_plain, "L11"),
        (_nan_parameter, "schema:manifest"),
        (_unknown_confuser, "schema:manifest"),
    ],
    ids=[
        "paired-control",
        "unresolvable",
        "split-leak",
        "mismatched-hosts",
        "rings-lost",
        "nan-parameter",
        "unknown-confuser",
    ],
)
def test_each_single_corruption_trips_only_its_own_check(corrupt, expected: str) -> None:
    assert _failing(corrupt(_valid())) == {expected}


def test_gen1_style_paired_manifest_fails_l1_with_evidence() -> None:
    data = spec_data("gen1_resnet18_v3_color_relaxed")
    data["splits"] = {"nside": 128}
    spec = spec_from_dict(data)
    expansion = Expansion.of(spec)
    manifest = expand_hosts(host_frame(synthetic_parent(40), expansion=expansion), expansion=expansion)
    finding = l1_unpaired_controls.check(manifest)
    assert not finding.passed and finding.measured == 40 and finding.evidence[0]["splits"]


def test_l2_measures_the_share_against_each_hosts_own_psf() -> None:
    positives = pd.DataFrame({"theta_e": [0.6, 0.6, 1.0, 1.0], "PSFSIZE_R": [1.0, 1.5, 1.9, 2.1]})
    finding = l2_resolvable_injections.check(positives, L2Thresholds(min_ratio=0.5, min_share=0.5))
    assert finding.measured == 0.5 and finding.passed and finding.n_offending == 2
    assert {row["theta_e"]: row["resolved_share"] for row in finding.evidence} == {0.6: 0.5, 1.0: 0.5}


def test_l11_fails_a_sky_of_smooth_hosts_too_few_of_a_class_and_untrained_classes() -> None:
    valid = _valid()
    smooth = valid.assign(confuser=PLAIN)
    assert "no confuser class" in l11_hard_negatives.check(smooth, (), L11_SMALL, 1).detail
    few = l11_hard_negatives.check(valid, CLASSES, L11Thresholds(resolve_fpr=0.01), 10)
    assert not few.passed and "need 1,000" in few.detail and few.measured["ring"] < 1000
    scaled = l11_hard_negatives.check(valid, CLASSES, L11Thresholds(resolve_fpr=0.01), 10, scale=100)
    assert scaled.passed, scaled.detail  # a pre-flight sample of 1 % of the sky, extrapolated
    rare = l11_hard_negatives.check(valid, CLASSES, L11Thresholds(resolve_fpr=0.5, min_share=0.9), 1)
    assert not rare.passed and "below 90%" in rare.detail
    train = (valid.split == "train") & (valid.label == 0) & (valid.confuser == "spiral")
    untrained = l11_hard_negatives.check(
        valid.assign(confuser=valid.confuser.mask(train, PLAIN)), CLASSES, L11_SMALL, 1
    )
    assert not untrained.passed and "no training control of class spiral" in untrained.detail


def _expanded(data: dict, parent: pd.DataFrame) -> pd.DataFrame:
    expansion = Expansion.of(spec_from_dict(data))
    return expand_hosts(host_frame(parent, expansion=expansion), expansion=expansion)


def test_every_host_carries_its_class_and_training_without_hard_negatives_keeps_them_for_the_test() -> None:
    data, parent = _spec().model_dump(mode="json"), synthetic_parent(1500, seed=3)
    manifest = _expanded(data, parent)
    assert (manifest.groupby("host_id")["confuser"].nunique() == 1).all()  # the host's class, on every stamp
    shares = manifest.drop_duplicates("host_id")["confuser"].value_counts(normalize=True)
    assert all(0.05 < shares.get(name, 0) < 0.16 for name in CLASSES)  # 0.1 each over ~1,500 hosts
    data["controls"]["hard_negatives_in_training"] = False
    without = _expanded(data, parent)
    assert set(without.loc[without.split != "test", "confuser"]) == {PLAIN}
    test_ids = manifest.loc[manifest.split == "test", "stamp_id"]
    assert sorted(without.loc[without.split == "test", "stamp_id"]) == sorted(test_ids)
    finding = l11_hard_negatives.check(without, CLASSES, L11_SMALL, 1)
    assert not finding.passed and "no training control of class" in finding.detail
