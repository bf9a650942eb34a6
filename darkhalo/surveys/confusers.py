"""Confuser light: the non-lenses of data_contracts.confusers.CLASSES, rendered before the PSF.

Each host's confuser comes from its own generator, seeded by (seed, RELEASE, BRICKID, OBJID) on the mock
sky's stream ``STREAM``: its first uniform number picks the class (``draw_classes``), the next ones set the
shape (``render``), so a host's confuser depends on nothing else in its batch. Light is in nanomaggies per
pixel on a (3, canvas, canvas) g, r, z grid centred on the host at pixel (canvas // 2, canvas // 2), x along
columns and y along rows, PIXEL_SCALE arcsec per pixel, and integrated over each pixel:

- smooth pieces (disks, arms, rings, shells, halos, Sersic nuclei) are sampled at pixel centres, and the
  pixels that a sub-pixel structure crosses at s x s sub-pixel centres, a sub-pixel no wider than the
  structure's thinnest Gaussian sigma (a Riemann sum of a Gaussian at that spacing is exact to ~1e-8);
- compact Gaussians (star-forming knots, tidal streams as chains of Gaussians, diffraction spikes as
  chains of thin ones) are integrated over each pixel exactly (erf of the pixel edges);
- each piece is normalised to its flux over its own support, then cropped to the canvas: light falling
  outside is not rendered, and ``Confuser.flux`` is the whole component's.

Brightness set relative to the host scales its (observed, Milky-Way-dimmed) fluxes; components with their
own magnitudes (blue companions, stars) are dimmed by the host's MW transmission.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.special import erf, gammainc, k1

from darkhalo.lensing.sersic import ellipticity_to_q_phi, sersic_b
from darkhalo.surveys.mock import magnitudes_from_counts
from data_contracts.confusers import CLASSES, PLAIN
from data_contracts.survey import PIXEL_SCALE, mag_to_flux

#: The mock sky's random streams (spawn keys): 0 catalog blocks, 1 sky fields, 2 cutouts, 3 confusers, 4 field galaxies,
#: 5 sky lenses.
STREAM = 3
MAX_SUBSAMPLING = 11  # sub-pixels per pixel side at most (0.024")
GAUSSIAN_REACH = 4.0  # sigmas of a compact Gaussian rendered (its weights renormalised to keep the flux)
#: Sersic pieces are cut at this many r_eff, like the SDSS photo pipeline's de Vaucouleurs model (7-8 r_e).
SERSIC_TRUNCATION = 8.0
#: Disks are cut at 4 scale lengths, where van der Kruit & Searle (1981) found edge-on disks truncated.
DISK_TRUNCATION = 4.0
ROUND = 0.05  # a host with |e| below this has no usable major axis (q > 0.9)
#: Diffraction spikes run along the cutout axes: the equatorial mounts keep the spider vanes fixed on the sky.
SPIKE_ANGLE = 0.0
MAX_REACH = 25.0  # arcsec: the longest spike and widest aureole, so a star 25" away fits a 401 px canvas


@dataclass(frozen=True)
class HostLight:
    """What a confuser needs of its host: half-light radius ``r_eff`` (arcsec, SHAPE_R), Sersic index,
    pixel-frame ellipticity (e1, e2) (orientation.pixel_ellipticity), observed fluxes (3,) g r z
    (nanomaggies, MW-dimmed) and MW transmission (3,)."""

    r_eff: float
    sersic: float
    e1: float
    e2: float
    flux: np.ndarray
    transmission: np.ndarray

    def __post_init__(self) -> None:
        for name in ("r_eff", "sersic", "e1", "e2"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"HostLight.{name} = {getattr(self, name)} must be finite")
        if self.r_eff < 0:
            raise ValueError(f"HostLight.r_eff = {self.r_eff} must be >= 0 (arcsec)")
        if math.hypot(self.e1, self.e2) >= 1:
            raise ValueError(f"HostLight (e1, e2) = ({self.e1}, {self.e2}) must have modulus < 1")
        for name in ("flux", "transmission"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (3,) or not np.isfinite(value).all():
                raise ValueError(f"HostLight.{name} = {value} must be 3 finite values (g, r, z)")
            object.__setattr__(self, name, value)
        if ((self.transmission <= 0) | (self.transmission > 1)).any():
            raise ValueError(f"HostLight.transmission = {self.transmission} must lie in (0, 1]")

    @property
    def q_phi(self) -> tuple[float, float]:
        """Axis ratio and major-axis angle (radians from +x towards +y) on the pixel grid."""
        q, phi = ellipticity_to_q_phi(*(torch.tensor(e, dtype=torch.float64) for e in (self.e1, self.e2)))
        return float(q), float(phi)

    @property
    def light(self) -> np.ndarray:
        """The observed fluxes (3,), negative catalogue values clipped to 0 as the host's own light is."""
        return np.clip(self.flux, 0, None)


