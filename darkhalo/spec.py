"""Generation specs as code: one pydantic model per section, loaded from strict safe YAML (darkhalo.strict_yaml).

A spec is everything that defines a generation (survey, cuts, grid, controls, splits, stamps, PSF,
source population, injection, training, evaluation, invariant thresholds, engine). Unknown keys
fail naming the key, its path and the allowed keys with a did-you-mean; out-of-range values fail
naming the field. Units: angles in arcsec, magnitudes AB, fluxes in nanomaggies.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import operator
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from darkhalo import strict_yaml
from darkhalo.surveys.noise import kernel_taps
from data_contracts.confusers import CLASSES as CONFUSER_CLASSES
from data_contracts.lessons import LESSONS
from data_contracts.survey import BANDS, PIXEL_SCALE
from data_contracts.thresholds import SPEC_CONFIG, InvariantThresholds


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file and every offending key or field."""


class Section(BaseModel):
    """Base of every spec section (data_contracts.thresholds.SPEC_CONFIG): unknown keys are errors, numbers and
    booleans are taken only as themselves (never from strings), floats are finite, a loaded spec is immutable."""

    model_config = SPEC_CONFIG


class Range(Section):
    """A closed interval [min, max] a nuisance parameter is drawn from (min == max fixes it)."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


def range_within(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> AfterValidator:
    """The domain of a Range field: low <= min (low < min if ``open_low``) and max <= high (max < high if
    ``open_high``), so every value drawn from it is one the renderer and the mock sky can use."""
    shown = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def check(r: Range, info: ValidationInfo) -> Range:
        above = low < r.min if open_low else low <= r.min
        below = r.max < high if open_high else r.max <= high
        if not (above and below):
            raise ValueError(f"{info.field_name} [{r.min}, {r.max}] must lie in {shown}")
        return r

    return AfterValidator(check)


#: An axis ratio q (minor / major): 0 has no light profile.
AxisRatioRange = Annotated[Range, range_within(0, 1, open_low=True)]
#: A modulus drawn uniform: source |e| = (1 - q) / (1 + q), or an external shear; 1 is degenerate.
ModulusRange = Annotated[Range, range_within(0, 1, open_high=True)]
#: A Sersic index: the renderer solves b_n for n in (0.2, 10].
SersicRange = Annotated[Range, range_within(0.2, 10, open_low=True)]
#: A size in arcsec (Einstein radius, half-light radius, Gaussian sigma): 0 has no profile, 100" is no galaxy's.
ArcsecRange = Annotated[Range, range_within(0, 100, open_low=True)]
#: A galaxy colour (mag): beyond +-5 no galaxy lies, and a flux 10^(0.4 x colour) of hundreds of magnitudes
#: overflows to inf in the renderer.
ColourRange = Annotated[Range, range_within(-5, 5)]
#: An r magnitude (AB) a galaxy population is drawn in.
Magnitude = Annotated[float, Field(gt=15, lt=30)]
#: d log10 N / dm of galaxy number counts: 10^(slope x m) overflows a float for slopes far above 1.
CountsSlope = Annotated[float, Field(gt=0, le=1)]


# --- survey -------------------------------------------------------------------------------------


Share = Annotated[float, Field(ge=0, le=1)]
#: A name: lower case, digits and _ . - (a generation, a real set).
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


class ConfuserRates(Section):
    """Share of the mock sky's hosts that carry each confuser class (data_contracts.confusers), drawn
    per host (darkhalo.surveys.confusers). The classes are those lens searches report as their false
    positives (Jacobs et al. 2019, ApJS 243, 17; Huang et al. 2020, ApJ 894, 78; Canameras et al. 2020,
    A&A 644, A163; Rojas et al. 2022, A&A 668, A73); the defaults are shares of LRG-like hosts from
    galaxy-population statistics, each cited at its field."""

    spiral: Share = Field(
        0.04,
        description="spirals with blue arms around red bulges: red, disc-dominated spirals are a minority "
        "of the red sequence, commonest at high mass (Masters et al. 2010, MNRAS 405, 783)",
    )
    ring: Share = Field(
        0.02,
        description="rings around red bulges: outer rings in ~16 % of disc galaxies (Comeron et al. 2014, "
        "A&A 562, A121), polar rings in ~0.5 % of S0s (Whitmore et al. 1990, AJ 100, 1489); few hosts are S0/Sa",
    )
    edge_on_disk: Share = Field(
        0.03,
        description="edge-on dusty discs reddened into LRG colours: inclination dims and reddens discs by "
        "tenths of a magnitude to over one (Maller et al. 2009, ApJ 691, 394)",
    )
    merger: Share = Field(
        0.06,
        description="mergers, tidal tails and shells: 12-17 % of galaxies show tidal features at "
        "CFHTLS-Wide / DECaLS depth (Atkinson et al. 2013, ApJ 765, 28; Hood et al. 2018, ApJ 857, 144); "
        'about half fall inside a 17" stamp',
    )
    blue_companions: Share = Field(
        0.08,
        description='blue galaxies 1-4" from the host by chance: ~2e4 galaxies per deg^2 at r < 23 '
        "(Metcalfe et al. 2001, MNRAS 323, 795) put 0.07 in that annulus, plus the LRGs' own satellites",
    )
    star_artifact: Share = Field(
        0.01,
        description="bright-star halos and spikes within 25\" of a host: Tycho-2's 2.5 million stars to "
        "V ~ 11.5 (Hog et al. 2000, A&A 355, L27), ~25-60 per deg^2, and fainter ones nearer",
    )

    @model_validator(mode="after")
    def _at_most_one(self) -> ConfuserRates:
        total = sum(self.rates().values())
        if total > 1:
            raise ValueError(f"the confuser shares sum to {total:g}; a host has at most one class, so at most 1")
        return self

    def rates(self) -> dict[str, float]:
        """Class name -> share of hosts, in data_contracts.confusers.CLASSES order."""
        return {name: getattr(self, name) for name in CONFUSER_CLASSES}


class NoiseCorrelation(Section):
    """Lag-1 correlation of neighbouring sky pixels' noise per band (g, r, z), as in resampled coadds: the mock's unit
    noise goes through a 3x3 kernel of unit sum of squares (darkhalo.surveys.noise), so sigma, invvar and depth stay.
    Defaults: per band and axis, the mean of two medians from darkhalo.surveys.noise.sky_correlation: the six real
    DR10 cutouts (tests/data/real/cutouts) and the 46 DES coadds (data/real/des_lrg_hosts) resampled onto the stamps.
    The diagonal follows as x * y: 0.07-0.09, below the real 0.09-0.14."""

    x: tuple[float, float, float] = Field(
        (0.24, 0.27, 0.25),
        strict=False,
        description="along x (columns), g, r, z; DR10 cutouts 0.24, 0.27, 0.24; DES resampled 0.24, 0.27, 0.27",
    )
    y: tuple[float, float, float] = Field(
        (0.28, 0.31, 0.30),
        strict=False,
        description="along y (rows), g, r, z; DR10 cutouts 0.32, 0.34, 0.34; DES resampled 0.24, 0.28, 0.26",
    )

    @field_validator("x", "y")
    @classmethod
    def _reachable(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        for band, rho in zip(BANDS, v, strict=True):
            try:
                kernel_taps(rho)
            except ValueError as error:
                raise ValueError(f"{band} band: {error}") from None
        return v


class FieldGalaxies(Section):
    """Faint field galaxies on every mock stamp (darkhalo.surveys.field_galaxies): real stamps hold tens of faint
    galaxies per arcmin^2 that the catalog's rows do not. Each host's canvas gets a Poisson number of small round
    Gaussians at uniform positions, r magnitudes from number counts, light added before the PSF."""

    density: float = Field(
        120.0,
        ge=0,
        le=1000,
        description="galaxies per arcmin^2 with r in [r_min, r_max], calibrated: at 120, 500 mock LRG hosts of "
        "specs/embedded.yaml (correlated noise) show 27.8 [13.9, 41.7] neighbours per arcmin^2 "
        "(darkhalo.surveys.host_profiles; median [16 %, 84 %]), the real DR10 cutouts 31.3 [19.5, 55.6] and DES LRG "
        "hosts 27.8 [13.9, 41.7]. The field's counts alone give ~40 (2e4 per deg^2 to r 23, Metcalfe et al. 2001, "
        "MNRAS 323, 795, at the slope below): the rest is the LRGs' own crowded environment; at most 1,000, "
        "the Hubble Ultra Deep Field's ~900 per arcmin^2 to r 30",
    )
    r_min: Magnitude = Field(21.0, description="brightest r (AB mag): brighter galaxies are the catalog's own rows")
    r_max: Magnitude = Field(25.5, description="faintest r (AB mag): below DR10's depth, they add to the sky")
    slope: CountsSlope = Field(
        0.35,
        description="d log N / dm of faint r-band galaxy counts, 0.3-0.4 at r 21-25 (Metcalfe et al. 2001)",
    )
    g_r: ColourRange = Field(
        Range(min=0.2, max=1.0),
        description="g - r (mag) of the star-forming galaxies at z 0.3-1 that dominate the faint counts "
        "(Metcalfe et al. 2001)",
    )
    r_z: ColourRange = Field(Range(min=0.2, max=1.0), description="r - z (mag), as g - r")
    sigma: ArcsecRange = Field(
        Range(min=0.1, max=0.4),
        description="Gaussian sigma (arcsec; half-light radius 1.18 sigma): faint galaxies at z 0.5-2 have half-light "
        'radii of 1-4 kpc, 0.1-0.5" (Shibuya et al. 2015, ApJS 219, 15)',
    )

    @model_validator(mode="after")
    def _ordered(self) -> FieldGalaxies:
        if not self.r_min < self.r_max:
            raise ValueError(f"r_min ({self.r_min}) must be below r_max ({self.r_max}) (AB mag)")
        return self


class SkyLenses(Section):
    """The mock sky's own strong lenses (darkhalo.surveys.sky_lenses), the scan's ground truth: a galaxy picked by
    its key at ``prevalence`` gets an SIE + shear lens of a Sersic source about its centre, rendered into its cutout
    by the injection physics and listed in survey/sky_lenses.parquet. Each parameter is drawn uniform in its range
    (theta_e and src_reff log-uniform), from the lens's own generator."""

    prevalence: Share = Field(
        1e-3,
        description="lenses per catalog galaxy: ~1 detectable galaxy-galaxy lens per 1,000 massive ellipticals at "
        "ground-based depth (Collett 2015, ApJ 811, 20: ~2,400 in DES)",
    )
    theta_e: ArcsecRange = Field(
        Range(min=0.8, max=3.0),
        description='Einstein radius (arcsec) of ground-based discoveries, 0.8-3" (Jacobs et al. 2019, ApJS 243, 17; '
        'Huang et al. 2020, ApJ 894, 78); smaller ones hide in the 1.3" seeing',
    )
    mag_prior: MagPrior = Field(
        default_factory=lambda: MagPrior(r_min=21.5, r_max=24.5),
        description="unlensed source r (AB mag, intrinsic, then MW-dimmed), from faint-galaxy number counts: magnified "
        "~6x (the median), the arcs span r ~19.5-22.5",
    )
    src_reff: ArcsecRange = Field(
        Range(min=0.1, max=0.5),
        description='source half-light radius (arcsec): z 1-3 star-forming galaxies, 1-4 kpc, 0.1-0.5" '
        "(Shibuya et al. 2015, ApJS 219, 15)",
    )
    src_e: ModulusRange = Field(Range(min=0.0, max=0.5), description="source ellipticity |e| = (1 - q) / (1 + q)")
    src_n: SersicRange = Field(
        Range(min=0.5, max=2.0), description="source Sersic index: discs and clumpy star formers"
    )
    g_minus_r: ColourRange = Field(Range(min=0.2, max=0.8), description="source g - r (mag)")
    r_minus_z: ColourRange = Field(Range(min=0.0, max=0.6), description="source r - z (mag)")
    position_max_frac: float = Field(
        0.5, gt=0, le=2, description="source centre area-uniform within this fraction of theta_E of the lens"
    )
    shear: ModulusRange = Field(
        Range(min=0.0, max=0.1),
        description="external shear modulus, angle uniform: lens models need 0-0.1 (Keeton, Kochanek & Seljak "
        "1997, ApJ 482, 604)",
    )
    lens_q: AxisRatioRange = Field(
        Range(min=0.5, max=1.0),
        description="mass axis ratio: the host's light axis ratio, clipped to this range (SLACS mass follows light, "
        "q 0.5-1: Koopmans et al. 2006, ApJ 649, 599)",
    )


