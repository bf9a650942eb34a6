"""The sweep catalog schema darkhalo reads and the mock writes: DR9/DR10 names, dtypes and units.

Units (docs/conventions.md): fluxes in nanomaggies, *_IVAR their inverse variances (1/nanomaggy^2),
PSFSIZE_* the PSF FWHM (arcsec), PSFDEPTH_* / GALDEPTH_* 5-sigma depths as inverse variances
(1/nanomaggy^2), SHAPE_R the half-light radius (arcsec), SHAPE_E1/E2 ellipticities with
|e| = (1-q)/(1+q). The unique key is (RELEASE, BRICKID, OBJID).
"""

from __future__ import annotations

BANDS = ("g", "r", "z")
KEY = ("RELEASE", "BRICKID", "OBJID")
TYPES = ("PSF", "REX", "DEV", "EXP", "SER", "DUP")


def _per_band(prefix: str, dtype: str, bands: tuple[str, ...] = ("G", "R", "Z")) -> dict[str, str]:
    return {f"{prefix}_{band}": dtype for band in bands}


OPTICAL_WISE = ("G", "R", "Z", "W1", "W2")

#: Column name -> numpy dtype, in the order the sweeps list them.
SWEEP_COLUMNS: dict[str, str] = {
    "RELEASE": "int16",
    "BRICKID": "int32",
    "BRICKNAME": "str",
    "OBJID": "int32",
    "TYPE": "str",
    "RA": "float64",
    "DEC": "float64",
    "EBV": "float32",
    **_per_band("FLUX", "float32", OPTICAL_WISE),
    **_per_band("FLUX_IVAR", "float32", OPTICAL_WISE),
    **_per_band("MW_TRANSMISSION", "float32", OPTICAL_WISE),
    **_per_band("NOBS", "int16"),
    **_per_band("PSFSIZE", "float32"),
    **_per_band("PSFDEPTH", "float32"),
    **_per_band("GALDEPTH", "float32"),
    **_per_band("FIBERFLUX", "float32"),
    **_per_band("FIBERTOTFLUX", "float32"),
    "SHAPE_R": "float32",
    "SHAPE_E1": "float32",
    "SHAPE_E2": "float32",
    "SERSIC": "float32",
    "MASKBITS": "int32",
    "FITBITS": "int16",
    "REF_CAT": "str",
    "GAIA_PHOT_G_MEAN_MAG": "float32",
}
