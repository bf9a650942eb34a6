"""L3 (PSF wings against real DECam PSFs) and L8 (stamp integrity) on arcs injected into real DR10
cutouts: clean data passes both; each single corruption is caught by its own invariant and only by it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from darkhalo.lensing.psf import psf_kernels, wing_deficits
from darkhalo.lensing.render import CELL_TOLERANCE, ArcParams, convergence_errors, point_source_errors, render_arcs
from data_contracts.invariants import l3_psf_wings, l8_stamp_integrity
from data_contracts.thresholds import InvariantThresholds

SCALE, SIZE, KERNEL = 0.262, 64, 63
THRESHOLDS = InvariantThresholds()


@dataclass(frozen=True)
class Bundle:
    """What the inject stage has in hand for a batch, as the invariants see it."""

    wings: pd.DataFrame  # L3's measures: the injection PSF at each real reference model's band and FWHM
    images: np.ndarray
    cutouts: np.ndarray
    arcs: np.ndarray
    labels: np.ndarray
    stamp_ids: np.ndarray
    bands: tuple[str, ...]
    kernels: torch.Tensor
    rows: pd.DataFrame  # host and config keys
    params: ArcParams  # the positives' arcs, rendered again at twice the resolution for L8
    supersample: int = 4
    tolerance: float = CELL_TOLERANCE


def real_cutouts(real_dir: Path) -> np.ndarray:
    """The real DR10 grz cutouts (101 x 101, host at the centre) cropped to 64 x 64, (N, 3, y, x)."""
    stacks = [np.load(f)["cutout"] for f in sorted((real_dir / "cutouts").glob("*.npz"))]
    half = 101 // 2
    crop = slice(half - SIZE // 2, half + SIZE // 2)
    return np.ascontiguousarray(np.stack(stacks).transpose(0, 3, 1, 2)[:, :, crop, crop], dtype=np.float32)


def psf_measures(model: str, bands: str = "grz") -> pd.DataFrame:
    """L3's measures of a PSF model (survey Moffat beta 2.8 + wings, moffat, gaussian) at the reference
    models' FWHMs, the model taken in ``bands`` and the survey PSF elsewhere."""
    reference = l3_psf_wings.reference()
    rows = []
    for band, fwhm in zip(reference["band"], reference["fwhm_arcsec"], strict=True):
        fwhm_t = torch.tensor([fwhm], dtype=torch.float64)
        kernel = psf_kernels(model if band in bands else "survey", fwhm_t, KERNEL, SCALE, 2.8, band)
        rows.append(wing_deficits(kernel[0], SCALE, fwhm).numpy())
    deficits = np.array(rows)
    return reference.assign(psf_wing_2fwhm=deficits[:, 0], psf_wing_3as=deficits[:, 1])


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
    wings = psf_measures("survey")
    rows = pd.DataFrame(
        {"RELEASE": 10000, "BRICKID": np.arange(n) + 100, "OBJID": 7, "config_id": np.arange(n) % 3, "label": labels}
    )
    stamp_ids = np.arange(n) + 1000
    return Bundle(wings, images, cutouts, arcs, labels, stamp_ids, ("g", "r", "z"), kernels, rows, params)


