"""Arc rendering speed: darkhalo's batched torch renderer against lenstronomy's ImageModel (the peer).

Same parameters (the gen2 spec's grid) and numerics on both sides: 64 x 64 grz stamps at 0.262"/pix, 4x4 supersampled
ray tracing through SIE + SHEAR, an elliptical Sersic source, the survey PSF (63 x 63 kernel per
band) convolved at pixel resolution. lenstronomy renders a stamp as three ImageModel.image calls
(one per band's PSF); its models are built outside the timing, which favours the peer. Each stamp
has its own PSF, so both sides Fourier-transform the kernels per stamp (lenstronomy's "fft"
convolution; its default "fft_static" would keep one kernel's transform across stamps). Both run
on one CPU thread in this process and are timed in CPU seconds of this process (stamps per
CPU-second = per core; the machine is shared, and wall time would count other users' work), in
short pieces (a batch of ours, one stamp of lenstronomy's), each repeated and its best kept,
in alternating rounds.
On a CUDA device the renderer's stamps/s (wall time, synchronised) are reported too.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from lenstronomy.Data.pixel_grid import PixelGrid
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from timing import best_seconds

from darkhalo.lensing.psf import psf_kernels
from darkhalo.lensing.render import ArcParams, render_arcs
from darkhalo.lensing.sersic import q_phi_to_ellipticity, sersic_total_to_ie

SIZE, SCALE, SUPERSAMPLE, KERNEL = 64, 0.262, 4, 63
BATCH, BATCHES, PEER_STAMPS, REPEATS, ROUNDS = 64, 4, 8, 3, 3


def _params(n: int, seed: int) -> tuple[ArcParams, torch.Tensor]:
    """Arcs as specs/gen2_resnet18_unpaired_survey_psf.yaml draws them: its grid (theta_E 0.8-2",
    R_eff 0.1 or 0.25", |e| 0.1 or 0.3, shear 0 or 0.05), Sersic n 0.5-2, lens q 0.5-1, the source
    area-uniform within 0.5 theta_E; survey PSFs of FWHM 1.0-1.6"."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=g)

    def choice(*values: float) -> torch.Tensor:
        return torch.tensor(values)[torch.randint(len(values), (n,), generator=g)]

    theta_e = choice(0.8, 1.0, 1.25, 1.5, 2.0)
    e, shear, shear_phi = choice(0.1, 0.3), choice(0.0, 0.05), uniform(0, np.pi)
    radius, angle = 0.5 * theta_e * torch.sqrt(uniform(0, 1)), uniform(0, 2 * np.pi)
    params = ArcParams(
        theta_e=theta_e, lens_q=uniform(0.5, 1.0), lens_phi=uniform(0, np.pi),
        g1=shear * torch.cos(2 * shear_phi), g2=shear * torch.sin(2 * shear_phi),
        src_x=radius * torch.cos(angle), src_y=radius * torch.sin(angle), src_reff=choice(0.1, 0.25),
        src_n=uniform(0.5, 2.0), src_q=(1 - e) / (1 + e), src_phi=uniform(0, np.pi), flux=uniform(0.5, 5.0, 3),
    )  # fmt: skip
    fwhm = uniform(1.0, 1.6, 3).double()
    psf = torch.stack([psf_kernels("survey", fwhm[:, b], KERNEL, SCALE, 2.8, band) for b, band in enumerate("grz")], 1)
    return params, psf.float()