@dataclass(frozen=True)
class Confuser:
    """One host's confuser: ``light`` (3, canvas, canvas) nanomaggies per pixel before the PSF, and the
    component's declared total ``flux`` (3,) g r z (nanomaggies), light off the canvas included."""

    light: np.ndarray
    flux: np.ndarray


def draw_classes(seed: int, keys: np.ndarray, rates: Mapping[str, float]) -> np.ndarray:
    """(N,) object array of class names (CLASSES) or PLAIN for hosts with ``keys`` (N, 3) int64 (RELEASE,
    BRICKID, OBJID): each host's first uniform draw u from its own generator picks the class by the
    cumulative ``rates`` in CLASSES order (u >= their sum: PLAIN). ``rates``: share of hosts per class, keys
    a subset of CLASSES (missing = 0), sum <= 1."""
    edges = _cumulative_rates(rates)
    keys = np.asarray(keys)
    if keys.ndim != 2 or keys.shape[1] != 3 or not np.issubdtype(keys.dtype, np.integer):
        raise ValueError(
            f"keys must be an (N, 3) integer array (RELEASE, BRICKID, OBJID), got {keys.dtype} {keys.shape}"
        )
    u = np.array([_generator(seed, key).random() for key in keys.tolist()])
    picks = np.searchsorted(edges, u, side="right")  # the first class whose cumulative rate exceeds u
    return np.array([*CLASSES, PLAIN], dtype=object)[picks]


def render(seed: int, key: Sequence[int], klass: str, host: HostLight, canvas: int) -> Confuser:
    """The confuser light of one host of class ``klass`` (not PLAIN), drawn from the host's generator after
    the class draw of ``draw_classes``: deterministic per (seed, key), independent of its batch."""
    if klass not in _RENDERERS:
        raise ValueError(f"unknown confuser class {klass!r}: expected one of {', '.join(CLASSES)}")
    if canvas < 1:
        raise ValueError(f"canvas must be a positive number of pixels, got {canvas}")
    rng = _generator(seed, key)
    rng.random()  # the class draw
    light = np.zeros((3, canvas, canvas))
    flux = _RENDERERS[klass](rng, host, light)
    return Confuser(light, flux)


def _cumulative_rates(rates: Mapping[str, float]) -> np.ndarray:
    """Cumulative shares (6,) in CLASSES order, after checking names, signs and sum."""
    unknown = sorted(set(rates) - set(CLASSES))
    if unknown:
        raise ValueError(f"rates name unknown confuser class(es) {unknown}: expected a subset of {CLASSES}")
    values = np.array([float(rates.get(c, 0.0)) for c in CLASSES])
    for name, value in zip(CLASSES, values, strict=True):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"rates[{name!r}] = {value} must be a finite share >= 0")
    if values.sum() > 1 + 1e-12:
        raise ValueError(f"rates sum to {values.sum():.6g}: the shares of hosts must sum to at most 1")
    return np.cumsum(values)


def _generator(seed: int, key: Sequence[int]) -> np.random.Generator:
    """The host's confuser generator, seeded by (seed, key) on STREAM."""
    key = [int(k) for k in key]
    if len(key) != 3 or min(key) < 0:
        raise ValueError(f"key {key} must be 3 integers >= 0 (RELEASE, BRICKID, OBJID)")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM, *key)))


# -- rendering primitives ------------------------------------------------------------------------------


