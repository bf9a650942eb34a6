"""The mock sky's own lenses: picked by key at the spec's prevalence, rendered into their hosts' cutouts by the
injection physics, and listed by the survey stage in a truth table its judge checks against the catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import spec_data
from scipy import stats

from darkhalo.audit.judges import judge_catalog
from darkhalo.injection import injection_kernels
from darkhalo.lensing.render import render_arcs
from darkhalo.runner import run_generation
from darkhalo.spec import MockSurvey, PsfSpec, SkyLenses, SpecError, spec_from_dict
from darkhalo.spec_view import SpecView
from darkhalo.surveys import sky_lenses
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import KERNEL_SIZE, PIXEL_SCALE, SKY_MAG, MockCutoutProvider
from data_contracts.survey import KEY, mag_to_flux

SEED = 5
SKY = {"kind": "mock", "n_objects": 20_000}
#: A sky where a third of the galaxies are lenses, so a few dozen rows hold both kinds.
RICH = SkyLenses(prevalence=0.3)
SIZE = 64


def _keys(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.full(n, 10000), rng.integers(1, 600_000, n), np.arange(n)], axis=1)


@pytest.fixture(scope="module")
def hosts() -> pd.DataFrame:
    catalog = mock_catalog(MockSurvey(**SKY), SEED, 0)
    return catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(40).reset_index(drop=True)


@pytest.fixture(scope="module")
def pair(hosts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lensed sky's stamps, the same sky's stamps without lenses, which hosts are lenses)."""
    with_lenses = MockCutoutProvider(MockSurvey(**SKY, sky_lenses=RICH), SEED).cutouts(hosts, SIZE)
    without = MockCutoutProvider(MockSurvey(**SKY), SEED).cutouts(hosts, SIZE)
    return with_lenses.images, without.images, sky_lenses.lenses(SEED, hosts, RICH)


@pytest.mark.parametrize("prevalence", [1e-3, 1e-2])
def test_the_prevalence_is_met_within_its_binomial_interval(prevalence: float) -> None:
    n = 400_000
    picked = sky_lenses.is_sky_lens(SEED, _keys(n), prevalence)
    low, high = stats.binom.interval(0.999, n, prevalence)
    assert low <= picked.sum() <= high
    assert not sky_lenses.is_sky_lens(SEED, _keys(1000), 0.0).any() and sky_lenses.is_sky_lens(SEED, _keys(9), 1).all()


def test_the_rule_depends_only_on_the_key() -> None:
    keys = _keys(50_000)
    whole = sky_lenses.is_sky_lens(SEED, keys, 0.05)
    order = np.random.default_rng(1).permutation(len(keys))
    for batch in np.array_split(order, 7):
        assert np.array_equal(sky_lenses.is_sky_lens(SEED, keys[batch], 0.05), whole[batch])
    other_seed = sky_lenses.is_sky_lens(SEED + 1, keys, 0.05)
    assert (other_seed != whole).mean() > 0.05  # another sky has other lenses
    with pytest.raises(ValueError, match=r"\(N, 3\) integers"):
        sky_lenses.is_sky_lens(SEED, keys[:, :2], 0.05)


def test_only_galaxies_are_lenses_and_their_parameters_lie_in_the_spec_ranges() -> None:
    catalog = mock_catalog(MockSurvey(**SKY), SEED, 0)
    truth = sky_lenses.truth_table(catalog, SEED, RICH)
    galaxies = catalog["TYPE"] != "PSF"
    assert 0.27 < len(truth) / galaxies.sum() < 0.33 and (truth["TYPE"] != "PSF").all()
    assert truth["theta_e"].between(RICH.theta_e.min, RICH.theta_e.max).all()
    assert truth["src_mag_r"].between(RICH.mag_prior.r_min, RICH.mag_prior.r_max).all()
    # the lens's axis ratio is its host's light's, clipped to the spec's range
    host = catalog.set_index(list(KEY)).loc[pd.MultiIndex.from_frame(truth[list(KEY)])]
    e = np.hypot(host["SHAPE_E1"].to_numpy(np.float64), host["SHAPE_E2"].to_numpy(np.float64))
    assert np.allclose(truth["lens_q"], np.clip((1 - e) / (1 + e), RICH.lens_q.min, 1.0))
    # the source's offset stays within position_max_frac theta_E of the lens
    assert (np.hypot(truth["src_x"], truth["src_y"]) <= RICH.position_max_frac * truth["theta_e"]).all()


def test_an_unpicked_host_is_bit_identical_and_a_prevalence_of_zero_changes_nothing(hosts, pair) -> None:
    lensed, plain, picked = pair
    assert 0 < picked.sum() < len(hosts)
    assert np.array_equal(lensed[~picked], plain[~picked])
    nothing = MockCutoutProvider(MockSurvey(**SKY, sky_lenses=SkyLenses(prevalence=0.0)), SEED).cutouts(hosts, SIZE)
    assert np.array_equal(nothing.images, plain)


