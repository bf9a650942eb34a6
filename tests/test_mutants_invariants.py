"""Boundary tests of the invariants L1-L10, written against mutation testing (benchmarks/mutation.py).

Each test corrupts exactly one thing in a small hand-made input and checks that the invariant fires
(or, at its boundary, does not), with the measured value it reports. They need no Spark and no
darkhalo stage, so the mutation run can afford them on every mutant. The seven one-line weakenings
that once survived the whole suite each have a test here that kills them (named in its docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from data_contracts.findings import MAX_EVIDENCE_ROWS
from data_contracts.invariants import (
    l1_unpaired_controls,
    l2_resolvable_injections,
    l3_psf_wings,
    l5_sky_disjoint_splits,
    l6_host_matching,
    l7_realistic_arcs,
    l8_stamp_integrity,
    l9_no_shortcut,
    l10_no_label_leakage,
)
from data_contracts.thresholds import (
    L2Thresholds,
    L3Thresholds,
    L6Thresholds,
    L7Thresholds,
    L8Thresholds,
    L9Thresholds,
    L10Thresholds,
)

# --------------------------------------------------------------------------------------------- L1, L5


def _manifest(rows: list[tuple[int, int, int, int, str, int]]) -> pd.DataFrame:
    """(RELEASE, BRICKID, OBJID, label, split, healpix) rows."""
    return pd.DataFrame(rows, columns=["RELEASE", "BRICKID", "OBJID", "label", "split", "healpix"])


CLEAN = [
    (10, 1, 1, 1, "train", 100),
    (10, 1, 1, 1, "train", 100),  # a host with two positive stamps
    (10, 1, 2, 0, "train", 100),
    (10, 1, 3, 1, "val", 200),
    (10, 1, 4, 0, "val", 200),
    (10, 2, 1, 0, "test", 300),
    (10, 2, 1, 0, "test", 300),  # a control host twice: still only a control
    (10, 2, 2, 1, "test", 300),
]


def test_l1_and_l5_pass_a_clean_manifest() -> None:
    m = _manifest(CLEAN)
    l1, l5 = l1_unpaired_controls.check(m), l5_sky_disjoint_splits.check(m)
    assert (l1.id, l1.passed, l1.measured, l1.threshold, l1.n_offending, l1.evidence) == ("L1", True, 0, 0, 0, ())
    assert l1.title == "unpaired controls" and l1.detail == "0 of 6 hosts are both a positive host and a control"
    assert (l5.id, l5.passed, l5.measured, l5.threshold, l5.n_offending, l5.evidence) == ("L5", True, 0, 0, 0, ())
    assert l5.title == "sky-disjoint splits" and l5.detail == "0 hosts or sky pixels span more than one split"


def test_l1_catches_a_positive_host_in_train_that_is_a_control_in_test() -> None:
    """Kills 'L1 per split only': the pairing spans two splits, so no single split shows it."""
    m = _manifest([*CLEAN, (10, 1, 3, 0, "test", 300)])  # host (10, 1, 3): positive in val, control in test
    finding = l1_unpaired_controls.check(m)
    assert not finding.passed and finding.measured == 1 and finding.n_offending == 1
    assert finding.evidence == ({"RELEASE": 10, "BRICKID": 1, "OBJID": 3, "splits": "test,val"},)
    assert finding.detail == "1 of 6 hosts are both a positive host and a control"


def test_l1_catches_a_paired_control_within_one_split_and_keys_on_all_three_columns() -> None:
    m = _manifest([*CLEAN, (10, 2, 2, 0, "test", 300), (11, 1, 2, 1, "train", 100)])
    finding = l1_unpaired_controls.check(m)
    # (10, 2, 2) is paired; (11, 1, 2) shares BRICKID and OBJID with control (10, 1, 2) but not RELEASE
    assert not finding.passed and finding.measured == 1
    assert finding.evidence == ({"RELEASE": 10, "BRICKID": 2, "OBJID": 2, "splits": "test"},)
    assert finding.detail == "1 of 7 hosts are both a positive host and a control"


def test_l5_catches_two_different_hosts_sharing_a_healpix_pixel_across_splits() -> None:
    """Kills 'L5 without the sky-region check': every host stays in one split, only the pixel spans two."""
    m = _manifest([*CLEAN, (10, 3, 1, 1, "test", 100)])  # a new host, in test, on train's pixel 100
    finding = l5_sky_disjoint_splits.check(m)
    assert not finding.passed and finding.measured == 1 and finding.n_offending == 1
    assert finding.evidence == ({"kind": "healpix", "key": "100", "splits": "test,train"},)
    assert l1_unpaired_controls.check(m).passed


def test_l5_catches_one_host_in_two_splits_even_on_two_pixels() -> None:
    m = _manifest([*CLEAN, (10, 1, 4, 0, "test", 300)])  # host (10, 1, 4): val (pixel 200) and test (300)
    finding = l5_sky_disjoint_splits.check(m)
    assert not finding.passed and finding.measured == 1
    assert finding.evidence == ({"kind": "host", "key": "(10, 1, 4)", "splits": "test,val"},)


def test_l5_counts_every_offender_but_keeps_only_the_evidence_cap() -> None:
    rows = [(10, 9, i, 0, split, 1000 + i) for i in range(MAX_EVIDENCE_ROWS + 5) for split in ("train", "test")]
    finding = l5_sky_disjoint_splits.check(_manifest(rows))
    assert finding.measured == finding.n_offending == 2 * (MAX_EVIDENCE_ROWS + 5)
    assert len(finding.evidence) == MAX_EVIDENCE_ROWS and finding.evidence[0]["kind"] == "host"


def test_l1_evidence_is_capped_but_the_count_is_not() -> None:
    rows = [(10, 9, i, label, "train", 5) for i in range(60) for label in (0, 1)]
    finding = l1_unpaired_controls.check(_manifest(rows))
    assert finding.measured == finding.n_offending == 60 and len(finding.evidence) == MAX_EVIDENCE_ROWS
    assert [row["OBJID"] for row in finding.evidence] == list(range(MAX_EVIDENCE_ROWS))


# ------------------------------------------------------------------------------------------------- L2


def test_l2_ratio_exactly_min_ratio_is_resolved() -> None:
    mask = l2_resolvable_injections.resolved_mask(np.array([0.5, 0.5, 0.75]), np.array([1.0, 1.0 + 1e-9, 1.5]), 0.5)
    assert mask.tolist() == [True, False, True]


def test_l2_share_exactly_min_share_passes() -> None:
    """Kills L2's '>=' as '>': 3 of 4 positives resolved against a minimum share of 0.75."""
    positives = pd.DataFrame({"theta_e": [0.5, 1.0, 1.0, 0.4], "PSFSIZE_R": [1.0, 1.0, 2.0, 1.0]})
    finding = l2_resolvable_injections.check(positives, L2Thresholds(min_ratio=0.5, min_share=0.75))
    assert finding.passed and finding.measured == 0.75 and finding.threshold == 0.75 and finding.n_offending == 1
    assert finding.id == "L2" and finding.title == "resolvable injections"
    assert finding.detail == "75.0% of 4 positives have theta_E / PSFSIZE_R >= 0.5"
    assert finding.evidence == (
        {"theta_e": 0.4, "resolved_share": 0.0, "positives": 1},
        {"theta_e": 0.5, "resolved_share": 1.0, "positives": 1},
        {"theta_e": 1.0, "resolved_share": 1.0, "positives": 2},
    )


