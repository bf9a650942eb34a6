"""Mock survey speed: catalog rows/s, and cutouts/s against lenstronomy on the same hosts.

Peer: lenstronomy's ImageModel rendering each host's SERSIC_ELLIPSE (3x supersampled) through the
same pixel PSF kernel per band (PSF type PIXEL), one host and band at a time, without noise or
neighbours (so the peer does less work than the mock). Same process, same hosts, same kernels;
each timing is the best of REPEATS runs (the machine is shared).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LightModel.light_model import LightModel
from timing import best_seconds

from darkhalo.lensing.psf import psf_kernels
from darkhalo.spec import MockSurvey
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import KERNEL_SIZE, PIXEL_SCALE, MockCutoutProvider

SIZE = 64
N_HOSTS = 64
REPEATS = 3


def _lenstronomy(hosts, beta: np.ndarray) -> float:
    """Seconds to render every host in g, r, z with lenstronomy."""
    data = ImageData(
        image_data=np.zeros((SIZE, SIZE)),
        transform_pix2angle=np.eye(2) * PIXEL_SCALE,
        ra_at_xy_0=-(SIZE // 2) * PIXEL_SCALE,
        dec_at_xy_0=-(SIZE // 2) * PIXEL_SCALE,
    )
    light = LightModel(["SERSIC_ELLIPSE"])
    started = time.perf_counter()
    for i in range(len(hosts)):
        row = hosts.iloc[i]
        n = 4.0 if row["TYPE"] == "DEV" else float(np.clip(row["SERSIC"], 0.5, 6))
        for j, band in enumerate("grz"):
            kernel = psf_kernels(
                "survey",
                torch.tensor([float(row[f"PSFSIZE_{band.upper()}"])]),
                KERNEL_SIZE,
                PIXEL_SCALE,
                beta[i, j],
                band,
            )[0].numpy()
            model = ImageModel(
                data,
                PSF(psf_type="PIXEL", kernel_point_source=kernel),
                lens_light_model_class=light,
                kwargs_numerics={"supersampling_factor": 3},
            )
            kwargs = {"amp": 1.0, "R_sersic": float(row["SHAPE_R"]), "n_sersic": n}
            kwargs |= {"e1": float(row["SHAPE_E1"]), "e2": float(row["SHAPE_E2"]), "center_x": 0.0, "center_y": 0.0}
            model.image(kwargs_lens_light=[kwargs])
    return time.perf_counter() - started


def main() -> dict:
    survey = MockSurvey(kind="mock", n_objects=50_000)
    catalog = mock_catalog(survey, 1, 0)
    catalog_s = best_seconds(lambda: mock_catalog(survey, 1, 0), REPEATS)
    hosts = catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(N_HOSTS)
    provider = MockCutoutProvider(survey, 1)
    beta = provider.cutouts(hosts, SIZE).psf_beta  # also the warm-up
    mock_s = best_seconds(lambda: provider.cutouts(hosts, SIZE), REPEATS)
    peer_s = min(_lenstronomy(hosts, beta) for _ in range(REPEATS))
    return {
        "catalog_rows_per_s": round(len(catalog) / catalog_s),
        "hosts": N_HOSTS,
        "stamp_pixels": SIZE,
        "mock_cutouts_per_s": round(N_HOSTS / mock_s, 2),
        "lenstronomy_cutouts_per_s": round(N_HOSTS / peer_s, 2),
        "speedup_vs_lenstronomy": round(peer_s / mock_s, 2),
        "torch_threads": torch.get_num_threads(),
    }
