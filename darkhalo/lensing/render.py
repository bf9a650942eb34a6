"""The batched arc renderer: SIE + shear lens, elliptical Sersic source, per-band PSF, stamp pixels.

``render_arcs`` is the one entry point of the injection physics. For each stamp it ray-traces a
supersampled grid through the lens once (faint pixels are estimated from their corners instead,
see ``lensed_source``), evaluates the unit-flux source there, sums sub-pixels into stamp pixels, then
scales by each band's flux and convolves with that band's PSF (FFT, kernel centre at ``K // 2``).
The lens sits at the stamp centre (pixel ``size // 2``). Same code on CPU and CUDA; the dtype
and device follow ``params`` (float32 is twice as fast as float64 and agrees to ~1e-6 of the flux).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from darkhalo.lensing.imaging import fft_convolve, pixel_offsets
from darkhalo.lensing.sersic import sersic_at_scaled_r2, sersic_b, sersic_total_to_ie
from darkhalo.lensing.sie import sie_frame_terms, sie_scale
from data_contracts.survey import PIXEL_SCALE

#: What each ranged parameter must satisfy: a q or radius of 0 has no light profile, and sersic_b
#: is solved for n in (0.2, 10]; every parameter must also be finite.
_VALID: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "theta_e": (lambda v: (v >= 0) & (v <= 100), "in [0, 100] arcsec"),
    "lens_q": (lambda v: (v > 0) & (v <= 1), "in (0, 1]"),
    "src_q": (lambda v: (v > 0) & (v <= 1), "in (0, 1]"),
    "src_reff": (lambda v: (v > 0) & (v <= 100), "in (0, 100] arcsec"),
    "src_n": (lambda v: (v > 0.2) & (v <= 10), "in (0.2, 10]"),
    "flux": (lambda v: v >= 0, ">= 0 nanomaggies"),
}


@dataclass(frozen=True)
class ArcParams:
    """One row per stamp: tensors of shape (N,) except ``flux`` (N, bands).

    Angles in radians (from +x towards +y), lengths in arcsec, fluxes in nanomaggies (the source's
    unlensed total flux per band). ``lens_q``/``src_q`` are axis ratios (minor/major).
    """

    theta_e: torch.Tensor
    lens_q: torch.Tensor
    lens_phi: torch.Tensor
    g1: torch.Tensor
    g2: torch.Tensor
    src_x: torch.Tensor
    src_y: torch.Tensor
    src_reff: torch.Tensor
    src_n: torch.Tensor
    src_q: torch.Tensor
    src_phi: torch.Tensor
    flux: torch.Tensor

    def __post_init__(self) -> None:
        n = self.theta_e.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            expected = (n, value.shape[-1]) if f.name == "flux" else (n,)
            if value.ndim != len(expected) or value.shape != expected:
                raise ValueError(f"ArcParams.{f.name}: expected shape {expected}, got {tuple(value.shape)}")
            valid, text = _VALID.get(f.name, (torch.isfinite, "finite"))
            bad = ~(torch.isfinite(value) & valid(value))
            if bool(bad.any()):
                row = int(torch.nonzero(bad.reshape(n, -1).any(dim=1))[0])
                raise ValueError(f"ArcParams.{f.name}: row {row} is {value[row].tolist()}, must be {text}")

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ArcParams:
        """The same rows on another device and/or dtype."""
        return ArcParams(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})


@dataclass(frozen=True)
class RenderedArcs:
    """What ``render_arcs`` returns: the arcs (N, bands, size, size) in nanomaggies per pixel and the
    magnification (N,): the lensed source's flux inside the stamp over its unlensed flux, before PSF."""

    images: torch.Tensor
    magnification: torch.Tensor


#: Sub-pixels traced per chunk: on CPU a chunk's temporaries (1 MB each) stay in cache while each
#: torch call's fixed cost is spread over many pixels; a GPU wants big launches.
CHUNK_SUBPIXELS = {"cpu": 2**18, "cuda": 2**25}
#: Light below which a pixel is estimated from its corners instead of traced, as a share of the
#: source's total flux (see ``lensed_source``).
FAINT_PIXEL = 3e-6
#: Pixels within this many pixels of the lens centre are always traced (the deflection is
#: discontinuous there, so their corners say nothing about their interior).
CENTRE_PIXELS = 2