def test_l2_share_just_below_min_share_fails() -> None:
    positives = pd.DataFrame({"theta_e": [0.5, 1.0, 1.0, 0.4], "PSFSIZE_R": [1.0, 1.0, 2.0, 1.0]})
    finding = l2_resolvable_injections.check(positives, L2Thresholds(min_ratio=0.5, min_share=0.76))
    assert not finding.passed and finding.measured == 0.75


def test_l2_uses_each_hosts_own_psf_and_the_spec_ratio() -> None:
    positives = pd.DataFrame({"theta_e": [1.0, 1.0, 1.0], "PSFSIZE_R": [0.9, 1.1, 1.3]})
    finding = l2_resolvable_injections.check(positives, L2Thresholds(min_ratio=1.0, min_share=0.3))
    assert finding.measured == round(1 / 3, 4) and finding.passed and finding.n_offending == 2
    assert finding.evidence == ({"theta_e": 1.0, "resolved_share": 0.3333, "positives": 3},)


def test_l2_no_positives_fails_with_a_reason() -> None:
    finding = l2_resolvable_injections.check(pd.DataFrame({"theta_e": [], "PSFSIZE_R": []}), L2Thresholds())
    assert not finding.passed and finding.measured is None and finding.threshold == 0.8
    assert finding.detail == "no positives to judge" and finding.id == "L2" and finding.title == "resolvable injections"


# ------------------------------------------------------------------------------------------------- L6


def _hosts(pos: dict[str, np.ndarray], neg: dict[str, np.ndarray], split: str = "test", start: int = 0):
    """A manifest of unique positive and control hosts with the L6 columns (defaults equal in both)."""
    frames = []
    for label, values in ((1, pos), (0, neg)):
        n = len(next(iter(values.values())))
        base = {"FLUX_R": np.full(n, 10.0), "FLUX_Z": np.full(n, 20.0), "PSFSIZE_R": np.full(n, 1.2)}
        base["PSFDEPTH_R"] = np.full(n, 2000.0)
        frame = pd.DataFrame({**base, **values})
        frame["RELEASE"], frame["BRICKID"] = 10, 7
        frame["OBJID"] = start + label * 100_000 + np.arange(n)
        frame["label"], frame["split"] = label, split
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


N6 = 1000
GRID = np.linspace(0.0, 1.0, N6)


def _alpha(n_splits: int) -> float:
    return 0.01 / (n_splits * 4)


def _critical(n: int, m: int, alpha: float) -> float:
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def test_l6_matched_hosts_pass_with_ks_zero() -> None:
    finding = l6_host_matching.check(_hosts({"PSFSIZE_R": 1 + GRID}, {"PSFSIZE_R": 1 + GRID[::-1]}), L6Thresholds())
    assert finding.passed and finding.measured == 0.0 and finding.threshold == 1.0 and finding.n_offending == 0
    assert finding.id == "L6" and finding.title == "host matching"
    assert finding.detail == "largest KS statistic / bound over splits and properties"


@pytest.mark.parametrize("column", ["PSFSIZE_R", "PSFDEPTH_R", "FLUX_R", "FLUX_Z"])
def test_l6_a_mismatch_in_one_property_alone_fails(column: str) -> None:
    """Kills 'L6 without PSF size and depth': only that column differs between positive and control hosts."""
    base = {"PSFSIZE_R": 1.2, "PSFDEPTH_R": 2000.0, "FLUX_R": 10.0, "FLUX_Z": 20.0}[column]
    m = _hosts({column: base * (1 + GRID)}, {column: base * (1.5 + GRID)})
    finding = l6_host_matching.check(m, L6Thresholds())
    props = {"PSFSIZE_R": ["PSFSIZE_R"], "PSFDEPTH_R": ["PSFDEPTH_R"]}
    props |= {"FLUX_R": ["mag_r", "r_minus_z"], "FLUX_Z": ["r_minus_z"]}
    assert not finding.passed
    assert [row["property"] for row in finding.evidence] == props[column]
    assert finding.n_offending == len(props[column]) and all(row["split"] == "test" for row in finding.evidence)
    assert finding.detail.endswith(f"; {len(props[column])} (split, property) pairs exceed their bound")


def test_l6_a_ks_between_the_bound_and_twice_it_fails() -> None:
    """Kills 'L6 with a doubled KS bound': KS = 0.15 against max_ks = 0.1 (the critical value is ~0.08)."""
    m = _hosts({"PSFSIZE_R": 1 + GRID}, {"PSFSIZE_R": 1.15 + GRID})
    assert _critical(N6, N6, _alpha(1)) < 0.1
    ks = stats.ks_2samp(1 + GRID, 1.15 + GRID).statistic
    assert 0.1 < ks < 0.2
    finding = l6_host_matching.check(m, L6Thresholds(max_ks=0.1))
    assert not finding.passed and finding.measured == round(ks / 0.1, 4)
    assert finding.evidence == ({"split": "test", "property": "PSFSIZE_R", "ks": round(ks, 4), "bound": 0.1},)
    assert l6_host_matching.check(m, L6Thresholds(max_ks=0.16)).passed


