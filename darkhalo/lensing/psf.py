"""PSF models as radial profiles, their closed-form encircled energy, and pixel kernels.

- ``gaussian``: the Gen 1 PSF (its wings are far too faint: ~0.14 % of the light beyond 2" at
  FWHM 1.3").
- ``moffat``: (beta - 1) / (pi alpha^2) (1 + (r/alpha)^2)^-beta.
- ``survey``: the Legacy Surveys PSF as a DECam PSFEx model holds it: a Moffat core plus a
  Gaussian aureole of each band (``AUREOLE``), (1 - w) Moffat + w Gaussian, fit to the real PSFEx
  models' encircled energy within their 63-pixel box.

FWHM convention: ``fwhm`` is the FWHM of the Gaussian and of the Moffat; for ``survey`` it is the
kernel's PSFSIZE (``psfsize``), as the sweeps' PSFSIZE_<band> gives it, and the core's FWHM is
solved for it. legacypipe defines PSFSIZE (coadds.py, the ``psfsize`` map; image.py ``psf_norm``)
from the noise-equivalent area NEA = 1 / sum(p^2) of the unit-sum pixelized PSF p at the CCD
centre: the FWHM of the Gaussian with that NEA, FWHM_PER_SIGMA sqrt(NEA / 4 pi) in arcsec
(inverse-variance weighted over the exposures in 1 / NEA). For a Gaussian it is the FWHM; a
Moffat beta 2.8 has PSFSIZE 1.32 x its FWHM, the real DECam models 1.1-1.5 x the width of their
area above half maximum (and 1.02-1.08 x their header's PSF_FWHM).

Kernels integrate the profile over each pixel (``PIXEL_SUBSAMPLE``^2 sub-pixel samples): the
effective, pixel-convolved PSF at pixel centres, as a PSFEx model is. They are normalised to
unit sum inside their box, so convolving conserves flux. Light beyond the box is left out: a
63-pixel (16.5") kernel holds the PSFEx stamp's light, and legacypipe's outer halo (halos.py:
g 0.00045 r^-2, r 0.00033 r^-2, z 0.0145 x Moffat(17.65", 1.7), applied beyond 7-8" out to
400") puts 1.1 % (g), 0.8 % (r), 1.2 % (z) of a star's light beyond its 8.25" half side
(``halo_flux_outside``).
"""

from __future__ import annotations

import math

import torch

from darkhalo.lensing.imaging import bin_pixels, pixel_grid, pixel_offsets

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
#: Sub-pixels per pixel side over which kernels integrate the profile (odd: one sits on each
#: pixel centre): 0.1-0.2 % of the peak off the exact pixel integral at FWHM 0.8-2" on 0.262"
#: pixels, where the value at the pixel centre is 1-6 % off.
PIXEL_SUBSAMPLE = 5
#: Side (pixels) of the central block integrated on sub-pixels. Outside it (beyond 7 pixels, 1.8" on
#: 0.262" pixels) the profile is smooth: its value at a pixel centre is the pixel's mean to ~3 % of
#: that (small) value.
INTEGRATED_SIDE = 15
#: Corrections of the survey core's FWHM after its closed-form start (leaves PSFSIZE within 0.5 %).
PSFSIZE_STEPS = 1

#: Survey aureole per band: (weight w, Gaussian sigma in arcsec), fit (least squares in log(1 - EE))
#: together with one Moffat core beta per model to the encircled energy at 1, 2, 3, 5" and at
#: 2 x PSFSIZE of the 20 real DECam PSFEx models in tests/data/real/psf/psfex, each at its own
#: PSFSIZE, within their 63 x 63 box (rms 1.5 % g, 3.7 % r, 4.4 % z).
AUREOLE = {"g": (0.0222, 2.66), "r": (0.0155, 2.66), "z": (0.0286, 2.70)}
#: Moffat core beta per band (low, high): the range of the core betas of that fit (g 2.58-3.83,
#: r 2.19-2.86, z 2.09-2.86).
CORE_BETA_RANGE = {"g": (2.6, 3.8), "r": (2.2, 2.9), "z": (2.1, 2.9)}
#: legacypipe's outer halo (py/legacypipe/halos.py, decam_halo_model): SB per unit flux (arcsec^-2)
#: A r^-2 in g and r, and weight x Moffat(alpha, beta) in z (most CCDs), out to HALO_MAX_RADIUS.
POWER_LAW_HALO = {"g": 0.00045, "r": 0.00033}
Z_HALO = {"alpha": 17.65, "beta": 1.7, "weight": 0.0145}
HALO_MAX_RADIUS = 400.0  # arcsec

PSF_MODELS = ("gaussian", "moffat", "survey")


