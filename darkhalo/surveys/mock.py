"""The mock Legacy Survey catalog: a seeded, deterministic sky with the DR10 sweep columns.

Rows come in blocks of ``BLOCK_ROWS``; block b holds rows [b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS) and
draws from its own RNG stream seeded by (seed, b), so the catalog is bit-identical however the
blocks are spread over workers. Fields that are shared by the whole sky (the E(B-V) field and the
bright-star masks) come from a separate stream of the seed alone.

Populations (fractions of rows): stars (TYPE PSF), blue star-forming galaxies (REX/EXP) and
luminous red galaxies (DEV/SER, SHAPE_R ~0.5-3"). Their colours are set so that Gen 1's cuts and
the DESI LRG cuts both keep mostly LRGs, with some blue-galaxy contamination. Units as in
docs/conventions.md: fluxes in nanomaggies (observed, i.e. dimmed by MW_TRANSMISSION, with noise from
FLUX_IVAR), sizes in arcsec, depths as inverse variances (1/nanomaggy^2).

Bricks follow a plain version of the Legacy Surveys scheme: rows 0.25 deg tall centred on
multiples of 0.25 deg in Dec, each split into round(360 cos(dec_centre) / 0.25) equal RA columns;
BRICKID counts bricks from the south pole (1-based) and BRICKNAME is '%04d' of RA_centre x 10
(truncated), 'p' or 'm', '%03d' of |Dec_centre| x 10 (truncated), as in '1054p567'.
OBJID is the row's index in the whole catalog, so (RELEASE, BRICKID, OBJID) is unique. FITBITS is
0 (no forced or frozen fits); MASKBITS sets BRIGHT and MEDIUM around a few bright stars.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from darkhalo.artifacts import atomic_file
from darkhalo.spec import MockSurvey
from darkhalo.surveys.columns import SWEEP_COLUMNS
from data_contracts.catalog import Catalog
from data_contracts.schema import arrow_schema
from data_contracts.survey import mag_to_flux

BLOCK_ROWS = 50_000

#: Share of rows per population; the rest are blue galaxies.
STAR_FRACTION = 0.25
LRG_FRACTION = 0.25

#: A_band / E(B-V) for DECam g, r, z and WISE W1, W2 (Legacy Surveys DR9/DR10 coefficients).
EXTINCTION = {"G": 3.214, "R": 2.165, "Z": 1.211, "W1": 0.184, "W2": 0.113}

#: Median PSF FWHM (arcsec) per band and the log-normal scatter of the r-band FWHM.
PSF_MEDIAN = {"G": 1.5, "R": 1.3, "Z": 1.2}
PSF_LOG_SCATTER = 0.18
#: 5-sigma point-source depth (AB mag) of one exposure at the median seeing, and the mean number
#: of extra exposures (NOBS = 1 + Poisson). Tuned so the coadd pixel noise (1/sqrt(PSFDEPTH x NEA))
#: matches the real DR10 cutouts: ~0.002 / 0.003 / 0.008 nanomaggies in g / r / z, with NEA that of
#: the pixel-integrated survey PSF at the host's PSFSIZE (darkhalo.lensing.psf).
SINGLE_DEPTH = {"G": 24.58, "R": 24.43, "Z": 23.23}
EXTRA_EXPOSURES = {"G": 2.0, "R": 2.0, "Z": 2.5}
#: GALDEPTH = PSFDEPTH / (1 + GAL_SOFTENING / FWHM^2): the 0.45" round exponential of legacypipe
#: (fitted to real DR9 rows: the ratio is 0.84 / 0.69 / 0.53 at FWHM 2.6 / 1.7 / 1.2").
GAL_SOFTENING = 1.3
#: WISE flux inverse variances (1/nanomaggy^2), uniform ranges (unWISE single-epoch-stack-like).
WISE_IVAR = {"W1": (1.5, 4.0), "W2": (0.3, 1.0)}

#: Bright-star masks per square degree, their radius range (arcsec) and the bits they set.
BRIGHT_STARS_PER_DEG2 = 2.0
BRIGHT_RADIUS = (20.0, 120.0)
MASK_BRIGHT = 1 << 1
MASK_MEDIUM = 1 << 11
#: The DESI fibre: 1.5" diameter, the flux predicted for 1" FWHM Gaussian seeing.
FIBER_RADIUS = 0.75
FIBER_SEEING_SIGMA = 1.0 / 2.3548

_BRICK_ROWS = 721  # 0.25 deg rows centred on Dec -90, -89.75, ..., +90
_ROW_CENTRES = -90 + np.arange(_BRICK_ROWS) * 0.25
_ROW_COLUMNS = np.maximum(1, np.round(360 * np.cos(np.radians(_ROW_CENTRES)) / 0.25)).astype(np.int64)
_ROW_OFFSETS = np.concatenate([[0], np.cumsum(_ROW_COLUMNS)[:-1]])


def n_blocks(survey: MockSurvey) -> int:
    """Number of row blocks of the survey's catalog."""
    return math.ceil(survey.n_objects / BLOCK_ROWS)


