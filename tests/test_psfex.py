"""PSFEx models of real DECam CCDs: reading both file layouts, polynomial evaluation, resampled kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from darkhalo.lensing.imaging import pixel_grid
from darkhalo.lensing.psf import gaussian_ee, gaussian_sb, moffat_ee, psf_kernels, psfsize, wing_deficits
from darkhalo.lensing.psfex import DECAM_PIXEL_SCALE, PsfexError, read_psfex

SCALE = 0.262


def psfex_files(real_dir: Path) -> list[Path]:
    return sorted((real_dir / "psf" / "psfex").glob("*.fits"))


def test_every_real_file_reads_in_either_layout(real_dir: Path) -> None:
    files = psfex_files(real_dir)
    layouts = {"PSF_FWHM" in fits.getheader(f, 1) for f in files}
    assert len(files) >= 3 and layouts == {True, False}  # keywords in the header and as table columns
    for path in files:
        model = read_psfex(path)
        assert model.components.shape == (6, 63, 63) and model.degree == 2
        assert model.sampling == 1.0 and model.fwhm_pix is not None and 2 < model.fwhm_pix < 8


def test_the_polynomial_is_the_constant_term_at_polzero_and_linear_in_x(real_dir: Path) -> None:
    model = read_psfex(psfex_files(real_dir)[0])
    x0, y0 = model.zero
    assert np.array_equal(model.image(x0, y0), model.components[0])
    sx, sy = model.scale
    c = model.components  # terms 1, X, X^2, Y, XY, Y^2
    assert np.allclose(model.image(x0 + sx, y0), c[0] + c[1] + c[2])
    assert np.allclose(model.image(x0, y0 - sy), c[0] - c[3] + c[5])
    assert np.allclose(model.image(x0 + sx, y0 + sy), c.sum(axis=0))


@pytest.mark.parametrize("position", [(1024.0, 2048.0), (100.0, 300.0), (1900.0, 3900.0)])
def test_kernels_are_unit_sum_centred_and_as_wide_as_the_header_says(real_dir: Path, position: tuple) -> None:
    """PSF_FWHM is PSFEx's moment-based width, wider than the half-maximum width of these Moffat-like
    cores, and it is the CCD's average: the half-maximum FWHM lies between 0.7 and 1.1 of it."""
    for path in psfex_files(real_dir):
        model = read_psfex(path)
        kernel = model.kernel(*position, size=63, dtype=torch.float64)
        assert kernel.shape == (63, 63) and kernel.dtype == torch.float64
        assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
        assert int(kernel.argmax()) == 31 * 63 + 31, path.name
        fwhm = model.fwhm_pix * DECAM_PIXEL_SCALE
        axis = (torch.arange(63, dtype=torch.float64) - 31) * SCALE
        core = kernel * ((axis[None, :] ** 2 + axis[:, None] ** 2) <= fwhm**2)
        cx = float((core.sum(0) * axis).sum() / core.sum())
        cy = float((core.sum(1) * axis).sum() / core.sum())
        assert abs(cx) < 0.25 * SCALE and abs(cy) < 0.25 * SCALE, path.name
        half_max_fwhm = 2 * np.sqrt(float((kernel > kernel.max() / 2).sum()) / np.pi) * SCALE
        assert 0.7 < half_max_fwhm / fwhm < 1.1, path.name


def test_the_recorded_psf_fwhm_is_close_to_but_below_the_psfsize_measure(real_dir: Path) -> None:
    """legacypipe's PSFSIZE (the noise-equivalent FWHM of the unit-sum model) is 1.02-1.08 x PSF_FWHM
    on these models, and 1.13-1.41 x the width of their area above half maximum (native pixels)."""
    for path in psfex_files(real_dir):
        model = read_psfex(path)
        native = torch.as_tensor(model.image(*model.zero))
        size = float(psfsize(native, DECAM_PIXEL_SCALE))
        assert 1.01 < size / (model.fwhm_pix * DECAM_PIXEL_SCALE) < 1.09, path.name
        half_max_area = float((native > native.max() / 2).sum()) * DECAM_PIXEL_SCALE**2
        assert 1.1 < size / (2 * np.sqrt(half_max_area / np.pi)) < 1.45, path.name


def test_resampling_to_coarser_pixels_keeps_the_profile(real_dir: Path) -> None:
    """The same PSF on 0.262" and on 2x coarser pixels: equal encircled energy at 2" (within pixelisation)."""
    model = read_psfex(psfex_files(real_dir)[0])
    fine = model.kernel(1000, 2000, size=63, pixel_scale=SCALE, dtype=torch.float64)
    coarse = model.kernel(1000, 2000, size=31, pixel_scale=2 * SCALE, dtype=torch.float64)
    fine_deficit = wing_deficits(fine, SCALE, 0.5)[..., 1]
    coarse_deficit = wing_deficits(coarse, 2 * SCALE, 0.5)[..., 1]
    assert float(coarse_deficit) == pytest.approx(float(fine_deficit), abs=0.01)