class MockSurvey(Section):
    """The embedded, seeded Legacy-Surveys-like sky."""

    kind: Literal["mock"]
    n_objects: int = Field(100_000, gt=0, le=100_000_000, description="catalog rows (all types)")
    ra_range: tuple[float, float] = Field((150.0, 160.0), strict=False, description="deg, [min, max)")
    dec_range: tuple[float, float] = Field((0.0, 5.0), strict=False, description="deg, [min, max)")
    release: int = Field(10000, ge=0, le=32767, description="RELEASE written to every row (DR10 south: 10000)")
    confusers: ConfuserRates | None = Field(
        None, description="confuser populations among the hosts ({} for the cited defaults; absent: smooth hosts only)"
    )
    noise_correlation: NoiseCorrelation | None = Field(
        None, description="correlated sky noise ({} for the measured defaults; absent: white pixel noise)"
    )
    field_galaxies: FieldGalaxies | None = Field(
        None, description="faint field galaxies ({} for the calibrated defaults; absent: the catalog's neighbours only)"
    )
    sky_lenses: SkyLenses | None = Field(
        None, description="the sky's own strong lenses ({} for the cited defaults; absent: a sky without lenses)"
    )

    @field_validator("ra_range")
    @classmethod
    def _ra(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 360:
            raise ValueError("need 0 <= ra_min < ra_max <= 360 (deg)")
        return v

    @field_validator("dec_range")
    @classmethod
    def _dec(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not -90 <= v[0] < v[1] <= 90:
            raise ValueError("need -90 <= dec_min < dec_max <= 90 (deg)")
        return v


def confuser_rates(survey: MockSurvey | LegacySurvey) -> dict[str, float] | None:
    """Class -> share of a survey's hosts with that confuser: a mock sky's (empty for smooth hosts), None for a
    real sky, whose hosts carry no labels."""
    if isinstance(survey, LegacySurvey):
        return None
    return survey.confusers.rates() if survey.confusers else {}


def confuser_classes(survey: MockSurvey | LegacySurvey) -> tuple[str, ...]:
    """The confuser classes a survey's hosts are labelled with: a mock sky's with a share above zero."""
    return tuple(name for name, rate in (confuser_rates(survey) or {}).items() if rate > 0)


class CutoutSource(Section):
    """Where real cutouts come from: a local folder of cutout-service FITS and/or the service."""

    dir: Path | None = Field(None, strict=False, description="folder of cutout-service FITS files")
    url: str | None = Field(None, description="cutout service base URL (fetched with caching)")
    cache_dir: Path = Field(Path("cache/cutouts"), strict=False, description="where fetched cutouts are kept")
    timeout_s: float = Field(30.0, gt=0, le=600)
    retries: int = Field(3, ge=0, le=20)
    max_bytes: int = Field(50_000_000, gt=0, description="largest response body accepted")

    @model_validator(mode="after")
    def _one_source(self) -> CutoutSource:
        if self.dir is None and self.url is None:
            raise ValueError("give a cutout 'dir', a service 'url', or both")
        return self


class LegacySurvey(Section):
    """Real DR8/DR9/DR10 files: sweep/tractor FITS or parquet and cutouts (the injection PSF is the ``psf`` section)."""

    kind: Literal["legacy"]
    catalogs: list[str] = Field(min_length=1, description="sweep/tractor FITS or parquet paths or globs")
    cutouts: CutoutSource | None = None


SurveySpec = Annotated[Union[MockSurvey, LegacySurvey], Field(discriminator="kind")]  # noqa: UP007


# --- selection ----------------------------------------------------------------------------------


class _SelectionBase(Section):
    quarantine_bad_rows: bool = Field(
        False, description="rows failing edge validation go to a quarantine file instead of failing the stage"
    )
    known_lenses: str = Field("bundled", description="'bundled' (lenscat copy) or a CSV path")
    known_lens_radius_arcsec: float = Field(5.0, gt=0, le=60)


class V3ColorRelaxed(_SelectionBase):
    """Gen 1's cuts: TYPE != PSF, positive r, z, W1 flux, z < z_mag_max, r - z and z - W1 colour cuts."""

    variant: Literal["v3_color_relaxed"]
    extinction_corrected: bool = Field(False, description="Gen 1 used raw (not de-reddened) magnitudes")
    z_mag_max: float = Field(20.4, gt=10, lt=30)
    r_minus_z_min: float = Field(0.4, gt=-5, lt=5)
    z_minus_w1_min: float = Field(0.8, gt=-5, lt=5)


#: desitarget's main-survey LRG numbers that differ between south (DECaLS) and north (BASS/MzLS).
DESI_LRG_DEFAULTS: dict[str, dict[str, float]] = {
    "desi_lrg_south": {
        "zfiber_mag_max": 21.6,
        "g_minus_w1_min": 2.9,
        "sliding_w1_pivot": 17.14,
        "sliding_slope": 1.8,
        "lowz_w1_pivot": 16.33,
        "r_minus_w1_highz": 3.3,
    },
    "desi_lrg_north": {
        "zfiber_mag_max": 21.61,
        "g_minus_w1_min": 2.97,
        "sliding_w1_pivot": 17.13,
        "sliding_slope": 1.83,
        "lowz_w1_pivot": 16.31,
        "r_minus_w1_highz": 3.4,
    },
}


class DesiLrg(_SelectionBase):
    """The DESI main-survey LRG target selection (desitarget), south or north photometry.

    Colour cuts on extinction-corrected AB magnitudes; the per-photometry numbers default from
    ``DESI_LRG_DEFAULTS`` by variant, the rest are shared.
    """

    variant: Literal["desi_lrg_south", "desi_lrg_north"]
    nonstellar_slope: float = Field(0.8, gt=-5, lt=5, description="z - W1 > slope (r - z) + offset")
    nonstellar_offset: float = Field(-0.6, gt=-5, lt=5)
    zfiber_mag_max: float = Field(gt=15, lt=25, description="z fibre magnitude faint limit")
    g_minus_w1_min: float = Field(gt=-5, lt=10, description="low-z cut: g - W1 > this ...")
    r_minus_w1_lowz: float = Field(1.8, gt=-5, lt=10, description="... or r - W1 > this")
    sliding_w1_pivot: float = Field(gt=10, lt=25, description="r - W1 > (W1 - pivot) x slope ...")
    sliding_slope: float = Field(gt=0, lt=5)
    lowz_w1_pivot: float = Field(gt=10, lt=25, description="... and r - W1 > (W1 - pivot) x lowz_slope ...")
    lowz_slope: float = Field(1.0, gt=0, lt=5)
    r_minus_w1_highz: float = Field(gt=0, lt=10, description="... or r - W1 > this (high-z extension)")
    r_snr_min: float = Field(0.0, ge=0, description="FLUX_R sqrt(FLUX_IVAR_R) > this")
    z_snr_min: float = Field(0.0, ge=0)
    w1_snr_min: float = Field(4.0, ge=0, description="SV-era default; desitarget's main survey uses 0 (ivar > 0)")
    maskbits_veto: tuple[Annotated[int, Field(ge=0, le=31)], ...] = Field(
        (1, 12, 13), strict=False, description="MASKBITS bits that must be unset (bright star, galaxy, cluster)"
    )
    gaia_g_min: float = Field(18.0, gt=0, lt=30, description="Gaia G == 0 (no match) or > this")
    zfibertot_mag_min: float = Field(17.5, gt=0, lt=30, description="z fibre-total magnitude bright limit")

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("variant") in DESI_LRG_DEFAULTS:
            return {**DESI_LRG_DEFAULTS[data["variant"]], **data}
        return data


SelectionSpec = Annotated[Union[V3ColorRelaxed, DesiLrg], Field(discriminator="variant")]  # noqa: UP007


# --- grid, controls, splits, stamps -------------------------------------------------------------

PositiveArcsec = Annotated[float, Field(gt=0, le=10)]


def _unique(values: list[float], name: str) -> list[float]:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} repeats a value: {values}")
    return values


class GridSpec(Section):
    """The injection grid: every combination of its axes is one config."""

    theta_e_arcsec: list[PositiveArcsec] = Field(min_length=1, description="Einstein radius, arcsec")
    src_reff_arcsec: list[PositiveArcsec] = Field(min_length=1, description="source half-light radius, arcsec")
    src_e: list[Annotated[float, Field(ge=0, lt=1)]] = Field(min_length=1, description="source |e| = (1-q)/(1+q)")
    shear: list[Annotated[float, Field(ge=0, le=0.3)]] = Field(min_length=1, description="external shear modulus")
    src_dmag: list[Annotated[float, Field(ge=-5, le=10)]] | None = Field(
        None, description="Gen 1 only: unlensed source r = host r (raw) + src_dmag"
    )
    configs_per_host: int | None = Field(
        None, gt=0, description="configs drawn per positive host; None = every config for every host"
    )

    @field_validator("theta_e_arcsec", "src_reff_arcsec", "src_e", "shear", "src_dmag")
    @classmethod
    def _no_repeats(cls, v: list[float] | None, info: Any) -> list[float] | None:
        return None if v is None else _unique(v, info.field_name)

    @property
    def axes(self) -> dict[str, list[float]]:
        """The grid's axes by name, in a fixed order (src_dmag only when present)."""
        axes = {
            "theta_e_arcsec": self.theta_e_arcsec,
            "src_reff_arcsec": self.src_reff_arcsec,
            "src_e": self.src_e,
            "shear": self.shear,
        }
        if self.src_dmag is not None:
            axes["src_dmag"] = self.src_dmag
        return axes

    @property
    def n_configs(self) -> int:
        """Number of grid configs (product of the axis lengths)."""
        n = 1
        for values in self.axes.values():
            n *= len(values)
        return n


class ControlsSpec(Section):
    """Negatives: ``paired`` (Gen 1: the same galaxy, uninjected) or ``unpaired`` (disjoint hosts)."""

    mode: Literal["paired", "unpaired"]
    fraction: float = Field(gt=0, lt=1, description="share of stamps that are controls")
    test_fraction: float | None = Field(
        None, gt=0, lt=1, description="unpaired only: share of test-split stamps that are controls (None: fraction)"
    )
    hard_negatives_in_training: bool = Field(
        True,
        description="False: hosts with a confuser are kept out of train and val (the experiment without hard "
        "negatives; L11 then fails); the test split keeps them",
    )

    @model_validator(mode="after")
    def _paired_fraction(self) -> ControlsSpec:
        if self.mode == "paired" and self.fraction > 0.5:
            raise ValueError(f"paired controls are at most one per positive: fraction <= 0.5, got {self.fraction}")
        if self.mode == "paired" and self.test_fraction is not None:
            raise ValueError("test_fraction needs unpaired controls (a paired control is its positive's twin)")
        return self

    def fraction_in(self, split: str) -> float:
        """The share of ``split``'s stamps that are controls."""
        return self.test_fraction if split == "test" and self.test_fraction is not None else self.fraction


class SplitFractions(Section):
    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1) > 1e-9:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class SplitsSpec(Section):
    """Sky-disjoint splits: each HEALPix pixel of the hosts is hashed to one split (L5)."""

    nside: int = Field(32, ge=1, le=8192, description="HEALPix nside (a power of 2)")
    fractions: SplitFractions = SplitFractions()

    @field_validator("nside")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"nside must be a power of 2, got {v}")
        return v


