"""Confuser renderers: flux kept, light deterministic per (seed, host), classes drawn at their rates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.surveys.confusers import STAR_DISTANCE, HostLight, draw_classes, render
from data_contracts.confusers import CLASSES, PLAIN
from data_contracts.survey import PIXEL_SCALE, mag_to_flux

LARGE = 401  # pixels (105"): holds every class whole, the host centred
SMALL = 126  # the mock's canvas: a 64 px stamp plus 31 px on each side
HOST = HostLight(1.2, 4.0, 0.15, -0.1, np.array([1.5, 5.0, 11.0]), np.array([0.9, 0.93, 0.96]))


@st.composite
def hosts(draw: st.DrawFn) -> HostLight:
    """LRG-like hosts: r_eff 0.3-3", any Sersic index and angle, red colours, MW transmission 0.7-1."""
    modulus, angle = draw(st.floats(0, 0.6)), draw(st.floats(0, np.pi))
    r_flux = draw(st.floats(1, 50))
    flux = r_flux * np.array([draw(st.floats(0.1, 0.5)), 1.0, draw(st.floats(1.3, 3.0))])
    transmission = np.array([draw(st.floats(0.7, 1.0)) for _ in range(3)])
    return HostLight(
        draw(st.floats(0.3, 3.0)),
        draw(st.floats(0.5, 6.0)),
        modulus * np.cos(2 * angle),
        modulus * np.sin(2 * angle),
        flux,
        transmission,
    )


keys = st.tuples(*3 * [st.integers(0, 2**31 - 1)])


@pytest.mark.parametrize("klass", CLASSES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), key=keys, host=hosts())
def test_flux_conserved_on_a_canvas_that_holds_it(klass: str, seed: int, key: tuple, host: HostLight) -> None:
    confuser = render(seed, key, klass, host, LARGE)
    assert confuser.light.shape == (3, LARGE, LARGE) and confuser.flux.shape == (3,)
    assert np.isfinite(confuser.light).all() and (confuser.light >= 0).all()
    assert (confuser.flux > 0).all()
    np.testing.assert_allclose(confuser.light.sum(axis=(1, 2)), confuser.flux, rtol=0.01)


