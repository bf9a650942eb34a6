"""Mock grz cutouts: hosts and neighbours through the survey PSF, with the depth's pixel noise.

Image formation, per host and band (float64 throughout, float32 out):

- Sources: the host's Sersic (SHAPE_R, SHAPE_E1/E2 and SERSIC, which the sweeps set for every
  TYPE: 0 for PSF, 1 for REX/EXP, 4 for DEV; the shape's sky angle on the cutout's pixel axes,
  darkhalo.surveys.orientation) is sampled ``supersample`` x ``supersample`` per
  pixel over the stamp and binned, its steep core integrated analytically (``_integrate_core``);
  a point source (SERSIC 0) lands in its pixel. Neighbours are drawn from the mock's own
  population at the catalog's density (dimmed by the host's MW_TRANSMISSION when the rows carry
  it) at pixel centres of a canvas padded by half a PSF kernel, so light from just outside the
  stamp reaches in; they are sampled once per pixel with the same core integration.
- The PSF is the Legacy Surveys model (``survey``: Moffat core + aureole) whose kernel has the
  host's PSFSIZE (legacypipe's noise-equivalent FWHM), with a Moffat core beta drawn per host
  and band in that band's range (``darkhalo.lensing.psf.CORE_BETA_RANGE``). Like a PSFEx model,
  the kernel is the profile integrated over each pixel (the effective, pixel-convolved PSF at pixel centres), so the
  pixel-integrated light is convolved with it directly (FFT, zero padded).
- Noise: PSFDEPTH is the inverse variance of a PSF-weighted flux, 1 / (sigma^2 NEA), with the
  noise-equivalent area NEA = 1 / sum(p_i^2) (pixels) of the unit-sum pixel PSF p. So each pixel
  has sky noise sigma = 1 / sqrt(PSFDEPTH x NEA), and invvar = 1 / sigma^2 (like the coadd invvar
  of the cutout service, the sky alone). The sources' own photon noise is added too: with a sky of
  f_sky nanomaggies per pixel (SKY_MAG, dark DECam sky), sigma^2 = f_sky / g for g electrons per
  nanomaggy, so light m (nanomaggies) in a pixel adds variance m / g = m sigma^2 / f_sky. A pixel's
  noise is Gaussian with sigma^2 (1 + m / f_sky).

Every random draw of a host (beta, neighbours, noise) comes from an RNG seeded by (seed, RELEASE,
BRICKID, OBJID), so a stamp does not depend on which other hosts share its batch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from darkhalo.lensing.imaging import bin_pixels, fft_convolve, pixel_grid
from darkhalo.lensing.psf import CORE_BETA_RANGE, psf_kernels
from darkhalo.lensing.sersic import ellipticity_to_q_phi, sersic_b, sersic_sb
from darkhalo.spec import MockSurvey
from darkhalo.surveys.mock import draw_population
from darkhalo.surveys.orientation import pixel_ellipticity
from darkhalo.surveys.provider import Cutouts
from data_contracts.survey import BANDS, KEY, PIXEL_SCALE, mag_to_flux

KERNEL_SIZE = 63  # pixels: 16.5", as the DECam PSFEx models
SUPERSAMPLE = 3  # odd, so a sub-pixel sits on each pixel centre
#: Dark-sky surface brightness (AB mag / arcsec^2) of DECam in g, r, z: sets the source photon noise.
SKY_MAG = {"g": 22.04, "r": 20.91, "z": 18.46}
CHUNK = 32  # hosts rendered together
CORE_RINGS = 4  # sub-pixel rings around a Sersic centre integrated analytically
MIN_REFF = 0.02  # arcsec: smaller half-light radii are rendered at this size

HOST_COLUMNS = (
    *KEY,
    "SHAPE_R",
    "SHAPE_E1",
    "SHAPE_E2",
    "SERSIC",
    *(f"{prefix}_{b.upper()}" for prefix in ("FLUX", "PSFSIZE", "PSFDEPTH") for b in BANDS),
)


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
        """Stamps of one chunk of hosts (memory grows with the chunk: ~50 MB for 32 hosts at 64 pixels)."""
        n = len(hosts)
        pad = _fast_pad(size)
        canvas = size + 2 * pad
        draws = [self._draws(hosts.iloc[i], canvas, size) for i in range(n)]
        beta = np.array([d["beta"] for d in draws]).reshape(n, 3)
        fwhm = np.stack([hosts[f"PSFSIZE_{b.upper()}"].to_numpy(np.float64) for b in BANDS], axis=1)
        scene = self._scene(hosts, draws, canvas, size)  # (N, 3, canvas, canvas) before the PSF
        images = np.empty((n, 3, size, size), dtype=np.float32)
        invvar = np.empty_like(images)
        for j, band in enumerate(BANDS):
            kernels = psf_kernels(
                "survey", torch.from_numpy(fwhm[:, j]), KERNEL_SIZE, PIXEL_SCALE, torch.from_numpy(beta[:, j]), band
            )
            blurred = fft_convolve(scene[:, j], kernels)[:, pad : pad + size, pad : pad + size]
            nea = 1 / (kernels**2).sum(dim=(-2, -1))
            depth = torch.from_numpy(hosts[f"PSFDEPTH_{band.upper()}"].to_numpy(np.float64))
            sigma = 1 / torch.sqrt(depth * nea)
            noise = torch.from_numpy(np.stack([d["noise"][j] for d in draws]))
            sky = mag_to_flux(SKY_MAG[band]) * PIXEL_SCALE**2  # nanomaggies per pixel
            spread = sigma[:, None, None] * torch.sqrt(1 + blurred.clamp(min=0) / sky)
            images[:, j] = (blurred + spread * noise).numpy()
            invvar[:, j] = (1 / sigma**2)[:, None, None].expand(n, size, size).numpy()
        return Cutouts(images, invvar, fwhm.astype(np.float32), beta.astype(np.float32))

    def _draws(self, host: pd.Series, canvas: int, size: int) -> dict[str, np.ndarray]:
        """One host's random draws: PSF beta per band, neighbours, unit pixel noise (3, size, size)."""
        key = tuple(int(host[k]) for k in KEY)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, *key)))
        beta = rng.uniform(*np.array([CORE_BETA_RANGE[b] for b in BANDS]).T)
        half = canvas * PIXEL_SCALE / 2
        k = int(rng.poisson(self.density * (2 * half) ** 2))
        xy = np.round(rng.uniform(-half, half, (k, 2)) / PIXEL_SCALE) * PIXEL_SCALE  # on pixel centres
        population = draw_population(rng, k)
        noise = rng.standard_normal((3, size, size))
        return {"beta": beta, "xy": xy, "population": population, "noise": noise}

    def _scene(self, hosts: pd.DataFrame, draws: list[dict], canvas: int, size: int) -> torch.Tensor:
        """Pixel-integrated light of hosts and neighbours (N, 3, canvas, canvas) in nanomaggies."""
        n = len(hosts)
        slots = 1 + max((len(d["xy"]) for d in draws), default=0)
        params = np.zeros((n, slots, 9))  # x, y, flux g, r, z, r_eff, sersic n (0 = point), e1, e2
        params[:, :, 5:7] = 1.0
        transmission = np.stack(
            [
                hosts.get(f"MW_TRANSMISSION_{b.upper()}", pd.Series(1.0, hosts.index)).to_numpy(np.float64)
                for b in BANDS
            ],
            axis=1,
        )
        for j, band in enumerate(BANDS):
            params[:, 0, 2 + j] = np.clip(hosts[f"FLUX_{band.upper()}"].to_numpy(np.float64), 0, None)
        params[:, 0, 5:9] = _shapes(
            hosts["SHAPE_R"].to_numpy(np.float64),
            hosts["SERSIC"].to_numpy(np.float64),
            hosts["SHAPE_E1"].to_numpy(np.float64),
            hosts["SHAPE_E2"].to_numpy(np.float64),
        )
        for i, d in enumerate(draws):
            k, pop = len(d["xy"]), d["population"]
            if not k:
                continue
            params[i, 1 : 1 + k, 0:2] = d["xy"]
            for j, band in enumerate(BANDS):
                params[i, 1 : 1 + k, 2 + j] = pop[f"flux_{band.upper()}"] * transmission[i, j]
            params[i, 1 : 1 + k, 5:9] = _shapes(pop["SHAPE_R"], pop["SERSIC"], pop["SHAPE_E1"], pop["SHAPE_E2"])
        p = torch.from_numpy(params)
        scene = torch.zeros(n, 3, canvas, canvas, dtype=torch.float64)
        pad = (canvas - size) // 2
        host = _profiles(p[:, 0], size, self.supersample)  # supersampled, on the stamp
        scene[:, :, pad : pad + size, pad : pad + size] += p[:, 0, 2:5, None, None] * host[:, None]
        for m in range(1, slots):  # neighbours: pixel-sampled on the whole canvas
            scene += p[:, m, 2:5, None, None] * _profiles(p[:, m], canvas, 1)[:, None]
        return scene


