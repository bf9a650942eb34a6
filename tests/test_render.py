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
from darkhalo.lensing.imaging import PLAIN, fft_convolve, fft_convolve_moments
from darkhalo.lensing.psf import psf_kernels
from darkhalo.lensing.render import ArcParams, convergence_errors, render_arcs, render_point_sources
from darkhalo.lensing.sersic import q_phi_to_ellipticity, sersic_at_scaled_r2, sersic_total_to_ie

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


def lenstronomy_image(p: ArcParams, i: int, size: int, supersample: int) -> np.ndarray:
    """Stamp i's unit-flux lensed source before any PSF, by lenstronomy (SIE + SHEAR lensing a SERSIC_ELLIPSE)."""
    row = {k: float(getattr(p, k)[i]) for k in ArcParams.__dataclass_fields__ if k != "flux"}
    e1, e2 = (float(v) for v in q_phi_to_ellipticity(torch.tensor(row["lens_q"]), torch.tensor(row["lens_phi"])))
    s1, s2 = (float(v) for v in q_phi_to_ellipticity(torch.tensor(row["src_q"]), torch.tensor(row["src_phi"])))
    amp = float(sersic_total_to_ie(torch.tensor(1.0, dtype=torch.float64), torch.tensor(row["src_reff"]),
                                   torch.tensor(row["src_n"])))  # fmt: skip
    corner = -(size // 2) * SCALE
    grid = PixelGrid(nx=size, ny=size, transform_pix2angle=np.eye(2) * SCALE, ra_at_xy_0=corner, dec_at_xy_0=corner)
    model = ImageModel(
        grid,
        PSF(psf_type="NONE"),
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics=dict(supersampling_factor=supersample),
    )
    centre = dict(center_x=row["lens_x"], center_y=row["lens_y"])
    shear = dict(gamma1=row["g1"], gamma2=row["g2"], ra_0=row["lens_x"], dec_0=row["lens_y"])
    lens = [dict(theta_E=row["theta_e"], e1=e1, e2=e2, **centre), shear]
    source = [dict(amp=amp, R_sersic=row["src_reff"], n_sersic=row["src_n"], e1=s1, e2=s2,
                   center_x=row["lens_x"] + row["src_x"], center_y=row["lens_y"] + row["src_y"])]  # fmt: skip
    return model.image(kwargs_lens=lens, kwargs_source=source)


def test_the_lensed_source_matches_lenstronomy_at_fine_supersampling() -> None:
    """The lensing and source physics (before the PSF) against lenstronomy traced at 20 x 20 rays
    per pixel, sources of R_eff >= 0.05" and n <= 3 that it resolves there, lens centres off the
    pixel centre."""
    n, size = 6, 48
    p = random_params(n, seed=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    p = replace(p, lens_x=(torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * SCALE,
                lens_y=(torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * SCALE)  # fmt: skip
    ours = render.lensed_source(p.to(dtype=torch.float32), size, SCALE, 4)
    assert ours.dtype == torch.float32 and ours.shape == (n, size, size)
    for i in range(n):
        reference = lenstronomy_image(p, i, size, 20)
        l1 = np.abs(ours[i].double().numpy() - reference).sum() / np.abs(reference).sum()
        assert l1 < 0.01, f"stamp {i}: L1 difference {l1:.4f} of the flux"


def test_an_unlensed_source_keeps_its_flux_through_tracing_binning_and_psf() -> None:
    """Sources from compact and steep (0.02", n = 6) to extended and flat on a stamp that holds them
    and their PSF: the adaptive cells keep the flux to well within 1 %."""
    n = 4
    p = random_params(n, seed=1)
    zero = torch.zeros(n)
    resolved = {"src_reff": torch.tensor([0.02, 0.05, 0.3, 0.5]), "src_n": torch.tensor([6.0, 4.0, 1.5, 0.5])}
    unlensed = ArcParams(**{**p.__dict__, "theta_e": zero, "g1": zero, "g2": zero, **resolved})
    rendered = render_arcs(unlensed, survey_psf(n, 31, seed=1), 128, SCALE, 4)
    assert torch.allclose(rendered.magnification, torch.ones(n), atol=2e-3)
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
    mu = render.lensed_source(p, 48, SCALE, 4).sum(dim=(-2, -1))
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
    monkeypatch.setitem(render.CHUNK_SUBPIXELS, "cpu", 1000)  # a few stamps or cells per chunk
    apart = render_arcs(p, psf, 32, SCALE, 3).images
    assert float((apart - together).abs().sum() / together.abs().sum()) < 1e-6  # float32 rounding only


def test_float64_and_float32_agree() -> None:
    p64 = random_params(3, seed=5, dtype=torch.float64)
    psf = survey_psf(3, 31, seed=5, dtype=torch.float64)
    high = render_arcs(p64, psf, 48, SCALE, 4).images
    low = render_arcs(p64.to(dtype=torch.float32), psf.float(), 48, SCALE, 4).images
    assert low.dtype == torch.float32
    # the adaptive cells may split differently at the tolerance's edge: the difference is within it
    assert float((low.double() - high).abs().sum() / high.abs().sum()) < 1e-3


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
    with pytest.raises(ValueError, match="lens centre outside the stamp"):
        render_arcs(replace(p, lens_x=torch.tensor([0.0, 3.0])), torch.ones(2, 3, 17, 17), 16)
    with pytest.raises(ValueError, match="margin"):
        render_arcs(p, torch.ones(2, 3, 5, 5), 16)
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
    n = 12
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
    plane = render._SourcePlaneMap.of(p)
    origin = torch.full((n,), -(48 // 2 + render.MARGIN), dtype=torch.float64)
    traced = render._corner_estimate(plane, 48 + 2 * render.MARGIN, SCALE, origin, origin)[1]
    assert traced.float().mean() < 0.75  # many pixels are estimated
    estimated = render.lensed_source(p, 48, SCALE, 4)
    monkeypatch.setattr(render, "FAINT_PIXEL", -1.0)  # every pixel is traced
    traced = render.lensed_source(p, 48, SCALE, 4)
    assert torch.all((traced - estimated).abs().sum(dim=(-2, -1)) <= ESTIMATED_FAINT_PIXELS_L1)
    assert torch.all(traced.sum(dim=(-2, -1)) > 0)


def test_fft_convolution_with_a_margin_is_the_full_convolution_cropped() -> None:
    image, kernel = torch.rand(1, 40, 40, dtype=torch.float64), torch.rand(1, 31, 31, dtype=torch.float64)
    cropped = fft_convolve_moments(image[:, None], kernel, 8, PLAIN)
    assert torch.allclose(cropped, fft_convolve(image, kernel)[:, 8:-8, 8:-8], atol=1e-12)


def brute_force(p: ArcParams, psf: torch.Tensor, size: int, rays: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and magnifications with every canvas pixel traced at ``rays`` x ``rays`` in float64,
    each ray's light kept at its position through its moments (``render.MOMENTS``)."""
    canvas = size + 2 * render.MARGIN
    plane = render._SourcePlaneMap.of(p)
    sub = (torch.arange(rays, dtype=torch.float64) + 0.5) / rays - 0.5
    powers = torch.stack([sub**a for a in range(render.MOMENT_ORDER + 1)])
    moments = torch.zeros(p.theta_e.shape[0], len(render.MOMENTS), canvas, canvas, dtype=torch.float64)
    for i in range(p.theta_e.shape[0]):
        one = plane.shaped(lambda t, i=i: t[i])
        for r in range(canvas):
            offsets = torch.arange(canvas, dtype=torch.float64) - size // 2 - render.MARGIN
            x = (offsets[:, None, None] + sub[None, None, :]) * SCALE - p.lens_x[i]
            y = (r - size // 2 - render.MARGIN + sub[None, :, None]) * SCALE - p.lens_y[i]
            big_x, big_y = one.coords(x, y)
            light = sersic_at_scaled_r2(big_x**2 + big_y**2, one.n, one.amplitude * (SCALE / rays) ** 2, one.b_n)
            per_power = torch.einsum("cyx,ax,by->abc", light, powers, powers)
            moments[i, :, r] = torch.stack([per_power[a, b] for a, b in render.MOMENTS])
    inside = moments[:, 0, render.MARGIN : -render.MARGIN, render.MARGIN : -render.MARGIN].sum(dim=(-2, -1))
    return render.convolve_moments(moments, p.flux, psf, render.MARGIN), inside


def test_a_compact_steep_source_is_within_one_percent_of_a_brute_force_render() -> None:
    """R_eff 0.03" with n = 4 (its cusp spans a few hundredths of a pixel) on the caustic region of
    an elliptical lens: the adaptive cells agree with 64 x 64 rays per pixel everywhere."""
    p = random_params(2, seed=11, dtype=torch.float64)
    p = replace(p, src_reff=torch.tensor([0.03, 0.05], dtype=torch.float64), src_n=torch.tensor([4.0, 2.5]).double(),
                src_x=torch.tensor([0.05, -0.1]).double(), src_y=torch.tensor([0.02, 0.0]).double())  # fmt: skip
    psf = survey_psf(2, 31, seed=11, dtype=torch.float64)
    ours = render_arcs(p.to(dtype=torch.float32), psf.float(), 24, SCALE, 4)
    images, magnification = brute_force(p, psf, 24, 64)
    l1 = (ours.images.double() - images).abs().sum(dim=(-2, -1)) / images.abs().sum(dim=(-2, -1))
    assert torch.all(l1 < 0.01), l1
    assert torch.allclose(ours.magnification.double(), magnification, rtol=0.01)


def point_like(x: float, y: float, **changes: torch.Tensor) -> ArcParams:
    """One unlensed, compact (R_eff 0.02", n = 1) round source at (x, y) arcsec, unit flux in one band."""
    one = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    fields = dict(theta_e=one(0.0), lens_q=one(1.0), lens_phi=one(0.0), g1=one(0.0), g2=one(0.0), src_x=one(x),
                  src_y=one(y), src_reff=one(0.02), src_n=one(1.0), src_q=one(1.0), src_phi=one(0.0),
                  flux=torch.ones(1, 1, dtype=torch.float64))  # fmt: skip
    return ArcParams(**{**fields, **changes})


def centroid(image: torch.Tensor) -> tuple[float, float]:
    """Light centroid (x, y) of an image (size, size) in pixels from pixel size // 2."""
    axis = torch.arange(image.shape[-1], dtype=torch.float64) - image.shape[-1] // 2
    image = image.double()
    return float((image.sum(0) * axis).sum() / image.sum()), float((image.sum(1) * axis).sum() / image.sum())


@pytest.mark.parametrize(("x", "y"), [(0.5, 0.5), (0.5, -0.25), (0.3, 0.1)])
def test_a_compact_source_lands_at_its_sub_pixel_position_after_the_psf(x: float, y: float) -> None:
    """At a pixel corner (the worst case for convolving at pixel centres) and elsewhere."""
    kernel = psf_kernels("survey", torch.tensor([1.0]), 41, SCALE, 2.8, "r")[:, None]
    image = render_arcs(point_like(x * SCALE, y * SCALE).to(dtype=torch.float32), kernel.float(), 64, SCALE).images
    cx, cy = centroid(image[0, 0])
    assert abs(cx - x) < 0.02 and abs(cy - y) < 0.02
    assert float(image.sum()) == pytest.approx(1.0, abs=2e-3)


def test_light_just_outside_the_stamp_is_brought_in_by_the_psf() -> None:
    """A source a pixel outside the stamp's edge: the stamp holds what the PSF brings in, as the same
    region of a larger stamp does; its magnification counts only the light traced inside."""
    kernel = psf_kernels("survey", torch.tensor([1.3]), 41, SCALE, 2.8, "r")[:, None].float()
    p = point_like(17 * SCALE, 3 * SCALE, src_reff=torch.tensor([0.3], dtype=torch.float64)).to(dtype=torch.float32)
    small = render_arcs(p, kernel, 32, SCALE)
    large = render_arcs(p, kernel, 64, SCALE).images[..., 16:48, 16:48]
    assert float(large.sum()) > 0.05  # the PSF brings in a good share of the light
    assert float((small.images - large).abs().sum() / large.sum()) < 5e-3
    assert 0.05 < float(small.magnification) < 0.5


def test_the_lens_centre_can_be_offset_from_the_stamp_centre() -> None:
    """A round lens with the source behind its centre makes a ring centred on the lens."""
    x, y = 0.37 * SCALE, -0.81 * SCALE
    p = point_like(0.0, 0.0, theta_e=torch.tensor([1.2], dtype=torch.float64),
                   src_reff=torch.tensor([0.1], dtype=torch.float64), lens_x=torch.tensor([x]).double(),
                   lens_y=torch.tensor([y]).double())  # fmt: skip
    kernel = psf_kernels("survey", torch.tensor([1.0]), 31, SCALE, 2.8, "r")[:, None].float()
    rendered = render_arcs(p.to(dtype=torch.float32), kernel, 48, SCALE)
    cx, cy = centroid(rendered.images[0, 0])
    assert abs(cx - x / SCALE) < 0.01 and abs(cy - y / SCALE) < 0.01
    assert float(rendered.magnification) > 10  # a ring, not the unlensed source


def test_the_convergence_check_finds_the_default_numerics_converged_and_coarse_ones_not() -> None:
    p = random_params(4, seed=12)
    p = replace(p, src_reff=torch.tensor([0.02, 0.05, 0.2, 0.5]), src_n=torch.tensor([5.0, 3.0, 1.0, 0.5]))
    psf = survey_psf(4, 31, seed=12)
    l1, ratio = convergence_errors(p, psf, 32, SCALE)
    assert l1.shape == (4, 3) and ratio.shape == (4,)
    assert torch.all(l1 < 0.01) and torch.all((ratio - 1).abs() < 0.01)
    coarse_l1, coarse_ratio = convergence_errors(p, psf, 32, SCALE, supersample=3, tolerance=1.0)
    assert float(coarse_l1.max()) > 0.02 or float((coarse_ratio - 1).abs().max()) > 0.02
