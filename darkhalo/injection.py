"""Injection as a pure batch function: manifest rows + cutouts -> stamps with arcs and their record.

For each batch: cutouts of the batch's unique hosts from the survey provider; arcs for the
positives rendered by darkhalo.lensing.render through the injection PSF (the spec's model at each
host's per-band PSF FWHM from the cutout, and the cutout's own Moffat beta for the ``survey``
model), the lens at the host's position in its cutout (``Cutouts.host_offset``); stamp = cutout +
arc (+ the arc's photon noise when the spec asks). Controls are the cutout, untouched. Each stamp
records what the invariants need: arc flux per band, integrated arc S/N and magnification.

Arc S/N is the matched-filter S/N over the three bands, sqrt(sum arc^2 invvar) (no
sky-subtraction residuals: the best a detector could do; the L7 shares are judged on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from darkhalo.hashing import uniform
from darkhalo.lensing.pixelized import pixelized_kernels, psfex_by_band
from darkhalo.lensing.psf import psf_kernels
from darkhalo.lensing.render import ArcParams, convergence_errors, render_arcs
from darkhalo.spec import GenerationSpec, InjectionSpec, PsfSpec, StampsSpec
from darkhalo.spec_view import SpecView
from darkhalo.stamps import encode_images
from darkhalo.surveys.provider import CutoutProvider, Cutouts
from data_contracts.stamps import shard_schema
from data_contracts.survey import BANDS, flux_to_mag, mag_to_flux

#: Photo-electrons per nanomaggy for the arc's photon noise: DECam zero points (AB mag for
#: 1 e-/s: g 25.08, r 25.29, z 24.92) over a 90 s exposure.
ELECTRONS_PER_NANOMAGGY = {b: 90.0 / float(mag_to_flux(zp)) for b, zp in zip(BANDS, (25.08, 25.29, 24.92), strict=True)}
#: Arcs and kernels are computed in float32 (the stamps' own precision; ~2x faster than float64).
RENDER_DTYPE = torch.float32
#: A stamp shard's columns, in order (data_contracts.stamps.shard_schema).
STAMP_COLUMNS = tuple(shard_schema().names)


@dataclass(frozen=True)
class Rendering:
    """The spec sections and seed that rendering arcs into stamps reads, taken from a spec (or its view) once."""

    psf: PsfSpec
    stamps: StampsSpec
    injection: InjectionSpec
    seed: int

    @classmethod
    def of(cls, spec: GenerationSpec | SpecView) -> Rendering:
        """The rendering settings of ``spec`` (a GenerationSpec or a SpecView declaring these sections)."""
        return cls(psf=spec.psf, stamps=spec.stamps, injection=spec.injection, seed=spec.seed)


def injection_kernels(
    psf: PsfSpec, pixel_scale: float, fwhm: np.ndarray, beta: np.ndarray, model: str | None = None
) -> torch.Tensor:
    """Unit-sum kernels (N, 3, K, K) of the ``psf`` section's model (or ``model``) at per-stamp, per-band
    FWHM (arcsec) and beta (``pixelized``: real PSFEx models from ``psf.psfex_dir`` at the FWHM; beta
    unused; the fixed-beta models use ``psf.moffat_beta``)."""
    model = model or psf.model
    if model == "pixelized":
        models = psfex_by_band(Path(psf.psfex_dir))
        return pixelized_kernels(models, fwhm, psf.kernel_size_pix, pixel_scale).to(RENDER_DTYPE)
    fwhm_t = torch.as_tensor(fwhm, dtype=RENDER_DTYPE)
    beta_t = torch.as_tensor(beta if model == "survey" else np.full_like(fwhm, psf.moffat_beta), dtype=RENDER_DTYPE)
    kernels = [
        psf_kernels(model, fwhm_t[:, i], psf.kernel_size_pix, pixel_scale, beta_t[:, i], band)
        for i, band in enumerate(BANDS)
    ]
    return torch.stack(kernels, dim=1)


def _arc_params(rows: pd.DataFrame, lens_offset: np.ndarray) -> ArcParams:
    """The renderer's parameters from manifest rows (src_reff is the grid's, flux the observed), the
    lens at ``lens_offset`` (N, 2) arcsec from the stamp's centre pixel: where the host is."""

    def col(name: str) -> torch.Tensor:
        return torch.as_tensor(rows[name].to_numpy(dtype=np.float64)).to(RENDER_DTYPE)

    names = ("theta_e", "lens_q", "lens_phi", "g1", "g2", "src_x", "src_y", "src_reff", "src_n", "src_q", "src_phi")
    offset = torch.as_tensor(np.asarray(lens_offset, dtype=np.float64)).to(RENDER_DTYPE)
    return ArcParams(
        **{name: col(name) for name in names},
        flux=torch.stack([col(f"src_flux_{b}") for b in BANDS], 1),
        lens_x=offset[:, 0],
        lens_y=offset[:, 1],
    )


def photon_noise(arcs: np.ndarray, stamp_ids: np.ndarray, seed: int) -> np.ndarray:
    """The arcs' own Poisson noise (nanomaggies), seeded per stamp so batching does not matter."""
    noisy = np.empty_like(arcs)
    gain = np.array([ELECTRONS_PER_NANOMAGGY[b] for b in BANDS])[:, None, None]
    for i, stamp_id in enumerate(stamp_ids):
        rng = np.random.default_rng(int(uniform(seed, stamp_id, stream="photon_noise") * 2**53))
        electrons = np.clip(arcs[i], 0, None) * gain
        noisy[i] = (rng.poisson(electrons) / gain).astype(np.float32)
    return noisy