def test_a_picked_host_differs_by_its_arc_a_ring_at_the_einstein_radius(hosts, pair) -> None:
    """The difference is the truth table's lens through the host's own kernels (up to the arc's photon noise), and
    its light lies on a ring at theta_E, not at the centre."""
    lensed, plain, picked = pair
    rows = hosts.loc[picked]
    cut = MockCutoutProvider(MockSurvey(**SKY), SEED).cutouts(rows, SIZE)
    psf = PsfSpec(model="survey", kernel_size_pix=KERNEL_SIZE)
    kernels = injection_kernels(psf, PIXEL_SCALE, cut.psf_fwhm, cut.psf_beta)
    transmission = rows[[f"MW_TRANSMISSION_{b}" for b in "GRZ"]].to_numpy(np.float64)
    arcs = render_arcs(sky_lenses.draw(SEED, rows, transmission, RICH), kernels, SIZE).images.numpy()
    difference = lensed[picked] - plain[picked]
    sigma = 1 / np.sqrt(cut.invvar)
    # the rest is the arc's photon noise: the same unit noise (|n| < 6), its sigma grown by sqrt(1 + arc / sky) at most
    sky = mag_to_flux(np.array([SKY_MAG[b] for b in "grz"]))[:, None, None] * PIXEL_SCALE**2
    assert (np.abs(difference - arcs) <= 6 * sigma * arcs.clip(0) / (2 * sky) + 1e-7).all()
    theta_e = sky_lenses.truth_table(rows, SEED, RICH)["theta_e"].to_numpy()
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    radius = np.hypot(xx, yy) * PIXEL_SCALE / theta_e[:, None, None]  # in Einstein radii
    light = difference.sum(axis=1)  # g + r + z
    ring = np.array([d[(r > 0.7) & (r < 1.3)].mean() for d, r in zip(light, radius, strict=True)])
    centre = np.array([d[r < 0.3].mean() for d, r in zip(light, radius, strict=True)])
    assert (ring > 0).all() and np.median(ring / np.abs(centre)) > 1.5


@pytest.mark.parametrize("threads", [1, 2])
def test_a_lensed_stamp_is_bit_identical_in_batches_of_any_size_order_and_thread_count(hosts, pair, threads) -> None:
    """The inject stage's L8 fetches cutouts again in other batches and compares them bit for bit."""
    lensed, _, _ = pair
    provider = MockCutoutProvider(MockSurvey(**SKY, sky_lenses=RICH), SEED)
    before = torch.get_num_threads()
    rng = np.random.default_rng(threads)
    try:
        torch.set_num_threads(threads)
        for k in (1, 9, 33):
            chosen = rng.choice(len(hosts), k, replace=False)
            assert np.array_equal(provider.cutouts(hosts.iloc[chosen], SIZE).images, lensed[chosen]), k
    finally:
        torch.set_num_threads(before)


def test_a_sky_lens_section_out_of_range_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"theta_e \[0.0, 2.0\] must lie in \(0, 100\]"):
        SkyLenses(theta_e={"min": 0, "max": 2})
    with pytest.raises(ValueError, match="prevalence"):
        SkyLenses(prevalence=1.5)


def test_a_spec_whose_purity_prevalence_is_not_its_skys_is_refused_naming_both() -> None:
    data = spec_data()
    data["evaluate"]["lens_prevalence"] = 0.002
    with pytest.raises(SpecError, match=r"evaluate.lens_prevalence \(0.002\) must equal survey.sky_lenses.prevalence"):
        spec_from_dict(data)
    data["survey"].pop("sky_lenses")  # no sky lenses: any prevalence
    assert spec_from_dict(data).evaluate.lens_prevalence == 0.002


@pytest.fixture(scope="module")
def survey_run(tmp_path_factory, spark) -> tuple[Path, object]:
    """A survey stage run of a small mock sky with lenses at 5 %."""
    data = spec_data()
    data["survey"] = {"kind": "mock", "n_objects": 3000, "sky_lenses": {"prevalence": 0.05}}
    data["evaluate"]["lens_prevalence"] = 0.05
    spec = spec_from_dict(data)
    root = tmp_path_factory.mktemp("sky_lenses")
    run_generation(spec, root, stop="survey")
    return root / spec.generation / "survey", spec


@pytest.mark.spark
def test_the_survey_stage_writes_exactly_the_picked_catalog_rows(survey_run) -> None:
    folder, spec = survey_run
    contract = json.loads((folder / "contract.json").read_text())
    ids = {c["id"] for c in contract["checks"]}
    assert contract["passed"] and {"schema:sky_lenses", "schema:sky_lenses:key"} <= ids
    catalog = pd.read_parquet(folder / "catalog")
    truth = pd.read_parquet(folder / "sky_lenses.parquet")
    picked = catalog.loc[sky_lenses.lenses(spec.seed, catalog, spec.survey.sky_lenses)]
    assert len(truth) == len(picked) > 50
    pd.testing.assert_frame_equal(truth[list(KEY)], picked[list(KEY)].reset_index(drop=True))
    pd.testing.assert_frame_equal(truth, sky_lenses.truth_table(catalog, spec.seed, spec.survey.sky_lenses))


@pytest.mark.spark
def test_a_truth_row_outside_the_catalog_fails_only_the_key_check(survey_run, tmp_path: Path) -> None:
    folder, spec = survey_run
    view = SpecView.of(spec, ("survey",), "test")
    assert all(f.passed for f in judge_catalog(folder, folder.parent, view, None))
    corrupt = tmp_path / "survey"
    shutil.copytree(folder, corrupt)
    truth = pd.read_parquet(corrupt / "sky_lenses.parquet")
    truth.loc[3, "OBJID"] = np.int32(2**30)  # no catalog row has it
    truth.to_parquet(corrupt / "sky_lenses.parquet", index=False)
    failed = [f for f in judge_catalog(corrupt, tmp_path, view, None) if not f.passed]
    assert [f.id for f in failed] == ["schema:sky_lenses:key"] and failed[0].n_offending == 1
    assert failed[0].evidence[0]["OBJID"] == 2**30
