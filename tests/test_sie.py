"""SIE + external shear deflections against lenstronomy's SIE + SHEAR (the reference), float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.lens_model import LensModel

from darkhalo.lensing.sersic import q_phi_to_ellipticity
from darkhalo.lensing.sie import lens_deflection, sie_deflection


def _random_lenses(rng: np.random.Generator, count: int) -> list[dict[str, float]]:
    lenses = []
    for i in range(count):
        q = 1.0 if i % 10 == 0 else rng.uniform(0.2, 1.0)  # round lenses take the q -> 1 limit
        lenses.append(
            dict(
                theta_e=rng.uniform(0.2, 3.0),
                q=q,
                phi=rng.uniform(-np.pi, np.pi),
                g1=rng.uniform(-0.1, 0.1),
                g2=rng.uniform(-0.1, 0.1),
            )
        )
    return lenses


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-7)])
def test_deflections_match_lenstronomy_on_random_lenses(dtype: torch.dtype, tolerance: float) -> None:
    """Relative error of the total deflection, scaled by |alpha_SIE| + |alpha_shear| (their sum can cancel)."""
    rng = np.random.default_rng(6)
    reference = LensModel(["SIE", "SHEAR"])
    worst = 0.0
    for lens in _random_lenses(rng, 60):
        # parameters and positions as the dtype holds them, so both sides see the same numbers
        lens = {k: float(torch.tensor(v, dtype=dtype)) for k, v in lens.items()}
        x, y = (torch.tensor(rng.uniform(-8, 8, 400), dtype=dtype) for _ in range(2))
        e1, e2 = (
            float(e)
            for e in q_phi_to_ellipticity(
                torch.tensor(lens["q"], dtype=torch.float64), torch.tensor(lens["phi"], dtype=torch.float64)
            )
        )
        kwargs = [
            dict(theta_E=lens["theta_e"], e1=e1, e2=e2, center_x=0.0, center_y=0.0),
            dict(gamma1=lens["g1"], gamma2=lens["g2"], ra_0=0.0, dec_0=0.0),
        ]
        xs, ys = x.double().numpy(), y.double().numpy()
        ref_x, ref_y = reference.alpha(xs, ys, kwargs)
        sie_x, sie_y = LensModel(["SIE"]).alpha(xs, ys, kwargs[:1])
        scale = np.hypot(sie_x, sie_y) + np.hypot(lens["g1"], lens["g2"]) * np.hypot(xs, ys)
        params = (torch.tensor(lens[k], dtype=dtype) for k in ("theta_e", "q", "phi", "g1", "g2"))
        ax, ay = lens_deflection(x, y, *params)
        assert ax.dtype == dtype
        error = np.hypot(ax.double().numpy() - ref_x, ay.double().numpy() - ref_y) / scale
        worst = max(worst, float(error.max()))
    assert worst < tolerance


def test_a_round_sie_is_the_singular_isothermal_sphere_and_leaves_its_centre_alone() -> None:
    x = torch.tensor([0.0, 1.0, -0.3, 2.0], dtype=torch.float64)
    y = torch.tensor([0.0, 0.0, 0.4, -2.0], dtype=torch.float64)
    ax, ay = sie_deflection(x, y, torch.tensor(1.3), torch.tensor(1.0), torch.tensor(0.7))
    r = torch.hypot(x, y)
    assert ax[0] == 0 and ay[0] == 0
    assert torch.allclose(ax[1:], 1.3 * x[1:] / r[1:], rtol=1e-7)
    assert torch.allclose(ay[1:], 1.3 * y[1:] / r[1:], rtol=1e-7)


def test_the_einstein_radius_is_product_averaged() -> None:
    """Keeton's b = theta_e sqrt(q): on the minor axis the deflection is b / e atanh(e), e = sqrt(1 - q^2)."""
    theta_e, q = 1.5, 0.6
    b = theta_e * np.sqrt(q)
    e = np.sqrt(1 - q * q)
    ax, ay = sie_deflection(
        torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor(theta_e), torch.tensor(q), torch.tensor(0.0)
    )
    assert float(ax[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(ay[0]) == pytest.approx(b / e * np.arctanh(e), rel=1e-6)