def host_cutouts(rows: pd.DataFrame, provider: CutoutProvider, size: int) -> Cutouts:
    """The cutouts of ``rows``' hosts, one per row in the rows' order (each host fetched once)."""
    hosts = rows.drop_duplicates("host_id")
    cut = provider.cutouts(hosts, size)
    where = pd.Index(hosts["host_id"]).get_indexer(rows["host_id"])
    return cut.take(where)


@dataclass(frozen=True)
class Arcs:
    """The arcs of a batch of rows (zero for controls): images (N, 3, S, S) float32 nanomaggies and
    magnification (N,) (NaN for controls)."""

    images: np.ndarray
    magnification: np.ndarray


def arc_inputs(rows: pd.DataFrame, cut: Cutouts, rendering: Rendering) -> tuple[ArcParams, torch.Tensor]:
    """The renderer's parameters and injection PSF kernels (N, 3, K, K) of positive manifest ``rows``
    in their cutouts ``cut`` (one per row): each host's per-band FWHM and beta, the lens at the host."""
    fwhm, beta = cut.psf_fwhm.astype(np.float64), cut.psf_beta.astype(np.float64)
    kernels = injection_kernels(rendering.psf, rendering.stamps.pixel_scale, fwhm, beta)
    return _arc_params(rows, cut.host_offset * rendering.stamps.pixel_scale), kernels


def convergence_of_rows(rows: pd.DataFrame, cut: Cutouts, rendering: Rendering) -> tuple[np.ndarray, np.ndarray]:
    """L8's convergence measure of positive manifest ``rows`` in their cutouts: per stamp the L1
    change over the arc's flux (worst band) and the magnification ratio when the arc is rendered
    again at twice the resolution (darkhalo.lensing.render.convergence_errors)."""
    params, kernels = arc_inputs(rows, cut, rendering)
    stamps = rendering.stamps
    l1, ratio = convergence_errors(params, kernels, stamps.size, stamps.pixel_scale, rendering.injection.supersample)
    return l1.amax(dim=1).numpy().astype(np.float64), ratio.numpy().astype(np.float64)


def render_rows(rows: pd.DataFrame, cut: Cutouts, *, rendering: Rendering) -> Arcs:
    """The arcs of manifest ``rows`` (reset index) in their cutouts ``cut``: through the injection PSF
    at each host's per-band FWHM, plus the arc's photon noise when the injection section asks."""
    stamps, settings = rendering.stamps, rendering.injection
    arcs = np.zeros_like(cut.images)
    magnification = np.full(len(rows), np.nan)
    positive = (rows["label"] == 1).to_numpy()
    if positive.any():
        params, kernels = arc_inputs(rows[positive], cut.take(positive), rendering)
        rendered = render_arcs(params, kernels, stamps.size, stamps.pixel_scale, settings.supersample)
        arcs[positive] = rendered.images.numpy().astype(np.float32)
        magnification[positive] = rendered.magnification.numpy()
        if settings.poisson_noise:
            arcs[positive] = photon_noise(arcs[positive], rows.loc[positive, "stamp_id"].to_numpy(), rendering.seed)
    return Arcs(arcs, magnification)


def inject_batch(rows: pd.DataFrame, provider: CutoutProvider, *, rendering: Rendering) -> pd.DataFrame:
    """Stamps (STAMP_COLUMNS) for a batch of manifest rows: cutout + arc, controls untouched."""
    rows = rows.reset_index(drop=True)
    cut = host_cutouts(rows, provider, rendering.stamps.size)
    arcs = render_rows(rows, cut, rendering=rendering)
    stamps = cut.images + arcs.images
    positive = (rows["label"] == 1).to_numpy()
    arc_flux = arcs.images.sum(axis=(2, 3))
    snr = np.sqrt((arcs.images.astype(np.float64) ** 2 * cut.invvar).sum(axis=(1, 2, 3)))
    out = pd.DataFrame(
        {
            "stamp_id": rows["stamp_id"].to_numpy(),
            "label": rows["label"].to_numpy(dtype=np.int8),
            "split": rows["split"].to_numpy(),
            "image": encode_images(stamps).to_pylist(),
            **{k: rows[k].to_numpy() for k in ("RELEASE", "BRICKID", "OBJID", "host_id", "RA", "DEC", "config_id")},
            "theta_e": rows["theta_e"].to_numpy(dtype=np.float64),
            "psfsize_r": rows["PSFSIZE_R"].to_numpy(dtype=np.float64),
            "src_mag_r": rows["src_mag_r"].to_numpy(dtype=np.float64),
            "host_mag_r": flux_to_mag(rows["FLUX_R"].to_numpy()),
            **{f"arc_flux_{b}": np.where(positive, arc_flux[:, i], np.nan) for i, b in enumerate(BANDS)},
            "arc_snr": np.where(positive, snr, np.nan),
            "magnification": arcs.magnification,
            "psf_model": np.where(positive, rendering.psf.model, ""),
        }
    )
    return out.loc[:, list(STAMP_COLUMNS)]
