"""Per-stamp nuisance parameters of a positive: source position, angles, shear, lens shape, brightness.

Every draw is ``uniform(seed, host_id, config_id, stream=<name>)`` (darkhalo.hashing), so a stamp's
parameters do not depend on batching. Conventions (docs/conventions.md): angles in radians east of the x axis,
positions and radii in arcsec, magnitudes AB, fluxes in nanomaggies.

- Source centre: area-uniform in a disc of radius ``position_max_frac x theta_E`` about the lens.
- Source axis ratio from the grid's |e|: q = (1 - e) / (1 + e); source angle uniform in [0, pi).
- Shear: the grid's modulus at an angle uniform in [0, pi): g1 = g cos 2phi, g2 = g sin 2phi.
- Lens axis ratio: from the host's Tractor shape (q from |e| of SHAPE_E1, SHAPE_E2, clipped to the
  spec's lens_q range; the angle is Tractor's sky angle mapped to the cutout's pixel axes,
  darkhalo.surveys.orientation), or q and angle drawn from the spec's range (prior).
- Sersic index uniform in the spec's range; colours g - r and r - z uniform in theirs.
- Brightness: ``host_relative`` (Gen 1): unlensed r = host r from the raw FLUX_R + src_dmag, already
  as observed (raw magnitudes include extinction). ``prior``: r from the spec's magnitude prior
  (uniform, or number counts dN/dm ∝ 10^(slope m)), intrinsic, then dimmed per band by the host's
  MW_TRANSMISSION.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from darkhalo.hashing import uniform
from darkhalo.spec import MagPrior, SourceSpec
from darkhalo.surveys.orientation import pixel_angle
from data_contracts.survey import BANDS, flux_to_mag, mag_to_flux


def sample_magnitudes(prior: MagPrior, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of r magnitudes from the prior for uniforms ``u`` in [0, 1)."""
    if prior.kind == "uniform":
        return prior.r_min + u * (prior.r_max - prior.r_min)
    lo, hi = 10.0 ** (prior.slope * prior.r_min), 10.0 ** (prior.slope * prior.r_max)
    return np.log10(lo + u * (hi - lo)) / prior.slope


def draw_source_parameters(rows: pd.DataFrame, source: SourceSpec, seed: int) -> pd.DataFrame:
    """The nuisance columns (data_contracts.manifest.SOURCE_COLUMNS) for positive rows.

    ``rows`` holds host_id, config_id, the grid values theta_e, src_e, shear (and src_dmag for
    host_relative brightness) and the host's FLUX_R, SHAPE_E1, SHAPE_E2, MW_TRANSMISSION_G/R/Z.
    """
    keys = (rows["host_id"].to_numpy(), rows["config_id"].to_numpy())

    def draw(stream: str) -> np.ndarray:
        return uniform(seed, *keys, stream=stream)

    theta_e = rows["theta_e"].to_numpy(dtype=float)
    radius = source.position_max_frac * theta_e * np.sqrt(draw("src_r"))
    angle = 2 * np.pi * draw("src_angle")
    src_e = rows["src_e"].to_numpy(dtype=float)
    shear = rows["shear"].to_numpy(dtype=float)
    shear_phi = np.pi * draw("shear_phi")

    if source.lens_q_from == "host_shape":
        e1, e2 = rows["SHAPE_E1"].to_numpy(dtype=float), rows["SHAPE_E2"].to_numpy(dtype=float)
        modulus = np.clip(np.hypot(np.nan_to_num(e1), np.nan_to_num(e2)), 0.0, 0.99)
        lens_q = np.clip((1 - modulus) / (1 + modulus), source.lens_q.min, source.lens_q.max)
        lens_phi = pixel_angle(np.nan_to_num(e1), np.nan_to_num(e2))
    else:
        lens_q = source.lens_q.min + draw("lens_q") * (source.lens_q.max - source.lens_q.min)
        lens_phi = np.pi * draw("lens_phi")

    g_minus_r = source.g_minus_r.min + draw("g_minus_r") * (source.g_minus_r.max - source.g_minus_r.min)
    r_minus_z = source.r_minus_z.min + draw("r_minus_z") * (source.r_minus_z.max - source.r_minus_z.min)
    if source.brightness == "host_relative":
        mag_r = flux_to_mag(rows["FLUX_R"].to_numpy()) + rows["src_dmag"].to_numpy(dtype=float)
        transmission = {band: 1.0 for band in BANDS}
    else:
        assert source.mag_prior is not None  # the spec validator guarantees it
        mag_r = sample_magnitudes(source.mag_prior, draw("src_mag"))
        transmission = {band: rows[f"MW_TRANSMISSION_{band.upper()}"].to_numpy(dtype=float) for band in BANDS}
    mags = {"g": mag_r + g_minus_r, "r": mag_r, "z": mag_r - r_minus_z}

    return pd.DataFrame(
        {
            "src_x": radius * np.cos(angle),
            "src_y": radius * np.sin(angle),
            "src_q": (1 - src_e) / (1 + src_e),
            "src_phi": np.pi * draw("src_phi"),
            "g1": shear * np.cos(2 * shear_phi),
            "g2": shear * np.sin(2 * shear_phi),
            "lens_q": lens_q,
            "lens_phi": lens_phi,
            "src_n": source.sersic_n.min + draw("src_n") * (source.sersic_n.max - source.sersic_n.min),
            "src_mag_r": mag_r,
            **{f"src_flux_{band}": mag_to_flux(mags[band]) * transmission[band] for band in BANDS},
        },
        index=rows.index,
    )
