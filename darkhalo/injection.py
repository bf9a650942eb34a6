"""Injection as a pure batch function: manifest rows + cutouts -> stamps with arcs and their record.

For each batch: cutouts of the batch's unique hosts from the survey provider; arcs for the
positives rendered by darkhalo.lensing.render through the injection PSF (the spec's model at each
host's per-band PSF FWHM from the cutout, and the cutout's own Moffat beta for the ``survey``
model), the lens at the host's position in its cutout (``Cutouts.host_offset``); stamp = cutout +
arc (+ the arc's photon noise when the spec asks). Controls are the cutout, untouched. Each stamp
records what the invariants need: arc flux per band, integrated arc S/N and magnification.

Arc S/N is the matched-filter S/N over the three bands, sqrt(sum arc^2 invvar) (no
sky-subtraction residuals: the best a detector could do; the L7 shares are judged on it).

A shard of the inject stage (``stamp_shard``, one Spark task) is its manifest rows through the
batch function, ``injection.batch_size`` rows a batch and a row group, written by pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch

from darkhalo.hashing import uniform
from darkhalo.lensing.pixelized import pixelized_kernels, psfex_by_band
from darkhalo.lensing.psf import psf_kernels
from darkhalo.lensing.render import ArcParams, convergence_errors, render_arcs
from darkhalo.sparkio import write_part
from darkhalo.spec import GenerationSpec, InjectionSpec, PsfSpec, StampsSpec, SurveySpec
from darkhalo.spec_view import SpecView
from darkhalo.stamps import encode_images
from darkhalo.surveys.provider import CutoutProvider, Cutouts, provider_for
from data_contracts.stamps import IMAGE, shard_schema
from data_contracts.survey import BANDS, KEY, flux_to_mag, mag_to_flux

#: Photo-electrons per nanomaggy for the arc's photon noise: DECam zero points (AB mag for
#: 1 e-/s: g 25.08, r 25.29, z 24.92) over a 90 s exposure.
ELECTRONS_PER_NANOMAGGY = {b: 90.0 / float(mag_to_flux(zp)) for b, zp in zip(BANDS, (25.08, 25.29, 24.92), strict=True)}
#: Arcs and kernels are computed in float32 (the stamps' own precision; ~2x faster than float64).
RENDER_DTYPE = torch.float32
#: A stamp shard's Arrow schema (data_contracts.stamps.shard_schema) and its columns, in order.
SHARD_SCHEMA = shard_schema()
STAMP_COLUMNS = tuple(SHARD_SCHEMA.names)
#: Columns of each stamp a shard's task returns for the stage's summary.
SUMMARY_COLUMNS = ["label", "split", "arc_snr", "magnification"]


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


def inject_batch(rows: pd.DataFrame, provider: CutoutProvider, *, rendering: Rendering) -> pa.Table:
    """Stamps for a batch of manifest rows as a shard's rows (SHARD_SCHEMA): cutout + arc, controls
    untouched. The images go into Arrow as one buffer, with no per-row Python objects."""
    rows = rows.reset_index(drop=True)
    cut = host_cutouts(rows, provider, rendering.stamps.size)
    arcs = render_rows(rows, cut, rendering=rendering)
    positive = (rows["label"] == 1).to_numpy()
    arc = arcs.images[positive]
    arc_flux = np.full((len(rows), len(BANDS)), np.nan)
    arc_flux[positive] = arc.sum(axis=(2, 3))
    snr = np.full(len(rows), np.nan)
    snr[positive] = np.sqrt((arc.astype(np.float64) ** 2 * cut.invvar[positive]).sum(axis=(1, 2, 3)))
    columns = {
        **{
            k: rows[k].to_numpy()
            for k in ("stamp_id", "label", "split", *KEY, "host_id", "RA", "DEC", "config_id", "confuser")
        },
        "image": encode_images(cut.images + arcs.images),
        "theta_e": rows["theta_e"].to_numpy(dtype=np.float64),
        "psfsize_r": rows["PSFSIZE_R"].to_numpy(dtype=np.float64),
        "src_mag_r": rows["src_mag_r"].to_numpy(dtype=np.float64),
        "host_mag_r": flux_to_mag(rows["FLUX_R"].to_numpy()),
        **{f"arc_flux_{b}": arc_flux[:, i] for i, b in enumerate(BANDS)},
        "arc_snr": snr,
        "magnification": arcs.magnification,
        "psf_model": np.where(positive, rendering.psf.model, ""),
    }
    arrays = [
        columns[f.name] if f.name == IMAGE else pa.array(columns[f.name], type=f.type, from_pandas=True)
        for f in SHARD_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA)


def shard_rows(manifest: list[Path], first: int, last: int) -> pd.DataFrame:
    """The manifest rows with ``first <= stamp_id <= last``, in stamp_id order."""
    stamp_id = pc.field("stamp_id")
    rows = ds.dataset(manifest, format="parquet").to_table(filter=(stamp_id >= first) & (stamp_id <= last))
    return rows.to_pandas().sort_values("stamp_id", ignore_index=True)


def write_shard(rows: pd.DataFrame, target: Path, *, rendering: Rendering, survey: SurveySpec) -> pd.DataFrame:
    """Stamps of manifest ``rows`` (stamp_id order) into the shard ``target``, one row group per render
    batch of ``injection.batch_size`` rows (cutouts from ``survey``); returns their SUMMARY_COLUMNS."""
    provider = provider_for(survey, rendering.seed)
    step = rendering.injection.batch_size
    summaries = []

    def batches() -> Iterator[pa.Table]:
        for start in range(0, len(rows), step):
            stamps = inject_batch(rows.iloc[start : start + step], provider, rendering=rendering)
            summaries.append(stamps.select(SUMMARY_COLUMNS).to_pandas())
            yield stamps

    write_part(target, batches(), SHARD_SCHEMA)
    return pd.concat(summaries, ignore_index=True)


def stamp_shard(
    shard: tuple[int, tuple[int, int]], *, manifest: list[Path], folder: Path, rendering: Rendering, survey: SurveySpec
) -> pd.DataFrame:
    """Shard ``(index, (first, last))``: the manifest's rows with those stamp ids, written as
    ``folder/part-<index>.parquet``; returns their SUMMARY_COLUMNS (one Spark task's work)."""
    index, (first, last) = shard
    rows = shard_rows(manifest, first, last)
    return write_shard(rows, folder / f"part-{index:05d}.parquet", rendering=rendering, survey=survey)