#: Fewest parent hosts a split may expect at most: fewer leave it empty or with one label, and a later stage fails.
MIN_SPLIT_HOSTS = 10
#: Sky positions per axis on which a mock sky's share of each split is measured (uniform in RA and sin Dec).
SHARE_GRID = 256


@functools.lru_cache(maxsize=64)
def split_shares(
    ra_range: tuple[float, float],
    dec_range: tuple[float, float],
    nside: int,
    seed: int,
    fractions: tuple[tuple[str, float], ...],
) -> dict[str, tuple[float, int]]:
    """Split -> (share of the RA/Dec box's area, HEALPix pixels) that the box's pixels hashed to splits give it,
    measured on a ``SHARE_GRID`` x ``SHARE_GRID`` grid of positions equally spaced in RA and sin Dec (deg)."""
    from darkhalo.sky import SPLITS, healpix_of, split_of_pixels  # astropy: only when a mock sky is validated

    cells = (np.arange(SHARE_GRID) + 0.5) / SHARE_GRID
    ra = ra_range[0] + cells * (ra_range[1] - ra_range[0])
    sin_dec = np.sin(np.radians(dec_range[0])) + cells * np.diff(np.sin(np.radians(dec_range)))
    ra_grid, dec_grid = np.meshgrid(ra, np.degrees(np.arcsin(sin_dec)))
    pixels = healpix_of(ra_grid.ravel(), dec_grid.ravel(), nside)
    split = split_of_pixels(pixels, seed, dict(fractions))
    return {name: (float(np.mean(split == name)), len(np.unique(pixels[split == name]))) for name in SPLITS}


