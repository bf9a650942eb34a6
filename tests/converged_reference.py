"""A converged reference for ``render_arcs``: the same scene with numerics refined until they stop mattering.

A stamp pixel's value is the integral over the pixel of the lensed, unit-flux source convolved
with the continuous PSF profile (``MoffatPSF.profile``, truncated to the kernel's K x K pixel box
and normalised to unit integral there), times the band's flux. The reference computes it as
follows, on a grid ``MARGIN`` pixels wider than the stamp on every side so that light from just
outside the stamp is kept:

- lensing is lenstronomy's (``LensModel(["SIE", "SHEAR"]).ray_shooting``), traced once per stamp;
- the source is an elliptical Sersic with the exact half-light b_n (``scipy.special.gammaincinv``)
  and the product-averaged radius R = sqrt(q x'^2 + y'^2 / q). lenstronomy's own SERSIC_ELLIPSE
  uses b_n ~ 1.9992 n - 0.3271, so its ``R_sersic`` is not the half-light radius (9 % off at n = 6)
  and its core is flattened inside 1e-4"; ``lenstronomy_sersic_kwargs`` gives the R_sersic that
  makes its profile this one, and tests/test_converged_rendering.py checks the two agree;
- each pixel is split into ``subpixels``^2 sub-pixels, integrated adaptively (``_unit_source``):
  a cell is split in four while its centre and corner estimates differ by more than ``tol`` of
  the flux, which also gives the light's centroid inside each sub-pixel;
- the sub-pixel light is convolved with the PSF sampled at sub-pixel resolution, plus the first-
  order correction for each sub-pixel's centroid offset (its light-weighted offsets convolved with
  the PSF's gradient), so a compact image lands where it is to a small fraction of a sub-pixel;
  then sub-pixels are summed into pixels and the stamp is cropped out.

Refining (12 sub-pixels instead of 8, ``tol`` 100x smaller) moves a stamp by < 3e-4 of its flux in
L1 and its magnification by < 2e-5 (tests/test_converged_rendering.py).
``magnification`` is the unit-flux lensed source summed inside the stamp, before the PSF.
Everything is float64 numpy; a 48 x 48 grz stamp takes ~0.5 s on one core.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import partial

import numpy as np
import scipy.fft
import torch
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.Util.param_util import phi_q2_ellipticity
from scipy.ndimage import binary_dilation
from scipy.special import gammaincinv

from darkhalo.lensing.psf import psf_kernels, psf_sb
from darkhalo.lensing.render import ArcParams

#: Pixels added on each side of the stamp before tracing and convolving, then cropped.
MARGIN = 16
#: Points traced per call of lenstronomy (bounds memory at ~100 MB).
CHUNK_POINTS = 2**20

_LENS = LensModel(["SIE", "SHEAR"])


@dataclass(frozen=True)
class MoffatPSF:
    """Per-stamp, per-band Moffat PSFs: FWHM (N, B) arcsec, ``beta``, kernel side ``size`` pixels.

    The reference needs the continuous profile, not only pixel samples of it: between its samples
    a kernel of FWHM < ~1" is not determined to 1 % (band-limited or spline interpolation of a
    0.9" Moffat's pixel kernel is 0.1-0.3 % off at half-pixel shifts, of a 0.7" one 1-2.5 %). The
    ``survey`` model's core is solved inside ``psf_kernels`` and not exposed, so the Moffat (its
    core, with ``psf_kernels`` the pixel integral of ``psf_sb`` at the same FWHM) stands in.
    """

    fwhm: torch.Tensor
    beta: float = 2.8
    size: int = 47

    def kernels(self, pixel_scale: float) -> torch.Tensor:
        """Pixel-integrated unit-sum kernels (N, B, size, size) float64 (``psf_kernels``): what
        ``render_arcs`` takes."""
        per_band = [psf_kernels("moffat", f, self.size, pixel_scale, self.beta) for f in self.fwhm.double().T]
        return torch.stack(per_band, dim=1)

    def profile(self, r: np.ndarray, i: int, band: int) -> np.ndarray:
        """Surface brightness per unit flux (arcsec^-2) of stamp i's PSF in ``band`` at radii r (arcsec)."""
        fwhm = self.fwhm[i, band].double()
        return psf_sb("moffat", torch.from_numpy(r), fwhm, self.beta).numpy()


