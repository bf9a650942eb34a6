"""The real-file path's two costs against named peers, same process, same inputs, best of REPEATS:

- pixelized injection kernels (real PSFEx models, nearest FWHM, stretched; darkhalo.lensing.pixelized)
  against the survey model's kernels (Moffat core + wings) for the same 256 stamps x 3 bands;
- real cutouts through the HTTP provider with a warm cache (the steady state of a re-run) against
  the folder provider reading the same files from a cutout folder (the six real DR10 cutouts,
  converted from tests/data/real). No network: the warm cache is filled from the folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import best_seconds

from darkhalo.lensing.pixelized import pixelized_kernels, psfex_by_band
from darkhalo.lensing.psf import psf_kernels
from darkhalo.spec import CutoutSource
from darkhalo.surveys.cutout_fits import FolderCutoutProvider, cutout_name
from darkhalo.surveys.http_cutouts import HttpCutoutProvider, cache_name
from darkhalo.surveys.npz_cutouts import convert_npz_folder, psfex_psfsize

REAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"
PSFEX = REAL / "psf" / "psfex"
N_STAMPS, KERNEL, SCALE, REPEATS = 256, 63, 0.262, 3


def main() -> dict:
    models = psfex_by_band(PSFEX)
    fwhm = np.random.default_rng(0).uniform(1.0, 1.8, (N_STAMPS, 3))
    pixelized = best_seconds(lambda: pixelized_kernels(models, fwhm, KERNEL, SCALE), REPEATS, warmup=True)
    survey = best_seconds(
        lambda: [psf_kernels("survey", torch.tensor(fwhm[:, j]), KERNEL, SCALE, 2.8, b) for j, b in enumerate("grz")],
        REPEATS,
        warmup=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        hosts, _ = convert_npz_folder(REAL / "cutouts", out, psfex_psfsize(PSFEX))
        for i in range(len(hosts)):  # a warm cache: each file under the name the client would fetch it to
            row = hosts.iloc[i]
            target = out / "cache" / cache_name(float(row["RA"]), float(row["DEC"]), 64)
            target.parent.mkdir(exist_ok=True)
            shutil.copy(out / "cutouts" / cutout_name(row), target)
        http = HttpCutoutProvider(CutoutSource(url="http://127.0.0.1:9/unused", cache_dir=out / "cache"))
        folder = FolderCutoutProvider(out / "cutouts")
        cached = best_seconds(lambda: http.cutouts(hosts, 64), REPEATS, warmup=True)
        local = best_seconds(lambda: folder.cutouts(hosts, 64), REPEATS, warmup=True)
    return {
        "pixelized_kernels_per_s": round(N_STAMPS * 3 / pixelized),
        "survey_kernels_per_s": round(N_STAMPS * 3 / survey),
        "pixelized_over_survey_speed": round(survey / pixelized, 2),
        "http_cached_cutouts_per_s": round(len(hosts) / cached),
        "folder_cutouts_per_s": round(len(hosts) / local),
        "http_cached_over_folder_speed": round(local / cached, 2),
    }