def lensed_source(params: ArcParams, size: int, pixel_scale: float, supersample: int) -> torch.Tensor:
    """The unit-flux source seen through the lens, per stamp pixel, before the PSF: (N, size, size).

    Each of the ``supersample``^2 sub-pixels of a pixel is traced to the source plane and the
    Sersic surface brightness there times the sub-pixel area is summed into the pixel. Faint
    pixels (below ``FAINT_PIXEL`` of the source's flux) are instead estimated from the light at
    their corners (``_corner_estimate``): over a stamp, that agrees with tracing every sub-pixel
    to ~1e-4 of the flux (tests/test_render.py).
    """
    dtype, device = params.theta_e.dtype, params.theta_e.device
    n_stamps = params.theta_e.shape[0]
    plane = _SourcePlaneMap.of(params, (pixel_scale / supersample) ** 2)
    estimate, traced = _corner_estimate(plane, size, pixel_scale, supersample)
    stamp, row, col = traced.nonzero(as_tuple=True)
    centres = pixel_offsets(size, pixel_scale, dtype=dtype, device=device)
    sub = pixel_offsets(1, pixel_scale, supersample, dtype=dtype, device=device)
    out = estimate.reshape(-1)
    flat = (stamp * size + row) * size + col
    table = torch.stack([getattr(plane, f.name) for f in fields(plane)])  # (fields, N): one gather per chunk
    step = max(1, CHUNK_SUBPIXELS.get(device.type, CHUNK_SUBPIXELS["cuda"]) // supersample**2)
    for start in range(0, flat.numel(), step):
        rows = slice(start, start + step)
        light = _trace_pixels(centres[col[rows]], centres[row[rows]], sub, table.index_select(1, stamp[rows]))
        out[flat[rows]] = light
    return out.reshape(n_stamps, size, size)


def _trace_pixels(x: torch.Tensor, y: torch.Tensor, sub: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Source light summed over the sub-pixels of pixels centred at (x, y) (p,), sub-pixel offsets
    ``sub`` (s,), with their stamps' ``_SourcePlaneMap`` fields as columns of ``coefficients``
    (fields, p). Sub-pixels go on the leading axes and pixels along the long contiguous last axis,
    so every operation vectorises."""
    plane = _SourcePlaneMap(*coefficients[:, None, None, :])
    return plane.light(x[None, None, :] + sub[None, :, None], y[None, None, :] + sub[:, None, None]).sum(dim=(0, 1))


def _corner_estimate(
    plane: _SourcePlaneMap, size: int, pixel_scale: float, supersample: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's light estimated from its corners, and where it must be traced instead: (N, size, size) each.

    The estimate is the mean of the light at the pixel's four corners (the trapezoid rule). Traced
    are pixels brighter than ``FAINT_PIXEL``, pixels next to the lens centre, and pixels whose
    footprint may hold an image of the source's centre, where the cusp can hide between corners:
    the footprint lies inside the box spanned by its corners' source-plane images, widened on each
    side by the box's own size plus one unlensed pixel (the lens bends smoothly away from its centre).
    """
    device, dtype = plane.n.device, plane.n.dtype
    axis = (torch.arange(size + 1, dtype=torch.float64) - size // 2 - 0.5) * pixel_scale
    axis = axis.to(dtype=dtype, device=device)
    # how far X and Y move across one pixel without the lens: a floor for the margin
    unlensed_pixel = [
        pixel_scale * (plane.p11.abs() + plane.p12.abs()),
        pixel_scale * (plane.p21.abs() + plane.p22.abs()),
    ]
    estimates, traced = [], []
    step = max(1, CHUNK_SUBPIXELS.get(device.type, CHUNK_SUBPIXELS["cuda"]) // (size + 1) ** 2)
    for start in range(0, plane.n.shape[0], step):
        rows = slice(start, start + step)
        part = plane.shaped(lambda t, rows=rows: _col(t[rows]))
        big_x, big_y = part.coords(axis[None, None, :], axis[None, :, None])
        r2 = torch.addcmul(big_x * big_x, big_y, big_y)
        estimate = _per_pixel(supersample**2 * sersic_at_scaled_r2(r2, part.n, part.amplitude, part.b_n), torch.add)
        estimate *= 0.25
        cusp = torch.ones_like(estimate, dtype=torch.bool)
        for c, floor in zip((big_x, big_y), unlensed_pixel, strict=True):
            low, high = _per_pixel(c, torch.minimum), _per_pixel(c, torch.maximum)
            margin = (high - low) + _col(floor[rows])
            cusp &= (low <= margin) & (high >= -margin)  # the widened box holds 0, the source centre
        estimates.append(estimate)
        traced.append(cusp | (estimate > FAINT_PIXEL))
    if not traced:
        empty = torch.zeros(0, size, size, dtype=dtype, device=device)
        return empty, empty.bool()
    centre = slice(size // 2 - CENTRE_PIXELS, size // 2 + CENTRE_PIXELS + 1)
    result = torch.cat(traced)
    result[:, centre, centre] = True
    return torch.cat(estimates), result


def _per_pixel(corners: torch.Tensor, combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Combine each pixel's four corners pairwise, rows then columns: (n, h + 1, w + 1) to (n, h, w)."""
    rows = combine(corners[:, :-1], corners[:, 1:])
    return combine(rows[:, :, :-1], rows[:, :, 1:])


@dataclass(frozen=True)
class _SourcePlaneMap:
    """Per-stamp coefficients that take image-plane positions to the source's light.

    With u, v the SIE's lens-frame terms (``sie_frame_terms``), the source-plane position in the
    source's scaled frame is (X, Y) = P (x, y) + B (u, v) + c, where P = M (1 - Gamma),
    B = -(b/e) M R(-phi_lens), c = -M src, M = diag(sqrt(q_s), 1/sqrt(q_s)) R(phi_s) / R_eff;
    then (R / R_eff)^2 = X^2 + Y^2. Every field is one value per stamp, shaped (``shaped``) to
    broadcast against the positions.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    lens_q: torch.Tensor
    p11: torch.Tensor
    p12: torch.Tensor
    p21: torch.Tensor
    p22: torch.Tensor
    b11: torch.Tensor
    b12: torch.Tensor
    b21: torch.Tensor
    b22: torch.Tensor
    c1: torch.Tensor
    c2: torch.Tensor
    n: torch.Tensor
    b_n: torch.Tensor
    amplitude: torch.Tensor  # surface brightness at R_eff times the sub-pixel area, unit total flux

    @classmethod
    def of(cls, p: ArcParams, subpixel_area: float) -> _SourcePlaneMap:
        cos, sin = torch.cos(p.lens_phi), torch.sin(p.lens_phi)
        root_q = torch.sqrt(p.src_q)
        cs, ss = torch.cos(p.src_phi), torch.sin(p.src_phi)
        m = _matrix(cs * root_q, ss * root_q, -ss / root_q, cs / root_q) / p.src_reff[:, None, None]
        lin = m @ _matrix(1 - p.g1, -p.g2, -p.g2, 1 + p.g1)
        bend = -sie_scale(p.theta_e, p.lens_q)[:, None, None] * (m @ _matrix(cos, -sin, sin, cos))
        offset = -(m @ torch.stack([p.src_x, p.src_y], -1)[..., None])[..., 0]
        amplitude = sersic_total_to_ie(torch.ones_like(p.src_reff), p.src_reff, p.src_n) * subpixel_area
        return cls(
            cos, sin, p.lens_q,
            lin[:, 0, 0], lin[:, 0, 1], lin[:, 1, 0], lin[:, 1, 1],
            bend[:, 0, 0], bend[:, 0, 1], bend[:, 1, 0], bend[:, 1, 1],
            offset[:, 0], offset[:, 1], p.src_n, sersic_b(p.src_n), amplitude,
        )  # fmt: skip

    def shaped(self, reshape: Callable[[torch.Tensor], torch.Tensor]) -> _SourcePlaneMap:
        """The same map with every field passed through ``reshape`` (select rows, add axes)."""
        return _SourcePlaneMap(**{f.name: reshape(getattr(self, f.name)) for f in fields(self)})

    def coords(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled source-frame positions (X, Y) of image-plane positions x, y (arcsec, broadcast)."""
        u, v = sie_frame_terms(self.cos * x + self.sin * y, self.cos * y - self.sin * x, self.lens_q)
        big_x = (self.p11 * x + (self.p12 * y + self.c1)).addcmul_(self.b11, u).addcmul_(self.b12, v)
        big_y = (self.p21 * x + (self.p22 * y + self.c2)).addcmul_(self.b21, u).addcmul_(self.b22, v)
        return big_x, big_y

    def light(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unit-flux source light per sub-pixel at image-plane positions x, y (arcsec, broadcast)."""
        big_x, big_y = self.coords(x, y)
        return sersic_at_scaled_r2(big_x.square_().addcmul_(big_y, big_y), self.n, self.amplitude, self.b_n)


def _matrix(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Per-stamp 2x2 matrices [[a, b], [c, d]] from (N,) entries: (N, 2, 2)."""
    return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)


def _col(value: torch.Tensor) -> torch.Tensor:
    """A per-stamp (n,) tensor shaped (n, 1, 1) to broadcast over a stamp's (y, x) grid."""
    return value[:, None, None]


#: Stamps convolved per FFT call on CPU: buffers of a few MB are reused from the heap, where larger
#: ones are fresh memory on every call, whose page faults cost as much as the FFTs themselves.
CONVOLVE_STAMPS = {"cpu": 16, "cuda": 2**20}


def convolve_bands(unit: torch.Tensor, flux: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """Scale a unit-flux image (N, H, W) by the flux per band (N, B) and convolve each band with its
    unit-sum PSF kernel (N, B, K, K): (N, B, H, W). The image's FFT is taken once for all bands."""
    step = CONVOLVE_STAMPS.get(unit.device.type, CONVOLVE_STAMPS["cuda"])
    pieces = zip(unit.split(step), flux.split(step), psf.split(step), strict=True)
    return torch.cat([fft_convolve(u[:, None], k) * f[:, :, None, None] for u, f, k in pieces])


def render_arcs(
    params: ArcParams,
    psf: torch.Tensor,
    size: int,
    pixel_scale: float = PIXEL_SCALE,
    supersample: int = 4,
) -> RenderedArcs:
    """Render N lensed arcs into (N, B, size, size) stamps (nanomaggies per pixel).

    ``psf`` holds unit-sum kernels (N, B, K, K), K odd, sampled at ``pixel_scale``, one per stamp
    and band (B = ``params.flux.shape[1]``). The source is traced on a ``supersample``-times finer
    grid, binned to pixels, then convolved per band. Also returns each stamp's magnification.
    """
    if psf.ndim != 4 or psf.shape[:2] != params.flux.shape:
        raise ValueError(
            f"psf: expected kernels (N, B, K, K) with (N, B) = {tuple(params.flux.shape)}, got {tuple(psf.shape)}"
        )
    unit = lensed_source(params, size, pixel_scale, supersample)
    return RenderedArcs(convolve_bands(unit, params.flux, psf), unit.sum(dim=(-2, -1)))


def render_point_sources(
    x: torch.Tensor, y: torch.Tensor, flux: torch.Tensor, psf: torch.Tensor, size: int, pixel_scale: float = PIXEL_SCALE
) -> torch.Tensor:
    """Point sources at (x, y) arcsec from the stamp centre, flux (N, B), through the same per-band
    convolution as the arcs: (N, B, size, size). The flux is shared bilinearly among the four
    nearest pixels, which keeps both the total and the centroid exact; the L8 check of FFT centring."""
    n = x.shape[0]
    col = x / pixel_scale + size // 2
    row = y / pixel_scale + size // 2
    c0, r0 = torch.floor(col), torch.floor(row)
    fc, fr = col - c0, row - r0
    unit = torch.zeros(n, size * size, dtype=flux.dtype, device=flux.device)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            r, c = (r0 + dr).long(), (c0 + dc).long()
            if bool(((r < 0) | (r >= size) | (c < 0) | (c >= size)).any()):
                raise ValueError("point sources must lie at least one pixel inside the stamp")
            unit.scatter_add_(1, (r * size + c)[:, None], (wr * wc)[:, None].to(flux.dtype))
    return convolve_bands(unit.reshape(n, size, size), flux, psf)


def point_source_errors(
    psf: torch.Tensor,
    pixel_scale: float = PIXEL_SCALE,
    generator: torch.Generator | None = None,
    own_centroid: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The L8 point-source test of kernels (N, B, K, K): a unit point source per stamp at a random
    sub-pixel position within a pixel of the centre, rendered through each band's kernel on a stamp
    that holds it whole. Returns (centroid offset from the intended position in pixels, recovered /
    injected flux), each (N, B).

    The model PSFs are symmetric by construction, so their point source must land exactly where
    intended: that tests the kernel's centring and the convolution's together. A real (PSFEx)
    kernel is centred on its model centre, and its asymmetric light has its own centroid (0.1-0.3
    pix for the DECam models); with ``own_centroid`` the intended position is shifted by it, which
    leaves the convolution's centring under test.
    """
    n, _, k, _ = psf.shape
    size = k + 4
    like = dict(dtype=psf.dtype, device=psf.device)
    shift = (torch.rand(2, n, generator=generator, dtype=psf.dtype) * 2 - 1).to(psf.device) * pixel_scale
    images = render_point_sources(shift[0], shift[1], torch.ones(psf.shape[:2], **like), psf, size, pixel_scale)
    want_x, want_y = shift[0][:, None], shift[1][:, None]
    if own_centroid:
        kx, ky = _centroid(psf, pixel_scale)
        want_x, want_y = want_x + kx, want_y + ky
    cx, cy = _centroid(images, pixel_scale)
    offsets = torch.hypot(cx - want_x, cy - want_y) / pixel_scale
    return offsets, images.sum(dim=(-2, -1)) / psf.sum(dim=(-2, -1))


def _centroid(images: torch.Tensor, pixel_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Light centroid (x, y) in arcsec from the centre pixel (index size // 2) of images (..., size, size)."""
    size = images.shape[-1]
    axis = (torch.arange(size, dtype=images.dtype, device=images.device) - size // 2) * pixel_scale
    total = images.sum(dim=(-2, -1))
    return (images.sum(-2) * axis).sum(-1) / total, (images.sum(-1) * axis).sum(-1) / total
