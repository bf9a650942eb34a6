"""The arc renderer against lenstronomy's ImageModel, exact identities and lensing closed forms."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lenstronomy.Data.pixel_grid import PixelGrid
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from scipy.signal import fftconvolve

import darkhalo.lensing.render as render
from darkhalo.lensing.imaging import fft_convolve
from darkhalo.lensing.psf import psf_kernels
from darkhalo.lensing.render import ArcParams, render_arcs, render_point_sources
from darkhalo.lensing.sersic import q_phi_to_ellipticity, sersic_total_to_ie

SCALE = 0.262


def random_params(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> ArcParams:
    """Arcs like the grid's: theta_E 0.3-2", sources 0.05-0.5" near the caustics, grz fluxes."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, *shape, generator=g, dtype=torch.float64)).to(dtype)

    return ArcParams(
        theta_e=uniform(0.3, 2.0),
        lens_q=uniform(0.4, 1.0),
        lens_phi=uniform(0, np.pi),
        g1=uniform(-0.05, 0.05),
        g2=uniform(-0.05, 0.05),
        src_x=uniform(-0.3, 0.3),
        src_y=uniform(-0.3, 0.3),
        src_reff=uniform(0.05, 0.5),
        src_n=uniform(0.5, 3.0),
        src_q=uniform(0.4, 1.0),
        src_phi=uniform(0, np.pi),
        flux=uniform(1.0, 10.0, 3),
    )


