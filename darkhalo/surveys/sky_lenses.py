"""The mock sky's own strong lenses: which galaxies are lenses, their lens and source, and the truth table.

- Which: a catalog galaxy (SERSIC > 0: the sweeps give point sources 0) is a lens when its keyed uniform draw
  (darkhalo.hashing, stream ``RULE_STREAM``) falls below the spec's prevalence (``lenses``): a function of
  (seed, RELEASE, BRICKID, OBJID) alone, so a host is a lens in every cutout, batch and stage.
- What: per lens, from its own generator seeded by (seed, key) on ``STREAM``, an SIE + shear lens about the host's
  centre and an elliptical Sersic source drawn from darkhalo.spec.SkyLenses (``parameters``); the lens's axis ratio
  and angle are the host's light's (SHAPE_E1/E2 on the cutout's axes, darkhalo.surveys.orientation), q clipped to
  the spec's range. The mock cutouts render it with darkhalo.lensing.render (``draw``).
- The truth table (``truth_table``): those parameters for every catalog row that is a lens, the columns of
  data_contracts.sky_lenses.SkyLensTruth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from darkhalo.hashing import uniform
from darkhalo.lensing.render import ArcParams
from darkhalo.sources import sample_magnitudes
from darkhalo.spec import Range, SkyLenses
from darkhalo.surveys.orientation import pixel_angle
from data_contracts.schema import column_dtypes
from data_contracts.sky_lenses import SkyLensTruth
from data_contracts.survey import BANDS, KEY, mag_to_flux

#: The lenses' stream (spawn key), after darkhalo.surveys.field_galaxies.STREAM (4).
STREAM = 5
#: The keyed uniform stream (darkhalo.hashing) of the rule of which galaxies are lenses.
RULE_STREAM = "sky_lens"
#: The truth table's columns, in order; the lens and source ones follow its identity (key, position, type).
TRUTH_COLUMNS = column_dtypes(SkyLensTruth)
PARAMETER_COLUMNS = tuple(TRUTH_COLUMNS)[list(TRUTH_COLUMNS).index("theta_e") :]
#: The catalog columns ``truth_table`` reads.
CATALOG_COLUMNS = (
    *(c for c in TRUTH_COLUMNS if c not in PARAMETER_COLUMNS),
    *("SERSIC", "SHAPE_E1", "SHAPE_E2"),
    *(f"MW_TRANSMISSION_{b.upper()}" for b in BANDS),
)
#: The ArcParams fields that are truth columns of the same name (the flux comes from src_flux_<band>).
_ARC_FIELDS = ("theta_e", "lens_q", "lens_phi", "g1", "g2", "src_x", "src_y", "src_reff", "src_n", "src_q", "src_phi")


def is_sky_lens(seed: int, keys: np.ndarray, prevalence: float) -> np.ndarray:
    """(N,) bool: which of the objects with ``keys`` (N, 3) int (RELEASE, BRICKID, OBJID) the rule picks, each with
    probability ``prevalence`` from its key alone (for a galaxy, ``lenses`` adds that it is one)."""
    keys = np.asarray(keys)
    if keys.ndim != 2 or keys.shape[1] != 3 or not np.issubdtype(keys.dtype, np.integer):
        raise ValueError(f"keys must be (N, 3) integers (RELEASE, BRICKID, OBJID), got {keys.dtype} {keys.shape}")
    return uniform(seed, *keys.astype(np.int64).T, stream=RULE_STREAM) < prevalence


def lenses(seed: int, rows: pd.DataFrame, spec: SkyLenses) -> np.ndarray:
    """(N,) bool: which ``rows`` (with KEY and SERSIC) are sky lenses: galaxies the rule picks."""
    picked = is_sky_lens(seed, rows[list(KEY)].to_numpy(np.int64), spec.prevalence)
    return picked & (rows["SERSIC"].to_numpy(np.float64) > 0)


#: The uniform draws of a lens, in the order its generator makes them.
_DRAWS = (
    *("theta_e", "radius", "angle", "src_e", "src_phi", "src_reff"),
    *("src_n", "shear", "shear_phi", "mag", "g_r", "r_z"),
)


def parameters(seed: int, hosts: pd.DataFrame, transmission: np.ndarray, spec: SkyLenses) -> pd.DataFrame:
    """The lens and source (PARAMETER_COLUMNS, truth-table units) of each lens host in ``hosts`` (KEY, SHAPE_E1,
    SHAPE_E2), its source's flux dimmed by the host's MW ``transmission`` (N, 3); each from its own generator."""
    keys = hosts[list(KEY)].to_numpy(np.int64).tolist()
    draws = np.array([_generator(seed, key).random(len(_DRAWS)) for key in keys]).reshape(-1, len(_DRAWS))
    u = dict(zip(_DRAWS, draws.T, strict=True))
    e1, e2 = hosts["SHAPE_E1"].to_numpy(np.float64), hosts["SHAPE_E2"].to_numpy(np.float64)
    modulus = np.clip(np.hypot(e1, e2), 0, 0.99)
    theta_e = _log_uniform(spec.theta_e, u["theta_e"])
    radius = spec.position_max_frac * theta_e * np.sqrt(u["radius"])  # area-uniform in the disc
    src_e, shear = _uniform(spec.src_e, u["src_e"]), _uniform(spec.shear, u["shear"])
    mag_r = sample_magnitudes(spec.mag_prior, u["mag"])
    g_r, r_z = _uniform(spec.g_minus_r, u["g_r"]), _uniform(spec.r_minus_z, u["r_z"])
    flux = mag_to_flux(np.stack([mag_r + g_r, mag_r, mag_r - r_z], axis=1)) * np.asarray(transmission, np.float64)
    columns = {
        "theta_e": theta_e,
        "lens_q": np.clip((1 - modulus) / (1 + modulus), spec.lens_q.min, spec.lens_q.max),
        "lens_phi": pixel_angle(e1, e2),
        "g1": shear * np.cos(2 * np.pi * u["shear_phi"]),
        "g2": shear * np.sin(2 * np.pi * u["shear_phi"]),
        "src_x": radius * np.cos(2 * np.pi * u["angle"]),
        "src_y": radius * np.sin(2 * np.pi * u["angle"]),
        "src_reff": _log_uniform(spec.src_reff, u["src_reff"]),
        "src_n": _uniform(spec.src_n, u["src_n"]),
        "src_q": (1 - src_e) / (1 + src_e),
        "src_phi": np.pi * u["src_phi"],
        "src_mag_r": mag_r,
        **{f"src_flux_{b}": flux[:, i] for i, b in enumerate(BANDS)},
    }
    return pd.DataFrame(columns, index=hosts.index).loc[:, list(PARAMETER_COLUMNS)]


def draw(seed: int, hosts: pd.DataFrame, transmission: np.ndarray, spec: SkyLenses) -> ArcParams:
    """The renderer's parameters (float32) of the lens hosts ``hosts`` (``parameters``), the lens at each host's
    centre."""
    frame = parameters(seed, hosts, transmission, spec)

    def column(name: str) -> torch.Tensor:
        return torch.from_numpy(frame[name].to_numpy(np.float64)).float()

    flux = torch.stack([column(f"src_flux_{b}") for b in BANDS], dim=1)
    return ArcParams(**{name: column(name) for name in _ARC_FIELDS}, flux=flux)


def truth_table(catalog: pd.DataFrame, seed: int, spec: SkyLenses) -> pd.DataFrame:
    """The truth rows (SkyLensTruth's columns and dtypes) of the sky lenses among ``catalog``'s rows, in its order."""
    rows = catalog.loc[lenses(seed, catalog, spec)]
    transmission = np.stack([rows[f"MW_TRANSMISSION_{b.upper()}"].to_numpy(np.float64) for b in BANDS], axis=1)
    identity = [c for c in TRUTH_COLUMNS if c not in PARAMETER_COLUMNS]
    truth = pd.concat([rows[identity], parameters(seed, rows, transmission, spec)], axis=1)
    return truth.astype(TRUTH_COLUMNS).reset_index(drop=True)


def _generator(seed: int, key: list[int]) -> np.random.Generator:
    """The lens's generator, seeded by (seed, key) on STREAM."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM, *key)))


def _uniform(bounds: Range, u: np.ndarray) -> np.ndarray:
    return bounds.min + u * (bounds.max - bounds.min)


def _log_uniform(bounds: Range, u: np.ndarray) -> np.ndarray:
    return bounds.min * (bounds.max / bounds.min) ** u
