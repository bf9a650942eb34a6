"""The mock survey beside the real files, per band.

Background and PSF: background sigma of the cutouts and encircled energy of the PSF, as the spread (min,
median, max) of the real files and the mock's median. Real: the DR10 grz .npz cutouts (101 x 101; robust
sigma = 1.4826 MAD over each band) and the DECam PSFEx models (their constant term, Lanczos-resampled to
0.262"/pixel; band from ``_ooi_<band>_``). Mock: 101 x 101 mock cutouts of the first ``n_hosts`` galaxies and
the survey PSF (Moffat core + aureole) at those hosts' PSFSIZE and beta. EE radii in arcsec; real and mock
kernels alike are 63 x 63 (16.5", the PSFEx stamp), each EE the share of the kernel's sum in the pixels
centred within the radius.

The gap: real host stamps (the DR10 cutouts and any real input sets, resampled onto MEASURE_SIZE stamps at
0.262") beside mock LRG-like hosts (the selection's cuts on the mock catalog), each as its median and 16-84 %
spread: the sky noise's correlation (darkhalo.surveys.noise), radial profiles, colour gradients and
neighbour density (darkhalo.surveys.host_profiles); and, given a model, the scores of both (``score_table``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from darkhalo.lensing.pixelized import psfex_by_band
from darkhalo.lensing.psf import encircled_energy, psf_kernels, psfsize, wing_deficits
from darkhalo.metrics.evaluation import model_scorer
from darkhalo.metrics.operating_points import completeness_at_fpr
from darkhalo.real_inputs import RealImages, RealInputError
from darkhalo.spec import MockSurvey
from darkhalo.surveys.cutout_fits import sky_sigma
from darkhalo.surveys.host_profiles import INNER_RADIUS, NEIGHBOUR_RADIUS, NORM_RADIUS, PROFILE_EDGES, measure_hosts
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import KERNEL_SIZE, MockCutoutProvider
from darkhalo.surveys.noise import sky_correlation
from darkhalo.surveys.npz_cutouts import read_npz
from darkhalo.training.device import resolve_device
from data_contracts.parent_sample import cuts_mask
from data_contracts.real_scores import MAX_FILLED_FRACTION
from data_contracts.survey import BANDS, PIXEL_SCALE

if TYPE_CHECKING:
    from darkhalo.scoring import Target

EE_RADII = (1.0, 2.0, 3.0, 5.0)  # arcsec
REAL_CUTOUT_SIZE = 101


def real_sigmas(npz_folder: Path) -> np.ndarray:
    """Background sigma (N, 3) nanomaggies of each real .npz cutout, bands g, r, z."""
    return np.array([sky_sigma(read_npz(p)[0]) for p in sorted(Path(npz_folder).glob("*.npz"))])


def real_ee(psfex_folder: Path) -> dict[str, np.ndarray]:
    """EE (n_models, len(EE_RADII)) of each band's real PSFEx models at the polynomial's origin."""
    ee = {}
    for band, models in psfex_by_band(Path(psfex_folder)).items():
        kernels = [m.kernel(*m.zero, KERNEL_SIZE, PIXEL_SCALE, dtype=torch.float64) for m in models]
        ee[band] = np.array([[float(encircled_energy(k, PIXEL_SCALE, r)) for r in EE_RADII] for k in kernels])
    return ee


def psfex_wing_reference(psfex_folder: Path, kernel_size: int = KERNEL_SIZE) -> pd.DataFrame:
    """L3's reference (data_contracts' decam_psfex_wings.csv): per real PSFEx model at its polynomial
    origin, on a ``kernel_size`` kernel at the stamp's pixel scale, its PSFSIZE (arcsec, ``psfsize``)
    and its deficits 1 - EE at 2 x that PSFSIZE and at 3"."""
    rows = []
    for band, models in psfex_by_band(Path(psfex_folder)).items():
        for m in models:
            kernel = m.kernel(*m.zero, kernel_size, PIXEL_SCALE, dtype=torch.float64)
            fwhm = float(psfsize(kernel, PIXEL_SCALE))
            two_fwhm, three = wing_deficits(kernel, PIXEL_SCALE, fwhm).tolist()
            rows.append((band, m.path.name, round(fwhm, 6), round(two_fwhm, 8), round(three, 8)))
    return pd.DataFrame(rows, columns=["band", "model", "fwhm_arcsec", "real_wing_2fwhm", "real_wing_3as"])