def verdicts(b: Bundle) -> dict[str, bool]:
    offsets, ratios = point_source_errors(b.kernels, SCALE, torch.Generator().manual_seed(1))
    problems = l8_stamp_integrity.stamp_problems(b.images, b.cutouts, b.arcs, b.labels)
    positive = torch.as_tensor(b.labels == 1)
    sample = ArcParams(**{f.name: getattr(b.params, f.name)[positive] for f in fields(ArcParams)})
    l1, ratio = convergence_errors(sample, b.kernels.float()[positive], SIZE, SCALE, b.supersample, b.tolerance)
    l8 = l8_stamp_integrity.check(
        [
            l8_stamp_integrity.check_recorded(b.stamp_ids, problems),
            l8_stamp_integrity.check_point_source(offsets.numpy().ravel(), ratios.numpy().ravel(), THRESHOLDS.L8),
            l8_stamp_integrity.check_convergence(
                b.stamp_ids[b.labels == 1], l1.amax(dim=1).numpy(), ratio.numpy(), THRESHOLDS.L8
            ),
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


def _gaussian_wings(b: Bundle, bands: str) -> Bundle:
    return replace(b, wings=psf_measures("gaussian", bands))


def _nan_pixel(b: Bundle) -> Bundle:
    images = b.images.copy()
    images[1, 2, 10, 10] = np.nan
    return replace(b, images=images)


def _touched_control(b: Bundle) -> Bundle:
    images = b.images.copy()
    images[0, 1, 32, 32] = np.nextafter(images[0, 1, 32, 32], np.float32(np.inf))  # one ulp
    return replace(b, images=images)


def _other_arc(b: Bundle, factor: float) -> Bundle:
    arcs = b.arcs.copy()
    arcs[1] *= np.float32(factor)  # the stamp holds an arc other than the one rendered again
    return replace(b, arcs=arcs)


def _bands(b: Bundle, order: list[int]) -> Bundle:
    return replace(b, images=np.ascontiguousarray(b.images[:, order]))  # written in another band order


def _other_host(b: Bundle) -> Bundle:
    return replace(b, images=np.ascontiguousarray(np.roll(b.images, 2, axis=0)))  # built on other hosts' cutouts


def _duplicated_row(b: Bundle) -> Bundle:
    rows = b.rows.copy()
    rows.loc[3, ["BRICKID", "config_id"]] = rows.loc[1, ["BRICKID", "config_id"]].to_numpy()
    return replace(b, rows=rows)


CORRUPTIONS: dict[str, tuple[Callable[[Bundle], Bundle], str]] = {
    "gen1 gaussian injection psf": (lambda b: _gaussian_wings(b, "grz"), "L3"),
    "a gaussian psf in the r band": (lambda b: _gaussian_wings(b, "r"), "L3"),
    "nan pixel": (_nan_pixel, "L8"),
    "control one ulp off its cutout": (_touched_control, "L8"),
    "positive != cutout + its arc (1 %)": (lambda b: _other_arc(b, 0.99), "L8"),
    "positive != cutout + its arc (0.1 %)": (lambda b: _other_arc(b, 1.001), "L8"),
    "band order rgz": (lambda b: _bands(b, [1, 0, 2]), "L8"),
    "band order zrg": (lambda b: _bands(b, [2, 1, 0]), "L8"),
    "another host's cutout": (_other_host, "L8"),
    "kernel off centre by a pixel": (lambda b: replace(b, kernels=torch.roll(b.kernels, 1, dims=-1)), "L8"),
    "kernel clipped on one side": (lambda b: replace(b, kernels=b.kernels * (torch.arange(KERNEL) < 40)), "L8"),
    "duplicated (host, config)": (_duplicated_row, "L8"),
    "arcs traced one ray per pixel": (lambda b: replace(b, supersample=1, tolerance=1.0), "L8"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_single_corruption_fires_only_its_own_invariant(bundle: Bundle, name: str) -> None:
    corrupt, lesson = CORRUPTIONS[name]
    assert verdicts(bundle) == {"L3": True, "L8": True}
    assert verdicts(corrupt(bundle)) == {"L3": lesson != "L3", "L8": lesson != "L8"}


def test_l3_judges_the_spec_bands_and_shows_every_band() -> None:
    """A Gaussian in z alone passes the default (r-band) judgement, shows its z shortfall, and fails
    when the spec judges z too."""
    z_gaussian = psf_measures("gaussian", "z")
    finding = l3_psf_wings.check(z_gaussian, THRESHOLDS.L3)
    assert finding.passed and finding.measured["z"]["2fwhm"] > 0.99 and finding.measured["r"]["2fwhm"] < 0.5
    strict = l3_psf_wings.check(z_gaussian, THRESHOLDS.L3.model_copy(update={"bands": ("r", "z")}))
    assert not strict.passed and {(row["band"], row["measure"]) for row in strict.evidence} == {
        ("z", "2fwhm"),
        ("z", "3arcsec"),
    }
    assert strict.threshold == {"rel_tolerance": 0.5, "bands": ["r", "z"]}


def test_a_moffat_core_alone_passes_l3_but_a_gaussian_does_not() -> None:
    for model, passes in (("moffat", True), ("gaussian", False)):
        assert l3_psf_wings.check(psf_measures(model), THRESHOLDS.L3).passed is passes


def test_the_l3_reference_is_the_real_psfex_models_measured_again(real_dir: Path) -> None:
    """data_contracts' reference table is what darkhalo measures on the real PSFEx files (kept in step)."""
    from darkhalo.surveys.realism import psfex_wing_reference

    measured = psfex_wing_reference(real_dir / "psf" / "psfex")
    committed = l3_psf_wings.reference()
    assert measured["model"].tolist() == committed["model"].tolist() and len(committed) == 20
    numbers = ["fwhm_arcsec", "real_wing_2fwhm", "real_wing_3as"]
    np.testing.assert_allclose(measured[numbers].to_numpy(), committed[numbers].to_numpy(), rtol=1e-5, atol=1e-8)
    assert set(committed["band"]) == {"g", "r", "z"} and (committed["real_wing_3as"] > 0).all()


def test_l8_names_the_stamp_and_the_problem(bundle: Bundle) -> None:
    b = _touched_control(_nan_pixel(bundle))
    problems = l8_stamp_integrity.stamp_problems(b.images, b.cutouts, b.arcs, b.labels)
    finding = l8_stamp_integrity.check_recorded(b.stamp_ids, problems)
    assert {(row["stamp_id"], row["problem"]) for row in finding.evidence} == {
        (1001, "non-finite pixels"),
        (1000, "control differs from its cutout"),
    }


def test_missing_or_empty_inputs_fail_with_a_reason() -> None:
    assert "missing column" in l3_psf_wings.check(pd.DataFrame({"psf_wing_2fwhm": [0.1]}), THRESHOLDS.L3).detail
    empty = psf_measures("survey").iloc[:0]
    assert l3_psf_wings.check(empty, THRESHOLDS.L3).detail == "no PSF measures to judge"
    assert not l8_stamp_integrity.check([]).passed
    assert not l8_stamp_integrity.check_point_source(np.array([]), np.array([]), THRESHOLDS.L8).passed
    assert not l8_stamp_integrity.check_convergence(np.arange(2), np.zeros(2), np.ones(3), THRESHOLDS.L8).passed
    assert l8_stamp_integrity.check_convergence(np.arange(0), np.zeros(0), np.ones(0), THRESHOLDS.L8).passed


def test_l8_names_the_arcs_that_move_at_twice_the_resolution() -> None:
    ids, l1, ratio = np.array([5, 6, 7]), np.array([0.001, 0.02, 0.0]), np.array([1.0, 1.0, 0.97])
    finding = l8_stamp_integrity.check_convergence(ids, l1, ratio, THRESHOLDS.L8)
    assert not finding.passed and [row["stamp_id"] for row in finding.evidence] == [6, 7]
    assert finding.measured == {"max_l1": 0.02, "max_magnification_change": pytest.approx(0.03)}
    merged = l8_stamp_integrity.check(
        [finding, l8_stamp_integrity.check_point_source(np.r_[0.0], np.r_[1.0], THRESHOLDS.L8)]
    )
    assert {"max_l1", "max_offset_pix"} <= set(merged.measured) and {"l1", "position_pix"} <= set(merged.threshold)