class StampsSpec(Section):
    """Stamp geometry: (band, y, x) float32 nanomaggies centred on the host, bands g, r, z."""

    size: int = Field(64, ge=16, le=256, description="pixels per side (even)")
    pixel_scale: float = Field(PIXEL_SCALE, gt=0, le=2, description="arcsec per pixel")

    @field_validator("size")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"size must be even, got {v}")
        return v


# --- PSF, source, injection ---------------------------------------------------------------------


class PsfSpec(Section):
    """The injection PSF, per host and band (FWHM from the host's PSFSIZE_<band>)."""

    model: Literal["gaussian", "moffat", "survey", "pixelized"]
    moffat_beta: float = Field(
        2.8, gt=1, le=20, description="Moffat beta of the 'moffat' model and of the 'survey' core"
    )
    kernel_size_pix: int = Field(63, ge=9, le=255, description="kernel side in stamp pixels (odd)")
    psfex_dir: Path | None = Field(None, strict=False, description="folder of PSFEx files for 'pixelized'")

    @model_validator(mode="after")
    def _pixelized_needs_files(self) -> PsfSpec:
        if self.model == "pixelized" and self.psfex_dir is None:
            raise ValueError("model: pixelized needs psfex_dir (a folder of PSFEx files)")
        return self

    @field_validator("kernel_size_pix")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel_size_pix must be odd, got {v}")
        return v


