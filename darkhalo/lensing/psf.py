"""PSF models as radial profiles, their closed-form encircled energy, and pixel kernels.

- ``gaussian``: the Gen 1 PSF (its wings are far too faint: ~0.14 % of the light beyond 2" at
  FWHM 1.3").
- ``moffat``: (beta - 1) / (pi alpha^2) (1 + (r/alpha)^2)^-beta.
- ``survey``: the Legacy Surveys PSF: a Moffat core plus the outer wings of legacypipe's halo
  model (docs/conventions.md, tests/data/real/psf/OUTER_WINGS.txt), in surface brightness per unit flux:
  g 0.00045 r^-2, r 0.00033 r^-2 (softened inside the core FWHM so it stays finite), z a wide
  Moffat (alpha 17.65", beta 1.7) with weight 0.0145.

Kernels sample the profile at (sub-)pixel centres and are normalised to unit sum over the
kernel, so convolving conserves flux exactly.
"""

from __future__ import annotations

import math

import torch

from darkhalo.lensing.imaging import pixel_grid

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))

#: Outer-wing amplitudes A of SB = A / r^2 (per arcsec^2 per unit total flux), legacypipe halos.py.
POWER_LAW_WINGS = {"g": 0.00045, "r": 0.00033, "i": 0.00033}
#: z-band wing: weight x Moffat(alpha, beta), legacypipe halos.py (most CCDs).
Z_WING = {"alpha": 17.65, "beta": 1.7, "weight": 0.0145}

PSF_MODELS = ("gaussian", "moffat", "survey")


