"""Elliptical Sersic light, normalised to a total flux, and ellipticity conventions.

Convention (lenstronomy SERSIC_ELLIPSE, Tractor SHAPE_E1/E2 modulus): |e| = (1 - q) / (1 + q),
e1 = |e| cos 2 phi, e2 = |e| sin 2 phi; the elliptical radius R = sqrt(q x'^2 + y'^2 / q) keeps
area, so R_eff is the product-averaged half-light radius and the total flux does not depend on q.
"""

from __future__ import annotations

import math

import torch

#: Smallest exponent evaluated (see ``sersic_at_scaled_r2``).
_LOWEST_EXPONENT = -80.0


def sersic_b(n: torch.Tensor) -> torch.Tensor:
    """b_n such that R_eff encloses half the light: P(2n, b_n) = 1/2, solved to machine precision.

    Starts from the Ciotti & Bertin (1999) series and polishes with Newton steps on the
    regularised incomplete gamma function (the series alone is off by 4e-4 at n = 0.5).
    """
    n = torch.as_tensor(n)
    a = 2 * n
    b = a - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3)
    for _ in range(4):
        density = torch.exp((a - 1) * torch.log(b) - b - torch.lgamma(a))
        b = b - (torch.special.gammainc(a, b) - 0.5) / density
    return b


def sersic_total_to_ie(flux: torch.Tensor, r_eff: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Surface brightness at R_eff (flux / arcsec^2) of a Sersic profile with total ``flux``."""
    b = sersic_b(n)
    two_n = 2 * n
    log_norm = math.log(2 * math.pi) + torch.log(n) + 2 * torch.log(r_eff) + b - two_n * torch.log(b)
    log_norm = log_norm + torch.lgamma(two_n)
    return flux * torch.exp(-log_norm)


def ellipticity_to_q_phi(e1: torch.Tensor, e2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis ratio q and position angle phi (radians, from +x towards +y) from (e1, e2)."""
    e = torch.sqrt(e1**2 + e2**2).clamp(max=0.999)
    return (1 - e) / (1 + e), 0.5 * torch.atan2(e2, e1)


def q_phi_to_ellipticity(q: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e1, e2) from axis ratio q and position angle phi (radians)."""
    e = (1 - q) / (1 + q)
    return e * torch.cos(2 * phi), e * torch.sin(2 * phi)


def elliptical_radius(x: torch.Tensor, y: torch.Tensor, q: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """sqrt(q x'^2 + y'^2 / q) in the frame rotated by phi (arcsec); all arguments broadcast."""
    cos, sin = torch.cos(phi), torch.sin(phi)
    xr = cos * x + sin * y
    yr = -sin * x + cos * y
    return torch.sqrt(q * xr**2 + yr**2 / q)


def sersic_sb(
    x: torch.Tensor,
    y: torch.Tensor,
    flux: torch.Tensor,
    r_eff: torch.Tensor,
    n: torch.Tensor,
    q: torch.Tensor,
    phi: torch.Tensor,
) -> torch.Tensor:
    """Surface brightness (flux / arcsec^2) at (x, y) of a Sersic centred on the origin.

    Multiply by the (sub-)pixel area to get flux per (sub-)pixel; all arguments broadcast.
    """
    radius = elliptical_radius(x, y, q, phi)
    return sersic_at_scaled_r2((radius / r_eff) ** 2, n, sersic_total_to_ie(flux, r_eff, n))


def sersic_at_scaled_r2(
    r2: torch.Tensor, n: torch.Tensor, ie: torch.Tensor, b: torch.Tensor | None = None
) -> torch.Tensor:
    """Sersic surface brightness ie exp(-b_n ((R/R_eff)^(1/n) - 1)) from r2 = (R/R_eff)^2 (saves a
    sqrt); ``b`` = ``sersic_b(n)`` when the caller has it already. Brightness below e^-80 (2e-35
    in any unit used here) is returned as e^-80: exp is ~15x slower where its result underflows."""
    b = sersic_b(n) if b is None else b
    scaled_r = torch.log(r2).mul_(0.5 / n).exp_()  # r2 ** (0.5 / n); torch's broadcast pow can be 15x slower
    return scaled_r.mul_(-b).add_(torch.log(ie) + b).clamp_(min=_LOWEST_EXPONENT).exp_()