def moffat_alpha(fwhm: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor | float:
    """Moffat scale alpha (arcsec) for a FWHM (arcsec) and beta."""
    return fwhm / (2 * (2 ** (1 / beta) - 1) ** 0.5)


def gaussian_sb(r: torch.Tensor, fwhm: torch.Tensor | float) -> torch.Tensor:
    """Gaussian surface brightness per unit flux (arcsec^-2) at radius r (arcsec)."""
    sigma = fwhm / FWHM_PER_SIGMA
    return torch.exp(-0.5 * (r / sigma) ** 2) / (2 * math.pi * sigma**2)


def moffat_sb(r: torch.Tensor, fwhm: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """Moffat surface brightness per unit flux (arcsec^-2) at radius r (arcsec)."""
    alpha = moffat_alpha(fwhm, beta)
    return (beta - 1) / (math.pi * alpha**2) * (1 + (r / alpha) ** 2) ** (-beta)


def psf_sb(
    model: str, r: torch.Tensor, fwhm: torch.Tensor, beta: torch.Tensor | float = 2.8, band: str = "r"
) -> torch.Tensor:
    """Surface brightness per unit flux (arcsec^-2) at radius r (arcsec); ``fwhm`` (arcsec) of the
    Gaussian, the Moffat, or the survey PSF's Moffat core."""
    if model == "gaussian":
        return gaussian_sb(r, fwhm)
    if model == "moffat":
        return moffat_sb(r, fwhm, beta)
    if model == "survey":
        if band not in AUREOLE:
            raise ValueError(f"no survey PSF for band {band!r}; known: {', '.join(AUREOLE)}")
        weight, sigma = AUREOLE[band]
        return (1 - weight) * moffat_sb(r, fwhm, beta) + weight * gaussian_sb(r, FWHM_PER_SIGMA * sigma)
    raise ValueError(f"unknown PSF model {model!r}; known: {', '.join(PSF_MODELS)}")


def gaussian_ee(radius: torch.Tensor | float, fwhm: torch.Tensor | float) -> torch.Tensor:
    """Closed-form fraction of a Gaussian's flux inside ``radius`` (arcsec)."""
    sigma = torch.as_tensor(fwhm, dtype=torch.float64) / FWHM_PER_SIGMA
    return 1 - torch.exp(-0.5 * (torch.as_tensor(radius, dtype=torch.float64) / sigma) ** 2)


def moffat_ee(radius: torch.Tensor | float, fwhm: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor:
    """Closed-form fraction of a Moffat's flux inside ``radius`` (arcsec)."""
    alpha = moffat_alpha(torch.as_tensor(fwhm, dtype=torch.float64), beta)
    return 1 - (1 + (torch.as_tensor(radius, dtype=torch.float64) / alpha) ** 2) ** (1 - beta)


def halo_flux_outside(band: str, radius: float) -> float:
    """Share of a star's flux that legacypipe's outer halo puts beyond ``radius`` (arcsec, >= 8", where
    the halo is fully applied) out to HALO_MAX_RADIUS: the light a kernel of that half side leaves out."""
    if band == "z":
        alpha, beta, weight = Z_HALO["alpha"], Z_HALO["beta"], Z_HALO["weight"]
        inside = [1 - (1 + (r / alpha) ** 2) ** (1 - beta) for r in (radius, HALO_MAX_RADIUS)]
        return weight * (inside[1] - inside[0])
    if band not in POWER_LAW_HALO:
        raise ValueError(f"no outer halo for band {band!r}; known: g, r, z")
    return 2 * math.pi * POWER_LAW_HALO[band] * math.log(HALO_MAX_RADIUS / radius)


def psfsize(kernel: torch.Tensor, pixel_scale: float) -> torch.Tensor:
    """PSFSIZE (arcsec) of kernels (..., K, K), legacypipe's FWHM: that of the Gaussian with the
    kernel's noise-equivalent area NEA = 1 / sum(p^2) (pixels; p the unit-sum kernel)."""
    p = kernel / kernel.sum(dim=(-2, -1), keepdim=True)
    nea = 1 / (p**2).sum(dim=(-2, -1))
    return FWHM_PER_SIGMA * pixel_scale * torch.sqrt(nea / (4 * math.pi))


def psf_kernels(
    model: str,
    fwhm: torch.Tensor,
    size: int,
    pixel_scale: float,
    beta: torch.Tensor | float = 2.8,
    band: str = "r",
) -> torch.Tensor:
    """Pixel-integrated kernels (N, size, size), unit sum, for N FWHMs (arcsec; for ``survey`` the PSFSIZE).

    ``size`` is the kernel side in pixels (odd: the centre is pixel ``size // 2``). ``beta`` may be a
    float or one value per kernel. The survey core starts from the closed-form PSFSIZE of an unbounded,
    unbinned Moffat, FWHM_PER_SIGMA alpha sqrt(2 beta - 1) / (2 (beta - 1)), and is rescaled by
    PSFSIZE / measured ``PSFSIZE_STEPS`` times (the aureole, the pixels and the box shift it by ~5 %).
    """
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    if model not in PSF_MODELS:
        raise ValueError(f"unknown PSF model {model!r}; known: {', '.join(PSF_MODELS)}")
    fwhm = torch.as_tensor(fwhm).reshape(-1, 1, 1)
    beta = torch.as_tensor(beta, dtype=fwhm.dtype, device=fwhm.device)
    beta = beta.reshape(-1, 1, 1) if beta.ndim else beta
    like = {"dtype": fwhm.dtype, "device": fwhm.device}
    # one quadrant (the profile is round): pixels 0..size // 2 from the centre on each axis, the
    # central block's first INTEGRATED_SIDE // 2 + 1 of them on sub-pixels
    r = _radii(pixel_offsets(size, pixel_scale, **like)[size // 2 :])
    side = min(size, INTEGRATED_SIDE)
    r_fine = _radii(pixel_offsets(side, pixel_scale, PIXEL_SUBSAMPLE, **like)[side // 2 * PIXEL_SUBSAMPLE :])
    n_fine = side // 2 + 1

    def integrated(width: torch.Tensor) -> torch.Tensor:
        quadrant = psf_sb(model, r, width, beta, band).expand(len(width), -1, -1).clone()
        fine = psf_sb(model, r_fine, width, beta, band)
        quadrant[..., :n_fine, :n_fine] = bin_pixels(fine, PIXEL_SUBSAMPLE) / PIXEL_SUBSAMPLE**2
        half = torch.cat([quadrant[..., 1:, :].flip(-2), quadrant], dim=-2)
        kernel = torch.cat([half[..., 1:].flip(-1), half], dim=-1)
        return kernel / kernel.sum(dim=(-2, -1), keepdim=True)

    if model != "survey":
        return integrated(fwhm)
    core = fwhm * 4 * (beta - 1) * torch.sqrt(2 ** (1 / beta) - 1) / (FWHM_PER_SIGMA * torch.sqrt(2 * beta - 1))
    for _ in range(PSFSIZE_STEPS):
        core = core * fwhm / psfsize(integrated(core), pixel_scale)[..., None, None]
    return integrated(core)


def _radii(axis: torch.Tensor) -> torch.Tensor:
    """Radii (1, n, n) of the grid ``axis`` x ``axis`` (arcsec)."""
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.sqrt(x**2 + y**2)[None]


def encircled_energy(kernel: torch.Tensor, pixel_scale: float, radius: float) -> torch.Tensor:
    """Fraction of a kernel's (..., K, K) sum in the pixels centred within ``radius`` (arcsec) of its centre pixel."""
    k = kernel.shape[-1]
    x, y = pixel_grid(k, pixel_scale, dtype=kernel.dtype, device=kernel.device)
    inside = (x**2 + y**2) <= radius**2
    return (kernel * inside).sum(dim=(-2, -1)) / kernel.sum(dim=(-2, -1))


#: Fixed radius (arcsec) of the second L3 wing measure; the first is 2 x PSFSIZE.
WING_RADIUS_ARCSEC = 3.0


def wing_deficits(kernel: torch.Tensor, pixel_scale: float, fwhm: torch.Tensor | float) -> torch.Tensor:
    """The L3 wing measure of kernels (..., K, K): 1 - EE at 2 x PSFSIZE and at 3", shape (..., 2).

    ``fwhm`` (arcsec) is the PSFSIZE each kernel stands for (broadcast over the leading axes). The
    deficit is the share of the kernel's light (its sum inside its box) outside that radius of its
    centre pixel.
    """
    k = kernel.shape[-1]
    x, y = pixel_grid(k, pixel_scale, dtype=kernel.dtype, device=kernel.device)
    r2 = x**2 + y**2
    two_fwhm = 2 * torch.as_tensor(fwhm, dtype=kernel.dtype, device=kernel.device)[..., None, None]
    total = kernel.sum(dim=(-2, -1))
    inside_core = (kernel * (r2 <= two_fwhm**2)).sum(dim=(-2, -1))
    inside_fixed = (kernel * (r2 <= WING_RADIUS_ARCSEC**2)).sum(dim=(-2, -1))
    return torch.stack([1 - inside_core / total, 1 - inside_fixed / total], dim=-1)
