"""The survey catalog's contract (pandera): the DR9/DR10 sweep columns, their dtypes and units.

A catalog row is a host row (what every later artifact carries of its host) plus the columns only the
selection reads. Values are judged at the select stage's edge (Great Expectations): the model holds
names, order and dtypes, and lets floats and strings be null. Units: RA/DEC deg; fluxes nanomaggies,
*_IVAR their inverse variances (1/nanomaggy^2); PSFSIZE_* PSF FWHM arcsec; PSFDEPTH_* / GALDEPTH_*
5-sigma depths as inverse variances (1/nanomaggy^2); SHAPE_R half-light radius arcsec; SHAPE_E1/E2
ellipticities with |e| = (1-q)/(1+q); EBV mag. The unique key is data_contracts.survey.KEY.
"""

from __future__ import annotations

import numpy as np
import pandera.pandas as pa
from pandera.typing import Series


class HostRow(pa.DataFrameModel):
    """A host's key, position, type, grz photometry, PSF, depth and shape: what a stamp needs of its host."""

    RELEASE: Series[np.int16]
    BRICKID: Series[np.int32]
    OBJID: Series[np.int32]
    RA: Series[np.float64] = pa.Field(nullable=True)
    DEC: Series[np.float64] = pa.Field(nullable=True)
    TYPE: Series[str] = pa.Field(nullable=True)
    FLUX_G: Series[np.float32] = pa.Field(nullable=True)
    FLUX_R: Series[np.float32] = pa.Field(nullable=True)
    FLUX_Z: Series[np.float32] = pa.Field(nullable=True)
    MW_TRANSMISSION_G: Series[np.float32] = pa.Field(nullable=True)
    MW_TRANSMISSION_R: Series[np.float32] = pa.Field(nullable=True)
    MW_TRANSMISSION_Z: Series[np.float32] = pa.Field(nullable=True)
    PSFSIZE_G: Series[np.float32] = pa.Field(nullable=True)
    PSFSIZE_R: Series[np.float32] = pa.Field(nullable=True)
    PSFSIZE_Z: Series[np.float32] = pa.Field(nullable=True)
    PSFDEPTH_G: Series[np.float32] = pa.Field(nullable=True)
    PSFDEPTH_R: Series[np.float32] = pa.Field(nullable=True)
    PSFDEPTH_Z: Series[np.float32] = pa.Field(nullable=True)
    SHAPE_R: Series[np.float32] = pa.Field(nullable=True)
    SHAPE_E1: Series[np.float32] = pa.Field(nullable=True)
    SHAPE_E2: Series[np.float32] = pa.Field(nullable=True)
    SERSIC: Series[np.float32] = pa.Field(nullable=True)


class Catalog(HostRow):
    """A sweep catalog row as the survey stage writes it: the host row, then the WISE fluxes, inverse
    variances, observation counts, galaxy depths, fibre fluxes, mask bits and Gaia magnitude."""

    BRICKNAME: Series[str] = pa.Field(nullable=True)
    EBV: Series[np.float32] = pa.Field(nullable=True)
    FLUX_W1: Series[np.float32] = pa.Field(nullable=True)
    FLUX_W2: Series[np.float32] = pa.Field(nullable=True)
    FLUX_IVAR_G: Series[np.float32] = pa.Field(nullable=True)
    FLUX_IVAR_R: Series[np.float32] = pa.Field(nullable=True)
    FLUX_IVAR_Z: Series[np.float32] = pa.Field(nullable=True)
    FLUX_IVAR_W1: Series[np.float32] = pa.Field(nullable=True)
    FLUX_IVAR_W2: Series[np.float32] = pa.Field(nullable=True)
    MW_TRANSMISSION_W1: Series[np.float32] = pa.Field(nullable=True)
    MW_TRANSMISSION_W2: Series[np.float32] = pa.Field(nullable=True)
    NOBS_G: Series[np.int16]
    NOBS_R: Series[np.int16]
    NOBS_Z: Series[np.int16]
    GALDEPTH_G: Series[np.float32] = pa.Field(nullable=True)
    GALDEPTH_R: Series[np.float32] = pa.Field(nullable=True)
    GALDEPTH_Z: Series[np.float32] = pa.Field(nullable=True)
    FIBERFLUX_G: Series[np.float32] = pa.Field(nullable=True)
    FIBERFLUX_R: Series[np.float32] = pa.Field(nullable=True)
    FIBERFLUX_Z: Series[np.float32] = pa.Field(nullable=True)
    FIBERTOTFLUX_G: Series[np.float32] = pa.Field(nullable=True)
    FIBERTOTFLUX_R: Series[np.float32] = pa.Field(nullable=True)
    FIBERTOTFLUX_Z: Series[np.float32] = pa.Field(nullable=True)
    MASKBITS: Series[np.int32]
    FITBITS: Series[np.int16]
    REF_CAT: Series[str] = pa.Field(nullable=True)
    GAIA_PHOT_G_MEAN_MAG: Series[np.float32] = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True
        name = "catalog"