def test_l6_ks_exactly_at_the_bound_passes() -> None:
    pos, neg = np.arange(N6, dtype=float), np.arange(N6, dtype=float) + 150  # KS = 0.15, critical value ~0.08
    ks = stats.ks_2samp(pos, neg).statistic
    m = _hosts({"PSFSIZE_R": 1 + pos / N6}, {"PSFSIZE_R": 1 + neg / N6})
    at = l6_host_matching.check(m, L6Thresholds(max_ks=float(ks)))
    assert at.passed and at.measured == 1.0 and at.n_offending == 0
    assert not l6_host_matching.check(m, L6Thresholds(max_ks=float(ks) * 0.999)).passed


def test_l6_small_splits_are_judged_against_the_bonferroni_critical_value() -> None:
    n = 12
    pos, neg = np.arange(n, dtype=float), np.arange(n, dtype=float) + 6  # KS = 0.5
    m = pd.concat(
        [
            _hosts({"PSFSIZE_R": pos}, {"PSFSIZE_R": neg}, split="val"),
            _hosts({"PSFSIZE_R": pos}, {"PSFSIZE_R": pos}, split="test", start=5000),
        ],
        ignore_index=True,
    )
    crit = _critical(n, n, _alpha(2))
    assert l6_host_matching.ks_critical(n, n, _alpha(2)) == pytest.approx(crit, rel=1e-12)
    assert 0.5 < crit < 1
    finding = l6_host_matching.check(m, L6Thresholds(max_ks=0.1))
    assert finding.passed and finding.measured == round(0.5 / crit, 4)
    # the same KS in a sample large enough for max_ks to bind fails
    big = _hosts(
        {"PSFSIZE_R": np.repeat(pos, 100) + np.tile(GRID[:100] / 10, n)},
        {"PSFSIZE_R": np.repeat(neg, 100) + np.tile(GRID[:100] / 10, n)},
    )
    assert not l6_host_matching.check(big, L6Thresholds(max_ks=0.1)).passed


def test_l6_ks_critical_value() -> None:
    assert l6_host_matching.ks_critical(100, 400, 0.01) == pytest.approx(
        math.sqrt(-math.log(0.005) / 2) * math.sqrt(500 / 40_000), rel=1e-12
    )


def test_l6_counts_each_host_once_and_skips_splits_with_fewer_than_two_of_a_class() -> None:
    pos, neg = np.arange(20, dtype=float), np.arange(20, dtype=float) + 10  # KS = 0.5
    m = _hosts({"PSFSIZE_R": pos}, {"PSFSIZE_R": neg})
    once = l6_host_matching.check(m, L6Thresholds(max_ks=0.1)).measured
    repeated = pd.concat([m, m[m.label == 1], m[m.label == 1]], ignore_index=True)  # each positive host 3 stamps
    assert (
        l6_host_matching.check(repeated, L6Thresholds(max_ks=0.1)).measured
        == once
        == round(0.5 / _critical(20, 20, _alpha(1)), 4)
    )
    one_pos = _hosts({"PSFSIZE_R": np.r_[0.0]}, {"PSFSIZE_R": np.r_[5.0, 6.0, 7.0]})
    one_neg = _hosts({"PSFSIZE_R": np.r_[0.0, 1.0, 2.0]}, {"PSFSIZE_R": np.r_[9.0]})
    for m1 in (one_pos, one_neg):
        finding = l6_host_matching.check(m1, L6Thresholds(max_ks=0.1))
        assert finding.passed and finding.measured == 0.0
    two = _hosts({"PSFSIZE_R": np.r_[0.0, 1.0]}, {"PSFSIZE_R": np.r_[5.0, 6.0]})  # two of each: judged
    assert l6_host_matching.check(two, L6Thresholds(max_ks=0.1)).measured == round(1 / _critical(2, 2, _alpha(1)), 4)


def test_l6_ignores_non_finite_values_and_measures_raw_magnitudes() -> None:
    pos = {"PSFSIZE_R": np.r_[1 + GRID[:-1], np.nan]}
    neg = {"PSFSIZE_R": np.r_[1 + GRID[:-1], np.inf]}
    assert l6_host_matching.check(_hosts(pos, neg), L6Thresholds()).measured == 0.0
    props = l6_host_matching.host_properties(
        pd.DataFrame({"FLUX_R": [10.0, 0.0], "FLUX_Z": [100.0, 1.0], "PSFSIZE_R": [1.1, 1.2], "PSFDEPTH_R": [5.0, 6.0]})
    )
    assert list(props.columns) == ["mag_r", "r_minus_z", "PSFSIZE_R", "PSFDEPTH_R"]
    assert props["mag_r"].iloc[0] == pytest.approx(20.0) and props["r_minus_z"].iloc[0] == pytest.approx(2.5)
    assert np.isnan(props["mag_r"].iloc[1]) and props["PSFDEPTH_R"].tolist() == [5.0, 6.0]  # no magnitude


# ------------------------------------------------------------------------------------------------- L3


def _wings(injection_share: float, bands: tuple[str, ...] = ("g", "r", "z")) -> pd.DataFrame:
    ref = l3_psf_wings.reference()
    table = ref[ref.band.isin(bands)].copy()
    table["psf_wing_2fwhm"] = table["real_wing_2fwhm"] * injection_share
    table["psf_wing_3as"] = table["real_wing_3as"] * injection_share
    return table


def test_l3_reference_table_is_the_real_psfex_models() -> None:
    ref = l3_psf_wings.reference()
    assert list(ref.columns) == l3_psf_wings.REFERENCE_COLUMNS and set(ref.band) == {"g", "r", "z"}
    assert len(ref) == 20 and (ref.real_wing_2fwhm > 0.01).all()


def test_l3_shortfall_is_relative_and_never_negative() -> None:
    short = l3_psf_wings.shortfall(np.array([0.025, 0.06, 0.0, 0.0]), np.array([0.05, 0.05, 0.04, 0.0]))
    assert short.tolist() == [0.5, 0.0, 1.0, 0.0]


