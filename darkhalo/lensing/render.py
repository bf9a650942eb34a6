"""The batched arc renderer: SIE + shear lens, elliptical Sersic source, per-band PSF, stamp pixels.

``render_arcs`` is the one entry point of the injection physics. The numerics, per stamp:

- A canvas of the stamp plus ``MARGIN`` pixels on each side is lit, so light landing just outside
  the stamp reaches in through the PSF. The lens sits at pixel ``size // 2`` shifted by
  (``lens_x``, ``lens_y``).
- Faint pixels (below ``FAINT_PIXEL`` of the source's flux, by the light at their four corners)
  keep that corner estimate, placed at the pixel centre; the rest are traced adaptively: each
  traced pixel is split into a ``supersample`` x ``supersample`` grid of cells (at least
  ``MIN_GRID``), each cell's light taken at its centre plus the midpoint rule's error estimated
  from the second differences across the grid (exact for quadratic light). A cell whose estimated
  error exceeds the tolerance (``CELL_TOLERANCE`` of the source's flux) is split into ``SPLIT`` x
  ``SPLIT`` cells and traced again, up to ``MAX_DEPTH`` times. Cells whose source-plane footprint
  may hold the source's centre (the cusp, flagged from the pixel corners and then per cell) are
  also split while the light's spread over them exceeds the tolerance. So rays go where the lensed
  source varies fast: small or steep (high n) sources, high magnification, the cusp's images.
- Each pixel keeps its light's moments about its centre up to ``MOMENT_ORDER`` (2), and the canvas
  is convolved with each band's PSF kernel by a Taylor expansion of the sub-pixel shift in Fourier
  space (``fft_convolve_moments``): compact images land where they are, not at pixel centres. The
  third-order terms ride on the first moments, as light linear across its pixel has them
  (``SPECTRAL_TERMS``). The moments are transformed once for all bands.

Stated accuracy (float32, supersample 4, the default tolerance), against the converged reference
(tests/converged_reference.py: lenstronomy's ray shooting, adaptive sub-pixels, the continuous PSF,
a 16-pixel margin) on the 24 seeded stamps of tests/test_converged_rendering.py (R_eff 0.02-1"
log-uniform, Sersic n 0.5-6, theta_E 0.3-2.5", sources on the caustics, lens centres within half a
pixel of the stamp centre, Moffat PSFs of FWHM 0.9-1.8"): L1 median 0.10 %, largest 0.21 %;
magnification median 0.04 %, largest 0.18 %. Over 120 such stamps (five seeds) the largest are
0.31 % and 0.22 %; on 72 stamps of benchmarks/bench_injection.py's grid, 0.11 % and 0.08 %.
``convergence_errors`` checks a sample of a run against a render at twice the resolution. Same
code on CPU and CUDA; the dtype and device follow ``params``. One CPU thread renders ~900-1,000 of
the benchmark's 64 x 64 grz stamps (63 x 63 kernels) per second: tracing ~0.55 ms a stamp (~0.15
ms of it the corner estimates; ~10,000 rays), convolution ~0.4 ms (6 moment row passes, 4 column
passes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from darkhalo.lensing.imaging import SpectralTerms, fft_convolve, fft_convolve_moments
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
    unlensed total flux per band). ``lens_q``/``src_q`` are axis ratios (minor/major). The lens
    centre sits (``lens_x``, ``lens_y``) from the centre of pixel ``size // 2`` (zeros when not
    given); ``src_x``/``src_y`` are the source's offset from the lens centre.
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
    lens_x: torch.Tensor | None = None
    lens_y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.theta_e.shape[0]
        for name in ("lens_x", "lens_y"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, torch.zeros_like(self.theta_e))
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
    magnification (N,): the source's light whose rays land inside the stamp's pixels, over its
    unlensed total flux, before the PSF (light traced onto the margin is not counted)."""

    images: torch.Tensor
    magnification: torch.Tensor


