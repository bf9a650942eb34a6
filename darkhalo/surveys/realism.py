"""The mock survey beside the real files, per band: background sigma of the cutouts and encircled
energy of the PSF, as the spread (min, median, max) of the real files and the mock's median.

Real: the DR10 grz .npz cutouts (101 x 101; robust sigma = 1.4826 MAD over each band) and the DECam
PSFEx models (their constant term, Lanczos-resampled to 0.262"/pixel; band from ``_ooi_<band>_``).
Mock: 101 x 101 mock cutouts of the first ``n_hosts`` galaxies and the survey PSF (Moffat core +
aureole) at those hosts' PSFSIZE and beta. EE radii in arcsec; real and mock kernels alike are
63 x 63 (16.5", the PSFEx stamp), each EE the share of the kernel's sum in the pixels centred
within the radius.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from darkhalo.lensing.pixelized import psfex_by_band
from darkhalo.lensing.psf import encircled_energy, psf_kernels, psfsize, wing_deficits
from darkhalo.spec import MockSurvey
from darkhalo.surveys.cutout_fits import sky_sigma
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import KERNEL_SIZE, MockCutoutProvider
from darkhalo.surveys.npz_cutouts import read_npz
from data_contracts.survey import BANDS, PIXEL_SCALE

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
