"""Mock grz cutouts: hosts and neighbours through the survey PSF, with the depth's pixel noise.

Image formation, per host and band, batched over ``CHUNK`` hosts in torch (pixels float32,
per-object parameters float64):

- Host: its Sersic (SHAPE_R, SHAPE_E1/E2 and SERSIC, which the sweeps set for every TYPE: 0 for
  PSF, 1 for REX/EXP, 4 for DEV; the shape's sky angle on the cutout's pixel axes,
  darkhalo.surveys.orientation) is sampled ``supersample`` x ``supersample`` per pixel over the
  central ``SUPERSAMPLED_SIDE`` pixels and binned, its steep core integrated analytically
  (``_integrate_core``); beyond that block the light is smooth on the pixel scale and is sampled
  at pixel centres plus the midpoint rule's curvature term (``_host_profiles``). A point source
  (SERSIC 0) lands in its pixel. The unit-flux profile is transformed once and convolved with
  each band's kernel on the stamp (FFT, zero padded: light spread past the edge is lost), then
  scaled by the band's flux.
- Neighbours: drawn from the mock's own population at the catalog's density (dimmed by the host's
  MW_TRANSMISSION when the rows carry it) on the pixel centres of the stamp plus ``MARGIN`` (half
  a kernel) on each side, so light from just outside the stamp reaches in; sampled once per pixel
  with the same core integration. Only hosts that have neighbours convolve that canvas (cropped
  to the stamp, added to the host's light).
- Confusers: a host of a confuser class (the spec's ``survey.confusers`` shares; darkhalo.surveys.confusers:
  spiral arms, rings, edge-on dusty discs, tidal features, blue companions, bright-star halos and spikes)
  gets that light on the neighbours' canvas, through the same kernels and noise.
- Field galaxies: when the spec's ``survey.field_galaxies`` asks, every host's canvas also gets the sky's faint
  galaxies that no catalog row holds (darkhalo.surveys.field_galaxies: small round Gaussians at the spec's density,
  r from number counts), summed with its confuser's light.
- Sky lenses: when the spec's ``survey.sky_lenses`` asks, a host that is one of the sky's own lenses
  (darkhalo.surveys.sky_lenses: picked by its key) gets its lensed source's light, rendered about the host's centre
  by the injection physics (darkhalo.lensing.render.render_arcs) through the host's own kernels and added before the
  noise, so the noise carries the arc's photon term as it does the host's. Each lens is rendered alone, the same call
  whatever its batch.
- The PSF is the Legacy Surveys model (``survey``: Moffat core + aureole) whose kernel has the
  host's PSFSIZE (legacypipe's noise-equivalent FWHM), with a Moffat core beta drawn per host
  and band in that band's range (``darkhalo.lensing.psf.CORE_BETA_RANGE``). Like a PSFEx model,
  the kernel is the profile integrated over each pixel (the effective, pixel-convolved PSF at
  pixel centres), so the pixel-integrated light is convolved with it directly. The kernels of a
  chunk are built together, one ``psf_kernels`` call per band.
- Noise: PSFDEPTH is the inverse variance of a PSF-weighted flux, 1 / (sigma^2 NEA), with the
  noise-equivalent area NEA = 1 / sum(p_i^2) (pixels) of the unit-sum pixel PSF p. So each pixel
  has sky noise sigma = 1 / sqrt(PSFDEPTH x NEA), and invvar = 1 / sigma^2 (like the coadd invvar
  of the cutout service, the sky alone). The sources' own photon noise is added too: with a sky of
  f_sky nanomaggies per pixel (SKY_MAG, dark DECam sky), sigma^2 = f_sky / g for g electrons per
  nanomaggy, so light m (nanomaggies) in a pixel adds variance m / g = m sigma^2 / f_sky. A pixel's
  noise is Gaussian with sigma^2 (1 + m / f_sky): unit noise times that sigma. The unit noise is white,
  or, when the spec's ``survey.noise_correlation`` asks, correlated between neighbours as a resampled
  coadd's: drawn on the stamp plus one pixel each side and convolved ('valid') with the band's 3x3
  kernel of unit sum of squares (darkhalo.surveys.noise), so its variance, and the invvar, stay 1.

Every random draw of a host comes from its own generators seeded by (seed, RELEASE, BRICKID,
OBJID): a numpy Generator draws its beta, its neighbours and the seed of a torch Generator that
draws its unit pixel noise; others, its confuser, its field galaxies and its lens. So a stamp does not depend on
which other hosts share its batch, nor on the batch's order or the number of torch threads (1 or 2
tested): the pixel operations are per stamp, and batches are padded to ``BATCH_MULTIPLE`` so that their
float32 arithmetic is too, bit for bit.

Speed (benchmarks/bench_mock.py, one thread): about 13x lenstronomy's host-only rendering per CPU
second in batches of 256; about half of it is building the kernels (``psf_kernels``) and the FFT
convolution. Correlated noise costs about 20 % more; field galaxies about 2.5x (their Gaussians are
rendered, and every host's canvas is then convolved, not the ~7 % with catalog neighbours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from darkhalo.lensing.imaging import PLAIN, bin_pixels, fft_convolve_moments, pixel_offsets
from darkhalo.lensing.psf import CORE_BETA_RANGE, psf_kernels
from darkhalo.lensing.render import CONVOLVE_STAMPS, convolve_bands, render_arcs
from darkhalo.lensing.sersic import ellipticity_to_q_phi, sersic_at_scaled_r2, sersic_b, sersic_total_to_ie
from darkhalo.spec import MockSurvey, confuser_rates
from darkhalo.surveys import field_galaxies, sky_lenses
from darkhalo.surveys.confusers import HostLight, draw_classes, render
from darkhalo.surveys.mock import draw_population
from darkhalo.surveys.noise import correlation_kernels
from darkhalo.surveys.orientation import pixel_ellipticity
from darkhalo.surveys.provider import Cutouts
from data_contracts import confusers
from data_contracts.survey import BANDS, KEY, PIXEL_SCALE, mag_to_flux

KERNEL_SIZE = 63  # pixels: 16.5", as the DECam PSFEx models
#: Sky (pixels) on each side of the stamp whose neighbours' light reaches in through the kernel.
MARGIN = KERNEL_SIZE // 2
SUPERSAMPLE = 3  # odd, so a sub-pixel sits on each pixel centre
#: Side (pixels) of the central block of a host sampled SUPERSAMPLE x SUPERSAMPLE per pixel (beyond it,
#: pixel centres and a curvature term, ``_host_profiles``): against the whole stamp sampled so, L1 median
#: 0.004 %, at most 0.26 % (flat, compact EXP hosts) over 1,000 mock galaxies.
SUPERSAMPLED_SIDE = 15
#: Dark-sky surface brightness (AB mag / arcsec^2) of DECam in g, r, z: sets the source photon noise.
SKY_MAG = {"g": 22.04, "r": 20.91, "z": 18.46}
CHUNK = 256  # hosts rendered together (~60 MB at 64 pixels), as an injection batch
NEIGHBOUR_CHUNK = 256  # neighbour profiles evaluated together (4 bytes x canvas^2 each)
#: Batches of hosts and neighbours are padded (with copies of their last row) to a multiple of this:
#: torch's vectorised float32 kernels then run no scalar remainder loops, whose last-bit differences
#: would make a stamp depend on its batch (and MKL's FFT of a lone image differs from a batch's).
BATCH_MULTIPLE = 64
#: The same for the neighbours' canvases and their owners, which are few without field galaxies (~7 % of hosts at
#: the survey's density; with them, all): at 8 their stamps are bit-identical in batches of any size at 1 and 2 threads
#: (tests/test_mock_cutouts.py; a stress run at 48, 64 and 101 pixels found no difference even
#: unpadded), and 64 would convolve ~4x the owners there are.
NEIGHBOUR_MULTIPLE = 8
CORE_RINGS = 4  # sub-pixel rings around a Sersic centre integrated analytically
MIN_REFF = 0.02  # arcsec: smaller half-light radii are rendered at this size
DTYPE = torch.float32  # of the pixel arrays; per-object parameters are float64
BETA_LOW, BETA_HIGH = np.array([CORE_BETA_RANGE[b] for b in BANDS]).T

HOST_COLUMNS = (
    *KEY,
    "SHAPE_R",
    "SHAPE_E1",
    "SHAPE_E2",
    "SERSIC",
    *(f"{prefix}_{b.upper()}" for prefix in ("FLUX", "PSFSIZE", "PSFDEPTH") for b in BANDS),
)


@dataclass(frozen=True)
class _Draws:
    """One host's random draws: Moffat beta per band (3,), neighbours (k, 9: x, y in arcsec on pixel
    centres, unreddened flux g, r, z, then ``_shapes``), and the seed of its unit pixel noise."""

    beta: np.ndarray
    neighbours: np.ndarray
    noise_seed: int


class MockCutoutProvider:
    """Renders mock cutouts for host rows of the mock catalog (or any rows with sweep columns)."""

    def __init__(self, survey: MockSurvey, seed: int, supersample: int = SUPERSAMPLE) -> None:
        if supersample < 1 or supersample % 2 == 0:
            raise ValueError(f"supersample must be an odd positive integer, got {supersample}")
        (ra0, ra1), (dec0, dec1) = survey.ra_range, survey.dec_range
        area_arcsec2 = (ra1 - ra0) * (math.sin(math.radians(dec1)) - math.sin(math.radians(dec0))) * 180 / math.pi
        area_arcsec2 *= 3600**2
        self.seed = seed
        self.supersample = supersample
        self.density = survey.n_objects / area_arcsec2  # objects per arcsec^2
        self.confuser_rates = confuser_rates(survey)
        self.field = survey.field_galaxies
        self.sky_lenses = survey.sky_lenses
        correlation = survey.noise_correlation
        self.noise_kernels = None if correlation is None else _tensor(correlation_kernels(correlation.x, correlation.y))

    def cutouts(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        """Stamps (N, 3, size, size) for ``hosts``, in their order."""
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        check_hosts(hosts)
        parts = [self._render_chunk(hosts.iloc[i : i + CHUNK], size) for i in range(0, len(hosts), CHUNK)]
        if not parts:
            stamps, per_band = np.zeros((0, 3, size, size), np.float32), np.zeros((0, 3), np.float32)
            return Cutouts(stamps, stamps.copy(), per_band, per_band.copy())
        return Cutouts(*(np.concatenate([getattr(p, f) for p in parts]) for f in Cutouts.__dataclass_fields__))

    def _render_chunk(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        """Stamps of one chunk of hosts: their light through their kernels, plus the noise."""
        wanted = len(hosts)
        hosts = hosts.iloc[_padded_rows(wanted)]
        n = len(hosts)
        draws = [self._draws(key, size) for key in hosts[list(KEY)].to_numpy(np.int64).tolist()]
        beta = np.stack([d.beta for d in draws])
        fwhm, depth = _per_band(hosts, "PSFSIZE"), _per_band(hosts, "PSFDEPTH")
        kernels = torch.stack(
            [
                psf_kernels("survey", _tensor(fwhm[:, j]), KERNEL_SIZE, PIXEL_SCALE, _tensor(beta[:, j]), band)
                for j, band in enumerate(BANDS)
            ],
            dim=1,
        )  # (N, 3, K, K)
        shapes = torch.from_numpy(_shapes(*(hosts[c].to_numpy(np.float64) for c in _SHAPE_COLUMNS)))
        host = _host_profiles(shapes, size, self.supersample)
        light = convolve_bands(host, _tensor(np.clip(_per_band(hosts, "FLUX"), 0, None)), kernels)
        transmission = np.stack(
            [
                hosts.get(f"MW_TRANSMISSION_{b.upper()}", pd.Series(1.0, hosts.index)).to_numpy(np.float64)
                for b in BANDS
            ],
            axis=1,
        )
        extra = self._extra_light(hosts, transmission, size + 2 * MARGIN)
        _add_neighbours(light, draws, transmission, kernels, extra)
        self._add_sky_lenses(light, hosts.iloc[:wanted], transmission, kernels)

        nea = 1 / kernels.square().sum(dim=(-2, -1)).double()  # (N, 3) pixels
        sigma = 1 / torch.sqrt(torch.from_numpy(depth) * nea)
        pad = 0 if self.noise_kernels is None else 1
        noise = torch.empty(n, 3, size + 2 * pad, size + 2 * pad, dtype=DTYPE)
        generator = torch.Generator()
        for i, d in enumerate(draws):
            noise[i].normal_(generator=generator.manual_seed(d.noise_seed))
        if self.noise_kernels is not None:
            noise = _correlate(noise, self.noise_kernels)
        sky = _tensor(np.array([mag_to_flux(SKY_MAG[b]) for b in BANDS]) * PIXEL_SCALE**2)  # nanomaggies per pixel
        spread = light.clamp(min=0).div_(sky[:, None, None]).add_(1).sqrt_().mul_(sigma.to(DTYPE)[:, :, None, None])
        images = light.add_(spread.mul_(noise))[:wanted]
        invvar = (1 / sigma[:wanted] ** 2).to(DTYPE)[:, :, None, None].expand(wanted, 3, size, size)
        return Cutouts(
            images.numpy(), invvar.numpy(), fwhm[:wanted].astype(np.float32), beta[:wanted].astype(np.float32)
        )

    def _extra_light(self, hosts: pd.DataFrame, transmission: np.ndarray, canvas: int) -> dict[int, np.ndarray]:
        """Row -> the pre-PSF light (3, canvas, canvas) of its confuser and its field galaxies, summed, for the hosts
        that have either: rendered once per distinct host, so a chunk's padding rows (copies of its last host) share
        their host's light."""
        key_of_row = hosts[list(KEY)].to_numpy(np.int64)
        keys, first = np.unique(key_of_row, axis=0, return_index=True)
        confuser = self._confuser_light(hosts.iloc[first], keys, transmission[first], canvas)
        field = self._field_light(keys, transmission[first], canvas)
        light = confuser | field
        for key in confuser.keys() & field.keys():
            light[key] = confuser[key] + field[key]
        return {row: light[key] for row, key in enumerate(map(tuple, key_of_row)) if key in light}

    def _confuser_light(
        self, rows: pd.DataFrame, keys: np.ndarray, transmission: np.ndarray, canvas: int
    ) -> dict[tuple, np.ndarray]:
        """Key -> its confuser's pre-PSF light for the distinct hosts ``rows`` (with ``keys`` (N, 3) and
        ``transmission`` (N, 3)) of a confuser class (darkhalo.surveys.confusers), each from its own generator."""
        if not self.confuser_rates:
            return {}
        classes = draw_classes(self.seed, keys, self.confuser_rates)
        e1, e2 = pixel_ellipticity(rows["SHAPE_E1"].to_numpy(np.float64), rows["SHAPE_E2"].to_numpy(np.float64))
        shape_r, sersic, flux = (
            rows["SHAPE_R"].to_numpy(np.float64),
            rows["SERSIC"].to_numpy(np.float64),
            _per_band(rows, "FLUX"),
        )
        light = {}
        for i in np.flatnonzero(classes != confusers.PLAIN):
            host = HostLight(shape_r[i], sersic[i], e1[i], e2[i], flux[i], transmission[i])
            light[tuple(keys[i])] = render(self.seed, keys[i].tolist(), classes[i], host, canvas).light
        return light

    def _field_light(self, keys: np.ndarray, transmission: np.ndarray, canvas: int) -> dict[tuple, np.ndarray]:
        """Key -> its field galaxies' pre-PSF light (darkhalo.surveys.field_galaxies) for the distinct hosts with
        ``keys`` (N, 3) and ``transmission`` (N, 3) that have any, each from its own generator."""
        if self.field is None:
            return {}
        light = {}
        for key, dimming in zip(keys.tolist(), transmission, strict=True):
            galaxies = field_galaxies.draw(self.seed, key, self.field, dimming, canvas)
            if len(galaxies.x):
                light[tuple(key)] = field_galaxies.light(galaxies, canvas)
        return light

    def _add_sky_lenses(
        self, light: torch.Tensor, hosts: pd.DataFrame, transmission: np.ndarray, kernels: torch.Tensor
    ) -> None:
        """Add to ``light`` (N, 3, S, S) the arcs of the sky lenses among ``hosts`` (a chunk's rows before its padding),
        dimmed by their ``transmission`` (N, 3), through their ``kernels``: each rendered alone, the same call whatever
        its batch."""
        if self.sky_lenses is None:
            return
        for i in np.flatnonzero(sky_lenses.lenses(self.seed, hosts, self.sky_lenses)).tolist():
            params = sky_lenses.draw(self.seed, hosts.iloc[[i]], transmission[[i]], self.sky_lenses)
            light[i] += render_arcs(params, kernels[[i]], light.shape[-1]).images[0]

    def _draws(self, key: list[int], size: int) -> _Draws:
        """A host's draws from its generator, seeded by (seed, key): so it does not depend on its batch.
        Neighbours fall uniformly on the pixel centres of the stamp plus MARGIN at the catalog's density."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, *key)))
        beta = BETA_LOW + (BETA_HIGH - BETA_LOW) * rng.random(3)  # uniform in each band's range
        canvas = size + 2 * MARGIN
        k = int(rng.poisson(self.density * (canvas * PIXEL_SCALE) ** 2))
        neighbours = np.zeros((k, 9))
        if k:
            neighbours[:, :2] = (rng.integers(0, canvas, (k, 2)) - canvas // 2) * PIXEL_SCALE
            population = draw_population(rng, k)
            neighbours[:, 2:5] = np.stack([population[f"flux_{b.upper()}"] for b in BANDS], axis=1)
            neighbours[:, 5:] = _shapes(*(population[c] for c in _SHAPE_COLUMNS))
        return _Draws(beta, neighbours, int(rng.integers(2**63)))


def _add_neighbours(
    light: torch.Tensor,
    draws: list[_Draws],
    transmission: np.ndarray,
    kernels: torch.Tensor,
    extra: dict[int, np.ndarray],
) -> None:
    """Add to ``light`` (N, 3, S, S) the neighbours' light, dimmed by the host's ``transmission`` (N, 3),
    and ``extra`` light (row -> (3, S + 2 MARGIN, S + 2 MARGIN) nanomaggies, ``_extra_light``): lit on the
    stamp plus MARGIN, convolved with the host's kernels, cropped to the stamp."""
    owners = [i for i, d in enumerate(draws) if len(d.neighbours) or i in extra]
    if not owners:
        return
    size = light.shape[-1]
    canvas = size + 2 * MARGIN
    lit = torch.zeros(len(owners), 3, canvas, canvas, dtype=DTYPE)
    for slot, i in enumerate(owners):
        if i in extra:
            lit[slot] = torch.from_numpy(extra[i]).to(DTYPE)
    counts = [len(draws[i].neighbours) for i in owners]
    if sum(counts):
        neighbours = torch.from_numpy(np.concatenate([draws[i].neighbours for i in owners]))
        owner = torch.repeat_interleave(torch.tensor(counts))
        flux = (neighbours[:, 2:5] * torch.from_numpy(transmission[owners])[owner]).to(DTYPE)
        for start in range(0, len(neighbours), NEIGHBOUR_CHUNK):
            part = slice(start, start + NEIGHBOUR_CHUNK)
            k = len(neighbours[part])
            padded = neighbours[part][_padded_rows(k, NEIGHBOUR_MULTIPLE)]
            profiles = _profiles(padded[:, :2], padded[:, 5:], canvas, 1)[:k]
            for j in range(3):
                lit[:, j].index_add_(0, owner[part], profiles * flux[part, j, None, None])
    rows = torch.from_numpy(_padded_rows(len(owners), NEIGHBOUR_MULTIPLE))
    host = torch.tensor(owners)[rows]
    # a few canvases at a time stay in cache; a multiple of NEIGHBOUR_MULTIPLE, so bit-identical in any batch
    parts = zip(rows.split(CONVOLVE_STAMPS["cpu"]), host.split(CONVOLVE_STAMPS["cpu"]), strict=True)
    convolved = [fft_convolve_moments(lit[slots, :, None], kernels[who], MARGIN, PLAIN) for slots, who in parts]
    light[owners] += torch.cat(convolved)[: len(owners)]