def broad_params(n: int, seed: int) -> tuple[ArcParams, MoffatPSF]:
    """n arcs (float64) spanning what the renderer must handle, and their PSFs (3 bands).

    theta_E 0.3-2.5", lens q 0.4-1, shear up to 0.1; half the sources area-uniform within theta_E
    of the lens, half on the tangential caustic (within +-2 R_eff of a random point of it); R_eff
    0.02-1" log-uniform, Sersic n 0.5-6, source q 0.3-1; fluxes 0.5-5 nanomaggies per band; survey
    Moffat PSFs (beta 2.8) of FWHM 0.9-1.8" per band; the lens up to half a 0.262" pixel
    from the stamp's centre pixel (``lens_x``, ``lens_y``).
    """
    rng = np.random.default_rng(seed)
    theta_e = rng.uniform(0.3, 2.5, n)
    lens_q, lens_phi = rng.uniform(0.4, 1.0, n), rng.uniform(0, np.pi, n)
    shear, shear_phi = rng.uniform(0, 0.1, n), rng.uniform(0, np.pi, n)
    g1, g2 = shear * np.cos(2 * shear_phi), shear * np.sin(2 * shear_phi)
    src_reff = np.exp(rng.uniform(np.log(0.02), np.log(1.0), n))
    radius, angle = theta_e * np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * np.pi, n)
    src_x, src_y = radius * np.cos(angle), radius * np.sin(angle)
    on_caustic = np.arange(n) % 2 == 1
    cx, cy = _caustic_points(theta_e, lens_q, lens_phi, g1, g2, rng.uniform(0, 2 * np.pi, n))
    jitter = 2 * src_reff * rng.uniform(-1, 1, (2, n))
    src_x = np.where(on_caustic, cx + jitter[0], src_x)
    src_y = np.where(on_caustic, cy + jitter[1], src_y)
    columns = dict(
        theta_e=theta_e, lens_q=lens_q, lens_phi=lens_phi, g1=g1, g2=g2, src_x=src_x, src_y=src_y,
        src_reff=src_reff, src_n=rng.uniform(0.5, 6.0, n), src_q=rng.uniform(0.3, 1.0, n),
        src_phi=rng.uniform(0, np.pi, n), flux=rng.uniform(0.5, 5.0, (n, 3)),
    )  # fmt: skip
    lens_x, lens_y = rng.uniform(-0.131, 0.131, (2, n))
    fwhm = torch.tensor(rng.uniform(0.9, 1.8, (n, 3)))
    params = ArcParams(**{k: torch.tensor(v) for k, v in columns.items()})
    return replace(params, lens_x=torch.tensor(lens_x), lens_y=torch.tensor(lens_y)), MoffatPSF(fwhm)


