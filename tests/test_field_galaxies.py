"""Faint field galaxies: Poisson counts at the spec's density, flux kept, deterministic per host, and mock stamps
with as many neighbours as the real DR10 cutouts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REAL, SPECS, spec_data

from darkhalo.spec import FieldGalaxies, SpecError, load_spec, spec_from_dict
from darkhalo.surveys import field_galaxies
from darkhalo.surveys.confusers import GAUSSIAN_REACH
from darkhalo.surveys.host_profiles import measure_hosts
from darkhalo.surveys.mock_cutouts import MARGIN, MockCutoutProvider
from darkhalo.surveys.realism import MEASURE_SIZE, dr10_cutouts, mock_lrg_hosts, real_stamps
from data_contracts.survey import PIXEL_SCALE

FIELD = FieldGalaxies()
SEED = 5
CANVAS = 64 + 2 * MARGIN
DIM = np.array([0.9, 0.93, 0.96])  # a host's MW transmission, g r z


def _keys(n: int) -> list[list[int]]:
    return [[10000, 300 + i % 7, i] for i in range(n)]


def test_the_count_per_canvas_is_poisson_at_the_density_and_positions_fill_the_canvas() -> None:
    draws = [field_galaxies.draw(SEED, key, FIELD, DIM, CANVAS) for key in _keys(2000)]
    counts = np.array([len(d.x) for d in draws])
    expected = FIELD.density * (CANVAS * PIXEL_SCALE / 60) ** 2  # ~36 a canvas
    assert abs(counts.mean() - expected) < 4 * np.sqrt(expected / len(counts)), (counts.mean(), expected)
    assert abs(counts.var() / counts.mean() - 1) < 0.1  # Poisson: variance = mean
    x, y = np.concatenate([d.x for d in draws]), np.concatenate([d.y for d in draws])
    edge = (CANVAS // 2 + 0.5) * PIXEL_SCALE  # the canvas' outer pixel edge from its centre pixel
    assert x.min() >= -edge and x.max() <= (CANVAS - CANVAS // 2 - 0.5) * PIXEL_SCALE
    assert np.allclose(np.histogram(y, 4)[0] / len(y), 0.25, atol=0.01)
    empty = FieldGalaxies(density=0)
    assert not any(len(field_galaxies.draw(SEED, key, empty, DIM, CANVAS).x) for key in _keys(50))


def test_magnitudes_colours_and_sizes_lie_in_the_fields_ranges_and_follow_the_counts() -> None:
    draws = [field_galaxies.draw(SEED, key, FIELD, DIM, CANVAS) for key in _keys(500)]
    flux = np.concatenate([d.flux for d in draws]) / DIM
    sigma = np.concatenate([d.sigma for d in draws])
    r = 22.5 - 2.5 * np.log10(flux[:, 1])
    g_r, r_z = -2.5 * np.log10(flux[:, 0] / flux[:, 1]), -2.5 * np.log10(flux[:, 1] / flux[:, 2])
    assert r.min() >= FIELD.r_min and r.max() <= FIELD.r_max
    assert g_r.min() >= FIELD.g_r.min - 1e-9 and g_r.max() <= FIELD.g_r.max + 1e-9
    assert r_z.min() >= FIELD.r_z.min - 1e-9 and r_z.max() <= FIELD.r_z.max + 1e-9
    assert sigma.min() >= FIELD.sigma.min and sigma.max() <= FIELD.sigma.max
    # dN/dm ~ 10^(slope m): each magnitude's count over the one a magnitude brighter is 10^slope
    counts = np.histogram(r, np.arange(FIELD.r_min, FIELD.r_max - 0.4, 1.0))[0]
    assert np.allclose(counts[1:] / counts[:-1], 10**FIELD.slope, rtol=0.15), counts


def test_the_light_put_down_is_the_flux_drawn_centred_where_drawn() -> None:
    galaxies = field_galaxies.draw(SEED, [10000, 1, 2], FIELD, DIM, CANVAS)
    reach = GAUSSIAN_REACH * galaxies.sigma + PIXEL_SCALE
    half = CANVAS // 2 * PIXEL_SCALE
    inside = (np.abs(galaxies.x) + reach < half) & (np.abs(galaxies.y) + reach < half)  # none of it cropped
    assert inside.sum() > 20
    kept = field_galaxies.FieldDraw(*(getattr(galaxies, f)[inside] for f in ("x", "y", "sigma", "flux")))
    light = field_galaxies.light(kept, CANVAS)
    assert np.allclose(light.sum(axis=(1, 2)), kept.flux.sum(axis=0), rtol=0.01)
    one = field_galaxies.FieldDraw(kept.x[:1], kept.y[:1], kept.sigma[:1], kept.flux[:1])
    r = field_galaxies.light(one, CANVAS)[1]
    offsets = (np.arange(CANVAS) - CANVAS // 2) * PIXEL_SCALE
    centroid = np.array([r.sum(axis=0) @ offsets, r.sum(axis=1) @ offsets]) / r.sum()  # x along columns, y rows
    assert np.allclose(centroid, (kept.x[0], kept.y[0]), atol=0.01 * PIXEL_SCALE)


def test_a_hosts_field_is_deterministic_per_seed_and_key() -> None:
    first, again = (field_galaxies.draw(SEED, [10000, 3, 4], FIELD, DIM, CANVAS) for _ in range(2))
    assert all(np.array_equal(getattr(first, f), getattr(again, f)) for f in ("x", "y", "sigma", "flux"))
    for seed, key in ((SEED, [10000, 3, 5]), (SEED + 1, [10000, 3, 4])):
        other = field_galaxies.draw(seed, key, FIELD, DIM, CANVAS)
        assert len(other.x) != len(first.x) or not np.array_equal(other.x, first.x)


@pytest.fixture(scope="module")
def embedded():
    return load_spec(SPECS / "embedded.yaml")


def test_mock_stamps_have_the_real_cutouts_neighbour_density_and_none_without_the_field(embedded) -> None:
    """realism's measure (>= 5 connected r pixels above 3 sigma beyond 4") on 50 mock LRG hosts against the six
    real DR10 cutouts' 16-84 % spread."""
    real = measure_hosts(real_stamps(dr10_cutouts(REAL / "cutouts"), PIXEL_SCALE, MEASURE_SIZE), PIXEL_SCALE)
    low, high = np.percentile(real.neighbours, [16, 84])
    hosts = mock_lrg_hosts(embedded.survey, SEED, 50, embedded.selection.model_dump())
    medians = {}
    for name, field in (("field", FIELD), ("none", None)):
        survey = embedded.survey.model_copy(update={"field_galaxies": field})
        stamps = MockCutoutProvider(survey, SEED).cutouts(hosts, MEASURE_SIZE).images
        medians[name] = np.median(measure_hosts(stamps, PIXEL_SCALE).neighbours)
    assert low <= medians["field"] <= high, (medians, low, high)
    assert medians["none"] < low


def test_no_field_and_an_empty_field_render_the_same_stamps_bit_for_bit(embedded) -> None:
    hosts = mock_lrg_hosts(embedded.survey, SEED, 12, embedded.selection.model_dump())
    stamps = {
        name: MockCutoutProvider(embedded.survey.model_copy(update={"field_galaxies": f}), SEED).cutouts(hosts, 48)
        for name, f in (("absent", None), ("empty", FieldGalaxies(density=0)), ("field", FIELD))
    }
    assert np.array_equal(stamps["absent"].images, stamps["empty"].images)
    assert np.array_equal(stamps["absent"].invvar, stamps["field"].invvar)
    assert (stamps["field"].images.sum(axis=(2, 3)) > stamps["absent"].images.sum(axis=(2, 3))).mean() > 0.9


@pytest.mark.parametrize(
    ("field", "named"),
    [({"density": -1.0}, "survey.field_galaxies.density"), ({"r_min": 25.5, "r_max": 21.0}, "r_min (25.5)")],
)
def test_a_bad_field_fails_naming_the_field(field: dict, named: str) -> None:
    data = spec_data()
    data["survey"]["field_galaxies"] = field
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, source="specs/x.yaml")
    assert named in str(info.value) and "survey.field_galaxies" in str(info.value)
