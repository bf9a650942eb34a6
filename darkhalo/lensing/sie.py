"""Singular isothermal ellipsoid (SIE) plus external shear: deflection angles for a batch of lenses.

Conventions (docs/conventions.md, lenstronomy's SIE + SHEAR): the lens sits at the origin; ``theta_e`` is
the product-averaged Einstein radius (arcsec), so Keeton & Kochanek's (1998) critical radius is
b = theta_e sqrt(q); ``phi`` is the major axis's angle from +x towards +y (radians). Shear
deflects by alpha_x = g1 x + g2 y, alpha_y = g2 x - g1 y.
"""

from __future__ import annotations

import torch

#: Smallest 1 - q^2 used: a round lens (q = 1) takes the q -> 1 limit without dividing by zero.
_MIN_ONE_MINUS_Q2 = 1e-8


def sie_eccentricity(q: torch.Tensor) -> torch.Tensor:
    """e = sqrt(1 - q^2) of Keeton & Kochanek's formulae, kept away from 0 for a round lens."""
    return torch.sqrt(torch.clamp(1 - q * q, min=_MIN_ONE_MINUS_Q2))


def sie_scale(theta_e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """b / e (arcsec): multiplies ``sie_frame_terms`` to give the deflection in the lens frame."""
    return theta_e * torch.sqrt(q) / sie_eccentricity(q)


def sie_frame_terms(xr: torch.Tensor, yr: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(atan(e xr / psi), atanh(e yr / psi)) at lens-frame positions (xr along the major axis).

    psi = sqrt(q^2 xr^2 + yr^2); times ``sie_scale`` these are the deflection's lens-frame
    components (Keeton & Kochanek 1998, eq. after 8). The centre itself is not deflected.
    (atan2 is ~2x as fast as atan in torch on CPU.)
    """
    psi = (q * xr).square_().addcmul_(yr, yr).add_(torch.finfo(xr.dtype).tiny).sqrt_()  # in place: less memory traffic
    e = sie_eccentricity(q)
    return torch.atan2(e * xr, psi), (e * yr).div_(psi).atanh_()


def sie_deflection(
    x: torch.Tensor, y: torch.Tensor, theta_e: torch.Tensor, q: torch.Tensor, phi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SIE deflection (alpha_x, alpha_y) in arcsec at positions (x, y) (arcsec); all broadcast."""
    cos, sin = torch.cos(phi), torch.sin(phi)
    u, v = sie_frame_terms(cos * x + sin * y, -sin * x + cos * y, q)
    scale = sie_scale(theta_e, q)
    return scale * (cos * u - sin * v), scale * (sin * u + cos * v)


def shear_deflection(
    x: torch.Tensor, y: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """External shear deflection (arcsec) at (x, y): (g1 x + g2 y, g2 x - g1 y)."""
    return g1 * x + g2 * y, g2 * x - g1 * y


def lens_deflection(
    x: torch.Tensor,
    y: torch.Tensor,
    theta_e: torch.Tensor,
    q: torch.Tensor,
    phi: torch.Tensor,
    g1: torch.Tensor,
    g2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total deflection (arcsec) of SIE + external shear at (x, y); all arguments broadcast."""
    sx, sy = sie_deflection(x, y, theta_e, q, phi)
    hx, hy = shear_deflection(x, y, g1, g2)
    return sx + hx, sy + hy