def _caustic_points(
    theta_e: np.ndarray, q: np.ndarray, phi: np.ndarray, g1: np.ndarray, g2: np.ndarray, angle: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Source-plane points (relative to the lens) on the tangential caustic: the image-plane ray at
    ``angle`` is bisected for where det(A) changes sign (negative inside the critical curve of a
    coreless SIE, positive outside), and that point is ray-traced."""
    kwargs = [_lens_kwargs(*row, 0.0, 0.0) for row in zip(theta_e, q, phi, g1, g2, strict=True)]
    low, high = np.full_like(theta_e, 1e-3) * theta_e, 5 * theta_e
    for _ in range(50):
        mid = (low + high) / 2
        det = np.array([_det_a(m * np.cos(a), m * np.sin(a), k) for m, a, k in zip(mid, angle, kwargs, strict=True)])
        low, high = np.where(det < 0, mid, low), np.where(det < 0, high, mid)
    points = [_LENS.ray_shooting(r * np.cos(a), r * np.sin(a), k) for r, a, k in zip(low, angle, kwargs, strict=True)]
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def _det_a(x: float, y: float, kwargs: list[dict]) -> float:
    f_xx, f_xy, f_yx, f_yy = _LENS.hessian(x, y, kwargs)
    return (1 - f_xx) * (1 - f_yy) - f_xy * f_yx


def _lens_kwargs(
    theta_e: float, q: float, phi: float, g1: float, g2: float, lens_x: float, lens_y: float
) -> list[dict]:
    """lenstronomy SIE + SHEAR keyword lists, the shear centred on the lens."""
    e1, e2 = phi_q2_ellipticity(phi, q)
    return [
        dict(theta_E=theta_e, e1=e1, e2=e2, center_x=lens_x, center_y=lens_y),
        dict(gamma1=g1, gamma2=g2, ra_0=lens_x, dec_0=lens_y),
    ]


def sersic_b(n: float) -> float:
    """Exact b_n: the half-light radius encloses half of a Sersic profile's light."""
    return float(gammaincinv(2 * n, 0.5))


def lenstronomy_sersic_kwargs(reff: float, n: float, q: float, phi: float, x: float, y: float) -> dict:
    """lenstronomy SERSIC_ELLIPSE keywords (amp 1) for the profile exp(-b_n (R / reff)^(1/n)) with
    the exact b_n: lenstronomy's approximate b'_n needs R_sersic = reff (b'_n / b_n)^n."""
    e1, e2 = phi_q2_ellipticity(phi, q)
    approximate = max(1.9992 * n - 0.3271, 1e-5)
    return dict(
        amp=1.0, R_sersic=reff * (approximate / sersic_b(n)) ** n, n_sersic=n, e1=e1, e2=e2, center_x=x, center_y=y
    )


@dataclass(frozen=True)
class _Stamp:
    """One stamp's scene as plain floats (arcsec, radians), positions in the stamp frame."""

    theta_e: float
    lens_q: float
    lens_phi: float
    g1: float
    g2: float
    lens_x: float
    lens_y: float
    src_x: float
    src_y: float
    src_reff: float
    src_n: float
    src_q: float
    src_phi: float

    @classmethod
    def of(cls, params: ArcParams, i: int) -> _Stamp:
        columns = {f.name: getattr(params, f.name, None) for f in fields(cls)}
        row = {k: 0.0 if v is None else float(v[i]) for k, v in columns.items()}  # no lens offset: 0
        row["src_x"] += row["lens_x"]
        row["src_y"] += row["lens_y"]
        return cls(**row)

    def light(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Unit-flux surface brightness (per arcsec^2) of the lensed source at image-plane (x, y)."""
        lens = _lens_kwargs(self.theta_e, self.lens_q, self.lens_phi, self.g1, self.g2, self.lens_x, self.lens_y)
        out = np.empty_like(x)
        flat_x, flat_y, flat_out = x.reshape(-1), y.reshape(-1), out.reshape(-1)
        b = sersic_b(self.src_n)
        norm = 2 * math.pi * self.src_n * self.src_reff**2 * math.gamma(2 * self.src_n) / b ** (2 * self.src_n)
        cos, sin, q = math.cos(self.src_phi), math.sin(self.src_phi), self.src_q
        for start in range(0, flat_x.size, CHUNK_POINTS):
            part = slice(start, start + CHUNK_POINTS)
            bx, by = _LENS.ray_shooting(flat_x[part], flat_y[part], lens)
            dx, dy = bx - self.src_x, by - self.src_y
            along, across = cos * dx + sin * dy, cos * dy - sin * dx
            radius = np.sqrt(q * along**2 + across**2 / q) / self.src_reff
            flat_out[part] = np.exp(-b * radius ** (1 / self.src_n)) / norm
        return out


def reference_images(
    params: ArcParams,
    psf: MoffatPSF,
    size: int,
    pixel_scale: float = 0.262,
    subpixels: int = 8,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray]:
    """Converged stamps (N, B, size, size) float64 in nanomaggies and magnifications (N,).

    ``subpixels`` is the sub-pixel grid of the convolution; a sub-pixel is split in four, again
    and again, while its centre and corner estimates differ by more than ``tol`` of the source's
    flux (``_unit_source``).
    """
    n = params.theta_e.shape[0]
    flux = params.flux.double().numpy()
    images = np.empty((n, flux.shape[1], size, size))
    magnification = np.empty(n)
    inner = slice(MARGIN * subpixels, (MARGIN + size) * subpixels)
    step = pixel_scale / subpixels
    for i in range(n):
        maps = _unit_source(_Stamp.of(params, i), size, pixel_scale, subpixels, tol)
        magnification[i] = maps[0][inner, inner].sum()
        for band in range(flux.shape[1]):
            kernels = sampled_psf(partial(psf.profile, i=i, band=band), psf.size * subpixels // 2, step)
            fine = _convolve(maps, kernels)[inner, inner]
            images[i, band] = flux[i, band] * fine.reshape(size, subpixels, size, subpixels).sum(axis=(1, 3))
    return images, magnification


#: Most times a sub-pixel is split in four (``_unit_source``): 2^-16 of a sub-pixel's side.
MAX_DEPTH = 16


def _unit_source(stamp: _Stamp, size: int, pixel_scale: float, subpixels: int, tol: float) -> list[np.ndarray]:
    """Unit-flux light per sub-pixel (M, M) on the widened grid (M = (size + 2 MARGIN) subpixels),
    and its light-weighted x and y offsets from the sub-pixel centres (flux x arcsec, (M, M) each).

    Adaptive quadrature: a cell's light is (2 centre + corner mean) / 3 times its area (exact for
    quadratic light); a cell whose centre and corner estimates differ by more than ``tol`` is split
    into four, down to ``MAX_DEPTH`` levels. Neighbours of split sub-pixels are split too, so a
    compact image that falls between one sub-pixel's samples is caught by its neighbours'.
    """
    h = pixel_scale / subpixels
    side = (size + 2 * MARGIN) * subpixels
    origin = -(size // 2 + MARGIN + 0.5) * pixel_scale  # left edge of the widened grid
    centres = origin + (np.arange(side) + 0.5) * h
    corners = origin + np.arange(side + 1) * h
    middle = stamp.light(*np.meshgrid(centres, centres)) * h**2
    at_corners = stamp.light(*np.meshgrid(corners, corners)) * h**2
    edge = (at_corners[:-1, :-1] + at_corners[1:, :-1] + at_corners[:-1, 1:] + at_corners[1:, 1:]) / 4
    split = binary_dilation(np.abs(middle - edge) > tol, np.ones((3, 3), dtype=bool))
    light = np.where(split, 0.0, (2 * middle + edge) / 3).reshape(-1)
    moment_x, moment_y = np.zeros_like(light), np.zeros_like(light)
    rows, cols = np.nonzero(split)
    owner, x, y = rows * side + cols, centres[cols], centres[rows]
    dx, dy = np.zeros_like(x), np.zeros_like(y)
    quarter = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) / 4
    for depth in range(1, MAX_DEPTH + 1):
        cell = h / 2**depth
        owner = np.repeat(owner, 4)
        x, dx = (np.repeat(v, 4) + np.tile(quarter[:, 0], v.size) * 2 * cell for v in (x, dx))
        y, dy = (np.repeat(v, 4) + np.tile(quarter[:, 1], v.size) * 2 * cell for v in (y, dy))
        middle = stamp.light(x, y) * cell**2
        edge = stamp.light(x + 2 * cell * quarter[:, :1], y + 2 * cell * quarter[:, 1:]).mean(axis=0) * cell**2
        keep = np.abs(middle - edge) <= tol if depth < MAX_DEPTH else np.ones_like(middle, dtype=bool)
        value = (2 * middle[keep] + edge[keep]) / 3
        np.add.at(light, owner[keep], value)
        np.add.at(moment_x, owner[keep], value * dx[keep])
        np.add.at(moment_y, owner[keep], value * dy[keep])
        owner, x, y, dx, dy = (v[~keep] for v in (owner, x, y, dx, dy))
        if owner.size == 0:
            break
    return [v.reshape(side, side) for v in (light, moment_x, moment_y)]


def sampled_psf(profile: Callable[[np.ndarray], np.ndarray], half: int, step: float) -> list[np.ndarray]:
    """The PSF ``profile`` (radius in arcsec to surface brightness) sampled at offsets j * ``step``
    arcsec, |j| <= ``half`` on both axes (centre at the middle sample), unit sum, and its x and y
    derivatives at the same points (per arcsec). The profile is tabulated every step / 64 in radius
    and interpolated."""
    table = np.arange(0, (half + 2) * step * math.sqrt(2), step / 64)
    values = profile(table)
    axis = np.arange(-half, half + 1) * step
    x, y = np.meshgrid(axis, axis)
    r = np.hypot(x, y)
    kernel = np.interp(r, table, values)
    norm = kernel.sum()
    radial = np.interp(r, table, np.gradient(values, table)) / np.maximum(r, step) / norm
    return [kernel / norm, radial * x, radial * y]


def _convolve(maps: list[np.ndarray], kernels: list[np.ndarray]) -> np.ndarray:
    """light * P - moment_x * dP/dx - moment_y * dP/dy: each sub-pixel's light placed at its
    centroid (first order in the offset), linear convolution cropped to the maps' grid."""
    side, k = maps[0].shape[0], kernels[0].shape[0]
    shape = [scipy.fft.next_fast_len(side + k - 1, real=True)] * 2
    total = 0
    for image, kernel, sign in zip(maps, kernels, (1, -1, -1), strict=True):
        total = total + sign * scipy.fft.rfft2(image, shape) * scipy.fft.rfft2(kernel, shape)
    return scipy.fft.irfft2(total, shape)[k // 2 : k // 2 + side, k // 2 : k // 2 + side]
