"""Confusers in the mock sky's cutouts: rendered through the host's PSF and noise, leaving plain hosts
untouched, and guarded by L8's stamp-integrity checks like every other pixel (their stamps' batch
independence: tests/test_mock_cutouts.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import spec_data

from darkhalo.audit.judges import written_stamp_problems
from darkhalo.audit.preflight import planned_manifest, sampled_parent
from darkhalo.injection import Rendering, inject_batch
from darkhalo.spec import MockSurvey, spec_from_dict
from darkhalo.stamps import decode_images, encode_images
from darkhalo.surveys.confusers import HostLight, draw_classes, render
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import MARGIN, MockCutoutProvider, _per_band
from darkhalo.surveys.orientation import pixel_ellipticity
from data_contracts.confusers import CLASSES, PLAIN

SEED = 5
SIZE = 48
#: Every class common enough to appear in a few dozen hosts.
RATES = dict.fromkeys(CLASSES, 0.12)
SKY = {"kind": "mock", "n_objects": 20_000}


def _provider(confusers: dict | None) -> MockCutoutProvider:
    return MockCutoutProvider(MockSurvey(**SKY, confusers=confusers), SEED)


@pytest.fixture(scope="module")
def hosts() -> pd.DataFrame:
    catalog = mock_catalog(MockSurvey(**SKY), SEED, 0)
    return catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(96).reset_index(drop=True)


@pytest.fixture(scope="module")
def classes(hosts) -> np.ndarray:
    return draw_classes(SEED, hosts[["RELEASE", "BRICKID", "OBJID"]].to_numpy(np.int64), RATES)


def test_enabling_confusers_leaves_plain_hosts_bit_identical_and_changes_the_others(hosts, classes) -> None:
    plain = _provider(None).cutouts(hosts, SIZE).images
    mixed = _provider(RATES).cutouts(hosts, SIZE).images
    is_plain = classes == PLAIN
    assert set(classes) == {PLAIN, *CLASSES}
    assert np.array_equal(mixed[is_plain], plain[is_plain])
    changed = np.abs(mixed - plain).reshape(len(hosts), -1).max(axis=1) > 0
    assert changed[~is_plain].all()


def test_a_confusers_light_reaches_the_stamp_through_the_psf_with_its_flux(hosts, classes) -> None:
    """Without noise, a stamp with confusers minus one without is the confuser's light convolved with the
    host's PSF: it never adds light, and a compact one (blue companions 1-4" away) keeps ~all of its flux."""
    quiet = hosts.copy()
    for band in "GRZ":
        quiet[f"PSFDEPTH_{band}"] = 1e14  # noise 1e-7 x the depth's
    added = _provider(RATES).cutouts(quiet, SIZE).images - _provider(None).cutouts(quiet, SIZE).images
    e1, e2 = pixel_ellipticity(hosts["SHAPE_E1"].to_numpy(), hosts["SHAPE_E2"].to_numpy())
    transmission = _per_band(hosts, "MW_TRANSMISSION")
    for i in np.flatnonzero(classes != PLAIN):
        host = HostLight(hosts.SHAPE_R[i], hosts.SERSIC[i], e1[i], e2[i], _per_band(hosts, "FLUX")[i], transmission[i])
        key = hosts.loc[i, ["RELEASE", "BRICKID", "OBJID"]].to_numpy(np.int64).tolist()
        flux = render(SEED, key, classes[i], host, SIZE + 2 * MARGIN).flux
        landed = added[i].astype(np.float64).sum(axis=(1, 2))
        assert np.all(landed <= flux * 1.001 + 1e-6), (classes[i], landed, flux)
        if classes[i] == "blue_companions":
            assert np.all(landed >= flux * 0.95), (landed, flux)


@pytest.fixture(scope="module")
def injected():
    """A small embedded-like run's rows with confusers at RATES: manifest rows, their stamps, the spec."""
    data = spec_data("embedded")
    data["seed"] = SEED
    data["survey"] = {**SKY, "confusers": RATES}
    data["stamps"] = {"size": SIZE}
    spec = spec_from_dict(data)
    parent, _ = sampled_parent(spec, 300)
    manifest = planned_manifest(spec, parent)
    rows = pd.concat(
        [manifest[(manifest.label == 0) & (manifest.confuser != PLAIN)].head(12), manifest[manifest.label == 1].head(4)]
    ).reset_index(drop=True)
    table = inject_batch(rows, _provider(RATES), rendering=Rendering.of(spec))
    return spec, rows, table


def _problems(spec, rows: pd.DataFrame, images: pa.Array) -> np.ndarray:
    joined = rows.assign(image=images.to_pylist())
    return written_stamp_problems(joined, spec, _provider(RATES))["problem"].to_numpy()


def test_l8_passes_confuser_stamps_and_stops_a_control_whose_confuser_was_taken_out(injected) -> None:
    spec, rows, table = injected
    assert set(table.column("confuser").to_pylist()) == set(rows["confuser"])
    assert (_problems(spec, rows, table.column("image")) == "").all()
    smooth = _provider(None).cutouts(rows, SIZE).images  # the same hosts without their confusers
    controls = (rows["label"] == 0).to_numpy()
    images = decode_images(table.column("image"), SIZE)
    images[:3] = smooth[:3]
    problems = _problems(spec, rows, encode_images(images))
    assert controls[:3].all() and list(problems[:3]) == ["control differs from its cutout"] * 3
    assert (problems[3:] == "").all()