def _profiles(objects: torch.Tensor, side: int, s: int) -> torch.Tensor:
    """Unit-flux, pixel-integrated profiles (N, side, side) of objects (N, 9) sampled s x s per pixel.

    Object centres must lie on sub-pixel centres; a point source (n = 0) lands in its pixel.
    """
    n = len(objects)
    x, y = pixel_grid(side, PIXEL_SCALE, s, dtype=torch.float64)
    point = objects[:, 6] == 0
    sersic_n = torch.where(point, 1.0, objects[:, 6])
    q, phi = ellipticity_to_q_phi(objects[:, 7], objects[:, 8])
    sb = sersic_sb(
        x - objects[:, 0, None, None],
        y - objects[:, 1, None, None],
        torch.ones(n, 1, 1, dtype=torch.float64),
        objects[:, 5, None, None],
        sersic_n[:, None, None],
        q[:, None, None],
        phi[:, None, None],
    )
    sub = _integrate_core(sb * (PIXEL_SCALE / s) ** 2, objects[:, 0], objects[:, 1], objects[:, 5], sersic_n, s)
    profile = bin_pixels(sub, s)
    delta = torch.zeros_like(profile)
    ix, iy = (side // 2 + torch.round(objects[:, :2] / PIXEL_SCALE)).long().clamp(0, side - 1).unbind(1)
    delta[torch.arange(n), iy, ix] = 1.0
    return torch.where(point[:, None, None], delta, profile)


def _integrate_core(
    sub: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, r_eff: torch.Tensor, n: torch.Tensor, s: int
) -> torch.Tensor:
    """Fix the cusp: sub-pixel samples (N, H, W) of a unit-flux Sersic centred on a sub-pixel centre.

    Sampling at sub-pixel centres overestimates a steep core (an n = 4 profile with r_eff = 1" by
    ~70 %). Each square ring k <= CORE_RINGS of sub-pixels around the centre is rescaled to hold the
    analytic flux between the equal-area radii of its inner and outer edges, L(R) = P(2n, b (R/r_eff)^(1/n)),
    keeping the sampled shape within the ring; total flux is then right to ~5 % down to r_eff = 0.1".
    """
    k = CORE_RINGS
    step = PIXEL_SCALE / s
    side = sub.shape[-1]
    centre = (side // s // 2) * s + s // 2  # the sub-pixel on the centre of pixel side // 2
    padded = torch.nn.functional.pad(sub, (k, k, k, k))
    offsets = torch.arange(-k, k + 1)
    rows = (centre + torch.round(y0 / step)).long().clamp(0, side - 1)[:, None] + k + offsets
    cols = (centre + torch.round(x0 / step)).long().clamp(0, side - 1)[:, None] + k + offsets
    at = (torch.arange(len(sub))[:, None, None], rows[:, :, None], cols[:, None, :])
    window = padded[at]
    ring = torch.maximum(offsets.abs()[:, None], offsets.abs()[None, :])
    b = sersic_b(n)
    enclosed = torch.zeros_like(n)
    for ring_k in range(k + 1):
        radius = (2 * ring_k + 1) * step / math.sqrt(math.pi)
        outer = torch.special.gammainc(2 * n, b * (radius / r_eff) ** (1 / n))
        inside = ring == ring_k
        sampled = (window * inside).sum(dim=(-2, -1))
        scale = (outer - enclosed) / sampled.clamp(min=1e-300)
        window = torch.where(inside, window * scale[:, None, None], window)
        enclosed = outer
    padded[at] = window
    return padded[:, k : k + side, k : k + side]


def _fast_pad(size: int) -> int:
    """Canvas margin (pixels) >= half a kernel such that the FFT length canvas + KERNEL_SIZE - 1 is 5-smooth."""
    pad = KERNEL_SIZE // 2
    while not _smooth(size + 2 * pad + KERNEL_SIZE - 1):
        pad += 1
    return pad


def _smooth(n: int) -> bool:
    for factor in (2, 3, 5):
        while n % factor == 0:
            n //= factor
    return n == 1


def _shapes(r_eff: np.ndarray, sersic: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """(r_eff, n, e1, e2) per object from catalogue shapes, the ellipticity turned from Tractor's sky
    angle to the cutout's pixel axes (as the lens's angle is); n = 0 (SERSIC <= 0) marks a point source."""
    n = np.where(sersic <= 0, 0.0, np.clip(sersic, 0.5, 6.0))
    return np.stack([np.maximum(r_eff, MIN_REFF), n, *pixel_ellipticity(e1, e2)], axis=1)


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