def write_block(survey: MockSurvey, seed: int, folder: Path, block: int) -> int:
    """Write one mock block as ``part-<block>.parquet`` (atomically); returns its row count."""
    frame = mock_catalog(survey, seed, block)
    table = pa.Table.from_pandas(frame, schema=arrow_schema(Catalog), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with atomic_file(folder / f"part-{block:05d}.parquet", "wb") as handle:
        handle.write(buffer.getvalue())
    return len(frame)


def brick_of(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BRICKID (int32) and BRICKNAME (str) of positions in deg (the scheme in the module docstring)."""
    row = np.clip(np.floor((dec + 90) / 0.25 + 0.5).astype(np.int64), 0, _BRICK_ROWS - 1)
    ncols = _ROW_COLUMNS[row]
    col = np.minimum(np.floor(np.mod(ra, 360) / 360 * ncols).astype(np.int64), ncols - 1)
    ra_c = (col + 0.5) * 360 / ncols
    dec_c = _ROW_CENTRES[row]
    names = [
        f"{int(r * 10):04d}{'p' if d >= 0 else 'm'}{int(abs(d) * 10):03d}" for r, d in zip(ra_c, dec_c, strict=True)
    ]
    return (1 + _ROW_OFFSETS[row] + col).astype(np.int32), np.array(names, dtype=object)


@dataclass(frozen=True)
class SkyFields:
    """Sky-wide fields of one seed: E(B-V) field parameters and bright-star masks (deg, arcsec)."""

    ebv_phases: np.ndarray
    star_ra: np.ndarray
    star_dec: np.ndarray
    star_radius: np.ndarray


def sky_fields(survey: MockSurvey, seed: int) -> SkyFields:
    """The E(B-V) field and bright-star masks of a seed, shared by every block."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    phases = rng.uniform(0, 2 * np.pi, size=4)
    area = _area_deg2(survey)
    n_stars = int(rng.poisson(BRIGHT_STARS_PER_DEG2 * area))
    ra, dec = _uniform_sky(rng, survey, n_stars)
    radius = np.exp(rng.uniform(np.log(BRIGHT_RADIUS[0]), np.log(BRIGHT_RADIUS[1]), n_stars))
    return SkyFields(phases, ra, dec, radius)


def ebv_at(fields: SkyFields, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth E(B-V) (mag) over the sky: log-normal-like, 0.015-0.12, with ~5-20 deg structure (high latitude)."""
    p = fields.ebv_phases
    wave = np.sin(np.radians(ra) * 17 + p[0]) * np.cos(np.radians(dec) * 11 + p[1])
    wave2 = np.sin(np.radians(ra + dec) * 7 + p[2])
    return 0.045 * np.exp(0.6 * wave + 0.3 * wave2 + 0.1 * np.cos(np.radians(ra) * 40 + p[3]))


def mock_catalog(survey: MockSurvey, seed: int, block: int) -> pd.DataFrame:
    """Rows of block ``block`` with exactly SWEEP_COLUMNS (names, order, dtypes)."""
    if not 0 <= block < n_blocks(survey):
        raise ValueError(f"block {block} is outside 0..{n_blocks(survey) - 1} for n_objects={survey.n_objects}")
    start = block * BLOCK_ROWS
    n = min(BLOCK_ROWS, survey.n_objects - start)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, block)))
    fields = sky_fields(survey, seed)

    ra, dec = _uniform_sky(rng, survey, n)
    brickid, brickname = brick_of(ra, dec)
    population = draw_population(rng, n)
    conditions = _observing_conditions(rng, n)
    ebv = ebv_at(fields, ra, dec)
    cols: dict[str, object] = {
        "RELEASE": np.full(n, survey.release),
        "BRICKID": brickid,
        "BRICKNAME": brickname,
        "OBJID": np.arange(start, start + n),
        "TYPE": population["TYPE"],
        "RA": ra,
        "DEC": dec,
        "EBV": ebv,
    }
    for band, coefficient in EXTINCTION.items():
        transmission = 10 ** (-0.4 * coefficient * ebv)
        cols[f"MW_TRANSMISSION_{band}"] = transmission
        ivar = _flux_ivar(rng, band, conditions, population)
        true = population[f"flux_{band}"] * transmission
        cols[f"FLUX_{band}"] = true + rng.standard_normal(n) / np.sqrt(ivar)
        cols[f"FLUX_IVAR_{band}"] = ivar
        if band in PSF_MEDIAN:
            fiber = _fiber_fraction(population["SHAPE_R"]) * true
            cols[f"FIBERFLUX_{band}"] = fiber
            cols[f"FIBERTOTFLUX_{band}"] = fiber * (1 + rng.exponential(0.03, n))
    cols.update(conditions)
    for name in ("SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC", "REF_CAT", "GAIA_PHOT_G_MEAN_MAG"):
        cols[name] = population[name]
    cols["MASKBITS"] = _maskbits(fields, ra, dec)
    cols["FITBITS"] = np.zeros(n)
    return pd.DataFrame(
        {name: _as_dtype(cols[name], dtype) for name, dtype in SWEEP_COLUMNS.items()},
        index=pd.RangeIndex(start, start + n),
    )


def _as_dtype(values: object, dtype: str) -> np.ndarray:
    return np.asarray(values, dtype=object if dtype == "str" else dtype)


def _area_deg2(survey: MockSurvey) -> float:
    (ra0, ra1), (dec0, dec1) = survey.ra_range, survey.dec_range
    return (ra1 - ra0) * (np.sin(np.radians(dec1)) - np.sin(np.radians(dec0))) * 180 / np.pi


def _uniform_sky(rng: np.random.Generator, survey: MockSurvey, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (deg) uniform on the sphere inside the survey's RA/Dec box."""
    (ra0, ra1), (dec0, dec1) = survey.ra_range, survey.dec_range
    ra = rng.uniform(ra0, ra1, n)
    sin_dec = rng.uniform(np.sin(np.radians(dec0)), np.sin(np.radians(dec1)), n)
    return ra, np.degrees(np.arcsin(sin_dec))


def magnitudes_from_counts(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Magnitudes in [lo, hi] with dN/dm ∝ 10^(slope m) (inverse-CDF draw)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


def draw_population(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Intrinsic (unreddened, noiseless) type, fluxes (nanomaggies) and shapes of ``n`` objects.

    Also used by the cutout renderer to draw neighbours from the same sky.
    """
    kind = rng.uniform(size=n)
    star = kind < STAR_FRACTION
    lrg = (kind >= STAR_FRACTION) & (kind < STAR_FRACTION + LRG_FRACTION)
    blue = ~(star | lrg)

    # Stars: r 16-23; colours along the stellar locus; W1 far below z (AB), so no LRG cut keeps them.
    r_star = magnitudes_from_counts(rng, n, 16.0, 23.0, 0.12)
    rz_star = rng.uniform(0.0, 1.8, n)
    gr_star = np.clip(0.2 + 0.9 * rz_star, 0.2, 1.5) + rng.normal(0, 0.05, n)
    zw1_star = -0.8 + 0.25 * rz_star + rng.normal(0, 0.1, n)

    # LRGs: z 17.5-21.3, redder and smaller with distance (t = 0 near, 1 far).
    z_lrg = magnitudes_from_counts(rng, n, 17.5, 21.3, 0.45)
    t = np.clip((z_lrg - 17.5) / 3.8 + rng.normal(0, 0.1, n), 0, 1)
    rz_lrg = 0.9 + 1.0 * t + rng.normal(0, 0.15, n)
    gr_lrg = 1.1 + 0.7 * t + rng.normal(0, 0.15, n)
    zw1_lrg = 1.0 + 1.0 * t + rng.normal(0, 0.2, n)
    reff_lrg = np.clip(10 ** (np.log10(1.9) - 0.45 * t + rng.normal(0, 0.12, n)), 0.3, 4.0)

    # Blue galaxies: r 18.5-23.5, g-r 0.2-0.9, r-z 0.2-1.0, z-W1 around 0.3 (a tail reaches LRG colours).
    r_blue = magnitudes_from_counts(rng, n, 18.5, 23.5, 0.35)
    gr_blue = rng.uniform(0.2, 0.9, n)
    rz_blue = 0.2 + 0.6 * rng.uniform(size=n) + 0.3 * (gr_blue - 0.2)
    zw1_blue = rng.normal(0.3, 0.3, n)
    reff_blue = np.clip(10 ** (np.log10(0.8) - 0.12 * (r_blue - 21) + rng.normal(0, 0.15, n)), 0.1, 3.0)

    r = np.where(star, r_star, np.where(lrg, z_lrg + rz_lrg, r_blue))
    rz = np.where(star, rz_star, np.where(lrg, rz_lrg, rz_blue))
    gr = np.where(star, gr_star, np.where(lrg, gr_lrg, gr_blue))
    zw1 = np.where(star, zw1_star, np.where(lrg, zw1_lrg, zw1_blue))
    w1w2 = np.where(blue, rng.normal(-0.3, 0.2, n), rng.normal(-0.55, 0.1, n))
    z = r - rz
    mags = {"G": r + gr, "R": r, "Z": z, "W1": z - zw1, "W2": z - zw1 - w1w2}

    rex = blue & (rng.uniform(size=n) < 0.4)
    dev = lrg & (rng.uniform(size=n) < 0.7)
    types = np.where(star, "PSF", np.where(blue, np.where(rex, "REX", "EXP"), np.where(dev, "DEV", "SER")))
    sersic = np.select([star, blue, dev], [0.0, 1.0, 4.0], rng.uniform(1.5, 6.0, n))
    shape_r = np.where(star, 0.0, np.where(lrg, reff_lrg, reff_blue))
    e = np.where(star | rex, 0.0, np.clip(np.abs(rng.normal(0, np.where(lrg, 0.15, 0.3))), 0, 0.8))
    phi = rng.uniform(0, np.pi, n)

    gaia = star & (r < 21.0)
    return {
        "TYPE": types.astype(object),
        **{f"flux_{band}": mag_to_flux(m) for band, m in mags.items()},
        "SHAPE_R": shape_r,
        "SHAPE_E1": e * np.cos(2 * phi),
        "SHAPE_E2": e * np.sin(2 * phi),
        "SERSIC": sersic,
        "REF_CAT": np.where(gaia, "G2", "").astype(object),
        "GAIA_PHOT_G_MEAN_MAG": np.where(gaia, r + 0.1 - 0.25 * gr + rng.normal(0, 0.03, n), 0.0),
    }


def _observing_conditions(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """NOBS, PSFSIZE (FWHM, arcsec; the bands share most of their scatter), PSFDEPTH, GALDEPTH."""
    seeing = rng.normal(0, PSF_LOG_SCATTER, n)
    out: dict[str, np.ndarray] = {}
    for band, median in PSF_MEDIAN.items():
        fwhm = median * np.exp(seeing + rng.normal(0, 0.05, n))
        nobs = 1 + rng.poisson(EXTRA_EXPOSURES[band], n)
        # Background-limited: the 5-sigma flux grows with FWHM and falls as sqrt(NOBS).
        m5 = SINGLE_DEPTH[band] + 1.25 * np.log10(nobs) - 2.5 * np.log10(fwhm / median) + rng.normal(0, 0.15, n)
        psfdepth = 25 / mag_to_flux(m5) ** 2
        out[f"NOBS_{band}"] = nobs
        out[f"PSFSIZE_{band}"] = fwhm
        out[f"PSFDEPTH_{band}"] = psfdepth
        out[f"GALDEPTH_{band}"] = psfdepth / (1 + GAL_SOFTENING / fwhm**2)
    return out


def _flux_ivar(
    rng: np.random.Generator, band: str, conditions: dict[str, np.ndarray], population: dict[str, np.ndarray]
) -> np.ndarray:
    """FLUX_IVAR: PSFDEPTH for point sources, GALDEPTH softened by the object's size for galaxies."""
    if band in WISE_IVAR:
        lo, hi = WISE_IVAR[band]
        return rng.uniform(lo, hi, len(population["SHAPE_R"]))
    size = population["SHAPE_R"]
    galaxy = conditions[f"GALDEPTH_{band}"] / (1 + (size / 0.45) ** 2)
    return np.where(population["TYPE"] == "PSF", conditions[f"PSFDEPTH_{band}"], galaxy)


def _fiber_fraction(shape_r: np.ndarray) -> np.ndarray:
    """Share of the flux in a 1.5" fibre under 1" seeing, the galaxy taken as a Gaussian of its half-light radius."""
    sigma2 = FIBER_SEEING_SIGMA**2 + (shape_r / 1.1774) ** 2
    return 1 - np.exp(-0.5 * FIBER_RADIUS**2 / sigma2)


def _maskbits(fields: SkyFields, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """BRIGHT inside a bright star's radius, MEDIUM inside twice it (a KD-tree on unit vectors)."""
    bits = np.zeros(len(ra), dtype=np.int64)
    if not len(fields.star_ra) or not len(ra):
        return bits
    tree = cKDTree(_unit_vectors(ra, dec))
    stars = _unit_vectors(fields.star_ra, fields.star_dec)
    for factor, bit in ((2.0, MASK_MEDIUM), (1.0, MASK_BRIGHT)):
        chord = 2 * np.sin(np.radians(factor * fields.star_radius / 3600) / 2)
        for rows in tree.query_ball_point(stars, chord):
            bits[rows] |= bit
    return bits


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