def _peer_calls(params: ArcParams, psf: torch.Tensor) -> list:
    """One zero-argument callable per stamp rendering its three bands with lenstronomy."""
    corner = -(SIZE // 2) * SCALE
    grid = PixelGrid(nx=SIZE, ny=SIZE, transform_pix2angle=np.eye(2) * SCALE, ra_at_xy_0=corner, dec_at_xy_0=corner)
    calls = []
    for i in range(params.theta_e.shape[0]):
        row = {k: float(getattr(params, k)[i]) for k in ArcParams.__dataclass_fields__ if k != "flux"}
        e1, e2 = (float(v) for v in q_phi_to_ellipticity(params.lens_q[i], params.lens_phi[i]))
        s1, s2 = (float(v) for v in q_phi_to_ellipticity(params.src_q[i], params.src_phi[i]))
        lens = [
            dict(theta_E=row["theta_e"], e1=e1, e2=e2, center_x=0.0, center_y=0.0),
            dict(gamma1=row["g1"], gamma2=row["g2"], ra_0=0.0, dec_0=0.0),
        ]
        bands = []
        for b in range(3):
            amp = float(
                sersic_total_to_ie(params.flux[i, b].double(), params.src_reff[i].double(), params.src_n[i].double())
            )
            source = [dict(amp=amp, R_sersic=row["src_reff"], n_sersic=row["src_n"], e1=s1, e2=s2,
                           center_x=row["src_x"], center_y=row["src_y"])]  # fmt: skip
            model = ImageModel(
                grid,
                PSF(psf_type="PIXEL", kernel_point_source=psf[i, b].double().numpy()),
                lens_model_class=LensModel(["SIE", "SHEAR"]),
                source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                kwargs_numerics=dict(
                    supersampling_factor=SUPERSAMPLE, supersampling_convolution=False, convolution_type="fft"
                ),
            )
            bands.append((model, source))
        calls.append(lambda bands=bands, lens=lens: [m.image(kwargs_lens=lens, kwargs_source=s) for m, s in bands])
    return calls


def _max_l1(params: tuple[ArcParams, torch.Tensor], peer: list) -> float:
    """Largest difference between our image and lenstronomy's of the same stamp and band, as the
    L1 norm over the stamp in units of lenstronomy's total flux: the "same numerics" check."""
    ours = render_arcs(params[0], params[1], SIZE, SCALE, SUPERSAMPLE).images.double().numpy()
    worst = 0.0
    for i, call in enumerate(peer):
        for band, theirs in enumerate(call()):
            worst = max(worst, float(np.abs(ours[i, band] - theirs).sum() / np.abs(theirs).sum()))
    return round(worst, 5)


def _interleaved(groups: list[list]) -> list[float]:
    """Summed best CPU seconds of each group's calls, timed in ROUNDS alternating rounds (each call
    warmed up, then REPEATS times per round): a slow spell of the shared machine then hits both
    sides of the ratio alike instead of one."""
    best = [[float("inf")] * len(calls) for calls in groups]
    for _ in range(ROUNDS):
        for group, calls in zip(best, groups, strict=True):
            for i, call in enumerate(calls):
                group[i] = min(group[i], best_seconds(call, REPEATS, clock=time.process_time, warmup=True))
    return [sum(group) for group in best]


def main() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batches = [_params(BATCH, seed=i) for i in range(BATCHES)]
        peer_params = _params(PEER_STAMPS, seed=BATCHES)
        peer = _peer_calls(*peer_params)
        ours = [lambda b=b: render_arcs(*b, SIZE, SCALE, SUPERSAMPLE) for b in batches]
        double = (batches[0][0].to(dtype=torch.float64), batches[0][1].double())
        ours_s, peer_s, double_s = _interleaved([ours, peer, [lambda: render_arcs(*double, SIZE, SCALE, SUPERSAMPLE)]])
        ours_rate, peer_rate = BATCH * BATCHES / ours_s, PEER_STAMPS / peer_s
        result = {
            "stamp": f"{SIZE}x{SIZE} grz, supersample {SUPERSAMPLE}, {KERNEL}x{KERNEL} survey PSF",
            "darkhalo_stamps_per_cpu_s": round(ours_rate, 1),
            "darkhalo_float64_stamps_per_cpu_s": round(BATCH / double_s, 1),
            "lenstronomy_stamps_per_cpu_s": round(peer_rate, 2),
            "ratio_vs_lenstronomy": round(ours_rate / peer_rate, 1),
            "target_ratio": 30,
            "max_l1_vs_lenstronomy": _max_l1(peer_params, peer),
        }
    finally:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        n = 8192
        gpu_params, gpu_psf = _params(n, seed=1)
        gpu_params, gpu_psf = gpu_params.to("cuda"), gpu_psf.cuda()

        def on_gpu() -> None:
            render_arcs(gpu_params, gpu_psf, SIZE, SCALE, SUPERSAMPLE)
            torch.cuda.synchronize()

        on_gpu()
        result["darkhalo_cuda_stamps_per_s"] = round(n / best_seconds(on_gpu, REPEATS, clock=time.perf_counter), 0)
        result["cuda_device"] = torch.cuda.get_device_name()
    return result


if __name__ == "__main__":
    print(main())