def moffat_alpha(fwhm: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor | float:
    """Moffat scale alpha (arcsec) for a FWHM (arcsec) and beta."""
    return fwhm / (2 * (2 ** (1 / beta) - 1) ** 0.5)


def gaussian_sb(r: torch.Tensor, fwhm: torch.Tensor) -> torch.Tensor:
    """Gaussian surface brightness per unit flux (arcsec^-2) at radius r (arcsec)."""
    sigma = fwhm / FWHM_PER_SIGMA
    return torch.exp(-0.5 * (r / sigma) ** 2) / (2 * math.pi * sigma**2)


def moffat_sb(r: torch.Tensor, fwhm: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """Moffat surface brightness per unit flux (arcsec^-2) at radius r (arcsec)."""
    alpha = moffat_alpha(fwhm, beta)
    return (beta - 1) / (math.pi * alpha**2) * (1 + (r / alpha) ** 2) ** (-beta)


def wing_sb(r: torch.Tensor, band: str, core_fwhm: torch.Tensor) -> torch.Tensor:
    """The Legacy Surveys outer wing (arcsec^-2 per unit flux) at radius r for one band."""
    if band == "z":
        return Z_WING["weight"] * moffat_sb(
            r, torch.as_tensor(2 * Z_WING["alpha"] * (2 ** (1 / Z_WING["beta"]) - 1) ** 0.5), Z_WING["beta"]
        )
    if band not in POWER_LAW_WINGS:
        raise ValueError(f"no outer-wing model for band {band!r}; known: g, r, i, z")
    return POWER_LAW_WINGS[band] / (r**2 + core_fwhm**2)


def psf_sb(
    model: str, r: torch.Tensor, fwhm: torch.Tensor, beta: torch.Tensor | float = 2.8, band: str = "r"
) -> torch.Tensor:
    """Surface brightness of a PSF model at radius r (arcsec); ``fwhm`` of the core (arcsec)."""
    if model == "gaussian":
        return gaussian_sb(r, fwhm)
    if model == "moffat":
        return moffat_sb(r, fwhm, beta)
    if model == "survey":
        return moffat_sb(r, fwhm, beta) + wing_sb(r, band, fwhm)
    raise ValueError(f"unknown PSF model {model!r}; known: {', '.join(PSF_MODELS)}")


def gaussian_ee(radius: torch.Tensor | float, fwhm: torch.Tensor | float) -> torch.Tensor:
    """Closed-form fraction of a Gaussian's flux inside ``radius`` (arcsec)."""
    sigma = torch.as_tensor(fwhm, dtype=torch.float64) / FWHM_PER_SIGMA
    return 1 - torch.exp(-0.5 * (torch.as_tensor(radius, dtype=torch.float64) / sigma) ** 2)


def moffat_ee(radius: torch.Tensor | float, fwhm: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor:
    """Closed-form fraction of a Moffat's flux inside ``radius`` (arcsec)."""
    alpha = moffat_alpha(torch.as_tensor(fwhm, dtype=torch.float64), beta)
    return 1 - (1 + (torch.as_tensor(radius, dtype=torch.float64) / alpha) ** 2) ** (1 - beta)


def psf_kernels(
    model: str,
    fwhm: torch.Tensor,
    size: int,
    pixel_scale: float,
    beta: torch.Tensor | float = 2.8,
    band: str = "r",
    supersample: int = 1,
) -> torch.Tensor:
    """Kernels (N, size*s, size*s) for N FWHMs (arcsec), sampled at (sub-)pixel centres, unit sum.

    ``size`` is the kernel side in pixels (odd: the centre is pixel ``size // 2``); with
    ``supersample`` s the kernel is sampled on the s-times finer grid (for supersampled
    convolution). ``beta`` may be a float or one value per kernel.
    """
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    fwhm = torch.as_tensor(fwhm)
    x, y = pixel_grid(size, pixel_scale, supersample, dtype=fwhm.dtype, device=fwhm.device)
    r = torch.sqrt(x**2 + y**2)[None]
    beta = torch.as_tensor(beta, dtype=fwhm.dtype, device=fwhm.device)
    beta = beta.reshape(-1, 1, 1) if beta.ndim else beta
    kernel = psf_sb(model, r, fwhm.reshape(-1, 1, 1), beta, band)
    return kernel / kernel.sum(dim=(-2, -1), keepdim=True)


def encircled_energy(kernel: torch.Tensor, pixel_scale: float, radius: float) -> torch.Tensor:
    """Fraction of a kernel's (..., K, K) sum within ``radius`` (arcsec) of its centre pixel."""
    k = kernel.shape[-1]
    x, y = pixel_grid(k, pixel_scale, dtype=kernel.dtype, device=kernel.device)
    inside = (x**2 + y**2) <= radius**2
    return (kernel * inside).sum(dim=(-2, -1)) / kernel.sum(dim=(-2, -1))


#: Fixed radius (arcsec) of the second L3 wing measure; the first is 2 x FWHM.
WING_RADIUS_ARCSEC = 3.0


def wing_deficits(kernel: torch.Tensor, pixel_scale: float, fwhm: torch.Tensor | float) -> torch.Tensor:
    """The L3 wing measure of kernels (..., K, K): 1 - EE at 2 x FWHM and at 3", shape (..., 2).

    ``fwhm`` (arcsec) is the core FWHM of each kernel (broadcast over the leading axes). The
    deficit is the share of the kernel's light outside that radius of its centre pixel.
    """
    k = kernel.shape[-1]
    x, y = pixel_grid(k, pixel_scale, dtype=kernel.dtype, device=kernel.device)
    r2 = x**2 + y**2
    two_fwhm = 2 * torch.as_tensor(fwhm, dtype=kernel.dtype, device=kernel.device)[..., None, None]
    total = kernel.sum(dim=(-2, -1))
    inside_core = (kernel * (r2 <= two_fwhm**2)).sum(dim=(-2, -1))
    inside_fixed = (kernel * (r2 <= WING_RADIUS_ARCSEC**2)).sum(dim=(-2, -1))
    return torch.stack([1 - inside_core / total, 1 - inside_fixed / total], dim=-1)


def half_max_fwhm(kernel: torch.Tensor, pixel_scale: float) -> torch.Tensor:
    """FWHM (arcsec) of kernels (..., K, K) from the area above half their peak: 2 sqrt(area / pi).

    Sample the kernel finely (a few sub-pixels per FWHM) for a precise value."""
    peak = kernel.amax(dim=(-2, -1), keepdim=True)
    area = (kernel >= peak / 2).sum(dim=(-2, -1)).to(kernel.dtype) * pixel_scale**2
    return 2 * torch.sqrt(area / torch.pi)
