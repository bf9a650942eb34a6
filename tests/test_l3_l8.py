"""L3 (PSF wings) and L8 (stamp integrity) on arcs injected into real DR10 cutouts: clean data
passes both; each single corruption is caught by its own invariant and only by it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.lensing.psf import psf_kernels, wing_deficits
from darkhalo.lensing.render import ArcParams, point_source_errors, render_arcs
from data_contracts.invariants import l3_psf_wings, l8_stamp_integrity
from data_contracts.thresholds import InvariantThresholds

SCALE, SIZE, KERNEL = 0.262, 64, 63
THRESHOLDS = InvariantThresholds()


@dataclass(frozen=True)
class Bundle:
    """What the inject stage has in hand for a batch, as the invariants see it."""

    wings: pd.DataFrame  # L3 columns
    images: np.ndarray
    cutouts: np.ndarray
    arcs: np.ndarray
    labels: np.ndarray
    stamp_ids: np.ndarray
    bands: tuple[str, ...]
    kernels: torch.Tensor
    rows: pd.DataFrame  # host and config keys


def real_cutouts(real_dir: Path) -> np.ndarray:
    """The real DR10 grz cutouts (101 x 101, host at the centre) cropped to 64 x 64, (N, 3, y, x)."""
    stacks = [np.load(f)["cutout"] for f in sorted((real_dir / "cutouts").glob("*.npz"))]
    half = 101 // 2
    crop = slice(half - SIZE // 2, half + SIZE // 2)
    return np.ascontiguousarray(np.stack(stacks).transpose(0, 3, 1, 2)[:, :, crop, crop], dtype=np.float32)


def make_bundle(real_dir: Path, seed: int = 0, fwhm_range: tuple[float, float] = (1.0, 1.6)) -> Bundle:
    cutouts = real_cutouts(real_dir)
    n = len(cutouts)
    g = torch.Generator().manual_seed(seed)
    fwhm = fwhm_range[0] + (fwhm_range[1] - fwhm_range[0]) * torch.rand(n, 3, generator=g, dtype=torch.float64)
    kernels = torch.stack(
        [psf_kernels("survey", fwhm[:, b], KERNEL, SCALE, 2.8, band) for b, band in enumerate("grz")], 1
    )
    uniform = lambda low, high, *shape: low + (high - low) * torch.rand(n, *shape, generator=g)  # noqa: E731
    params = ArcParams(
        theta_e=uniform(0.8, 2.0),
        lens_q=uniform(0.5, 1.0),
        lens_phi=uniform(0, 3.1),
        g1=uniform(-0.03, 0.03),
        g2=uniform(-0.03, 0.03),
        src_x=uniform(-0.3, 0.3),
        src_y=uniform(-0.3, 0.3),
        src_reff=uniform(0.1, 0.4),
        src_n=uniform(0.7, 2.0),
        src_q=uniform(0.5, 1.0),
        src_phi=uniform(0, 3.1),
        flux=uniform(0.2, 2.0, 3),
    )
    labels = np.arange(n) % 2  # alternate controls (0) and positives (1)
    arcs = render_arcs(params, kernels.float(), SIZE, SCALE, 4).images.numpy() * labels[:, None, None, None]
    arcs = arcs.astype(np.float32)
    images = np.where(labels[:, None, None, None] == 1, cutouts + arcs, cutouts).astype(np.float32)
    r_kernels = kernels[:, 1]
    deficits = wing_deficits(r_kernels, SCALE, fwhm[:, 1]).numpy()
    wings = pd.DataFrame(
        {
            "psf_wing_2fwhm": deficits[:, 0],
            "psf_wing_3as": deficits[:, 1],
            "survey_wing_2fwhm": deficits[:, 0],
            "survey_wing_3as": deficits[:, 1],
        }
    )
    rows = pd.DataFrame(
        {"RELEASE": 10000, "BRICKID": np.arange(n) + 100, "OBJID": 7, "config_id": np.arange(n) % 3, "label": labels}
    )
    return Bundle(wings, images, cutouts, arcs, labels, np.arange(n) + 1000, ("g", "r", "z"), kernels, rows)


def verdicts(b: Bundle) -> dict[str, bool]:
    offsets, ratios = point_source_errors(b.kernels, SCALE, torch.Generator().manual_seed(1))
    l8 = l8_stamp_integrity.check(
        [
            l8_stamp_integrity.check_stamps(b.images, b.cutouts, b.arcs, b.labels, b.stamp_ids, b.bands, SIZE),
            l8_stamp_integrity.check_point_source(offsets.numpy().ravel(), ratios.numpy().ravel(), THRESHOLDS.L8),
            l8_stamp_integrity.check_unique_rows(b.rows),
        ]
    )
    l3 = l3_psf_wings.check(b.wings, THRESHOLDS.L3)
    assert l3.id == "L3" and l8.id == "L8"
    return {"L3": l3.passed, "L8": l8.passed}


@pytest.fixture(scope="module")
def bundle(real_dir: Path) -> Bundle:
    return make_bundle(real_dir)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), low=st.floats(0.7, 1.4), width=st.floats(0.0, 0.8))
def test_clean_injections_into_real_cutouts_pass_l3_and_l8(real_dir: Path, seed: int, low: float, width: float) -> None:
    assert verdicts(make_bundle(real_dir, seed, (low, low + width))) == {"L3": True, "L8": True}


def _gaussian_wings(b: Bundle, rows: slice) -> Bundle:
    fwhm = torch.full((len(b.wings),), 1.3, dtype=torch.float64)
    gauss = wing_deficits(psf_kernels("gaussian", fwhm, KERNEL, SCALE), SCALE, fwhm).numpy()
    wings = b.wings.copy()
    wings.loc[wings.index[rows], ["psf_wing_2fwhm", "psf_wing_3as"]] = gauss[rows]
    return replace(b, wings=wings)


def _nan_pixel(b: Bundle) -> Bundle:
    images = b.images.copy()
    images[1, 2, 10, 10] = np.nan
    return replace(b, images=images)


def _touched_control(b: Bundle) -> Bundle:
    images = b.images.copy()
    images[0, 1, 32, 32] = np.nextafter(images[0, 1, 32, 32], np.float32(np.inf))  # one ulp
    return replace(b, images=images)


def _unrecorded_arc(b: Bundle) -> Bundle:
    arcs = b.arcs.copy()
    arcs[1] *= np.float32(0.99)  # the stamp holds a brighter arc than the one recorded
    return replace(b, arcs=arcs)


def _duplicated_row(b: Bundle) -> Bundle:
    rows = b.rows.copy()
    rows.loc[3, ["BRICKID", "config_id"]] = rows.loc[1, ["BRICKID", "config_id"]].to_numpy()
    return replace(b, rows=rows)


CORRUPTIONS: dict[str, tuple[Callable[[Bundle], Bundle], str]] = {
    "gen1 gaussian injection psf": (lambda b: _gaussian_wings(b, slice(None)), "L3"),
    "one stamp with a gaussian psf": (lambda b: _gaussian_wings(b, slice(2, 3)), "L3"),
    "nan pixel": (_nan_pixel, "L8"),
    "control one ulp off its cutout": (_touched_control, "L8"),
    "positive != cutout + recorded arc": (_unrecorded_arc, "L8"),
    "band order rgz": (lambda b: replace(b, bands=("r", "g", "z")), "L8"),
    "kernel off centre by a pixel": (lambda b: replace(b, kernels=torch.roll(b.kernels, 1, dims=-1)), "L8"),
    "kernel clipped on one side": (lambda b: replace(b, kernels=b.kernels * (torch.arange(KERNEL) < 40)), "L8"),
    "duplicated (host, config)": (_duplicated_row, "L8"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_single_corruption_fires_only_its_own_invariant(bundle: Bundle, name: str) -> None:
    corrupt, lesson = CORRUPTIONS[name]
    assert verdicts(bundle) == {"L3": True, "L8": True}
    assert verdicts(corrupt(bundle)) == {"L3": lesson != "L3", "L8": lesson != "L8"}


def test_l3_names_the_offending_stamp_and_its_shortfall(bundle: Bundle) -> None:
    finding = l3_psf_wings.check(_gaussian_wings(bundle, slice(2, 3)).wings, THRESHOLDS.L3)
    assert not finding.passed and finding.n_offending == 1
    assert finding.evidence[0]["row"] == 2 and finding.evidence[0]["shortfall_2fwhm"] > 0.99
    assert finding.threshold == THRESHOLDS.L3.rel_tolerance


def test_a_moffat_core_alone_passes_l3_but_a_gaussian_does_not() -> None:
    fwhm = torch.linspace(0.9, 1.8, 5, dtype=torch.float64)
    survey = wing_deficits(psf_kernels("survey", fwhm, KERNEL, SCALE, 2.8, "r"), SCALE, fwhm).numpy()
    for model, passes in (("moffat", True), ("gaussian", False)):
        injected = wing_deficits(psf_kernels(model, fwhm, KERNEL, SCALE, 2.8), SCALE, fwhm).numpy()
        frame = pd.DataFrame(
            {
                "psf_wing_2fwhm": injected[:, 0],
                "psf_wing_3as": injected[:, 1],
                "survey_wing_2fwhm": survey[:, 0],
                "survey_wing_3as": survey[:, 1],
            }
        )
        assert l3_psf_wings.check(frame, THRESHOLDS.L3).passed is passes


def test_l8_names_the_stamp_and_the_problem(bundle: Bundle) -> None:
    b = _touched_control(_nan_pixel(bundle))
    finding = l8_stamp_integrity.check_stamps(b.images, b.cutouts, b.arcs, b.labels, b.stamp_ids, b.bands, SIZE)
    problems = {(row["stamp_id"], row["problem"]) for row in finding.evidence}
    assert problems == {(1001, "non-finite pixels"), (1000, "control differs from its cutout")}
    wrong_shape = l8_stamp_integrity.check_stamps(
        b.images[:, :, :32], b.cutouts, b.arcs, b.labels, b.stamp_ids, b.bands, SIZE
    )
    assert not wrong_shape.passed and "stamps are float32 (6, 3, 32, 64)" in wrong_shape.detail


def test_missing_or_empty_inputs_fail_with_a_reason() -> None:
    assert "missing column" in l3_psf_wings.check(pd.DataFrame({"psf_wing_2fwhm": [0.1]}), THRESHOLDS.L3).detail
    empty = pd.DataFrame(columns=l3_psf_wings.NEEDS)
    assert l3_psf_wings.check(empty, THRESHOLDS.L3).detail == "no stamps to judge"
    assert not l8_stamp_integrity.check([]).passed
    assert not l8_stamp_integrity.check_point_source(np.array([]), np.array([]), THRESHOLDS.L8).passed