def test_l3_shortfall_exactly_at_the_tolerance_passes_and_just_over_fails() -> None:
    at = l3_psf_wings.check(_wings(0.5), L3Thresholds(rel_tolerance=0.5))
    assert at.passed and at.measured["r"] == {"2fwhm": 0.5, "3arcsec": 0.5} and at.n_offending == 0
    assert (
        at.threshold == {"rel_tolerance": 0.5, "bands": ["r"]} and at.id == "L3" and at.title == "realistic PSF wings"
    )
    assert "against 20 real DECam PSFEx models" in at.detail and "judged in r" in at.detail and "over" not in at.detail
    over = l3_psf_wings.check(_wings(0.49), L3Thresholds(rel_tolerance=0.5))
    assert not over.passed and over.n_offending == 2
    assert over.evidence == (
        {"band": "r", "measure": "2fwhm", "median_shortfall": 0.51},
        {"band": "r", "measure": "3arcsec", "median_shortfall": 0.51},
    )
    assert over.detail.endswith("; 2 (band, measure) over 50%")


def test_l3_judges_the_median_per_band_and_only_the_named_bands() -> None:
    table = _wings(1.0)
    r = table.index[table.band == "r"]
    table.loc[r[:3], "psf_wing_2fwhm"] = 0.0  # 3 of 7 r models with no wing: the median still has one
    assert l3_psf_wings.check(table, L3Thresholds()).passed
    table.loc[r[:4], "psf_wing_2fwhm"] = 0.0  # 4 of 7: the median has none
    finding = l3_psf_wings.check(table, L3Thresholds())
    assert not finding.passed and finding.measured["r"]["2fwhm"] == 1.0 and finding.measured["g"]["2fwhm"] == 0.0
    gaussian_g = _wings(1.0)
    gaussian_g.loc[gaussian_g.band == "g", ["psf_wing_2fwhm", "psf_wing_3as"]] = 1e-5
    assert l3_psf_wings.check(gaussian_g, L3Thresholds(bands=("r", "z"))).passed
    assert not l3_psf_wings.check(gaussian_g, L3Thresholds(bands=("g",))).passed


def test_l3_a_judged_band_without_models_or_a_non_finite_measure_fails() -> None:
    finding = l3_psf_wings.check(_wings(1.0, bands=("g", "z")), L3Thresholds(bands=("r",)))
    assert not finding.passed and [row["measure"] for row in finding.evidence] == ["2fwhm", "3arcsec"]
    table = _wings(1.0)
    table.loc[table.index[table.band == "g"][0], "psf_wing_3as"] = np.nan
    finding = l3_psf_wings.check(table, L3Thresholds(bands=("r",)))
    assert not finding.passed and finding.evidence[-1]["measure"] == "finite"


def test_l3_missing_columns_or_no_rows_fail_with_a_reason() -> None:
    finding = l3_psf_wings.check(_wings(1.0).drop(columns=["psf_wing_3as"]), L3Thresholds())
    assert not finding.passed and finding.detail == "missing column(s) psf_wing_3as" and finding.threshold == 0.5
    empty = l3_psf_wings.check(_wings(1.0).iloc[:0], L3Thresholds())
    assert not empty.passed and empty.detail == "no PSF measures to judge" and empty.id == "L3"


# ------------------------------------------------------------------------------------------------- L7


def test_l7_boundaries_are_inclusive_of_the_allowed_side() -> None:
    t = L7Thresholds(min_visible_snr=5.0, max_invisible_share=0.25, max_plausible_snr=500.0, max_bright_share=0.25)
    finding = l7_realistic_arcs.check("prior", np.array([4.9, 5.0, 500.0, 500.1]), t)
    assert finding.passed and finding.measured["invisible_share"] == 0.25 and finding.measured["bright_share"] == 0.25
    assert finding.threshold == {"max_invisible_share": 0.25, "max_bright_share": 0.25} and finding.id == "L7"
    assert (
        finding.measured["snr_p10_p50_p90"] == np.quantile([4.9, 5.0, 500.0, 500.1], [0.1, 0.5, 0.9]).round(2).tolist()
    )
    assert finding.detail.startswith("arc S/N p10/p50/p90 = ")
    tighter = L7Thresholds(
        min_visible_snr=5.0, max_invisible_share=0.24, max_plausible_snr=500.0, max_bright_share=0.25
    )
    assert not l7_realistic_arcs.check("prior", np.array([4.9, 5.0, 500.0, 500.1]), tighter).passed
    tighter = L7Thresholds(
        min_visible_snr=5.0, max_invisible_share=0.25, max_plausible_snr=500.0, max_bright_share=0.24
    )
    assert l7_realistic_arcs.check("prior", np.array([4.9, 5.0, 500.0, 500.1]), tighter).n_offending == 1


def test_l7_no_snr_at_all_fails() -> None:
    finding = l7_realistic_arcs.check("prior", np.array([]), L7Thresholds())
    assert not finding.passed and "0 of 0 positives lack a finite arc S/N" in finding.detail
    assert finding.measured["snr_p10_p50_p90"] == [] and math.isnan(finding.measured["invisible_share"])
    two = l7_realistic_arcs.check("host_relative", np.array([np.nan, 10.0]), L7Thresholds())
    assert two.n_offending == 2 and "1 of 2 positives lack a finite arc S/N" in two.detail


# ------------------------------------------------------------------------------------------------- L8