class MagPrior(Section):
    """Unlensed source r magnitude: uniform, or number counts dN/dm ∝ 10^(slope m), in [r_min, r_max]."""

    kind: Literal["uniform", "number_counts"] = "number_counts"
    r_min: Magnitude = 22.0
    r_max: Magnitude = 25.5
    slope: CountsSlope = 0.3

    @model_validator(mode="after")
    def _ordered(self) -> MagPrior:
        if self.r_max <= self.r_min:
            raise ValueError(f"r_max ({self.r_max}) must exceed r_min ({self.r_min})")
        return self


class SourceSpec(Section):
    """The background-source population and the lens nuisance parameters."""

    brightness: Literal["host_relative", "prior"]
    mag_prior: MagPrior | None = None
    sersic_n: SersicRange = Range(min=0.5, max=2.0)
    g_minus_r: ColourRange = Range(min=0.2, max=0.8)
    r_minus_z: ColourRange = Range(min=0.0, max=0.6)
    position_max_frac: float = Field(
        0.5, gt=0, le=2, description="source centre area-uniform within this fraction of theta_E"
    )
    lens_q_from: Literal["host_shape", "prior"] = "host_shape"
    lens_q: AxisRatioRange = Range(min=0.5, max=1.0)

    @model_validator(mode="after")
    def _prior_when_needed(self) -> SourceSpec:
        if self.brightness == "prior" and self.mag_prior is None:
            raise ValueError("brightness: prior needs a mag_prior")
        if self.brightness == "host_relative" and self.mag_prior is not None:
            raise ValueError("brightness: host_relative takes src_dmag from the grid, not a mag_prior")
        return self


