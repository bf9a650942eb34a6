"""Pixelized injection PSFs from the real DECam PSFEx models, wired into the injection kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REAL, spec_data

import darkhalo.lensing.render as render
from darkhalo.injection import injection_kernels
from darkhalo.lensing.pixelized import model_psfsize, pixelized_kernels, psfex_by_band
from darkhalo.lensing.psf import psfsize, wing_deficits
from darkhalo.lensing.psfex import PsfexError
from darkhalo.lensing.render import point_source_errors
from darkhalo.spec import SpecError, spec_from_dict

PSFEX = REAL / "psf" / "psfex"
SCALE = 0.262


def test_every_band_has_real_models_and_kernels_are_unit_sum_and_centred() -> None:
    models = psfex_by_band(PSFEX)
    assert [len(models[b]) for b in "grz"] == [6, 7, 7]
    kernels = pixelized_kernels(models, np.array([[1.4, 1.25, 1.1], [1.8, 1.6, 1.5]]), 63, SCALE).numpy()
    assert kernels.shape == (2, 3, 63, 63)
    assert np.allclose(kernels.sum(axis=(2, 3)), 1)
    grid = np.arange(63) - 31
    for kernel in kernels.reshape(-1, 63, 63):
        cx, cy = (kernel.sum(axis=0) * grid).sum(), (kernel.sum(axis=1) * grid).sum()
        assert np.hypot(cx, cy) < 0.3  # pixels


@pytest.mark.parametrize("band", range(3))
def test_a_kernel_has_the_host_psfsize_over_the_real_models_and_a_range_of_targets(band: int) -> None:
    """PSFSIZE measured on the kernel as legacypipe measures it: within 1 % of the host's, 0.8-2.4"."""
    targets = np.linspace(0.8, 2.4, 17)
    kernels = pixelized_kernels(psfex_by_band(PSFEX), np.repeat(targets[:, None], 3, axis=1), 63, SCALE)
    np.testing.assert_allclose(psfsize(kernels[:, band], SCALE).numpy(), targets, rtol=0.01)


def test_at_its_own_psfsize_each_real_model_is_its_kernel_unstretched() -> None:
    models = psfex_by_band(PSFEX)
    for j, band in enumerate("grz"):
        for model in models[band]:
            own = model_psfsize(model)
            kernel = pixelized_kernels(models, np.full((1, 3), own), 63, SCALE)[0, j]
            assert torch.allclose(kernel, model.kernel(*model.zero, 63, SCALE, dtype=torch.float64)), model.path.name


def test_it_keeps_the_real_shape_a_smooth_profile_does_not() -> None:
    """The real kernel is not the survey PSF of the same PSFSIZE, though both have wings beyond 2 FWHM and 3"."""
    models = psfex_by_band(PSFEX)
    model = models["r"][0]
    fwhm = model_psfsize(model)
    mine = pixelized_kernels(models, np.full((1, 3), fwhm), 63, SCALE)[0, 1]
    spec = spec_from_dict(spec_data() | {"psf": {"model": "survey"}})
    survey = injection_kernels(spec.psf, SCALE, np.full((1, 3), fwhm), np.full((1, 3), 2.8), "survey")[0, 1].double()
    assert float((mine - survey).abs().max()) > 0.02 * float(mine.max())
    assert (wing_deficits(mine, SCALE, fwhm) > 0).all() and (wing_deficits(survey, SCALE, fwhm) > 0).all()


def test_the_spec_routes_pixelized_to_the_psfex_models() -> None:
    spec = spec_from_dict(spec_data() | {"psf": {"model": "pixelized", "psfex_dir": str(PSFEX)}})
    fwhm = np.array([[1.4, 1.25, 1.1]])
    got = injection_kernels(spec.psf, SCALE, fwhm, np.full((1, 3), 2.8))
    want = pixelized_kernels(psfex_by_band(PSFEX), fwhm, spec.psf.kernel_size_pix, SCALE)
    assert torch.allclose(got.double(), want, atol=1e-6)


def test_pixelized_without_files_or_with_a_band_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="pixelized needs psfex_dir"):
        spec_from_dict(spec_data() | {"psf": {"model": "pixelized"}})
    (tmp_path / "c4d_170916_045042_ooi_r_ls9-N15-psfex.fits").write_bytes(
        (PSFEX / "c4d_170916_045042_ooi_r_ls9-N15-psfex.fits").read_bytes()
    )
    with pytest.raises(PsfexError, match=r"no PSFEx file .* for band\(s\) g, z"):
        psfex_by_band(tmp_path)


def test_the_preflight_judges_l3_on_the_inject_stages_own_pixelized_kernels() -> None:
    from darkhalo.audit.judges import psf_finding, psf_wing_measures
    from darkhalo.injection import RENDER_DTYPE

    spec = spec_from_dict(spec_data() | {"psf": {"model": "pixelized", "psfex_dir": str(PSFEX)}})
    measures = psf_wing_measures(spec)
    first = measures.iloc[0]
    band = "grz".index(first["band"])
    fwhm = np.full((1, 3), first["fwhm_arcsec"])
    kernel = pixelized_kernels(psfex_by_band(PSFEX), fwhm, spec.psf.kernel_size_pix, SCALE)[:, band]
    kernel = kernel.to(RENDER_DTYPE)  # the inject stage's kernels, which the pre-flight uses
    expected = float(wing_deficits(kernel.double(), SCALE, first["fwhm_arcsec"])[0, 0])
    assert first["psf_wing_2fwhm"] == pytest.approx(expected, rel=1e-6)
    assert psf_finding(spec).passed  # real PSFEx wings at 63 pixels are real wings: L3 holds


def test_the_point_source_test_of_a_real_kernel_measures_the_convolutions_centring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real kernel's light is off its centre pixel by its own shape; measured from there, its point
    source lands where intended, and a convolution one pixel off is still seen."""
    kernels = pixelized_kernels(psfex_by_band(PSFEX), np.array([[1.4, 1.25, 1.1], [1.0, 1.6, 1.3]]), 31, SCALE)
    seeded = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    offsets, ratios = point_source_errors(kernels, SCALE, seeded(), own_centroid=True)
    assert float(offsets.max()) < 1e-6 and torch.allclose(ratios, torch.ones_like(ratios))
    assert float(point_source_errors(kernels, SCALE, seeded())[0].max()) > 0.05  # the kernel's own centroid
    convolve = render.convolve_bands
    monkeypatch.setattr(render, "convolve_bands", lambda *a: torch.roll(convolve(*a), 1, dims=-1))
    assert float(point_source_errors(kernels, SCALE, seeded(), own_centroid=True)[0].min()) > 0.9