@pytest.mark.parametrize("klass", CLASSES)
def test_a_small_canvas_is_the_centre_of_a_large_one(klass: str) -> None:
    """Light past the canvas is dropped, not renormalised onto it: the flux stays the whole component's."""
    for objid in range(5):
        small, large = (render(4, (9, 8, objid), klass, HOST, n) for n in (SMALL, LARGE))
        centre = slice(LARGE // 2 - SMALL // 2, LARGE // 2 - SMALL // 2 + SMALL)
        np.testing.assert_allclose(small.light, large.light[:, centre, centre], rtol=1e-9, atol=0)  # summing order
        np.testing.assert_array_equal(small.flux, large.flux)
        assert (small.light.sum(axis=(1, 2)) <= small.flux * (1 + 1e-12)).all()


@pytest.mark.parametrize("klass", CLASSES)
def test_deterministic_per_seed_and_host(klass: str) -> None:
    first, again = (render(11, (10, 20, 30), klass, HOST, SMALL) for _ in range(2))
    np.testing.assert_array_equal(first.light, again.light)
    np.testing.assert_array_equal(first.flux, again.flux)
    for other in (render(11, (10, 20, 31), klass, HOST, SMALL), render(12, (10, 20, 30), klass, HOST, SMALL)):
        assert not np.array_equal(first.light, other.light)


@pytest.mark.parametrize("klass", CLASSES)
def test_brightness_follows_the_host_or_the_transmission(klass: str) -> None:
    """Host-relative pieces scale with the host's fluxes; own-magnitude ones with its MW transmission."""
    own = klass in ("blue_companions", "star_artifact")
    base = render(2, (1, 2, 3), klass, HOST, SMALL)
    dimmer = dataclasses.replace(HOST, transmission=HOST.transmission / 2)
    brighter = dataclasses.replace(HOST, flux=HOST.flux * 2)
    np.testing.assert_allclose(render(2, (1, 2, 3), klass, dimmer, SMALL).flux, base.flux / 2 if own else base.flux)
    np.testing.assert_allclose(render(2, (1, 2, 3), klass, brighter, SMALL).flux, base.flux if own else base.flux * 2)


def _colours(flux: np.ndarray) -> tuple[float, float]:
    """(g - r, r - z) in AB mag of (3,) fluxes."""
    return -2.5 * np.log10(flux[0] / flux[1]), -2.5 * np.log10(flux[1] / flux[2])


@pytest.mark.parametrize("objid", range(20))
def test_colours_as_the_classes_claim(objid: int) -> None:
    """Spirals, rings and blue companions are bluer than an LRG host in g - r; edge-on dusty disks redder."""
    host_gr, host_rz = _colours(HOST.flux)
    for klass in ("spiral", "ring", "blue_companions"):
        gr, _ = _colours(render(6, (1, 1, objid), klass, HOST, SMALL).flux)
        assert gr < host_gr - 0.3, klass
    gr, rz = _colours(render(6, (1, 1, objid), "edge_on_disk", HOST, SMALL).flux)
    assert gr > host_gr + 0.09 and rz > host_rz + 0.04


@pytest.mark.parametrize("objid", range(20))
def test_own_magnitudes_in_their_ranges(objid: int) -> None:
    """Blue companions are 1-4 galaxies of r 21-24, a star is r 11-16 (before the transmission)."""
    r_t = HOST.transmission[1]
    companions = render(3, (7, 7, objid), "blue_companions", HOST, SMALL).flux[1] / r_t
    assert mag_to_flux(24.0) <= companions <= 4 * mag_to_flux(21.0)
    star = render(3, (7, 7, objid), "star_artifact", HOST, LARGE)
    assert mag_to_flux(16.0) <= star.flux[1] / r_t <= mag_to_flux(11.0)


@pytest.mark.parametrize("objid", range(20))
def test_star_sits_at_its_distance_with_spikes_along_the_axes(objid: int) -> None:
    light = render(8, (3, 3, objid), "star_artifact", HOST, LARGE).light[1]
    iy, ix = np.unravel_index(np.argmax(light), light.shape)
    dy, dx = iy - LARGE // 2, ix - LARGE // 2
    low, high = STAR_DISTANCE
    assert low - PIXEL_SCALE <= np.hypot(dx, dy) * PIXEL_SCALE <= high + PIXEL_SCALE
    arm = np.arange(2, 8)  # pixels from the star: on a spike, and on the diagonal between two spikes
    spike = light[iy, ix + arm] if 0 <= ix + arm[-1] < LARGE else light[iy, ix - arm]
    diagonal = light[iy + arm, ix + arm] if max(iy, ix) + arm[-1] < LARGE else light[iy - arm, ix - arm]
    assert (spike > diagonal).all()


def test_blue_companions_lie_1_to_4_arcsec_from_the_host() -> None:
    yy, xx = np.indices((SMALL, SMALL))
    distance = np.hypot(yy - SMALL // 2, xx - SMALL // 2) * PIXEL_SCALE
    for objid in range(20):
        light = render(5, (2, 2, objid), "blue_companions", HOST, SMALL).light[1]
        share_within = light[(distance > 0.5) & (distance < 5.5)].sum() / light.sum()
        assert share_within > 0.9


RATES = {"spiral": 0.06, "ring": 0.03, "edge_on_disk": 0.04, "merger": 0.05, "blue_companions": 0.08}


def _keys(n: int, start: int = 0) -> np.ndarray:
    objid = np.arange(start, start + n)
    return np.stack([np.full(n, 10), 1000 + objid % 7, objid], axis=1).astype(np.int64)


def test_class_shares_match_the_rates() -> None:
    n = 20_000
    drawn = draw_classes(3, _keys(n), RATES)
    for klass in (*CLASSES, PLAIN):
        p = RATES.get(klass, 0.0) if klass != PLAIN else 1 - sum(RATES.values())
        count = int((drawn == klass).sum())
        if p == 0:
            assert count == 0, klass  # star_artifact has no rate: no host is one
        else:
            assert abs(count - n * p) <= 5 * np.sqrt(n * p * (1 - p)), (klass, count, n * p)


def test_a_hosts_class_does_not_depend_on_its_batch() -> None:
    keys = _keys(500)
    whole = draw_classes(9, keys, RATES)
    order = np.random.default_rng(0).permutation(len(keys))[:123]
    np.testing.assert_array_equal(draw_classes(9, keys[order], RATES), whole[order])
    assert draw_classes(9, keys[:0], RATES).shape == (0,)


def test_rates_of_one_class_make_every_host_that_class() -> None:
    assert set(draw_classes(1, _keys(300), {"ring": 1.0})) == {"ring"}
    assert set(draw_classes(1, _keys(300), {})) == {PLAIN}


@pytest.mark.parametrize(
    ("rates", "named"),
    [
        ({"spiral": 0.7, "ring": 0.4}, "sum to 1.1"),
        ({"spiral": -0.1}, "rates['spiral']"),
        ({"merger": float("nan")}, "rates['merger']"),
        ({"spirals": 0.1}, "spirals"),
    ],
)
def test_bad_rates_are_named(rates: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        draw_classes(1, _keys(3), rates)


def test_bad_keys_are_named() -> None:
    with pytest.raises(ValueError, match="keys"):
        draw_classes(1, np.zeros((4, 2), np.int64), RATES)
    with pytest.raises(ValueError, match="key"):
        render(1, (1, -2, 3), "ring", HOST, SMALL)


def test_bad_render_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="'rings'"):
        render(1, (1, 2, 3), "rings", HOST, SMALL)
    with pytest.raises(ValueError, match=f"'{PLAIN}'"):
        render(1, (1, 2, 3), PLAIN, HOST, SMALL)
    with pytest.raises(ValueError, match="canvas"):
        render(1, (1, 2, 3), "ring", HOST, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("r_eff", float("nan")), ("r_eff", -1.0), ("e1", 1.2), ("flux", np.ones(2)), ("transmission", np.zeros(3))],
)
def test_bad_hosts_are_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(HOST, **{field: value})