class InjectionSpec(Section):
    """How arcs are rendered and stamps written."""

    supersample: int = Field(
        4,
        ge=1,
        le=16,
        description="cells per pixel side a traced pixel starts with; cells refine where the light varies",
    )
    poisson_noise: bool = Field(False, description="add the arc's own photon noise")
    batch_size: int = Field(256, ge=1, le=65536, description="stamps rendered per kernel call")
    shard_rows: int = Field(4096, ge=1, le=1_000_000, description="stamps per parquet shard")


# --- train, evaluate, engine --------------------------------------------------------------------


class TrainSpec(Section):
    """The ResNet18 trainer (torchvision), GPU-first, honest on CPU."""

    arch: Literal["resnet18", "resnet18_64"]
    optimizer: Literal["adamw"] = "adamw"
    lr: float = Field(gt=0, lt=1)
    weight_decay: float = Field(ge=0, lt=1)
    batch_size: int = Field(ge=1, le=65536)
    epochs: int = Field(ge=1, le=1000)
    loss: Literal["bce", "focal"] = "bce"
    focal_gamma: float = Field(2.0, ge=0, le=10)
    precision: Literal["bf16", "fp32"] = Field("bf16", description="bf16 autocast on CUDA; CPU always fp32")
    augment: list[Literal["flip", "rot90"]] = ["flip", "rot90"]
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(1.0, gt=0)
    channels_last: bool = True
    compile: bool = False
    select_at_fpr: float = Field(
        1e-2, gt=0, lt=1, description="best epoch = highest val completeness at this FPR (if resolvable)"
    )


class RealVisibility(Section):
    """The visible subset of a real set: the rows of ``index`` (a CSV, one row per image in the images' order)
    whose ``column`` is at least ``min`` (a blank cell is not visible)."""

    index: str = Field(min_length=1, description="CSV path (relative to the working directory), a row per image")
    column: str = Field(min_length=1, description="the index column judged, e.g. image_sep_arcsec")
    min: float = Field(description="an image is visible when its column is >= this, e.g. 2 (arcsec)")


class RealSet(Section):
    """Real cutouts every evaluation scores at the simulated operating thresholds (darkhalo.metrics.real_recall)."""

    name: Slug = Field(description="the set's name in metrics.json, the report and compare.md")
    input: str = Field(
        min_length=1,
        description="a darkhalo score input description (YAML: npz or FITS cubes, pixel scale, bands, flux unit), "
        "its path relative to the working directory",
    )
    label: Literal["lens", "non_lens"] = Field(
        description="lens: confirmed lenses, their flag rate is a recall; non_lens: real negatives, a flag rate"
    )
    visible: RealVisibility | None = Field(None, description="the subset visible from the ground, reported beside all")