def survey_psf(n: int, size: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    fwhm = 1.0 + 0.6 * torch.rand(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kernels = [psf_kernels("survey", fwhm[:, b], size, SCALE, 2.8, band) for b, band in enumerate("grz")]
    return torch.stack(kernels, dim=1).to(dtype)


def lenstronomy_image(p: ArcParams, i: int, band: int, kernel: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """One band of stamp i rendered by lenstronomy (SIE + SHEAR lensing a SERSIC_ELLIPSE)."""
    row = {k: float(getattr(p, k)[i]) for k in ArcParams.__dataclass_fields__ if k != "flux"}
    e1, e2 = (float(v) for v in q_phi_to_ellipticity(torch.tensor(row["lens_q"]), torch.tensor(row["lens_phi"])))
    s1, s2 = (float(v) for v in q_phi_to_ellipticity(torch.tensor(row["src_q"]), torch.tensor(row["src_phi"])))
    flux = torch.tensor(float(p.flux[i, band]), dtype=torch.float64)
    amp = float(sersic_total_to_ie(flux, torch.tensor(row["src_reff"]), torch.tensor(row["src_n"])))
    corner = -(size // 2) * SCALE
    grid = PixelGrid(nx=size, ny=size, transform_pix2angle=np.eye(2) * SCALE, ra_at_xy_0=corner, dec_at_xy_0=corner)
    model = ImageModel(
        grid,
        PSF(psf_type="PIXEL", kernel_point_source=kernel),
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics=dict(supersampling_factor=supersample, supersampling_convolution=False),
    )
    lens = [
        dict(theta_E=row["theta_e"], e1=e1, e2=e2, center_x=0.0, center_y=0.0),
        dict(gamma1=row["g1"], gamma2=row["g2"], ra_0=0.0, dec_0=0.0),
    ]
    source = [
        dict(
            amp=amp,
            R_sersic=row["src_reff"],
            n_sersic=row["src_n"],
            e1=s1,
            e2=s2,
            center_x=row["src_x"],
            center_y=row["src_y"],
        )
    ]
    return model.image(kwargs_lens=lens, kwargs_source=source)


def test_rendered_arcs_match_lenstronomy_within_one_percent_of_the_flux() -> None:
    n, size, supersample = 6, 64, 4
    params = random_params(n, seed=3)
    psf = survey_psf(n, 63, seed=3)
    ours = render_arcs(params, psf, size, SCALE, supersample).images
    assert ours.dtype == torch.float32 and ours.shape == (n, 3, size, size)
    for i in range(n):
        for band in range(3):
            reference = lenstronomy_image(params, i, band, psf[i, band].double().numpy(), size, supersample)
            l1 = np.abs(ours[i, band].double().numpy() - reference).sum() / np.abs(reference).sum()
            assert l1 < 0.01, f"stamp {i} band {band}: L1 difference {l1:.4f} of the flux"


def test_an_unlensed_source_keeps_its_flux_through_tracing_binning_and_psf() -> None:
    """A resolved source (R_eff >= 0.3" against 0.065" sub-pixels, no steep cusp: n <= 1.5) on a
    stamp that holds its PSF. (Cuspier, smaller sources need finer supersampling, as in lenstronomy.)"""
    n = 4
    p = random_params(n, seed=1)
    zero = torch.zeros(n)
    resolved = {"src_reff": torch.linspace(0.3, 0.5, n), "src_n": torch.linspace(0.5, 1.5, n)}
    unlensed = ArcParams(**{**p.__dict__, "theta_e": zero, "g1": zero, "g2": zero, **resolved})
    rendered = render_arcs(unlensed, survey_psf(n, 31, seed=1), 128, SCALE, 4)
    assert torch.allclose(rendered.magnification, torch.ones(n), atol=5e-3)
    assert torch.allclose(rendered.images.sum(dim=(-2, -1)), p.flux * rendered.magnification[:, None], rtol=1e-5)


def test_a_small_source_behind_an_sis_is_magnified_by_two_theta_e_over_beta() -> None:
    """Point-source limit of the singular isothermal sphere: mu = 2 theta_E / beta for beta < theta_E."""
    theta_e, beta = 1.5, torch.tensor([0.5, 0.75], dtype=torch.float64)
    n = beta.numel()
    full = lambda v: torch.full((n,), v, dtype=torch.float64)  # noqa: E731
    p = ArcParams(
        theta_e=full(theta_e),
        lens_q=full(1.0),
        lens_phi=full(0.0),
        g1=full(0.0),
        g2=full(0.0),
        src_x=beta,
        src_y=full(0.0),
        src_reff=full(0.05),
        src_n=full(1.0),
        src_q=full(1.0),
        src_phi=full(0.0),
        flux=torch.ones(n, 1, dtype=torch.float64),
    )
    mu = render.lensed_source(p, 48, SCALE, 8).sum(dim=(-2, -1))
    assert torch.allclose(mu, 2 * theta_e / beta, rtol=0.01)


def test_the_source_is_traced_once_and_scaled_per_band() -> None:
    p = random_params(3, seed=2)
    one_kernel = survey_psf(3, 31, seed=2)[:, :1].expand(3, 3, 31, 31)
    images = render_arcs(p, one_kernel, 48, SCALE, 2).images
    per_unit = images / p.flux[:, :, None, None]
    assert torch.allclose(per_unit[:, 0], per_unit[:, 1], rtol=1e-5, atol=1e-9)
    assert torch.allclose(per_unit[:, 0], per_unit[:, 2], rtol=1e-5, atol=1e-9)


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    p = random_params(5, seed=4)
    psf = survey_psf(5, 31, seed=4)
    together = render_arcs(p, psf, 32, SCALE, 3).images
    monkeypatch.setitem(render.CHUNK_SUBPIXELS, "cpu", 1)  # one stamp per chunk
    apart = render_arcs(p, psf, 32, SCALE, 3).images
    assert float((apart - together).abs().sum() / together.abs().sum()) < 1e-6  # float32 rounding only


def test_float64_and_float32_agree() -> None:
    p64 = random_params(3, seed=5, dtype=torch.float64)
    psf = survey_psf(3, 31, seed=5, dtype=torch.float64)
    high = render_arcs(p64, psf, 48, SCALE, 4).images
    low = render_arcs(p64.to(dtype=torch.float32), psf.float(), 48, SCALE, 4).images
    assert low.dtype == torch.float32
    assert float((low.double() - high).abs().sum() / high.abs().sum()) < 1e-5


@settings(max_examples=40, deadline=None)
@given(
    x=st.floats(-6.0, 6.0),
    y=st.floats(-6.0, 6.0),
    flux=st.floats(0.01, 1000.0),
    fwhm=st.floats(0.8, 2.0),
    model=st.sampled_from(["gaussian", "moffat", "survey"]),
)
def test_a_point_source_through_the_psf_keeps_its_flux_and_lands_where_intended(
    x: float, y: float, flux: float, fwhm: float, model: str
) -> None:
    size, k = 96, 41
    kernel = psf_kernels(model, torch.tensor([fwhm]), k, SCALE, 2.8, "r")
    image = render_point_sources(
        torch.tensor([x]), torch.tensor([y]), torch.tensor([[flux]]), kernel[:, None], size, SCALE
    )[0, 0].double()
    total = image.sum()
    axis = (torch.arange(size, dtype=torch.float64) - size // 2) * SCALE
    cx = float((image.sum(0) * axis).sum() / total)
    cy = float((image.sum(1) * axis).sum() / total)
    assert float(total) / flux == pytest.approx(1.0, abs=1e-4)
    assert abs(cx - x) / SCALE < 1e-3 and abs(cy - y) / SCALE < 1e-3


@pytest.mark.parametrize(("h", "w", "k"), [(64, 64, 63), (20, 33, 41), (40, 40, 5), (7, 9, 3)])
def test_fft_convolution_equals_scipy_same_mode(h: int, w: int, k: int) -> None:
    rng = np.random.default_rng(h + k)
    image, kernel = rng.normal(size=(h, w)), rng.random(size=(k, k))
    ours = fft_convolve(torch.tensor(image)[None], torch.tensor(kernel)[None])[0].numpy()
    assert np.allclose(ours, fftconvolve(image, kernel, mode="same"), atol=1e-10)


def test_bad_shapes_are_named() -> None:
    p = random_params(2)
    with pytest.raises(ValueError, match=r"ArcParams\.src_n"):
        ArcParams(**{**p.__dict__, "src_n": torch.ones(3)})
    with pytest.raises(ValueError, match=r"ArcParams\.src_q: row 1 is 1\.5, must be in \(0, 1\]"):
        ArcParams(**{**p.__dict__, "src_q": torch.tensor([0.5, 1.5])})
    with pytest.raises(ValueError, match=r"ArcParams\.flux: row 0 .* must be >= 0"):
        ArcParams(**{**p.__dict__, "flux": torch.tensor([[1.0, -2.0, 1.0], [1.0, 1.0, 1.0]])})
    with pytest.raises(ValueError, match=r"ArcParams\.g1: row 1 is nan, must be finite"):
        ArcParams(**{**p.__dict__, "g1": torch.tensor([0.0, float("nan")])})
    with pytest.raises(ValueError, match="psf"):
        render_arcs(p, torch.ones(2, 2, 5, 5), 16)
    with pytest.raises(ValueError, match="inside the stamp"):
        render_point_sources(torch.tensor([100.0]), torch.tensor([0.0]), torch.ones(1, 1), torch.ones(1, 1, 3, 3), 16)


#: Stamp-level agreement of corner-estimated faint pixels with tracing them (lensed_source's docstring).
ESTIMATED_FAINT_PIXELS_L1 = 1e-4


@pytest.mark.parametrize(
    "case",
    ["grid-like arcs", "tiny sources on the caustics", "sources far outside the einstein ring", "steep and flat n"],
)
def test_estimating_faint_pixels_from_their_corners_agrees_with_tracing_them(
    monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Estimating pixels below FAINT_PIXEL from their corners equals tracing every pixel, to 1e-4 of
    the flux per stamp, and traces fewer pixels."""
    n = 32
    p = random_params(n, seed=7, dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    if case == "tiny sources on the caustics":  # 0.04" sources at the SIS-like caustic radius, q ~ 1
        angle = 2 * np.pi * torch.rand(n, generator=g, dtype=torch.float64)
        radius = p.theta_e * (1 - p.lens_q) * 0.5
        p = replace(p, src_reff=torch.full((n,), 0.04, dtype=torch.float64), src_x=radius * torch.cos(angle),
                    src_y=radius * torch.sin(angle))  # fmt: skip
    elif case == "sources far outside the einstein ring":
        p = replace(p, src_x=p.src_x + 3.0, src_reff=torch.full((n,), 0.05, dtype=torch.float64))
    elif case == "steep and flat n":
        p = replace(p, src_n=torch.linspace(0.5, 4.0, n, dtype=torch.float64))
    plane = render._SourcePlaneMap.of(p, (SCALE / 4) ** 2)
    assert render._corner_estimate(plane, 48, SCALE, 4)[1].float().mean() < 0.75  # many pixels are estimated
    estimated = render.lensed_source(p, 48, SCALE, 4)
    monkeypatch.setattr(render, "FAINT_PIXEL", -1.0)  # every pixel is traced
    traced = render.lensed_source(p, 48, SCALE, 4)
    assert torch.all((traced - estimated).abs().sum(dim=(-2, -1)) <= ESTIMATED_FAINT_PIXELS_L1)
    assert torch.all(traced.sum(dim=(-2, -1)) > 0)