def test_wing_deficits_match_the_gaussian_closed_form() -> None:
    fwhm = torch.tensor([0.9, 1.3], dtype=torch.float64)
    scale = SCALE / 4
    kernel = psf_kernels("gaussian", fwhm, 201, scale)
    deficits = wing_deficits(kernel, scale, fwhm)
    assert deficits.shape == (2, 2)
    assert torch.allclose(deficits[:, 0], 1 - gaussian_ee(2 * fwhm, fwhm), atol=1e-4)
    assert torch.allclose(deficits[:, 1], 1 - gaussian_ee(3.0, fwhm), atol=1e-4)


def test_wing_deficits_match_the_moffat_closed_form_inside_the_kernel_box() -> None:
    fwhm, beta, size, scale = torch.tensor([1.0, 1.5], dtype=torch.float64), 2.8, 255, SCALE / 2
    deficits = wing_deficits(psf_kernels("moffat", fwhm, size, scale, beta), scale, fwhm)
    inside_box = moffat_ee(size // 2 * scale, fwhm, beta)  # kernels are normalised inside their box
    assert torch.allclose(deficits[:, 0], 1 - moffat_ee(2 * fwhm, fwhm, beta) / inside_box, atol=3e-3)
    assert torch.allclose(deficits[:, 1], 1 - moffat_ee(3.0, fwhm, beta) / inside_box, atol=3e-3)


def test_unusable_files_are_named(tmp_path: Path, real_dir: Path) -> None:
    not_fits = tmp_path / "junk.fits"
    not_fits.write_text("not a FITS file")
    with pytest.raises(PsfexError, match=r"junk\.fits"):
        read_psfex(not_fits)
    no_mask = tmp_path / "nomask.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("x", "E", array=[1.0])])]).writeto(
        no_mask
    )
    with pytest.raises(PsfexError, match=r"nomask\.fits: table has no PSF_MASK"):
        read_psfex(no_mask)
    source = psfex_files(real_dir)[0]
    with fits.open(source) as hdus:
        table = hdus[1].copy()
    table.data["psf_mask"][0][2] = np.nan
    broken = tmp_path / "nan.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(broken)
    with pytest.raises(PsfexError, match=r"nan\.fits: non-finite"):
        read_psfex(broken)


def _gaussian_samples(fwhm: float, size: int, scale: float) -> torch.Tensor:
    """A Gaussian's values at the pixel centres of a ``size`` grid (what a PSFEx image stores), unit sum."""
    x, y = pixel_grid(size, scale, dtype=torch.float64)
    sb = gaussian_sb(torch.sqrt(x**2 + y**2), fwhm)
    return sb / sb.sum()


def test_a_finer_sampled_model_is_resampled_onto_stamp_pixels(tmp_path: Path) -> None:
    """PSF_SAMP = 0.5: a Gaussian stored on half-CCD-pixel steps comes out as the same Gaussian on
    0.262" pixels (header-keyword layout, components beyond the constant term zero)."""
    fwhm, k = 1.1, 63
    native_scale = 0.5 * DECAM_PIXEL_SCALE
    native = _gaussian_samples(fwhm, k, native_scale).numpy()
    mask = np.zeros((1, 6, k, k), dtype=np.float32)
    mask[0, 0] = native * 3.0  # PSFEx images need not be normalised
    header = {
        "POLNAME1": "X_IMAGE", "POLNAME2": "Y_IMAGE", "POLZERO1": 1024.5, "POLZERO2": 2048.5,
        "POLSCAL1": 2048.0, "POLSCAL2": 4096.0, "POLDEG1": 2, "PSF_SAMP": 0.5, "PSF_FWHM": fwhm / native_scale,
    }  # fmt: skip
    table = fits.BinTableHDU.from_columns([fits.Column("PSF_MASK", f"{6 * k * k}E", dim=f"({k},{k},6)", array=mask)])
    table.header.update(header)
    path = tmp_path / "fine-psfex.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    model = read_psfex(path)
    assert model.sampling == 0.5 and model.fwhm_pix == pytest.approx(fwhm / native_scale)
    kernel = model.kernel(300.0, 900.0, size=31, dtype=torch.float64)
    expected = _gaussian_samples(fwhm, 31, SCALE)
    assert float((kernel - expected).abs().max()) < 2e-3 * float(expected.max())  # Lanczos-3: ~1.3e-3
