"""Mock survey speed: catalog rows/s, and cutouts per CPU-second against lenstronomy on the same hosts.

Peer: lenstronomy's ImageModel rendering each host's SERSIC_ELLIPSE (3x supersampled) through the
same pixel PSF kernel per band (PSF type PIXEL, the kernel made by darkhalo's ``psf_kernels`` from
the host's PSFSIZE and the beta its mock cutout drew), one host and band at a time, without noise
or neighbours (so the peer does less work than the mock, which also draws and renders neighbours,
the noise and the invvar). Both sides make their kernels inside the timing: the mock's batched, the
peer's one per host and band.

Ratio: one CPU thread, CPU seconds of this process (per core; the machine is shared, and wall time
would count other users' work), in short pieces (the mock's batch of ``N_HOSTS``, one host of the
peer's), each warmed up and its best of ``REPEATS`` kept, in ``ROUNDS`` alternating rounds. The
mock's wall-clock rate on ``WALL_THREADS`` threads (the stage's machine) is reported too, and the costs of
correlated sky noise (``survey.noise_correlation``), of faint field galaxies (``survey.field_galaxies``) and of the
sky's own lenses (``survey.sky_lenses``, timed at a prevalence of 1 in ``SKY_LENS_TIMING_SHARE`` hosts so the sample
holds enough of them; the cost of one lens then gives the cost at 1e-3 and at the embedded sky's 1e-2): the same
hosts' cutouts with each, timed in the same rounds.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LightModel.light_model import LightModel
from timing import best_seconds, interleaved

from darkhalo.lensing.psf import psf_kernels
from darkhalo.spec import FieldGalaxies, MockSurvey, NoiseCorrelation, SkyLenses
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import KERNEL_SIZE, PIXEL_SCALE, MockCutoutProvider
from darkhalo.surveys.sky_lenses import lenses

SIZE = 64
N_HOSTS = 256  # the injection's default batch_size: one mock call per batch
REPEATS, ROUNDS = 3, 3
WALL_THREADS = 2
TARGET_RATIO = 10
SKY_LENS_TIMING_SHARE = 10


def _peer_calls(hosts, beta: np.ndarray) -> list:
    """One call per host rendering it in g, r, z with lenstronomy (kernel and model made per band)."""
    data = ImageData(
        image_data=np.zeros((SIZE, SIZE)),
        transform_pix2angle=np.eye(2) * PIXEL_SCALE,
        ra_at_xy_0=-(SIZE // 2) * PIXEL_SCALE,
        dec_at_xy_0=-(SIZE // 2) * PIXEL_SCALE,
    )
    light = LightModel(["SERSIC_ELLIPSE"])

    def render(i: int) -> list[np.ndarray]:
        row = hosts.iloc[i]
        n = 4.0 if row["TYPE"] == "DEV" else float(np.clip(row["SERSIC"], 0.5, 6))
        images = []
        for j, band in enumerate("grz"):
            fwhm = torch.tensor([float(row[f"PSFSIZE_{band.upper()}"])])
            kernel = psf_kernels("survey", fwhm, KERNEL_SIZE, PIXEL_SCALE, beta[i, j], band)[0].numpy()
            model = ImageModel(
                data,
                PSF(psf_type="PIXEL", kernel_point_source=kernel),
                lens_light_model_class=light,
                kwargs_numerics={"supersampling_factor": 3},
            )
            kwargs = {"amp": 1.0, "R_sersic": float(row["SHAPE_R"]), "n_sersic": n}
            kwargs |= {"e1": float(row["SHAPE_E1"]), "e2": float(row["SHAPE_E2"]), "center_x": 0.0, "center_y": 0.0}
            images.append(model.image(kwargs_lens_light=[kwargs]))
        return images

    return [lambda i=i: render(i) for i in range(len(hosts))]


def main() -> dict:
    survey = MockSurvey(kind="mock", n_objects=50_000)
    catalog = mock_catalog(survey, 1, 0)
    catalog_s = best_seconds(lambda: mock_catalog(survey, 1, 0), REPEATS)
    hosts = catalog[catalog["TYPE"].isin(["DEV", "SER"])].head(N_HOSTS)
    provider = MockCutoutProvider(survey, 1)
    correlated = MockCutoutProvider(survey.model_copy(update={"noise_correlation": NoiseCorrelation()}), 1)
    field = MockCutoutProvider(survey.model_copy(update={"field_galaxies": FieldGalaxies()}), 1)
    lensed = MockCutoutProvider(
        survey.model_copy(update={"sky_lenses": SkyLenses(prevalence=1 / SKY_LENS_TIMING_SHARE)}), 1
    )
    beta = provider.cutouts(hosts, SIZE).psf_beta
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sides = [[lambda p=p: p.cutouts(hosts, SIZE)] for p in (provider, correlated, field, lensed)]
        timed = interleaved([*sides, _peer_calls(hosts, beta)], ROUNDS, REPEATS)
        mock_s, correlated_s, field_s, lensed_s, peer_s = timed
        torch.set_num_threads(WALL_THREADS)
        wall_s = best_seconds(lambda: provider.cutouts(hosts, SIZE), REPEATS, warmup=True)
    finally:
        torch.set_num_threads(threads)
    n_lenses = int(lenses(1, hosts, lensed.sky_lenses).sum())
    lens_s = (lensed_s - mock_s) / n_lenses  # CPU seconds of one sky lens
    return {
        "catalog_rows_per_s": round(len(catalog) / catalog_s),
        "hosts": N_HOSTS,
        "stamp": f"{SIZE}x{SIZE} grz, {KERNEL_SIZE}x{KERNEL_SIZE} survey PSF kernel per host and band",
        "darkhalo_cutouts_per_cpu_s": round(N_HOSTS / mock_s, 1),
        "lenstronomy_cutouts_per_cpu_s": round(N_HOSTS / peer_s, 1),
        "lenstronomy_peer": "per host and band: psf_kernels, ImageModel (PSF 'PIXEL', supersampling 3), "
        "SERSIC_ELLIPSE host only (no neighbours, no noise)",
        "ratio_vs_lenstronomy": round(peer_s / mock_s, 2),
        "target_ratio": TARGET_RATIO,
        "darkhalo_cutouts_per_cpu_s_correlated_noise": round(N_HOSTS / correlated_s, 1),
        "correlated_noise_cost_ratio": round(correlated_s / mock_s, 3),
        "darkhalo_cutouts_per_cpu_s_field_galaxies": round(N_HOSTS / field_s, 1),
        "field_galaxies_cost_ratio": round(field_s / mock_s, 3),
        "sky_lenses_in_the_hosts": n_lenses,
        "sky_lens_ms_each": round(1e3 * lens_s, 2),
        **{f"sky_lenses_cost_ratio_at_{p:g}": round(1 + p * lens_s * N_HOSTS / mock_s, 4) for p in (1e-3, 1e-2)},
        f"darkhalo_cutouts_per_s_{WALL_THREADS}_threads_wall": round(N_HOSTS / wall_s, 1),
    }


if __name__ == "__main__":
    from run import main as run_benchmarks  # prints and writes results/mock.json

    sys.exit(run_benchmarks(["mock"]))