def _add_field(
    light: np.ndarray,
    flux: np.ndarray,
    profile: Callable[[np.ndarray, np.ndarray], np.ndarray],
    half: float,
    centre: tuple[float, float] = (0.0, 0.0),
    near: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    thinnest: float = PIXEL_SCALE,
) -> None:
    """Add a smooth piece of total ``flux`` (3,) to ``light``: ``profile(x, y)`` (any non-negative surface
    brightness at arcsec from the host, zero outside its support) over the square of pixels within ``half``
    arcsec of ``centre`` (which must hold the support), at pixel centres and, where ``near(x, y)`` holds, at
    s x s sub-pixel centres no wider than ``thinnest`` (arcsec); normalised over the square, then cropped."""
    c = light.shape[-1] // 2
    h = math.ceil(half / PIXEL_SCALE)
    ix = c + round(centre[0] / PIXEL_SCALE) + np.arange(-h, h + 1)
    iy = c + round(centre[1] / PIXEL_SCALE) + np.arange(-h, h + 1)
    x, y = np.meshgrid((ix - c) * PIXEL_SCALE, (iy - c) * PIXEL_SCALE)
    s = min(math.ceil(PIXEL_SCALE / thinnest), MAX_SUBSAMPLING)
    fine = near(x, y) if near is not None and s > 1 else np.zeros(x.shape, bool)
    values = np.empty(x.shape)
    values[~fine] = profile(x[~fine], y[~fine])
    if fine.any():
        dx, dy = (a.ravel() for a in np.meshgrid(*2 * [((np.arange(s) + 0.5) / s - 0.5) * PIXEL_SCALE]))
        values[fine] = profile(x[fine][:, None] + dx, y[fine][:, None] + dy).mean(axis=1)
    total = values.sum()
    if not total > 0:
        raise ValueError(f"a confuser piece has no light on its {2 * h + 1} px support (sum {total})")
    _add_cropped(light, values / total, iy[0], ix[0], flux)