def _stamps(n: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    cutouts = rng.normal(0, 0.01, (n, 3, 8, 8)).astype(np.float32)
    arcs = (rng.uniform(0, 0.5, (n, 3, 8, 8)) * (np.arange(n) % 2)[:, None, None, None]).astype(np.float32)
    labels = np.arange(n) % 2
    images = (cutouts.astype(np.float64) + arcs).astype(np.float32)
    return images, cutouts, arcs, labels


def test_l8_clean_stamps_have_no_problem() -> None:
    images, cutouts, arcs, labels = _stamps()
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist() == [""] * 4


def test_l8_an_arc_off_by_a_tenth_of_a_percent_fails() -> None:
    """Kills 'L8 with a 1 % tolerance': the positive carries 1.001 x its recorded arc."""
    images, cutouts, arcs, labels = _stamps()
    images[1] = (cutouts[1].astype(np.float64) + 1.001 * arcs[1]).astype(np.float32)
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist() == [
        "",
        "stamp - cutout != arc",
        "",
        "",
    ]
    images[1] = (cutouts[1].astype(np.float64) + (1 + 2e-6) * arcs[1]).astype(np.float32)  # within ARC_REPEAT_RTOL
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist() == [""] * 4


def test_l8_one_pixel_of_one_band_off_by_the_arc_rtol_fails() -> None:
    images, cutouts, arcs, labels = _stamps()
    peak = np.abs(arcs[3, 2]).max()
    images[3, 2, 0, 0] += 3 * l8_stamp_integrity.ARC_REPEAT_RTOL * peak
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels)[3] == "stamp - cutout != arc"


def test_l8_float32_rounding_of_a_bright_cutout_plus_arc_is_allowed() -> None:
    images, cutouts, arcs, labels = _stamps()
    cutouts = (cutouts + 1000.0).astype(np.float32)
    arcs = (arcs * 1e-3).astype(np.float32)
    images = (cutouts.astype(np.float64) + arcs).astype(np.float32)
    assert not np.array_equal(images.astype(np.float64) - cutouts - arcs, np.zeros(images.shape))
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist() == [""] * 4


def test_l8_a_control_must_be_bit_identical_to_its_cutout() -> None:
    images, cutouts, arcs, labels = _stamps()
    images[0, 1, 4, 4] = np.nextafter(images[0, 1, 4, 4], np.float32(np.inf))
    assert (
        l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist()[0]
        == "control differs from its cutout"
    )
    images, cutouts, arcs, labels = _stamps()
    cutouts[2, 0, 0, 0], images[2, 0, 0, 0] = 0.0, -0.0  # equal as numbers, not as bits
    assert (
        l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist()[2]
        == "control differs from its cutout"
    )


def test_l8_bands_swapped_and_non_finite_pixels_fail() -> None:
    images, cutouts, arcs, labels = _stamps()
    images[1] = images[1][[1, 0, 2]]
    images[2, 0, 0, 0] = np.nan
    images[3, 1, 2, 2] = np.inf
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels).tolist() == [
        "",
        "stamp - cutout != arc",
        "non-finite pixels",
        "non-finite pixels",
    ]


def test_l8_recorded_problems_name_the_stamp() -> None:
    ok = l8_stamp_integrity.check_recorded(np.array([7, 8]), np.array(["", ""], dtype=object))
    assert ok.passed and ok.n_offending == 0 and ok.id == "L8" and ok.title == "stamp integrity"
    assert ok.detail == "0 problem(s) in 2 stamps (finite, controls untouched, positives = cutout + arc)"
    bad = l8_stamp_integrity.check_recorded(np.array([7, 8, 9]), np.array(["", "non-finite pixels", "x"], dtype=object))
    assert not bad.passed and bad.n_offending == 2
    assert bad.evidence == ({"stamp_id": 8, "problem": "non-finite pixels"}, {"stamp_id": 9, "problem": "x"})


def test_l8_point_source_tolerances_are_inclusive_and_a_flux_off_by_twice_the_tolerance_fails() -> None:
    t = L8Thresholds(position_tolerance_pix=0.05, flux_rel_tolerance=1e-3)
    ok = l8_stamp_integrity.check_point_source(np.array([0.05, 0.0]), np.array([1.0, 1.0005]), t)
    assert ok.passed and ok.measured == {"max_offset_pix": 0.05, "max_flux_error": pytest.approx(5e-4)}
    assert ok.threshold == {"position_pix": 0.05, "flux_rel": 1e-3} and ok.id == "L8"
    assert ok.detail == "0 of 2 point sources off by more than 0.05 pix or 1.0e-03 in flux"
    flux = l8_stamp_integrity.check_point_source(np.array([0.0, 0.0]), np.array([1.0, 0.998]), t)
    assert not flux.passed and flux.evidence == ({"point_source": 1, "offset_pix": 0.0, "flux_ratio": 0.998},)
    high = l8_stamp_integrity.check_point_source(np.array([0.0]), np.array([1.002]), t)
    assert not high.passed and high.n_offending == 1
    pos = l8_stamp_integrity.check_point_source(np.array([0.051, 0.0]), np.array([1.0, 1.0]), t)
    assert not pos.passed and pos.evidence[0]["point_source"] == 0
    nan = l8_stamp_integrity.check_point_source(np.array([np.nan]), np.array([np.nan]), t)
    assert not nan.passed


def test_l8_point_source_needs_matching_non_empty_inputs() -> None:
    t = L8Thresholds()
    assert not l8_stamp_integrity.check_point_source(np.array([]), np.array([]), t).passed
    shape = l8_stamp_integrity.check_point_source(np.array([0.0, 0.0]), np.array([1.0]), t)
    assert not shape.passed and shape.detail == "need equal, non-empty offsets and flux ratios, got (2,) (1,)"


def test_l8_a_duplicated_host_config_among_positives_fails_but_not_among_controls() -> None:
    rows = pd.DataFrame(
        {
            "RELEASE": [10, 10, 10, 10, 10],
            "BRICKID": [1, 1, 1, 1, 1],
            "OBJID": [1, 1, 2, 3, 3],
            "config_id": [4, 4, 4, -1, -1],
            "label": [1, 1, 1, 0, 0],
        }
    )
    finding = l8_stamp_integrity.check_unique_rows(rows)
    assert not finding.passed and finding.evidence == ({"RELEASE": 10, "BRICKID": 1, "OBJID": 1, "config_id": 4},)
    assert finding.detail == "1 (host, config) pairs appear more than once among positives"
    assert l8_stamp_integrity.check_unique_rows(rows.iloc[1:]).passed