def mock_hosts(survey: MockSurvey, seed: int, n_hosts: int) -> pd.DataFrame:
    """The first ``n_hosts`` galaxies (not stars) of the mock catalog's first block."""
    catalog = mock_catalog(survey, seed, 0)
    return catalog[catalog["TYPE"] != "PSF"].head(n_hosts).reset_index(drop=True)


def mock_sigmas_and_ee(survey: MockSurvey, seed: int, hosts: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Background sigma (N, 3) of mock 101 x 101 cutouts of ``hosts``, and per band the survey PSF's EE (N, radii)."""
    stamps = MockCutoutProvider(survey, seed).cutouts(hosts, REAL_CUTOUT_SIZE)
    sigmas = np.array([sky_sigma(image) for image in stamps.images])
    ee = {}
    for j, band in enumerate(BANDS):
        fwhm = torch.tensor(stamps.psf_fwhm[:, j], dtype=torch.float64)
        beta = torch.tensor(stamps.psf_beta[:, j], dtype=torch.float64)
        kernels = psf_kernels("survey", fwhm, KERNEL_SIZE, PIXEL_SCALE, beta, band)
        ee[band] = np.stack([encircled_energy(kernels, PIXEL_SCALE, r).numpy() for r in EE_RADII], axis=1)
    return sigmas, ee


def comparison(real_dir: Path, survey: MockSurvey, seed: int, hosts: pd.DataFrame) -> pd.DataFrame:
    """One row per (quantity, band): real min, median, max over the files, the mock's median over ``hosts``,
    and whether it lies inside the real spread (each band's PSF against that band's PSFEx models)."""
    sigma_real = real_sigmas(real_dir / "cutouts")
    ee_real = real_ee(real_dir / "psf" / "psfex")
    sigma_mock, ee_mock = mock_sigmas_and_ee(survey, seed, hosts)
    rows = [("background sigma (nanomaggies)", b, sigma_real[:, j], sigma_mock[:, j]) for j, b in enumerate(BANDS)]
    for band in BANDS:
        rows += [
            (f'PSF EE within {r:g}"', band, ee_real[band][:, k], ee_mock[band][:, k]) for k, r in enumerate(EE_RADII)
        ]
    table = pd.DataFrame(
        [
            {
                "quantity": name,
                "band": band,
                "real_n": len(real),
                "real_min": float(real.min()),
                "real_median": float(np.median(real)),
                "real_max": float(real.max()),
                "mock_median": float(np.median(mock)),
            }
            for name, band, real, mock in rows
        ]
    )
    table["inside"] = (table["real_min"] <= table["mock_median"]) & (table["mock_median"] <= table["real_max"])
    return table


def markdown(table: pd.DataFrame) -> str:
    """The comparison as a Markdown table (4 significant digits)."""
    lines = ["| quantity | band | real files | real min | real median | real max | mock median | inside |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in table.itertuples(index=False):
        numbers = " | ".join(f"{v:.4g}" for v in (row.real_min, row.real_median, row.real_max, row.mock_median))
        lines.append(f"| {row.quantity} | {row.band} | {row.real_n} | {numbers} | {'yes' if row.inside else 'no'} |")
    return "\n".join(lines) + "\n"


# --- what the sim-to-real gap is made of: real host stamps beside mock LRG-like hosts ----------------------


#: Side (pixels at PIXEL_SCALE) of the stamps the gap is measured on: 23.8", the DES LRG cutouts' field.
MEASURE_SIZE = 91
#: The mock hosts' FPR whose threshold the real hosts' flag rate is read at.
SCORE_FPR = 0.01
MOCK_SET = "mock"
DR10_SET = "dr10_cutouts"
#: The gap table's measures and their quantities' labels, with units.
MEASURES = {
    "correlation": "sky correlation, lag {lag}",
    "profile": f'profile (arcsec^-2 of r flux within {NORM_RADIUS:g}")',
    "gradient": f'colour gradient {{colour}} (mag, within {INNER_RADIUS:g}" minus {INNER_RADIUS:g}-{NORM_RADIUS:g}")',
    "neighbours": f'neighbours beyond {NEIGHBOUR_RADIUS:g}" (per arcmin^2)',
}


def dr10_cutouts(folder: Path) -> RealImages:
    """The real DR10 .npz cutouts of ``folder`` (names their file stems) as one set of real images."""
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise RealInputError(f"{folder}: no .npz cutouts")
    images = np.stack([read_npz(p)[0] for p in paths]).astype(np.float64)
    return RealImages(Path(folder), images, [p.stem for p in paths], PIXEL_SCALE, MAX_FILLED_FRACTION)


def real_stamps(real: RealImages, pixel_scale: float, size: int) -> np.ndarray:
    """``real``'s images resampled onto ``size`` x ``size`` stamps at ``pixel_scale`` (darkhalo.resampling),
    without those its refusal rule refuses."""
    done, reasons = real.resampled(pixel_scale, size)
    return done.stamps[reasons == ""]


def mock_lrg_hosts(survey: MockSurvey, seed: int, n_hosts: int, selection: Mapping[str, Any]) -> pd.DataFrame:
    """The first ``n_hosts`` rows of the mock catalog's first block inside ``selection``'s cuts (a spec
    selection section as plain data, data_contracts.parent_sample.cuts_mask): LRG-like mock hosts."""
    catalog = mock_catalog(survey, seed, 0)
    return catalog[cuts_mask(catalog, selection)].head(n_hosts).reset_index(drop=True)


def _spread(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"n": 0, "median": math.nan, "p16": math.nan, "p84": math.nan}
    p16, median, p84 = np.percentile(finite, [16, 50, 84])
    return {"n": len(finite), "median": float(median), "p16": float(p16), "p84": float(p84)}


def gap_table(sets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per (quantity, band, set) of the stamp sets {name: (N, 3, S, S) at PIXEL_SCALE}: its measure
    (a key of MEASURES), n, median, 16th and 84th percentile over the set's stamps, and ``radius``, a profile
    annulus' midpoint (arcsec; NaN for the other measures)."""
    rows = []
    for name, stamps in sets.items():
        correlation, measured = sky_correlation(stamps), measure_hosts(stamps, PIXEL_SCALE)
        values = [
            ("correlation", MEASURES["correlation"].format(lag=lag), band, math.nan, corr[:, j])
            for lag, corr in correlation.items()
            for j, band in enumerate(BANDS)
        ]
        for j, band in enumerate(BANDS):
            for k, (r0, r1) in enumerate(itertools.pairwise(PROFILE_EDGES)):
                label = f'{MEASURES["profile"]} {r0:g}-{r1:g}"'
                values.append(("profile", label, band, (r0 + r1) / 2, measured.profiles[:, j, k]))
        for colour, gradient in measured.gradients.items():
            values.append(("gradient", MEASURES["gradient"].format(colour=colour), colour, math.nan, gradient))
        values.append(("neighbours", MEASURES["neighbours"], "r", math.nan, measured.neighbours))
        rows += [
            {"measure": m, "quantity": q, "band": b, "radius": radius, "set": name, **_spread(v)}
            for m, q, b, radius, v in values
        ]
    return pd.DataFrame(rows)


def score_sets(target: Target, real_sets: Mapping[str, RealImages], mock_stamps: np.ndarray) -> dict[str, np.ndarray]:
    """The model's scores (logits) of the mock hosts' stamps (MOCK_SET) and of each real set resampled onto
    the model's stamps, through ``model_scorer`` as ``darkhalo score`` does."""
    score = model_scorer(target.model, resolve_device(target.device), target.batch_size)
    real = {name: real_stamps(images, target.pixel_scale, target.size) for name, images in real_sets.items()}
    return {MOCK_SET: score(mock_stamps)} | {name: score(stamps) for name, stamps in real.items()}


def score_table(scores: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Each real set's scores against the mock hosts' (MOCK_SET): medians, the two-sample KS test, and the share of
    each flagged at the threshold where the mock hosts' FPR is SCORE_FPR (resolved as darkhalo.metrics.operating_points
    rules)."""
    mock = scores[MOCK_SET]
    rows = []
    for name, real in scores.items():
        if name == MOCK_SET:
            continue
        ks = stats.ks_2samp(real, mock)
        point = completeness_at_fpr(real, mock, SCORE_FPR)
        rows.append(
            {
                "set": name,
                "n_real": len(real),
                "n_mock": len(mock),
                "real_median": float(np.median(real)),
                "mock_median": float(np.median(mock)),
                "ks_statistic": float(ks.statistic),
                "ks_pvalue": float(ks.pvalue),
                "threshold": point.threshold,
                "real_flagged": point.completeness,
                "mock_flagged": point.fpr,
                "resolved": point.resolved,
                "n_mock_needed": point.n_neg_needed,
            }
        )
    return pd.DataFrame(rows)