#: Rays traced per chunk: on CPU a chunk's temporaries (1 MB each) stay in cache while each
#: torch call's fixed cost is spread over many rays; a GPU wants big launches.
CHUNK_SUBPIXELS = {"cpu": 2**18, "cuda": 2**25}
#: Light below which a pixel is estimated from its corners instead of traced, as a share of the
#: source's total flux (see ``_corner_estimate``).
FAINT_PIXEL = 1e-5
#: Pixels within this many pixels of the lens centre are always traced (the deflection is
#: discontinuous there, so their corners say nothing about their interior).
CENTRE_PIXELS = 2
#: Pixels lit around the stamp on each side, so that the PSF brings their light into the stamp.
MARGIN = 8
#: Fewest cells per side of a traced pixel: the second differences of a cell's light need 3.
MIN_GRID = 3
#: Cells per side that a cell is split into when its estimated error is too large.
SPLIT = 4
#: Most times a cell is split (a pixel's finest cells are 1 / (supersample SPLIT^MAX_DEPTH) pixel).
MAX_DEPTH = 5
#: Estimated error of a cell, as a share of the source's total flux, above which it is split.
CELL_TOLERANCE = 1e-4
#: A cell's source-plane footprint is widened by this many times its half-size when asking whether
#: it may hold the source's centre (the cusp can sit in a neighbour's corner).
CUSP_WIDENING = 2.0
#: Highest order of the light moments traced per pixel for the sub-pixel convolution; the third
#: order is carried by the first moments (``SPECTRAL_TERMS``): a compact (R_eff 0.02") source at a
#: pixel corner through a 1" Moffat PSF is then 0.2 % off the converged image in L1 (0.15 % with
#: the third moments traced), at 6 moment FFTs instead of 10.
MOMENT_ORDER = 2
#: The moments (a, b): the sum of flux dx^a dy^b over a pixel's light, a + b <= MOMENT_ORDER.
MOMENTS = tuple((a, total - a) for total in range(MOMENT_ORDER + 1) for a in range(total, -1, -1))
#: The Taylor terms each moment carries into the convolution (``fft_convolve_moments``): its own,
#: and for the first moments the third-order ones that light linear across its pixel has
#: (m30 = 3/20 m10, m12 = m10 / 12, and the same with x and y swapped).
SPECTRAL_TERMS: tuple[SpectralTerms, ...] = tuple(
    (((a, b), 1.0), ((3 * a, 3 * b), 0.15), ((a + 2 * b, 2 * a + b), 1 / 12)) if a + b == 1 else (((a, b), 1.0),)
    for a, b in MOMENTS
)


def lensed_source(
    params: ArcParams, size: int, pixel_scale: float, supersample: int, tolerance: float = CELL_TOLERANCE
) -> torch.Tensor:
    """The unit-flux source seen through the lens, per stamp pixel, before the PSF: (N, size, size)."""
    moments = _lensed_moments(params, size, pixel_scale, supersample, tolerance)
    return moments[:, 0, MARGIN : MARGIN + size, MARGIN : MARGIN + size]