def test_l8_check_merges_its_parts() -> None:
    t = L8Thresholds()
    good = l8_stamp_integrity.check_point_source(np.array([0.01]), np.array([1.0]), t)
    bad = l8_stamp_integrity.check_recorded(np.array([5]), np.array(["non-finite pixels"], dtype=object))
    merged = l8_stamp_integrity.check([bad, good])
    assert not merged.passed and merged.id == "L8" and merged.title == "stamp integrity"
    assert merged.detail == bad.detail and merged.n_offending == 1 and merged.evidence == bad.evidence
    assert merged.measured == good.measured and merged.threshold == good.threshold
    both = l8_stamp_integrity.check([good, good])
    assert both.passed and both.detail == "2 part(s) passed" and both.n_offending == 0
    empty = l8_stamp_integrity.check([])
    assert not empty.passed and empty.detail == "no L8 part was checked"


# ------------------------------------------------------------------------------------------------- L9


def _probes(**changes) -> dict:
    probes = {
        "core_auc": 0.6,
        "ring_auc": 0.9,
        "core_minus_ring_auc_lower": -0.35,
        "blob_flag_rates": {"fpr=0.01": 0.0, "completeness=0.9": 0.0},
        "fpr_at_thresholds": {"fpr=0.01": 0.01, "completeness=0.9": 0.05},
        "n_blobs": 1000,
        "fpr_floor": 0.001,
    }
    return {**probes, **changes}


def test_l9_passes_honest_probes() -> None:
    finding = l9_no_shortcut.check(_probes(), L9Thresholds())
    assert finding.passed and finding.n_offending == 0 and finding.id == "L9" and finding.title == "no shortcut"
    assert finding.measured == {"core_auc": 0.6, "core_minus_ring_auc_lower": -0.35, "blob_lower_bound_over_fpr": 0.0}
    assert finding.threshold == {"core_auc": 0.7, "core_minus_ring_auc_lower": 0.0, "blob_lower_bound_over_fpr": 2.0}
    assert finding.detail.startswith("core AUC 0.600 within 0.7; ") and "(1000 blobs)" in finding.detail


def test_l9_a_core_above_the_auc_bound_fails_once_its_lower_bound_over_the_ring_is_above_zero() -> None:
    """Kills 'L9 with a 0.05 slack on the bound' and 'L9 compares the point AUCs': 0.001 above 0 fails, 0 passes,
    whatever the point AUCs say."""
    t = L9Thresholds(max_core_auc=0.7)
    finding = l9_no_shortcut.check(_probes(core_auc=0.92, ring_auc=0.9, core_minus_ring_auc_lower=0.001), t)
    assert not finding.passed and finding.n_offending == 1
    assert finding.evidence == ({"probe": "core", "auc": 0.92, "bound": 0.7, "core_minus_ring_auc_lower": 0.001},)
    assert finding.detail == "core AUC 0.920 > 0.7, beyond the ring AUC 0.900 at 95 % (core - ring >= +0.001)"
    assert l9_no_shortcut.check(_probes(core_auc=0.92, ring_auc=0.9, core_minus_ring_auc_lower=0.0), t).passed
    assert l9_no_shortcut.check(_probes(core_auc=0.92, ring_auc=0.8, core_minus_ring_auc_lower=-0.01), t).passed
    assert not l9_no_shortcut.check(_probes(core_auc=0.85, ring_auc=0.9, core_minus_ring_auc_lower=0.01), t).passed


def test_l9_the_core_is_judged_by_max_core_auc_alone_within_it_or_without_the_ring_rule() -> None:
    t = L9Thresholds(max_core_auc=0.7)
    assert l9_no_shortcut.check(_probes(core_auc=0.7, core_minus_ring_auc_lower=0.2), t).passed
    above = l9_no_shortcut.check(_probes(core_auc=0.71, core_minus_ring_auc_lower=0.2), t)
    assert not above.passed and above.evidence[0]["bound"] == 0.7
    nan_bound = l9_no_shortcut.check(_probes(core_auc=0.71, core_minus_ring_auc_lower=float("nan")), t)
    assert not nan_bound.passed and nan_bound.evidence[0]["probe"] == "core"
    assert l9_no_shortcut.check(_probes(core_auc=0.69, core_minus_ring_auc_lower=float("nan")), t).passed
    nan_core = l9_no_shortcut.check(_probes(core_auc=float("nan")), t)
    assert not nan_core.passed and nan_core.evidence[0]["probe"] == "core"
    assert nan_core.detail == "core AUC nan is not a number"
    strict = L9Thresholds(max_core_auc=0.7, core_bound_rises_to_ring=False)
    assert not l9_no_shortcut.check(_probes(core_auc=0.71), strict).passed  # a bound of -0.35 does not help
    assert l9_no_shortcut.check(_probes(core_auc=0.7, core_minus_ring_auc_lower=0.2), strict).passed


def test_l9_lower_bound_is_the_one_sided_clopper_pearson_bound() -> None:
    assert l9_no_shortcut.lower_bound(0.0, 100) == 0.0
    assert l9_no_shortcut.lower_bound(0.05, 200) == pytest.approx(stats.beta.ppf(0.05, 10, 191), rel=1e-12)
    assert l9_no_shortcut.lower_bound(0.05, 200, level=0.99) == pytest.approx(stats.beta.ppf(0.01, 10, 191), rel=1e-12)
    assert l9_no_shortcut.lower_bound(1.0, 10) == pytest.approx(0.05 ** (1 / 10), rel=1e-12)


def test_l9_blobs_flagged_beyond_the_allowed_multiple_of_the_fpr_fail_by_their_lower_bound() -> None:
    n = 1000
    # the largest rate whose 95 % lower bound is within 2 x FPR = 0.02 passes; one more blob flagged fails
    k = max(k for k in range(n) if stats.beta.ppf(0.05, k, n - k + 1) <= 0.02)
    ok = l9_no_shortcut.check(_probes(blob_flag_rates={"fpr=0.01": k / n, "completeness=0.9": 0.0}), L9Thresholds())
    assert ok.passed and ok.measured["blob_lower_bound_over_fpr"] == round(stats.beta.ppf(0.05, k, n - k + 1) / 0.01, 4)
    rates = {"fpr=0.01": (k + 1) / n, "completeness=0.9": 0.0}
    bad = l9_no_shortcut.check(_probes(blob_flag_rates=rates), L9Thresholds())
    ratio = stats.beta.ppf(0.05, k + 1, n - k) / 0.01
    assert not bad.passed and bad.n_offending == 1
    assert bad.evidence == (
        {
            "probe": "blob",
            "operating_point": "fpr=0.01",
            "blob_rate": (k + 1) / n,
            "fpr": 0.01,
            "ratio": pytest.approx(ratio),
        },
    )
    assert bad.detail == f"blobs flagged {ratio:.2f}x the FPR (95 % lower bound) at fpr=0.01"
    assert l9_no_shortcut.check(_probes(blob_flag_rates=rates), L9Thresholds(max_blob_rate_ratio=ratio)).passed