class EvaluateSpec(Section):
    """Operating points, intervals, inspection budget, shortcut probes and the real sets scored beside them."""

    min_expected_false_positives: float = Field(
        10.0,
        gt=0,
        description="a target is resolved only if distinct control hosts x FPR (or positives x (1 - c)) reaches this",
    )
    bootstrap_samples: int = Field(
        1000, ge=0, le=100_000, description="resamples per bootstrap interval (>= 1000 for its 2.5 % quantile)"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1)
    survey_hosts: int = Field(1_000_000, gt=0, description="hosts in the survey, for the inspection budget")
    lens_prevalence: float = Field(1e-3, gt=0, lt=1, description="lenses per host, for the inspection budget")
    probes: bool = Field(True, description="run the shortcut probes (L9)")
    batch_size: int = Field(1024, ge=1, le=65536)
    real_sets: list[RealSet] = Field(
        default_factory=list,
        description="real lens and non-lens sets scored at every resolved real operating point (L12 wants a lens set)",
    )

    @field_validator("real_sets")
    @classmethod
    def _unique_names(cls, v: list[RealSet]) -> list[RealSet]:
        names = [s.name for s in v]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"real set name(s) {', '.join(repeated)} given more than once")
        return v


class ScanSpec(Section):
    """The search: every parent host scored, ranked, graded; its result judged at these inspection budgets."""

    hosts_per_task: int = Field(2048, ge=1, le=1_000_000, description="parent hosts cut out and scored per Spark task")
    budgets_per_million: list[Annotated[int, Field(gt=0, le=1_000_000)]] = Field(
        [100, 1000, 10_000], min_length=1, description="candidates inspected per million hosts (the top N)"
    )
    grade_top: int = Field(200, ge=1, le=20_000, description="top candidates on the grading page")


class EngineSpec(Section):
    """Spark and torch placement. DARKHALO_SPARK_MASTER in the environment overrides ``spark_master``."""

    spark_master: str = Field("local[*]", min_length=1)
    spark_conf: dict[str, str] = Field(default_factory=dict)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    memory_mb: int = Field(
        1024, ge=16, le=1_048_576, description="MiB of stamps the evaluate stage holds at once (it streams the rest)"
    )
    train_processes: int = Field(
        1,
        ge=1,
        le=1024,
        description="trainer processes under torchrun with DistributedDataParallel (gloo on CPU, NCCL on CUDA); "
        "1 trains in the run's own process",
    )
    score_on: Literal["driver", "executors"] = Field(
        "driver",
        description="where the evaluate stage scores its test split: the driver's device, or Spark tasks that "
        "load the model once per executor",
    )

    @field_validator("spark_master")
    @classmethod
    def _a_master_url(cls, value: str) -> str:
        from darkhalo.spark import master_url_problem

        problem = master_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


LessonId = Literal[tuple(LESSONS)]  # type: ignore[valid-type]


class ExpectSpec(Section):
    """What the audit of this spec must conclude; CI holds every spec in specs/ to it."""

    audit_failures: list[LessonId] = Field(default_factory=list)


