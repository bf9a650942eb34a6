"""Grid expansion as pure functions: configs, roles, splits, nuisance parameters, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import spec_data
from hosts import synthetic_parent

from darkhalo.expansion import (
    MANIFEST_COLUMNS,
    Expansion,
    configs_per_host,
    control_pool_share,
    expand_hosts,
    grid_configs,
    host_frame,
)
from darkhalo.hashing import host_ids, uniform
from darkhalo.sources import sample_magnitudes
from darkhalo.spec import MagPrior, spec_from_dict
from data_contracts.survey import flux_to_mag

KEY = ["RELEASE", "BRICKID", "OBJID"]


def _spec(name: str = "gen2_resnet18_unpaired_survey_psf", **changes):
    """The spec with one control fraction and 80/10/10 splits at nside 128, then ``changes`` per section."""
    data = spec_data(name)
    data.setdefault("splits", {}).update(nside=128, fractions={"train": 0.8, "val": 0.1, "test": 0.1})
    data["controls"].pop("test_fraction", None)
    for section, values in changes.items():
        data[section].update(values)
    return spec_from_dict(data)


def _manifest(spec, n: int = 400, **kwargs) -> pd.DataFrame:
    expansion = Expansion.of(spec)
    return expand_hosts(host_frame(synthetic_parent(n, **kwargs), expansion=expansion), expansion=expansion)


def test_gen1_grid_has_48_configs_in_axis_order() -> None:
    configs = grid_configs(_spec("gen1_resnet18_v3_color_relaxed").grid)
    assert len(configs) == 48 and configs["config_id"].tolist() == list(range(48))
    assert not configs.duplicated(["theta_e", "src_reff", "src_e", "shear", "src_dmag"]).any()
    assert sorted(configs["theta_e"].unique()) == [0.3, 0.6, 1.0]


def test_gen1_paired_controls_are_twins_of_positive_hosts() -> None:
    spec = _spec("gen1_resnet18_v3_color_relaxed")
    manifest = _manifest(spec, 50)
    positives, controls = manifest[manifest.label == 1], manifest[manifest.label == 0]
    assert len(positives) == 50 * 48 and len(controls) == len(positives)  # fraction 0.5 keeps every twin
    assert set(map(tuple, controls[KEY].to_numpy())) == set(map(tuple, positives[KEY].to_numpy()))
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)


def test_unpaired_controls_use_disjoint_hosts_at_the_spec_fraction() -> None:
    spec = _spec()
    manifest = _manifest(spec, 3000)
    positive_hosts = set(map(tuple, manifest.loc[manifest.label == 1, KEY].to_numpy()))
    control_hosts = set(map(tuple, manifest.loc[manifest.label == 0, KEY].to_numpy()))
    assert not positive_hosts & control_hosts
    share = (manifest.label == 0).mean()
    assert abs(share - spec.controls.fraction) < 0.03
    per_host = manifest[manifest.label == 1].groupby(KEY).size()
    assert (per_host == configs_per_host(spec.grid)).all()


def test_the_test_split_may_have_its_own_control_fraction() -> None:
    spec = _spec(controls={"test_fraction": 0.9}, splits={"fractions": {"train": 0.5, "val": 0.1, "test": 0.4}})
    manifest = _manifest(spec, 6000)
    share = manifest.groupby("split")["label"].apply(lambda labels: (labels == 0).mean())
    assert abs(share["test"] - 0.9) < 0.03
    assert abs(share["train"] - spec.controls.fraction) < 0.03
    with pytest.raises(ValueError, match="test_fraction needs unpaired controls"):
        _spec("gen1_resnet18_v3_color_relaxed", controls={"test_fraction": 0.9})


@pytest.mark.parametrize(("fraction", "k"), [(0.5, 1), (0.5, 4), (0.3, 48), (0.9, 2)])
def test_control_pool_share_gives_the_stamp_fraction(fraction: float, k: int) -> None:
    p = control_pool_share(fraction, k)
    assert p / (p + k * (1 - p)) == pytest.approx(fraction)


def test_known_lenses_are_never_controls_nor_hosts() -> None:
    spec = _spec()
    parent = synthetic_parent(200, known_lenses=20)
    expansion = Expansion.of(spec)
    manifest = expand_hosts(host_frame(parent, expansion=expansion), expansion=expansion)
    lenses = set(map(tuple, parent.loc[parent.KNOWN_LENS, KEY].to_numpy()))
    assert not lenses & set(map(tuple, manifest[KEY].to_numpy()))


def test_no_duplicated_host_config_rows_and_unique_stamp_ids() -> None:
    manifest = _manifest(_spec(), 1000)
    assert not manifest.duplicated(["host_id", "config_id", "label"]).any()
    assert manifest["stamp_id"].is_unique and (manifest["stamp_id"] >= 0).all()


def test_expansion_does_not_depend_on_batching() -> None:
    expansion = Expansion.of(_spec())
    hosts = host_frame(synthetic_parent(600), expansion=expansion)
    whole = expand_hosts(hosts, expansion=expansion)
    parts = pd.concat([expand_hosts(hosts.iloc[i : i + 97], expansion=expansion) for i in range(0, 600, 97)])
    parts = parts.sort_values("stamp_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, parts)


def test_source_positions_are_area_uniform_inside_the_spec_radius() -> None:
    spec = _spec()
    positives = _manifest(spec, 4000).query("label == 1")
    r = np.hypot(positives.src_x, positives.src_y) / positives.theta_e
    limit = spec.source.position_max_frac
    assert (r <= limit + 1e-12).all()
    # area-uniform: (r / limit)^2 is uniform on [0, 1)
    assert abs(((r / limit) ** 2).mean() - 0.5) < 0.02


def test_gen1_source_brightness_is_host_r_plus_dmag() -> None:
    spec = _spec("gen1_resnet18_v3_color_relaxed")
    positives = _manifest(spec, 30).query("label == 1")
    host_r = flux_to_mag(positives.FLUX_R.to_numpy())
    config_dmag = grid_configs(spec.grid).set_index("config_id").loc[positives.config_id, "src_dmag"].to_numpy()
    np.testing.assert_allclose(positives.src_mag_r, host_r + config_dmag)


def test_prior_brightness_follows_the_number_counts_prior_and_is_dimmed_by_extinction() -> None:
    spec = _spec()
    positives = _manifest(spec, 4000).query("label == 1")
    prior = spec.source.mag_prior
    assert positives.src_mag_r.between(prior.r_min, prior.r_max).all()
    intrinsic = 10 ** ((22.5 - positives.src_mag_r) / 2.5)
    np.testing.assert_allclose(positives.src_flux_r, intrinsic * positives.MW_TRANSMISSION_R, rtol=1e-6)
    # number counts rise with magnitude: the faint half of the range holds most sources
    mid = (prior.r_min + prior.r_max) / 2
    assert (positives.src_mag_r > mid).mean() > 0.6


def test_number_counts_inverse_cdf_matches_the_density() -> None:
    prior = MagPrior(kind="number_counts", r_min=22, r_max=25, slope=0.3)
    m = sample_magnitudes(prior, uniform(1, np.arange(200_000), stream="t"))
    hist, edges = np.histogram(m, bins=6, range=(22, 25))
    centres = (edges[:-1] + edges[1:]) / 2
    expected = 10 ** (0.3 * centres)
    np.testing.assert_allclose(hist / hist.sum(), expected / expected.sum(), rtol=0.03)


def test_lens_shape_comes_from_the_host_shape_clipped_to_the_spec_range() -> None:
    spec = _spec()
    positives = _manifest(spec, 500).query("label == 1")
    e = np.hypot(positives.SHAPE_E1, positives.SHAPE_E2).clip(upper=0.99)
    expected = ((1 - e) / (1 + e)).clip(spec.source.lens_q.min, spec.source.lens_q.max)
    np.testing.assert_allclose(positives.lens_q, expected, rtol=1e-6)


def test_host_ids_pack_the_sweep_key_uniquely() -> None:
    ids = host_ids(np.array([9010, 10000, 10000]), np.array([5, 5, 6]), np.array([7, 7, 7]))
    assert len(set(ids)) == 3 and (ids > 0).all()
    with pytest.raises(ValueError, match="out of range"):
        host_ids(np.array([1]), np.array([2**21]), np.array([0]))


def test_the_split_is_a_function_of_the_sky_pixel() -> None:
    hosts = host_frame(synthetic_parent(3000), expansion=Expansion.of(_spec()))
    assert (hosts.groupby("healpix")["split"].nunique() == 1).all()
    shares = hosts["split"].value_counts(normalize=True)
    assert set(shares.index) == {"train", "val", "test"} and shares["train"] > 0.6