def test_l9_an_fpr_of_zero_counts_as_the_floor() -> None:
    fprs = {"fpr=0.01": 0.0, "completeness=0.9": 0.05}
    rates = {"fpr=0.01": 0.01, "completeness=0.9": 0.0}
    finding = l9_no_shortcut.check(
        _probes(blob_flag_rates=rates, fpr_at_thresholds=fprs, fpr_floor=0.01), L9Thresholds()
    )
    lb = stats.beta.ppf(0.05, 10, 991)
    assert finding.passed and finding.measured["blob_lower_bound_over_fpr"] == round(lb / 0.01, 4)
    zero = l9_no_shortcut.check(_probes(blob_flag_rates=rates, fpr_at_thresholds=fprs, fpr_floor=0.0), L9Thresholds())
    assert not zero.passed and zero.evidence[0]["ratio"] == math.inf
    high = l9_no_shortcut.check(_probes(blob_flag_rates=rates, fpr_at_thresholds=fprs, fpr_floor=0.001), L9Thresholds())
    assert not high.passed and high.evidence[0]["fpr"] == 0.001


def test_l9_missing_probes_or_mismatched_operating_points_fail_with_a_reason() -> None:
    probes = _probes()
    del probes["n_blobs"], probes["fpr_floor"]
    finding = l9_no_shortcut.check(probes, L9Thresholds())
    assert not finding.passed and finding.detail == "probes lack n_blobs, fpr_floor" and finding.id == "L9"
    odd = l9_no_shortcut.check(_probes(blob_flag_rates={"fpr=0.01": 0.0}), L9Thresholds())
    assert not odd.passed and odd.detail == (
        "blob rates and FPRs name different operating points: ['fpr=0.01'] vs ['completeness=0.9', 'fpr=0.01']"
    )


def test_l9_every_offending_probe_is_reported() -> None:
    rates = {"fpr=0.01": 0.5, "completeness=0.9": 0.5}
    finding = l9_no_shortcut.check(
        _probes(core_auc=0.95, core_minus_ring_auc_lower=0.05, blob_flag_rates=rates), L9Thresholds()
    )
    assert finding.n_offending == 3 and [row["probe"] for row in finding.evidence] == ["core", "blob", "blob"]
    assert finding.detail.count("; ") == 2


# ------------------------------------------------------------------------------------------------ L10


def _record(**changes) -> dict:
    call = {"n_args": 1, "n_tensors": 1, "kwargs": [], "shape": [3, 16, 16], "channels": 3, "calls": 4}
    return {
        "columns_read": ["label", "image", "PSFSIZE_R"],
        "input_columns": ["image"],
        "forward_inputs": [call],
    } | changes


def test_l10_label_derived_names_by_name_and_prefix_case_insensitive() -> None:
    derived = ["label", "ROLE", "theta_e", "src_mag_r", "ARC_SNR", "psf_model", "magnification"]
    assert all(l10_no_label_leakage.is_label_derived(c) for c in derived)
    assert not any(l10_no_label_leakage.is_label_derived(c) for c in ["image", "PSFSIZE_R", "source", "arcs", "xsrc_"])


def test_l10_pixels_only_pass_and_each_leak_is_named() -> None:
    t = L10Thresholds(allowed_conditions=("PSFSIZE_R",))
    ok = l10_no_label_leakage.check(_record(input_columns=["image", "PSFSIZE_R"]), t)
    assert ok.passed and ok.detail == "the model was fed one pixel tensor (and whitelisted conditions) only"
    no_pixels = l10_no_label_leakage.check(_record(input_columns=["PSFSIZE_R"]), t)
    assert not no_pixels.passed and no_pixels.evidence[0] == {
        "column": "image",
        "why": "the pixels are not recorded as the model's input",
    }
    leak = l10_no_label_leakage.check(
        _record(input_columns=["image", "theta_e"]), L10Thresholds(allowed_conditions=("theta_e",))
    )
    assert leak.evidence == ({"column": "theta_e", "why": "injection parameter or label-derived"},)
    assert leak.detail == "model fed 1 forbidden input(s): theta_e" and leak.n_offending == 1
    other = l10_no_label_leakage.check(_record(input_columns=["image", "EBV"]), t)
    assert other.evidence == ({"column": "EBV", "why": "not pixels and not a whitelisted observing condition"},)
    unread = l10_no_label_leakage.check(_record(input_columns=["image", "PSFSIZE_R"], columns_read=["image"]), t)
    assert unread.evidence == ({"column": "PSFSIZE_R", "why": "not among the columns the store read"},)


def test_l10_forward_calls_beyond_one_pixel_tensor_fail() -> None:
    t = L10Thresholds()
    call = _record()["forward_inputs"][0]
    assert not l10_no_label_leakage.check(_record(forward_inputs=[]), t).passed
    for bad, why in [
        ({"n_args": 2}, "2 positional argument(s), 1 tensor(s) (1 allowed)"),
        ({"n_tensors": 2}, "1 positional argument(s), 2 tensor(s) (1 allowed)"),
        ({"kwargs": ["meta"]}, "keyword argument(s) meta"),
        ({"shape": [4, 16, 16]}, "input [4, 16, 16]: 4 channels (3 allowed as (band, y, x): g, r, z)"),
        ({"shape": [3, 16]}, "input [3, 16]: 3 channels (3 allowed as (band, y, x): g, r, z)"),
        ({"shape": []}, "input []: None channels (3 allowed as (band, y, x): g, r, z)"),
    ]:
        finding = l10_no_label_leakage.check(_record(forward_inputs=[call, call | bad]), t)
        assert not finding.passed and finding.n_offending == 1, bad
        assert finding.evidence[0]["why"] == why and finding.evidence[0]["forward_call"] == call | bad
        assert finding.detail == f"model fed 1 forbidden input(s): forward call with {why}"
    assert l10_no_label_leakage.forward_problems({}) == [
        {"forward_call": None, "why": "no forward call recorded: what the model was fed is unknown"}
    ]
    two = l10_no_label_leakage.check(_record(forward_inputs=[call | {"n_args": 2, "kwargs": ["x"]}]), t)
    assert two.evidence[0]["why"] == "2 positional argument(s), 1 tensor(s) (1 allowed); keyword argument(s) x"