class GenerationSpec(Section):
    """A whole generation: the one input of ``darkhalo run`` and ``darkhalo audit``."""

    generation: Slug = Field(description="name; the run lives in runs/<generation>/")
    description: str = ""
    seed: int = Field(ge=0, lt=2**63)
    survey: SurveySpec
    selection: SelectionSpec
    grid: GridSpec
    controls: ControlsSpec
    splits: SplitsSpec = SplitsSpec()
    stamps: StampsSpec = StampsSpec()
    psf: PsfSpec
    source: SourceSpec
    injection: InjectionSpec = InjectionSpec()
    train: TrainSpec
    evaluate: EvaluateSpec = EvaluateSpec()
    scan: ScanSpec = ScanSpec()
    invariants: InvariantThresholds = InvariantThresholds()
    engine: EngineSpec = EngineSpec()
    expect: ExpectSpec = ExpectSpec()

    @model_validator(mode="after")
    def _brightness_matches_grid(self) -> GenerationSpec:
        if self.source.brightness == "host_relative" and self.grid.src_dmag is None:
            raise ValueError("source.brightness: host_relative needs grid.src_dmag")
        if self.source.brightness == "prior" and self.grid.src_dmag is not None:
            raise ValueError("grid.src_dmag is only meaningful with source.brightness: host_relative")
        return self

    @model_validator(mode="after")
    def _batch_splits_over_processes(self) -> GenerationSpec:
        if self.train.batch_size % self.engine.train_processes:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of engine.train_processes "
                f"({self.engine.train_processes}): each process steps on an equal share of every batch"
            )
        return self

    @model_validator(mode="after")
    def _purity_at_the_sky_prevalence(self) -> GenerationSpec:
        lenses = getattr(self.survey, "sky_lenses", None)
        if lenses is not None and lenses.prevalence != self.evaluate.lens_prevalence:
            raise ValueError(
                f"evaluate.lens_prevalence ({self.evaluate.lens_prevalence:g}) must equal survey.sky_lenses.prevalence "
                f"({lenses.prevalence:g}): the scan's expected purity is then the purity its sky shows"
            )
        return self

    @model_validator(mode="after")
    def _every_split_gets_hosts(self) -> GenerationSpec:
        """A mock sky's splits each expect at least ``MIN_SPLIT_HOSTS`` parent hosts: n_objects x the mock's LRG share
        (the cuts keep mostly LRGs, about 0.1 of all rows: an upper bound) x the split's share of the sky."""
        if not isinstance(self.survey, MockSurvey):
            return self
        from darkhalo.surveys.mock import LRG_FRACTION  # the mock reads its spec section from this module

        sky, splits = self.survey, self.splits
        fractions = tuple(splits.fractions.model_dump().items())
        shares = split_shares(sky.ra_range, sky.dec_range, splits.nside, self.seed, fractions)
        total = sum(pixels for _, pixels in shares.values())
        few = [
            f"the {name} split can expect at most {sky.n_objects * LRG_FRACTION * share:.1f} parent hosts "
            f"({pixels} of the sky's {total} HEALPix pixels at nside {splits.nside}, {share:.3g} of its area, "
            f"x {sky.n_objects:,} objects x {LRG_FRACTION:g} LRGs)"
            for name, (share, pixels) in shares.items()
            if sky.n_objects * LRG_FRACTION * share < MIN_SPLIT_HOSTS
        ]
        if few:
            raise ValueError(
                f"splits: {'; '.join(few)}; each split needs {MIN_SPLIT_HOSTS}: raise survey.n_objects, widen "
                "survey.ra_range / dec_range or raise splits.nside"
            )
        return self

    def digest(self, *sections: str) -> str:
        """sha256 of the canonical JSON of the named sections (all, if none): the lineage key. A section
        is named whole (``psf``) or down to a field (``evaluate.min_expected_false_positives``)."""
        data = self.model_dump(mode="json")
        if sections:
            data = {name: functools.reduce(operator.getitem, name.split("."), data) for name in sections}
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The spec as YAML (every default written out), as frozen into a run directory."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --- loading ------------------------------------------------------------------------------------


def load_spec(path: str | Path) -> GenerationSpec:
    """Read and validate a spec file (safe YAML 1.2, no repeated keys: darkhalo.strict_yaml); raises SpecError."""
    path = Path(path)
    try:
        data = strict_yaml.read(path)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return spec_from_dict(data, source=str(path))


def spec_from_dict(data: Any, source: str = "<spec>") -> GenerationSpec:
    """Validate a spec given as plain data; every problem is named in one SpecError."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a mapping of sections, got {type(data).__name__}")
    try:
        return GenerationSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        raise SpecError(f"{source}: invalid spec:\n" + "\n".join(f"  - {p}" for p in problems)) from None


def _describe(err: Any) -> str:
    """One validation error as a sentence naming its path (and, for a typo, the allowed keys)."""
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        where = _dotted(parent) or "the top level"
        allowed = sorted(_allowed_keys(parent))
        text = f"unknown key '{key}' at {where}; allowed keys: {', '.join(allowed)}"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        return text + (f"; did you mean '{close[0]}'?" if close else "")
    path = _dotted(loc) or "spec"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "union_tag_invalid":
        ctx = err["ctx"]
        allowed = [t.strip(" '") for t in str(ctx["expected_tags"]).split(",")]
        text = f"{path}.{ctx['discriminator'].strip(chr(39))} = '{ctx['tag']}' is not one of: {', '.join(allowed)}"
        close = difflib.get_close_matches(str(ctx["tag"]), allowed, n=1, cutoff=0.6)
        return text + (f"; did you mean '{close[0]}'?" if close else "")
    message = err["msg"].removeprefix("Value error, ")
    if isinstance(err.get("input"), dict | list) or "input" not in err:
        return f"{path}: {message}"
    return f"{path} = {err['input']!r}: {message}"


def _walk(loc: tuple[Any, ...]) -> tuple[list[str], Any]:
    """Follow ``loc`` through the spec models: (displayable path parts, the model class reached).

    Discriminated unions put their tag in ``loc``; it is skipped in the path and used to pick the
    member model.
    """
    parts: list[str] = []
    current: Any = GenerationSpec
    items = list(loc)
    while items:
        part = items.pop(0)
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
            current = _element_type(current)
            continue
        part = str(part)
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            field = current.model_fields[part]
            parts.append(part)
            current = field.annotation
            if field.discriminator and items:
                tag = str(items.pop(0))
                current = _union_member(current, field.discriminator, tag)
            continue
        parts.append(part)
        current = None
    return parts, current


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(_walk(loc)[0])


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _model_in(_walk(loc)[1])
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        model = _model_in(arg)
        if model:
            return model
    return None


def _element_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in args:
            if typing.get_origin(arg) in (list, tuple):
                return _element_type(arg)
        return None
    return args[0] if args else None


def _union_member(annotation: Any, discriminator: str, tag: str) -> Any:
    for member in typing.get_args(annotation):
        field = getattr(member, "model_fields", {}).get(discriminator)
        if field is not None and tag in typing.get_args(field.annotation):
            return member
    return annotation