def _add_cropped(light: np.ndarray, unit: np.ndarray, y0: int, x0: int, flux: np.ndarray) -> None:
    """Add ``flux`` (3,) times ``unit`` (H, W), whose pixel (0, 0) is canvas pixel (y0, x0), where on the canvas."""
    n = light.shape[-1]
    ys = slice(max(y0, 0), min(y0 + unit.shape[0], n))
    xs = slice(max(x0, 0), min(x0 + unit.shape[1], n))
    if ys.start < ys.stop and xs.start < xs.stop:
        light[:, ys, xs] += flux[:, None, None] * unit[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def add_gaussians(light: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: np.ndarray, flux: np.ndarray) -> None:
    """Add round Gaussians at (x, y) (K,) arcsec from the host, of ``sigma`` (K,) arcsec and ``flux`` (K, 3),
    each integrated exactly over the pixels within GAUSSIAN_REACH sigma (renormalised there), then cropped."""
    n = light.shape[-1]
    c = n // 2
    h = math.ceil(GAUSSIAN_REACH * sigma.max() / PIXEL_SCALE) + 1
    width = np.sqrt(2) * sigma[:, None] / PIXEL_SCALE  # pixels

    def along(position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel indices (K, W) around each position (pixels) and the Gaussian's share of each."""
        first = np.rint(position)[:, None] - h
        shares = np.diff(erf((first + np.arange(2 * h + 2) - 0.5 - position[:, None]) / width), axis=1)
        return (first + np.arange(2 * h + 1)).astype(np.int64), shares / shares.sum(axis=1, keepdims=True)

    (ix, wx), (iy, wy) = along(x / PIXEL_SCALE + c), along(y / PIXEL_SCALE + c)
    inside = ((iy >= 0) & (iy < n))[:, :, None] & ((ix >= 0) & (ix < n))[:, None, :]
    pixel = (iy[:, :, None] * n + ix[:, None, :])[inside]
    weight = wy[:, :, None] * wx[:, None, :]
    for band in range(3):
        light[band] += np.bincount(pixel, (weight * flux[:, band, None, None])[inside], n * n).reshape(n, n)


def _plane(x: np.ndarray, y: np.ndarray, q: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """In-plane coordinates (u, v) (arcsec) of sky offsets (x, y) on a disk seen at axis ratio ``q`` with its
    major axis at ``phi`` (radians from +x): u along the major axis, v deprojected."""
    cos, sin = math.cos(phi), math.sin(phi)
    return cos * x + sin * y, (cos * y - sin * x) / q


def _sky(u: np.ndarray, v: np.ndarray, q: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Sky offsets (x, y) of in-plane coordinates (u, v): the inverse of ``_plane``."""
    cos, sin = math.cos(phi), math.sin(phi)
    return cos * u - sin * v * q, sin * u + cos * v * q


def _sersic(r_eff: float, n: float, q: float, phi: float, core: float, centre: tuple[float, float]) -> Callable:
    """Surface brightness (arbitrary scale) of a Sersic at ``centre`` (arcsec), with area-preserving radius
    R (darkhalo.lensing.sersic), cut at SERSIC_TRUNCATION r_eff; within R < ``core`` it is the profile's mean
    there, so a sample on the centre carries the cusp's flux, not its peak (an n = 4 peak is ~100x its mean)."""
    b = _sersic_b(n)
    mean_core = 2 * n * math.gamma(2 * n) * gammainc(2 * n, b * (core / r_eff) ** (1 / n)) * (r_eff / core) ** 2
    mean_core /= b ** (2 * n)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        radius = math.sqrt(q) * np.hypot(*_plane(x - centre[0], y - centre[1], q, phi))
        value = np.where(radius < core, mean_core, np.exp(-b * (radius / r_eff) ** (1 / n)))
        return value * (radius < SERSIC_TRUNCATION * r_eff)

    return profile


@lru_cache(maxsize=64)
def _sersic_b(n: float) -> float:
    """b_n of darkhalo.lensing.sersic, cached: blue companions all share n = 1."""
    return float(sersic_b(torch.tensor(n, dtype=torch.float64)))


def _add_sersic(
    light: np.ndarray, flux: np.ndarray, r_eff: float, n: float, q: float, phi: float, centre: tuple[float, float]
) -> None:
    """Add a compact Sersic of total ``flux`` (3,), supersampled over its whole support (sub-pixels of
    r_eff sqrt(q) / 4: ~3,000 samples at any size)."""
    thinnest = r_eff * math.sqrt(q) / 4
    core = PIXEL_SCALE / min(math.ceil(PIXEL_SCALE / thinnest), MAX_SUBSAMPLING)  # one sub-pixel
    reach = SERSIC_TRUNCATION * r_eff
    profile = _sersic(r_eff, n, q, phi, core, centre)

    def near(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.hypot(x - centre[0], y - centre[1]) < reach / math.sqrt(q) + PIXEL_SCALE

    _add_field(light, flux, profile, reach / math.sqrt(q), centre, near, thinnest)


def _truncation(radius: np.ndarray) -> np.ndarray:
    """A disk's edge at ``radius`` (in scale lengths): light falling linearly to 0 over the last scale length
    before DISK_TRUNCATION, a steep outer exponential rather than a step."""
    return np.clip(DISK_TRUNCATION - radius, 0, 1)


def _fluxes(r_flux: float, g_r: float, r_z: float) -> np.ndarray:
    """(3,) g, r, z fluxes of an r-band flux with colours g - r and r - z (AB mag)."""
    return r_flux * 10 ** (-0.4 * np.array([g_r, 0.0, -r_z]))


def _angle_diff(theta: np.ndarray, to: np.ndarray | float) -> np.ndarray:
    """theta - to wrapped into [-pi, pi)."""
    return np.mod(theta - to + np.pi, 2 * np.pi) - np.pi


# -- the classes ---------------------------------------------------------------------------------------

#: Spiral arm pitch angles (deg): Sa to Sc arms span ~10-30 deg (Kennicutt 1981).
PITCH = (10.0, 30.0)
#: Share of spirals drawn flocculent: Elmegreen & Elmegreen (1987) find flocculent arms in ~30 % of field spirals.
FLOCCULENT = 0.3
#: Interarm surface brightness over the arms' peak: optical arm-interarm contrasts are ~2-5 (Schweizer 1976).
INTERARM = (0.2, 0.5)
#: Disk light over the host (bulge) r flux: bulge-to-total ratios of early spirals are ~0.2-0.6.
SPIRAL_FLUX = (0.2, 0.8)
#: Share of the spiral's light in star-forming knots (HII regions hold ~10-30 % of a late spiral's blue light).
KNOT_SHARE = (0.1, 0.3)


def _spiral(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """A disk around the host's bulge, in its plane: an exponential of 1-3 bulge r_eff modulated by two
    logarithmic arms (grand design) or many short segments (flocculent), with blue knots along the arms."""
    q, phi = host.q_phi
    h = float(np.clip(rng.uniform(1, 3) * host.r_eff, 0.8, 4.0))  # arcsec; kept on a 33" canvas
    wind = 1 / math.tan(math.radians(rng.uniform(*PITCH)))
    flocculent = rng.random() < FLOCCULENT
    arms = int(rng.integers(5, 9)) if flocculent else 2
    sharpness = rng.uniform(2, 4)  # arm width: cos^2k of the arm phase
    floor, start = rng.uniform(*INTERARM), rng.uniform(0, 2 * np.pi)
    chop = rng.uniform(4, 8)  # flocculent: segments per e-fold of radius

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _plane(x, y, q, phi)
        rho = np.hypot(u, v)
        log_r = np.log(np.maximum(rho, 1e-3) / h)
        phase = np.arctan2(v, u) - wind * log_r
        pattern = ((1 + np.cos(arms * (phase - start))) / 2) ** sharpness
        if flocculent:
            pattern *= ((1 + np.cos(chop * log_r + phase)) / 2) ** 2
        taper = -np.expm1(-((rho / h) ** 2))  # arms fade inside ~h, where they would wind under a pixel
        return np.exp(-rho / h) * _truncation(rho / h) * (floor + taper * pattern)

    colour = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.5)
    total = rng.uniform(*SPIRAL_FLUX) * host.light[1]
    share = rng.uniform(*KNOT_SHARE)
    disk = _fluxes(total * (1 - share), *colour)
    _add_field(light, disk, profile, DISK_TRUNCATION * h)

    k = int(rng.integers(5, 16))
    rho = np.clip(rng.gamma(2.0, h, k), 0.5 * h, 3.5 * h)  # the disk's light-weighted radii
    theta = start + 2 * np.pi * rng.integers(0, arms, k) / arms + rng.normal(0, 0.1, k) + wind * np.log(rho / h)
    x, y = _sky(rho * np.cos(theta), rho * np.sin(theta), q, phi)
    weights = rng.lognormal(0, 0.5, k)
    knot = _fluxes(total * share, rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3))  # young: bluer than the arms
    add_gaussians(light, x, y, rng.uniform(0.1, 0.3, k), np.outer(weights / weights.sum(), knot))
    return disk + knot


#: Ring kinds: resonance rings are the commonest (Buta & Combes 1996); collisional and polar rings are rare
#: on the sky (polar rings in ~0.5 % of S0s, Whitmore et al. 1990) but kept at 20 % each so all are seen.
RING_KINDS = {"resonance": 0.6, "collisional": 0.2, "polar": 0.2}
RING_RADIUS = (1.5, 4.0)  # arcsec: inner and outer rings of S0/Sa galaxies at z ~ 0.3-0.6
RING_WIDTH = (0.2, 0.5)  # arcsec, Gaussian sigma across the ring
RING_FLUX = (0.1, 0.5)  # of the host's r flux


def _ring(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """A Gaussian ring: resonance (in the host's plane), collisional (off-centre, lopsided, knotty, bluer)
    or polar (thin, perpendicular to the host's major axis)."""
    q_host, phi_host = host.q_phi
    kind = rng.choice(list(RING_KINDS), p=list(RING_KINDS.values()))
    radius, width = rng.uniform(*RING_RADIUS), rng.uniform(*RING_WIDTH)
    total = rng.uniform(*RING_FLUX) * host.light[1]
    q, phi, centre, lopsided, knots = q_host, phi_host, (0.0, 0.0), 0.0, 0.0
    colour = rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6)
    if kind == "collisional":  # a companion's passage through the disk: an expanding, star-forming wave
        q, phi = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
        offset, towards = rng.uniform(0.2, 0.5) * radius, rng.uniform(0, 2 * np.pi)
        centre = (offset * math.cos(towards), offset * math.sin(towards))
        lopsided, knots = rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.4)
        colour = rng.uniform(0.1, 0.4), rng.uniform(0.0, 0.3)
    elif kind == "polar":
        q, phi = rng.uniform(0.1, 0.3), phi_host + np.pi / 2
    bright_side = rng.uniform(0, 2 * np.pi)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _plane(x - centre[0], y - centre[1], q, phi)
        rho = np.hypot(u, v)
        azimuth = 1 + lopsided * np.cos(np.arctan2(v, u) - bright_side)
        return np.exp(-0.5 * ((rho - radius) / width) ** 2) * azimuth * (rho < radius + 5 * width)

    def near(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rho = np.hypot(*_plane(x - centre[0], y - centre[1], q, phi))
        return np.abs(rho - radius) < 5 * width + 0.75 * PIXEL_SCALE / q

    ring = _fluxes(total * (1 - knots), *colour)
    _add_field(light, ring, profile, radius + 5 * width, centre, near, width * q)
    if knots == 0:
        return ring
    k = int(rng.integers(3, 9))
    theta = rng.uniform(0, 2 * np.pi, k)
    x, y = _sky(radius * np.cos(theta), radius * np.sin(theta), q, phi)
    weights = rng.lognormal(0, 0.5, k)
    knot = _fluxes(total * knots, *colour)
    add_gaussians(
        light, x + centre[0], y + centre[1], rng.uniform(0.15, 0.3, k), np.outer(weights / weights.sum(), knot)
    )
    return ring + knot


EDGE_ON_Q = (0.08, 0.2)  # thickness over scale length: thin disks (Kregel et al. 2002: h_z / h_R ~ 0.1-0.2)
EDGE_ON_SCALE = (1.0, 3.0)  # arcsec: disk scale lengths of 3-15 kpc at z ~ 0.1-0.3
EDGE_ON_FLUX = (0.5, 1.5)  # of the host's r flux
DUST_TAU = (1.0, 3.0)  # central optical depth of the lane, seen through the whole disk edge-on
#: Gaussian sigma of the lane's optical depth over the stars' sech^2 scale height: dust is about half as
#: thick as the stars (Xilouris et al. 1999), so the lane shows as a dark band between two bright ridges.
DUST_WIDTH = (0.4, 0.8)
#: Inclination (deg): a disk a few degrees from edge-on shows its lane h cos(i) off the midplane, on the near side.
INCLINATION = (86.0, 90.0)


def _edge_on_disk(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """A thin exponential disk seen edge-on (projected radial profile (R/h) K1(R/h), vertical sech^2) along
    the host's major axis (a drawn one if the host is round), its light dimmed by a dust lane exp(-tau(z)),
    tau Gaussian in z slightly off the midplane; redder than the host."""
    _, phi = host.q_phi
    drawn = rng.uniform(0, np.pi)
    if math.hypot(host.e1, host.e2) < ROUND:
        phi = drawn
    h, thickness = rng.uniform(*EDGE_ON_SCALE), rng.uniform(*EDGE_ON_Q)
    z0 = thickness * h
    tau0, lane = rng.uniform(*DUST_TAU), rng.uniform(*DUST_WIDTH) * z0
    offset = h * math.cos(math.radians(rng.uniform(*INCLINATION))) * rng.choice((-1, 1))

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        along, z = _plane(x, y, 1.0, phi)
        r = np.abs(along) / h
        on = (r < DISK_TRUNCATION) & (np.abs(z) < 12 * z0)  # sech^2 < 2e-10 beyond: left out
        r, z = np.maximum(r[on], 1e-9), z[on]
        dust = np.exp(-tau0 * np.exp(-0.5 * ((z - offset) / lane) ** 2))
        value = np.zeros(on.shape)
        value[on] = r * k1(r) * _truncation(r) / np.cosh(z / z0) ** 2 * dust
        return value

    def near(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.abs(_plane(x, y, 1.0, phi)[1]) < 6 * z0 + 0.75 * PIXEL_SCALE

    reddening = _fluxes(1.0, rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.2))  # E(g - r), E(r - z) of the dusty disk
    flux = rng.uniform(*EDGE_ON_FLUX) * host.light * reddening
    _add_field(light, flux, profile, DISK_TRUNCATION * h + 6 * z0, near=near, thinnest=lane)
    return flux


NUCLEUS_FLUX = (0.2, 1.0)  # of the host's fluxes: a major or minor merger
NUCLEUS_DISTANCE = (1.0, 5.0)  # arcsec: a pair before coalescence
TIDAL_FLUX = (0.05, 0.2)  # of the host's fluxes: tails and shells hold a few to ~20 % of a remnant's light
TAIL_LENGTH = (5.0, 15.0)  # arcsec
SHELL_RADII = (2.0, 8.0)  # arcsec
SHELL_OPENING = (60.0, 180.0)  # deg


def _merger(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """Half the time a second red nucleus; then tidal tails or shells (each half the time)."""
    flux = np.zeros(3)
    if rng.random() < 0.5:
        flux += _nucleus(rng, host, light)
    flux += (_tails if rng.random() < 0.5 else _shells)(rng, host, light)
    return flux


def _nucleus(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """A companion of the host's colour and Sersic index, sized by r_eff ~ L^0.6 (Shen et al. 2003)."""
    ratio, distance, towards = rng.uniform(*NUCLEUS_FLUX), rng.uniform(*NUCLEUS_DISTANCE), rng.uniform(0, 2 * np.pi)
    r_eff = float(np.clip(max(host.r_eff, 0.3) * ratio**0.6, 0.2, 2.0))
    q, phi = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    flux = ratio * host.light
    centre = (distance * math.cos(towards), distance * math.sin(towards))
    _add_sersic(light, flux, r_eff, float(np.clip(host.sersic, 1.0, 4.0)), q, phi, centre)
    return flux


def _tails(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """One tail, or two point-symmetric ones (Toomre & Toomre 1972): curved streams leaving the host
    radially, widening and fading along their length, as chains of Gaussians one sigma apart."""
    flux = rng.uniform(*TIDAL_FLUX) * host.light
    length, bend, sigma0 = rng.uniform(*TAIL_LENGTH), rng.uniform(0.5, 1.5) * rng.choice((-1, 1)), rng.uniform(0.3, 0.6)
    angle, start = rng.uniform(0, 2 * np.pi), float(np.clip(host.r_eff, 0.5, 2.0))
    k = math.ceil(length / sigma0)
    t = (np.arange(k) + 0.5) / k
    heading = angle + bend * t
    x = start * math.cos(angle) + np.cumsum(np.cos(heading)) * length / k
    y = start * math.sin(angle) + np.cumsum(np.sin(heading)) * length / k
    sigma, weight = sigma0 * (1 + t), np.exp(-2 * t)
    if rng.random() < 0.5:
        x, y, sigma, weight = (np.concatenate([a, sign * a]) for a, sign in ((x, -1), (y, -1), (sigma, 1), (weight, 1)))
    add_gaussians(light, x, y, sigma, np.outer(weight / weight.sum(), flux))
    return flux


def _shells(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """2-4 concentric partial arcs (Gaussian in radius, a cos^2 window in angle), interleaved on alternate
    sides of the host's major axis with growing radius, as type I shell galaxies' (Prieur 1990)."""
    _, phi = host.q_phi
    flux = rng.uniform(*TIDAL_FLUX) * host.light
    radii = [rng.uniform(SHELL_RADII[0], 3.0)]
    for _ in range(int(rng.integers(1, 4))):
        radii.append(radii[-1] * rng.uniform(1.3, 1.6))
    radii = np.array([r for r in radii if r <= SHELL_RADII[1]])
    sides = phi + np.pi * (np.arange(len(radii)) % 2)
    opening = np.radians(rng.uniform(*SHELL_OPENING, len(radii)))
    width = rng.uniform(0.3, 0.6)

    def profile(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r, theta = np.hypot(x, y)[..., None], np.arctan2(y, x)[..., None]
        offside = _angle_diff(theta, sides)
        window = np.cos(np.pi * offside / opening) ** 2 * (np.abs(offside) < opening / 2)
        return (np.exp(-0.5 * ((r - radii) / width) ** 2) * window).sum(axis=-1)

    _add_field(light, flux, profile, radii.max() + 5 * width, thinnest=width)
    return flux


BLUE_COUNT = (0.4, 0.3, 0.2, 0.1)  # P(1..4 companions): singles are the commonest chance alignment
BLUE_MAG = (21.0, 24.0)  # r (AB)
GALAXY_COUNT_SLOPE = 0.35  # d log N / dm of faint r-band galaxy counts at r 21-24 (Metcalfe et al. 2001)
BLUE_REFF = (0.1, 0.5)  # arcsec
BLUE_DISTANCE = (1.0, 4.0)  # arcsec from the host: where an arc of theta_E ~ 1-3" would be


def _blue_companions(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """1-4 compact blue exponential galaxies 1-4" from the host, uniform in area, with their own magnitudes."""
    flux = np.zeros(3)
    for _ in range(1 + int(rng.choice(4, p=BLUE_COUNT))):
        mag = float(magnitudes_from_counts(rng, 1, *BLUE_MAG, GALAXY_COUNT_SLOPE)[0])
        own = _fluxes(float(mag_to_flux(mag)), rng.uniform(0.1, 0.6), rng.uniform(0.0, 0.5)) * host.transmission
        r_eff = math.exp(rng.uniform(*np.log(BLUE_REFF)))
        q, phi = rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        distance = math.sqrt(rng.uniform(*np.square(BLUE_DISTANCE)))
        towards = rng.uniform(0, 2 * np.pi)
        _add_sersic(light, own, r_eff, 1.0, q, phi, (distance * math.cos(towards), distance * math.sin(towards)))
        flux += own
    return flux


STAR_MAG = (11.0, 16.0)  # r (AB): bright enough for visible spikes and halo, unsaturated to ~16
STAR_COUNT_SLOPE = 0.25  # d log N / dm of star counts at r 11-16, high latitude (Bahcall & Soneira 1980)
#: arcsec from the host: on the canvas of a 48-pixel or larger stamp (half-width >= 14.4"), so its core, halo
#: and spikes reach the stamp; bright stars further out mask the host rather than confuse it.
STAR_DISTANCE = (5.0, 14.0)
AUREOLE_SHARE = (0.003, 0.03)  # of the star's flux in its halo: the PSF's own far wing (~0.3 %) to 10x it
AUREOLE_CORE = 1.0  # arcsec: the halo's 1 / (r^2 + core^2) is flat inside
SPIKE_SHARE = (0.002, 0.01)  # of the star's flux in its four spikes
SPIKE_SIGMA = 0.5 * PIXEL_SCALE  # arcsec: a spike's width before the PSF


def _star_artifact(rng: np.random.Generator, host: HostLight, light: np.ndarray) -> np.ndarray:
    """A bright star on a pixel 5-14" from the host: its point (the PSF makes the core), an aureole
    ~ 1 / (r^2 + core^2) less its value at the reach (so it falls to 0 there without an edge), and four
    diffraction spikes ~ 1 / (1 + s / 1")^2 along SPIKE_ANGLE; the reach grows as the square root of the
    star's flux (where a ~r^-2 feature fades into the sky)."""
    mag = float(magnitudes_from_counts(rng, 1, *STAR_MAG, STAR_COUNT_SLOPE)[0])
    g_r = rng.uniform(0.3, 1.4)
    flux = _fluxes(float(mag_to_flux(mag)), g_r, 0.6 * g_r - 0.15) * host.transmission  # along the stellar locus
    distance, towards = math.sqrt(rng.uniform(*np.square(STAR_DISTANCE))), rng.uniform(0, 2 * np.pi)
    ix, iy = round(distance * math.cos(towards) / PIXEL_SCALE), round(distance * math.sin(towards) / PIXEL_SCALE)
    x0, y0 = ix * PIXEL_SCALE, iy * PIXEL_SCALE
    reach = min(MAX_REACH, 12.0 * 10 ** (-0.2 * (mag - 13.0)))
    aureole, spikes = rng.uniform(*AUREOLE_SHARE), rng.uniform(*SPIKE_SHARE)

    n = light.shape[-1]
    if 0 <= n // 2 + iy < n and 0 <= n // 2 + ix < n:
        light[:, n // 2 + iy, n // 2 + ix] += flux * (1 - aureole - spikes)

    def halo(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r2 = (x - x0) ** 2 + (y - y0) ** 2
        return np.clip(1 / (r2 + AUREOLE_CORE**2) - 1 / (reach**2 + AUREOLE_CORE**2), 0, None)

    _add_field(light, flux * aureole, halo, reach, (x0, y0))

    s = (np.arange(math.ceil(reach / SPIKE_SIGMA)) + 0.5) * SPIKE_SIGMA  # points one sigma apart
    angle = SPIKE_ANGLE + np.pi / 2 * np.arange(4)[:, None]
    weight = np.broadcast_to(1 / (1 + s) ** 2, angle.shape[:1] + s.shape).ravel()
    x, y = (x0 + s * np.cos(angle)).ravel(), (y0 + s * np.sin(angle)).ravel()
    add_gaussians(light, x, y, np.full(x.shape, SPIKE_SIGMA), np.outer(weight / weight.sum(), flux * spikes))
    return flux


_RENDERERS: dict[str, Callable[[np.random.Generator, HostLight, np.ndarray], np.ndarray]] = {
    "spiral": _spiral,
    "ring": _ring,
    "edge_on_disk": _edge_on_disk,
    "merger": _merger,
    "blue_companions": _blue_companions,
    "star_artifact": _star_artifact,
}