def _correlate(unit: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Unit noise (N, 3, S + 2, S + 2) convolved 'valid' with each band's 3x3 kernel (3, 3, 3): (N, 3, S, S).
    Nine shifted products summed in a fixed order (no FMA, no size-dependent algorithm): bit-identical per stamp."""
    size = unit.shape[-1] - 2
    out = torch.zeros(*unit.shape[:2], size, size, dtype=unit.dtype)
    for dy in range(3):
        for dx in range(3):
            out += kernels[:, dy, dx, None, None] * unit[:, :, dy : dy + size, dx : dx + size]
    return out


def _host_profiles(shapes: torch.Tensor, size: int, s: int) -> torch.Tensor:
    """Unit-flux, pixel-integrated profiles (N, size, size) of hosts with ``shapes`` at the stamp centre.

    The central SUPERSAMPLED_SIDE pixels are sampled s x s per pixel (with the core integration);
    beyond, the light is sampled at pixel centres and integrated over the pixel by the midpoint
    rule's second-order term, f + (f_xx + f_yy) / 24 from second differences (exact for quadratic light).
    """
    centre = torch.zeros(len(shapes), 2, dtype=torch.float64)
    side = min(size, SUPERSAMPLED_SIDE)
    block = _profiles(centre, shapes, side, s)
    if side == size:
        return block
    f = _profiles(centre, shapes, size + 2, 1, core=False)  # one pixel beyond the stamp, for the differences
    inner = f[:, 1:-1, 1:-1]
    profile = inner + (f[:, 1:-1, 2:] + f[:, 1:-1, :-2] + f[:, 2:, 1:-1] + f[:, :-2, 1:-1] - 4 * inner) / 24
    low = size // 2 - side // 2
    profile[:, low : low + side, low : low + side] = block
    return profile


def _profiles(xy: torch.Tensor, shapes: torch.Tensor, side: int, s: int, core: bool = True) -> torch.Tensor:
    """Unit-flux, pixel-integrated profiles (N, side, side) of objects at ``xy`` (N, 2; arcsec from pixel
    side // 2, on sub-pixel centres) with ``shapes`` (N, 4; ``_shapes``), sampled s x s per pixel, the
    core integrated (``_integrate_core``) unless ``core`` is False.

    The elliptical radius is a quadratic form in the sub-pixel offsets, a x^2 + c y^2 + b x y, evaluated
    on the separable axes; a point source (n = 0) lands in its pixel.
    """
    r_eff, point = shapes[:, 0], shapes[:, 1] == 0
    sersic_n = torch.where(point, 1.0, shapes[:, 1])
    q, phi = ellipticity_to_q_phi(shapes[:, 2], shapes[:, 3])
    cos, sin = torch.cos(phi), torch.sin(phi)
    a, c = (q * cos**2 + sin**2 / q) / r_eff**2, (q * sin**2 + cos**2 / q) / r_eff**2
    b = 2 * cos * sin * (q - 1 / q) / r_eff**2
    axis = pixel_offsets(side, PIXEL_SCALE, s, dtype=torch.float64)
    dx, dy = ((axis - xy[:, i, None]).to(DTYPE) for i in (0, 1))  # (N, side * s)
    r2 = (_col(a) * dx[:, None, :] ** 2 + _col(c) * dy[:, :, None] ** 2).add_(_col(b) * dy[:, :, None] * dx[:, None, :])
    b_n = sersic_b(sersic_n)
    area = (PIXEL_SCALE / s) ** 2
    ie = sersic_total_to_ie(torch.ones_like(r_eff), r_eff, sersic_n) * area
    sub = sersic_at_scaled_r2(r2, _col(sersic_n), _col(ie), _col(b_n))
    if core:
        sub = _integrate_core(sub, xy[:, 0], xy[:, 1], r_eff, sersic_n, b_n, s)
    profile = bin_pixels(sub, s)
    if point.any():
        ix, iy = (side // 2 + torch.round(xy / PIXEL_SCALE)).long().unbind(1)
        profile[point] = 0
        profile[point, iy[point], ix[point]] = 1
    return profile


def _col(value: torch.Tensor) -> torch.Tensor:
    """A per-object (N,) parameter as (N, 1, 1) in the pixel dtype, to broadcast over a grid."""
    return value.to(DTYPE)[:, None, None]


def _integrate_core(
    sub: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, r_eff: torch.Tensor, n: torch.Tensor, b: torch.Tensor, s: int
) -> torch.Tensor:
    """Fix the cusp, in place: sub-pixel samples (N, H, W) of unit-flux Sersics (half-light radius
    ``r_eff``, index ``n``, ``b`` = b_n) centred on sub-pixel centres (x0, y0).

    Sampling at sub-pixel centres overestimates a steep core (an n = 4 profile with r_eff = 1" by
    ~70 %). Each square ring k <= CORE_RINGS of sub-pixels around the centre is rescaled to hold the
    analytic flux between the equal-area radii of its inner and outer edges, L(R) = P(2n, b (R/r_eff)^(1/n)),
    keeping the sampled shape within the ring; total flux is then right to ~5 % down to r_eff = 0.1".
    The centre must lie on the grid; ring sub-pixels past its edge are left out.
    """
    k = CORE_RINGS
    step = PIXEL_SCALE / s
    side = sub.shape[-1]
    centre = (side // s // 2) * s + s // 2  # the sub-pixel on the centre of pixel side // 2
    offsets = torch.arange(-k, k + 1)
    shape = (len(sub), 2 * k + 1, 2 * k + 1)  # the window of rings around each centre
    rows = ((centre + torch.round(y0 / step)).long()[:, None, None] + offsets[:, None]).expand(shape)
    cols = ((centre + torch.round(x0 / step)).long()[:, None, None] + offsets).expand(shape)
    on_grid = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    at = (torch.arange(len(sub))[:, None, None].expand(shape)[on_grid], rows[on_grid], cols[on_grid])
    window = torch.zeros(shape, dtype=torch.float64)
    window[on_grid] = sub[at].double()
    ring = torch.maximum(offsets.abs()[:, None], offsets.abs()[None, :])
    enclosed = torch.zeros_like(n)
    for ring_k in range(k + 1):
        radius = (2 * ring_k + 1) * step / math.sqrt(math.pi)
        outer = torch.special.gammainc(2 * n, b * (radius / r_eff) ** (1 / n))
        inside = ring == ring_k
        sampled = (window * inside).sum(dim=(-2, -1))
        scale = (outer - enclosed) / sampled.clamp(min=1e-300)
        window = torch.where(inside, window * scale[:, None, None], window)
        enclosed = outer
    sub[at] = window[on_grid].to(sub.dtype)
    return sub


_SHAPE_COLUMNS = ("SHAPE_R", "SERSIC", "SHAPE_E1", "SHAPE_E2")


def _shapes(r_eff: np.ndarray, sersic: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """(r_eff, n, e1, e2) per object from catalogue shapes, the ellipticity turned from Tractor's sky
    angle to the cutout's pixel axes (as the lens's angle is); n = 0 (SERSIC <= 0) marks a point source."""
    n = np.where(sersic <= 0, 0.0, np.clip(sersic, 0.5, 6.0))
    return np.stack([np.maximum(r_eff, MIN_REFF), n, *pixel_ellipticity(e1, e2)], axis=1)


def _padded_rows(n: int, multiple: int = BATCH_MULTIPLE) -> np.ndarray:
    """Row positions 0..n-1, padded with n-1 to a multiple of ``multiple``."""
    return np.minimum(np.arange(-(-n // multiple) * multiple), n - 1)


def _per_band(hosts: pd.DataFrame, prefix: str) -> np.ndarray:
    """The columns ``<prefix>_G``, ``_R``, ``_Z`` as (N, 3) float64."""
    return np.stack([hosts[f"{prefix}_{b.upper()}"].to_numpy(np.float64) for b in BANDS], axis=1)


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values)).to(DTYPE)


def check_hosts(hosts: pd.DataFrame) -> None:
    """Fail naming the column and row when a host cannot be rendered (missing, NaN, zero depth...)."""
    missing = [c for c in HOST_COLUMNS if c not in hosts.columns]
    if missing:
        raise ValueError(f"hosts lack the column(s) {', '.join(missing)}")
    for column in KEY:  # the key seeds the host's random draws
        negative = np.flatnonzero(hosts[column].to_numpy() < 0)
        if len(negative):
            raise ValueError(f"hosts row {negative[0]}: {column} = {hosts[column].iloc[negative[0]]} must be >= 0")
    positive = [c for c in HOST_COLUMNS if c.startswith(("PSFSIZE", "PSFDEPTH"))]
    for column in HOST_COLUMNS:
        if column in KEY:
            continue
        values = hosts[column].to_numpy(np.float64)
        bad = ~np.isfinite(values) | ((values <= 0) if column in positive else np.zeros(len(values), bool))
        if column == "SHAPE_R":
            bad |= values < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            key = ", ".join(f"{k}={hosts[k].iloc[i]}" for k in KEY)
            need = "> 0" if column in positive else ">= 0" if column == "SHAPE_R" else "finite"
            raise ValueError(f"hosts row {i} ({key}): {column} = {values[i]} must be {need}")