def _lensed_moments(
    params: ArcParams, size: int, pixel_scale: float, supersample: int, tolerance: float
) -> torch.Tensor:
    """The unit-flux source's light moments (``MOMENTS``) per pixel of the canvas (the stamp and its
    margin), offsets in pixels from each pixel's centre: (N, len(MOMENTS), size + 2 MARGIN, ...)."""
    canvas = size + 2 * MARGIN
    plane = _SourcePlaneMap.of(params)
    # lens-frame position (pixels) of canvas pixel 0's centre, per stamp and axis
    origin_x = -(size // 2 + MARGIN) - params.lens_x / pixel_scale
    origin_y = -(size // 2 + MARGIN) - params.lens_y / pixel_scale
    estimate, traced, cusp = _corner_estimate(plane, canvas, pixel_scale, origin_x, origin_y)
    # the pixels that may hold the cusp first: _trace_cells takes them as a leading slice
    stamp, row, col = torch.cat([(traced & cusp).nonzero(), (traced & ~cusp).nonzero()]).unbind(1)
    pixel = (stamp * canvas + row) * canvas + col
    # moments first: each moment's canvas is contiguous for the convolution's row pass
    out = torch.zeros(len(MOMENTS), estimate.numel(), dtype=estimate.dtype, device=estimate.device)
    out[0] = estimate.reshape(-1).index_fill_(0, pixel, 0)
    zero = torch.zeros_like(origin_x[stamp])
    cells = _Cells(stamp, pixel, col + origin_x[stamp], row + origin_y[stamp], zero, zero, cusp[stamp, row, col])
    grid, width = max(supersample, MIN_GRID), 1.0
    table = torch.stack([getattr(plane, f.name) for f in fields(plane)])  # (fields, N): one gather per chunk
    for depth in range(MAX_DEPTH + 1):
        split = []
        step = max(1, CHUNK_SUBPIXELS.get(table.device.type, CHUNK_SUBPIXELS["cuda"]) // grid**2)
        for start in range(0, cells.stamp.numel(), step):
            part = cells.rows(slice(start, start + step))
            accepted, children = _trace_cells(part, table, grid, width, pixel_scale, tolerance, depth == MAX_DEPTH)
            out.index_add_(1, part.pixel, accepted)
            split.append(children)
        cells = _Cells.cat(split)
        if cells.stamp.numel() == 0:
            break
        grid, width = SPLIT, width / grid
    return out.reshape(len(MOMENTS), *estimate.shape).transpose(0, 1)


@dataclass(frozen=True)
class _Cells:
    """Square cells of the image plane to trace, all of one width: their stamps, canvas pixels
    (flat index), pixel centres (x, y) in pixels from the lens centre, the cells' centres' offsets
    (dx, dy) from their pixel's centre in pixels, and whether a cell may hold the cusp, each (c,).
    The cells that may hold the cusp come first."""

    stamp: torch.Tensor
    pixel: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor
    cusp: torch.Tensor

    def rows(self, which: slice | torch.Tensor) -> _Cells:
        return _Cells(*(getattr(self, f.name)[which] for f in fields(_Cells)))

    @staticmethod
    def cat(parts: list[_Cells]) -> _Cells:
        """The parts' cells in one, those that may hold the cusp first."""
        counts = [int(p.cusp.sum()) for p in parts]
        ordered = [p.rows(slice(k)) for p, k in zip(parts, counts, strict=True)]
        ordered += [p.rows(slice(k, None)) for p, k in zip(parts, counts, strict=True)]
        return _Cells(*(torch.cat([getattr(p, f.name) for p in ordered]) for f in fields(_Cells)))


def _trace_cells(
    cells: _Cells, table: torch.Tensor, grid: int, width: float, pixel_scale: float, tolerance: float, last: bool
) -> tuple[torch.Tensor, _Cells]:
    """Trace each cell's ``grid`` x ``grid`` sub-cells (width ``width / grid`` pixels) at their centres.

    Returns the moments of the sub-cells accepted, per cell (len(MOMENTS), c), and the sub-cells to
    split further (none when ``last``). Sub-cells go on the leading axes and cells along the long
    contiguous last axis, so every operation vectorises.
    """
    h = width / grid
    sub = ((torch.arange(grid, dtype=torch.float64) + 0.5) * h - width / 2).to(table)
    plane = _SourcePlaneMap(*table.index_select(1, cells.stamp)[:, None, None, :])
    x = ((cells.x + cells.dx)[None, None, :] + sub[None, :, None]) * pixel_scale
    y = ((cells.y + cells.dy)[None, None, :] + sub[:, None, None]) * pixel_scale
    big_x, big_y = plane.coords(x, y)
    area = (h * pixel_scale) ** 2
    light = sersic_at_scaled_r2(torch.addcmul(big_x * big_x, big_y, big_y), plane.n, plane.amplitude * area, plane.b_n)
    # the midpoint rule's error, h^2 / 24 times the light's Laplacian, from second differences: added
    # to each cell's light (the result is exact for quadratic light), and its size sets where to split
    curvature_x, curvature_y = _second_difference(light, 1), _second_difference(light, 0)
    split = (curvature_x.abs() + curvature_y.abs()) > 24 * tolerance
    kept = torch.add(light, curvature_x.add_(curvature_y), alpha=1 / 24)
    if last:
        return _pixel_moments(kept, cells.dx, cells.dy, sub, h, centred=width == 1.0), cells.rows(slice(0))
    leading = int(cells.cusp.sum())  # the cells that may hold the cusp lead
    if leading:
        which = slice(leading)
        near, error = _cusp_error(plane.shaped(lambda t: t[..., which]), big_x[..., which], big_y[..., which], area)
        cusp = torch.zeros_like(split)
        cusp[..., which] = near
        split[..., which] |= near & (error > tolerance)
        i, j, c = torch.cat([(split & cusp).nonzero(), (split & ~cusp).nonzero()]).unbind(1)
        child_cusp = cusp[i, j, c]
    else:
        i, j, c = split.nonzero().unbind(1)
        child_cusp = torch.zeros_like(c, dtype=torch.bool)
    kept.masked_fill_(split, 0)
    children = _Cells(*(getattr(cells, f)[c] for f in ("stamp", "pixel", "x", "y")),
                      cells.dx[c] + sub[j], cells.dy[c] + sub[i], child_cusp)  # fmt: skip
    return _pixel_moments(kept, cells.dx, cells.dy, sub, h, centred=width == 1.0), children


def _second_difference(light: torch.Tensor, axis: int) -> torch.Tensor:
    """Second differences of grids (g, g, c) along ``axis`` (0: rows, 1: columns), the edge cells
    taking their neighbour's: h^2 times the curvature of the light, times the cell's area."""
    second = light.diff(dim=axis).diff(dim=axis)
    return torch.cat([second.narrow(axis, 0, 1), second, second.narrow(axis, -1, 1)], dim=axis)


def _cusp_error(
    plane: _SourcePlaneMap, big_x: torch.Tensor, big_y: torch.Tensor, area: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which cells of grids (g, g, c) may hold the source's centre, and a bound on the error of
    taking their light at their centre: the spread of the light over the cell, from the centre's
    brightness to that at the farthest point of its footprint, times the cell's ``area`` (arcsec^2).
    The footprint is the box of half-sizes estimated from the grid's differences, widened by
    ``CUSP_WIDENING`` to ask whether it holds 0."""
    half_x = (_gradient(big_x, 0).abs_() + _gradient(big_x, 1).abs_()) / 2
    half_y = (_gradient(big_y, 0).abs_() + _gradient(big_y, 1).abs_()) / 2
    near = (big_x.abs() <= CUSP_WIDENING * half_x) & (big_y.abs() <= CUSP_WIDENING * half_y)
    far = (big_x.abs() + half_x).square_() + (big_y.abs() + half_y).square_()
    peak = plane.amplitude * torch.exp(plane.b_n)  # the light at R = 0, per arcsec^2
    return near, (peak - sersic_at_scaled_r2(far, plane.n, plane.amplitude, plane.b_n)) * area


def _gradient(values: torch.Tensor, axis: int) -> torch.Tensor:
    """Change of grids (g, g, c) per cell along ``axis``: central differences, one-sided at the edges."""
    first = values.diff(dim=axis)
    middle = (first.narrow(axis, 0, first.shape[axis] - 1) + first.narrow(axis, 1, first.shape[axis] - 1)) / 2
    return torch.cat([first.narrow(axis, 0, 1), middle, first.narrow(axis, -1, 1)], dim=axis)


def _cell_powers(s: torch.Tensor, h: float) -> torch.Tensor:
    """Mean of (s + u)^a over cells of width h centred at offsets s, for a = 0..MOMENT_ORDER: (order + 1, *s.shape)."""
    powers = [torch.ones_like(s), s, s * s + h**2 / 12, s**3 + s * h**2 / 4]
    return torch.stack(powers[: MOMENT_ORDER + 1])


def _pixel_moments(
    light: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, sub: torch.Tensor, h: float, centred: bool
) -> torch.Tensor:
    """``MOMENTS`` about the pixel centre (len(MOMENTS), c) of grids of sub-cells' light (g, g, c)
    (width h pixels, centres ``sub`` (g,) from their cell's centre, which sits (dx, dy) (c,) from its
    pixel's; zero when ``centred``). The moments about each cell's centre are one matrix product,
    then shifted to the pixel's centre by the binomial theorem."""
    powers = _cell_powers(sub, h)  # (power, g)
    weights = torch.stack([torch.outer(powers[b], powers[a]).reshape(-1) for a, b in MOMENTS])  # (moment, g g)
    about = weights @ light.reshape(-1, light.shape[-1])
    if centred:
        return about
    which = {ab: m for m, ab in enumerate(MOMENTS)}
    shifted = [
        sum(
            math.comb(a, i) * math.comb(b, j) * dx ** (a - i) * dy ** (b - j) * about[which[i, j]]
            for i in range(a + 1)
            for j in range(b + 1)
        )
        for a, b in MOMENTS
    ]
    return torch.stack(shifted)


def _corner_estimate(
    plane: _SourcePlaneMap, canvas: int, pixel_scale: float, origin_x: torch.Tensor, origin_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pixel's light estimated from its corners, where it must be traced instead, and where
    it may hold the cusp: (N, canvas, canvas) each.

    The estimate is the mean of the light at the pixel's four corners (the trapezoid rule), taken
    to sit at the pixel's centre (an estimated pixel holds under ``FAINT_PIXEL``). Traced are pixels
    brighter than ``FAINT_PIXEL``, pixels next to the lens centre, and pixels whose footprint may
    hold an image of the source's centre, where the cusp can hide between corners: the footprint
    lies inside the box spanned by its corners' source-plane images, widened on each side by the
    box's own size plus one unlensed pixel (the lens bends smoothly away from its centre).
    ``origin_x``/``origin_y`` (N,): the lens-frame position (pixels) of pixel (0, 0)'s centre.
    """
    device, dtype = plane.n.device, plane.n.dtype
    corners = torch.arange(canvas + 1, dtype=dtype, device=device) - 0.5
    # how far X and Y move across one pixel without the lens: a floor for the margin
    unlensed_pixel = [
        pixel_scale * (plane.p11.abs() + plane.p12.abs()),
        pixel_scale * (plane.p21.abs() + plane.p22.abs()),
    ]
    centre = torch.arange(canvas, dtype=dtype, device=device)
    estimates, traced, cusps = [], [], []
    step = max(1, CHUNK_SUBPIXELS.get(device.type, CHUNK_SUBPIXELS["cuda"]) // (canvas + 1) ** 2)
    for start in range(0, plane.n.shape[0], step):
        rows = slice(start, start + step)
        part = plane.shaped(lambda t, rows=rows: _col(t[rows]))
        x = (corners[None, None, :] + _col(origin_x[rows])) * pixel_scale
        y = (corners[None, :, None] + _col(origin_y[rows])) * pixel_scale
        big_x, big_y = part.coords(x, y)
        r2 = torch.addcmul(big_x * big_x, big_y, big_y)
        light = sersic_at_scaled_r2(r2, part.n, part.amplitude * pixel_scale**2, part.b_n)
        estimate = _per_pixel(light, torch.add).mul_(0.25)
        cusp = torch.ones_like(estimate, dtype=torch.bool)
        for c, floor in zip((big_x, big_y), unlensed_pixel, strict=True):
            low, high = _per_pixel(c, torch.minimum), _per_pixel(c, torch.maximum)
            margin = (high - low) + _col(floor[rows])
            cusp &= (low <= margin) & (high >= -margin)  # the widened box holds 0, the source centre
        near_x = (centre[None, None, :] + _col(origin_x[rows])).abs() <= CENTRE_PIXELS + 0.5
        near_y = (centre[None, :, None] + _col(origin_y[rows])).abs() <= CENTRE_PIXELS + 0.5
        estimates.append(estimate)
        traced.append(cusp | (estimate > FAINT_PIXEL) | (near_x & near_y))
        cusps.append(cusp)
    if not traced:
        empty = torch.zeros(0, canvas, canvas, dtype=dtype, device=device)
        return empty, empty.bool(), empty.bool()
    return torch.cat(estimates), torch.cat(traced), torch.cat(cusps)


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
    amplitude: torch.Tensor  # surface brightness at R_eff of the unit-flux source, per arcsec^2

    @classmethod
    def of(cls, p: ArcParams) -> _SourcePlaneMap:
        cos, sin = torch.cos(p.lens_phi), torch.sin(p.lens_phi)
        root_q = torch.sqrt(p.src_q)
        cs, ss = torch.cos(p.src_phi), torch.sin(p.src_phi)
        m = _matrix(cs * root_q, ss * root_q, -ss / root_q, cs / root_q) / p.src_reff[:, None, None]
        lin = m @ _matrix(1 - p.g1, -p.g2, -p.g2, 1 + p.g1)
        bend = -sie_scale(p.theta_e, p.lens_q)[:, None, None] * (m @ _matrix(cos, -sin, sin, cos))
        offset = -(m @ torch.stack([p.src_x, p.src_y], -1)[..., None])[..., 0]
        amplitude = sersic_total_to_ie(torch.ones_like(p.src_reff), p.src_reff, p.src_n)
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
        """Scaled source-frame positions (X, Y) of image-plane positions x, y (arcsec from the lens, broadcast)."""
        u, v = sie_frame_terms(self.cos * x + self.sin * y, self.cos * y - self.sin * x, self.lens_q)
        big_x = (self.p11 * x + (self.p12 * y + self.c1)).addcmul_(self.b11, u).addcmul_(self.b12, v)
        big_y = (self.p21 * x + (self.p22 * y + self.c2)).addcmul_(self.b21, u).addcmul_(self.b22, v)
        return big_x, big_y


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


def convolve_moments(moments: torch.Tensor, flux: torch.Tensor, psf: torch.Tensor, margin: int) -> torch.Tensor:
    """Scale unit-flux light moments (N, len(MOMENTS), H, W) by the flux per band (N, B), convolve
    each band with its unit-sum PSF kernel (N, B, K, K) at the light's sub-pixel positions, and crop
    ``margin`` pixels from each side: (N, B, H - 2 margin, W - 2 margin)."""
    step = CONVOLVE_STAMPS.get(moments.device.type, CONVOLVE_STAMPS["cuda"])
    pieces = zip(moments.split(step), flux.split(step), psf.split(step), strict=True)
    convolved = [
        fft_convolve_moments(m[:, None], k, margin, SPECTRAL_TERMS) * f[:, :, None, None] for m, f, k in pieces
    ]
    return torch.cat(convolved)


def render_arcs(
    params: ArcParams,
    psf: torch.Tensor,
    size: int,
    pixel_scale: float = PIXEL_SCALE,
    supersample: int = 4,
    tolerance: float = CELL_TOLERANCE,
) -> RenderedArcs:
    """Render N lensed arcs into (N, B, size, size) stamps (nanomaggies per pixel).

    ``psf`` holds unit-sum kernels (N, B, K, K), K odd, sampled at ``pixel_scale``, one per stamp
    and band (B = ``params.flux.shape[1]``). Traced pixels start as ``supersample`` x
    ``supersample`` cells, refined where a cell's estimated error exceeds ``tolerance`` of the
    source's flux (module docstring). Also returns each stamp's magnification.
    """
    if psf.ndim != 4 or psf.shape[:2] != params.flux.shape:
        raise ValueError(
            f"psf: expected kernels (N, B, K, K) with (N, B) = {tuple(params.flux.shape)}, got {tuple(psf.shape)}"
        )
    if psf.shape[-1] // 2 < MARGIN:
        raise ValueError(f"psf: kernels must reach across the {MARGIN}-pixel margin, got K = {psf.shape[-1]}")
    outside = (torch.maximum(params.lens_x.abs(), params.lens_y.abs()) / pixel_scale > size // 2 - 0.5).nonzero()
    if outside.numel():
        raise ValueError(f"ArcParams.lens_x/lens_y: row {int(outside[0])} puts the lens centre outside the stamp")
    moments = _lensed_moments(params, size, pixel_scale, supersample, tolerance)
    inside = moments[:, 0, MARGIN : MARGIN + size, MARGIN : MARGIN + size].sum(dim=(-2, -1))
    return RenderedArcs(convolve_moments(moments, params.flux, psf, MARGIN), inside)


def convergence_errors(
    params: ArcParams,
    psf: torch.Tensor,
    size: int,
    pixel_scale: float = PIXEL_SCALE,
    supersample: int = 4,
    tolerance: float = CELL_TOLERANCE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How far ``render_arcs`` at these settings is from a render at twice the resolution (twice
    the ``supersample``, a quarter of the ``tolerance``: the midpoint rule's error falls as the
    cell width squared): (L1 difference over the L1 of the finer image (N, B), magnification over
    the finer one's (N,)). The inject stage runs it on a sample of stamps for L8."""
    coarse = render_arcs(params, psf, size, pixel_scale, supersample, tolerance)
    fine = render_arcs(params, psf, size, pixel_scale, 2 * supersample, tolerance / 4)
    l1 = (coarse.images - fine.images).abs().sum(dim=(-2, -1)) / fine.images.abs().sum(dim=(-2, -1))
    return l1, coarse.magnification / fine.magnification


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