# ---------------------------------------------------------------------- what each finding carries, exactly


def test_early_failures_are_failed_findings_with_their_lesson() -> None:
    l3 = l3_psf_wings.check(_wings(1.0).iloc[:0], L3Thresholds())
    assert (l3.passed, l3.title) == (False, "realistic PSF wings")
    missing = l3_psf_wings.check(_wings(1.0).drop(columns=["psf_wing_3as", "real_wing_3as"]), L3Thresholds())
    assert missing.detail == "missing column(s) psf_wing_3as, real_wing_3as" and missing.passed is False
    probes = _probes()
    del probes["core_auc"]
    lacking = l9_no_shortcut.check(probes, L9Thresholds())
    assert (lacking.id, lacking.title, lacking.passed) == ("L9", "no shortcut", False)
    odd = l9_no_shortcut.check(_probes(blob_flag_rates={}), L9Thresholds())
    assert (odd.id, odd.title, odd.passed) == ("L9", "no shortcut", False)
    empty = l8_stamp_integrity.check([])
    assert empty.passed is False and empty.measured is None and empty.threshold is None
    shape = l8_stamp_integrity.check_point_source(np.array([]), np.array([]), L8Thresholds())
    assert shape.passed is False
    l2 = l2_resolvable_injections.check(pd.DataFrame({"theta_e": [], "PSFSIZE_R": []}), L2Thresholds())
    assert l2.passed is False
    l10 = l10_no_label_leakage.check(_record(), L10Thresholds())
    assert l10.title == "no label leakage" and l10.measured["input_columns"] == ["image"]
    bare = l10_no_label_leakage.check({}, L10Thresholds())
    assert bare.measured == {"input_columns": [], "forward_inputs": []} and bare.n_offending == 2


def test_details_join_every_reason() -> None:
    l3 = l3_psf_wings.check(_wings(1.0), L3Thresholds(bands=("g", "z")))
    assert "judged in g, z" in l3.detail and l3.detail.endswith("judged in g, z")
    table = _wings(1.0)
    table.loc[table.index[0], "psf_wing_2fwhm"] = np.inf
    assert l3_psf_wings.check(table, L3Thresholds()).evidence[-1] == {
        "band": "any",
        "measure": "finite",
        "median_shortfall": pytest.approx(float("nan"), nan_ok=True),
    }
    l7 = l7_realistic_arcs.check("host_relative", np.array([1.0, 1000.0]), L7Thresholds())
    assert l7.title == "realistic, visible arcs" and l7.detail.count("; ") == 2
    assert l7.measured["invisible_share"] == 0.5 and l7.measured["snr_p10_p50_p90"] == [100.9, 500.5, 900.1]
    snr = np.array([1.0] * 3 + [10.0] * 4)
    l7 = l7_realistic_arcs.check("prior", snr, L7Thresholds(max_invisible_share=1.0))
    assert l7.measured["invisible_share"] == round(3 / 7, 4) and l7.measured["bright_share"] == 0.0
    two = l10_no_label_leakage.check(_record(input_columns=["image", "theta_e", "EBV"]), L10Thresholds())
    assert two.detail == "model fed 2 forbidden input(s): theta_e; EBV"
    kw = l10_no_label_leakage.forward_problems(
        {"forward_inputs": [_record()["forward_inputs"][0] | {"kwargs": ["a", "b"]}]}
    )
    assert kw[0]["why"] == "keyword argument(s) a, b"
    t = L8Thresholds()
    bad = [l8_stamp_integrity.check_recorded(np.array([1]), np.array(["x"], dtype=object))] * 2
    assert l8_stamp_integrity.check(bad).detail == "; ".join([bad[0].detail] * 2)
    assert l8_stamp_integrity.check([bad[0], l8_stamp_integrity.check_point_source(np.r_[0.0], np.r_[1.0], t)]).measured
    rates = {"fpr=0.01": 0.5, "completeness=0.9": 0.0}
    core = l9_no_shortcut.check(
        _probes(core_auc=0.95, core_minus_ring_auc_lower=0.02, blob_flag_rates=rates), L9Thresholds()
    )
    assert (
        core.detail.split("; ")[0] == "core AUC 0.950 > 0.7, beyond the ring AUC 0.900 at 95 % (core - ring >= +0.020)"
    )


def test_l8_duplicates_are_judged_on_the_whole_host_config_key() -> None:
    rows = pd.DataFrame(
        {"RELEASE": [10, 10, 10], "BRICKID": [1, 1, 1], "OBJID": [1, 1, 1], "config_id": [4, 4, 5], "label": [1, 1, 1]}
    )
    finding = l8_stamp_integrity.check_unique_rows(rows)
    assert finding.n_offending == 1 and finding.evidence == ({"RELEASE": 10, "BRICKID": 1, "OBJID": 1, "config_id": 4},)
    assert type(finding.evidence[0]["OBJID"]) is int
    other = rows.assign(extra=[1, 2, 3])  # rows differing in other columns are still duplicates
    assert l8_stamp_integrity.check_unique_rows(other).n_offending == 1


def test_l8_each_band_has_its_own_arc_peak() -> None:
    images, cutouts, arcs, labels = _stamps()
    arcs[1, 0] *= 1e-3  # a faint g arc beside bright r and z arcs
    images[1] = (cutouts[1].astype(np.float64) + arcs[1]).astype(np.float32)
    images[1, 0, 3, 3] += 2e-5 * np.abs(arcs[1, 1]).max()  # within r's peak tolerance, far over g's
    assert l8_stamp_integrity.stamp_problems(images, cutouts, arcs, labels)[1] == "stamp - cutout != arc"
