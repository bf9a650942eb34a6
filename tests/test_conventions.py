"""The survey's conventions on real files: Tractor's ellipse angle on a stamp's pixel axes, and where
the cutout service puts the host in an even-sized cutout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from conftest import REAL, spec_data

from darkhalo.injection import Rendering, render_rows
from darkhalo.sources import draw_source_parameters
from darkhalo.spec import GenerationSpec, MockSurvey
from darkhalo.surveys.cutout_fits import FolderCutoutProvider, cutout_name, read_cutout_fits, write_cutout_fits
from darkhalo.surveys.mock import mock_catalog
from darkhalo.surveys.mock_cutouts import MockCutoutProvider
from darkhalo.surveys.orientation import CUTOUT_CD, pixel_angle, pixel_ellipticity
from darkhalo.surveys.provider import Cutouts

#: A DECam CCD sub-image (rotated 90 degrees on the sky) and the early-DECaLS Tractor rows of its objects.
CCD_IMAGE = REAL / "images" / "decam-520206-S16-image-sub.fits"
TRACTOR_ROWS = REAL / "catalogs" / "tractor-1816p325-sub.fits"


def moments_angle(image: np.ndarray, x0: float, y0: float, sigma_pix: float) -> float:
    """Major-axis angle (radians in [0, pi), from +x towards +y) of ``image``'s light around (x0, y0)
    from second moments under a round Gaussian weight of ``sigma_pix``."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float64)
    dx, dy = xx - x0, yy - y0
    weight = image * np.exp(-0.5 * (dx**2 + dy**2) / sigma_pix**2)
    qxx, qyy, qxy = ((weight * m).sum() for m in (dx * dx, dy * dy, dx * dy))
    return float(np.mod(0.5 * np.arctan2(2 * qxy, qxx - qyy), np.pi))


def angle_gap(a: float, b: float) -> float:
    """Smallest difference (degrees) between two axis angles (radians, modulo pi)."""
    d = np.mod(a - b, np.pi)
    return float(np.degrees(min(d, np.pi - d)))


def test_tractor_shape_on_a_real_ccd_points_where_the_galaxy_does() -> None:
    """The DEV galaxy of the Tractor catalogue (|e| 0.54, r_e 6.4") on its real DECam image: its
    SHAPE angle taken through the image's WCS matches the light's own axis; read as an angle from the
    pixel x axis (what darkhalo did before) it is 90 degrees off."""
    row = Table.read(TRACTOR_ROWS)[0]
    e1, e2 = float(row["shapedev_e1"]), float(row["shapedev_e2"])
    with fits.open(CCD_IMAGE) as hdus:
        image, wcs = hdus[1].data.astype(np.float64), WCS(hdus[1].header)
    x0, y0 = (float(v) for v in wcs.world_to_pixel_values(row["ra"], row["dec"]))
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    image = image - np.median(image[np.hypot(xx - x0, yy - y0) > 25])  # the CCD's sky level
    measured = moments_angle(image, x0, y0, sigma_pix=10.0)
    mapped = float(pixel_angle(e1, e2, wcs.pixel_scale_matrix))
    naive = float(np.mod(0.5 * np.arctan2(e2, e1), np.pi))
    assert angle_gap(mapped, measured) < 6
    assert angle_gap(naive, measured) > 60


def test_on_a_north_up_east_left_cutout_the_pixel_angle_is_the_sky_angle_plus_90_degrees() -> None:
    e1, e2 = np.array([0.3, 0.0, -0.2, 0.1]), np.array([0.0, 0.3, 0.1, -0.25])
    theta = 0.5 * np.arctan2(e2, e1)
    np.testing.assert_allclose(pixel_angle(e1, e2), np.mod(theta + np.pi / 2, np.pi), atol=1e-12)
    np.testing.assert_allclose(np.stack(pixel_ellipticity(e1, e2)), -np.stack([e1, e2]), atol=1e-12)
    # the coadds' own WCS (DR6 brick 0959p805) is that orientation
    assert np.sign(CUTOUT_CD).tolist() == [[-1, 0], [0, 1]]


def test_mock_light_and_the_lens_drawn_from_its_shape_point_the_same_way() -> None:
    """A mock host's light and the SIE mass drawn from its catalogue shape share one axis on the stamp."""
    survey = MockSurvey(kind="mock", n_objects=20_000)
    catalog = mock_catalog(survey, 3, 0)
    hosts = catalog[(catalog["TYPE"] == "DEV") & (catalog["SHAPE_R"] > 1.0)].head(64).copy()
    hosts = hosts[np.hypot(hosts["SHAPE_E1"], hosts["SHAPE_E2"]) > 0.25].head(4).reset_index(drop=True)
    assert len(hosts) >= 2
    for band in "GRZ":
        hosts[f"FLUX_{band}"] = 2000.0  # far above the noise and the neighbours
    stamps = MockCutoutProvider(survey, seed=3).cutouts(hosts, 64)
    rows = hosts.assign(host_id=np.arange(len(hosts)), config_id=0, theta_e=1.0, src_e=0.0, shear=0.0, src_dmag=1.0)
    spec = GenerationSpec.model_validate(spec_data())
    drawn = draw_source_parameters(rows, spec.source, seed=0)
    for i in range(len(hosts)):
        light = moments_angle(stamps.images[i, 1].astype(np.float64), 32, 32, sigma_pix=6.0)
        assert angle_gap(light, float(drawn["lens_phi"].iloc[i])) < 5


def test_an_even_sized_service_cutout_holds_its_host_between_pixels(tmp_path: Path) -> None:
    """The service puts the host at ((W + 1) / 2, (H + 1) / 2) in FITS pixels, so a 64-pixel cutout
    has it at 0-based 31.5; the stamp keeps that offset, an odd one or darkhalo's own files none."""
    hosts = mock_catalog(MockSurvey(kind="mock", n_objects=2000), 1, 0).head(3).reset_index(drop=True)
    cube = np.ones((3, 64, 64), np.float32)
    service = fits.PrimaryHDU(cube)
    service.header["BANDS"] = "grz"
    service.writeto(tmp_path / "service.fits")
    assert read_cutout_fits(tmp_path / "service.fits").centre == (31.5, 31.5)
    write_cutout_fits(tmp_path / cutout_name(hosts.iloc[0]), cube, cube)  # darkhalo's own: host at 32
    odd = np.ones((3, 101, 101), np.float32)
    write_cutout_fits(tmp_path / cutout_name(hosts.iloc[1]), odd, odd, centre=(50.0, 50.0))
    write_cutout_fits(tmp_path / cutout_name(hosts.iloc[2]), cube, cube, centre=(31.5, 31.5))
    offsets = FolderCutoutProvider(tmp_path).cutouts(hosts, 64).host_offset
    np.testing.assert_array_equal(offsets, [[0, 0], [0, 0], [-0.5, -0.5]])


def test_the_lens_is_drawn_at_the_host_not_at_the_pixel_beside_it() -> None:
    """A round lens with the source behind its centre makes a ring: on a cutout whose host sits at
    31.5 the ring is centred there too."""
    spec = GenerationSpec.model_validate(spec_data())
    rows = mock_catalog(MockSurvey(kind="mock", n_objects=2000), 1, 0).head(2).reset_index(drop=True)
    source = dict(theta_e=1.2, lens_q=1.0, lens_phi=0.0, g1=0.0, g2=0.0, src_x=0.0, src_y=0.0, src_reff=0.2)
    rows = rows.assign(
        **source, src_n=1.0, src_q=1.0, src_phi=0.0, label=1, stamp_id=[0, 1], host_id=[0, 1],
        src_flux_g=5.0, src_flux_r=5.0, src_flux_z=5.0,
    )  # fmt: skip
    blank = np.zeros((2, 3, 64, 64), np.float32)
    fwhm = np.full((2, 3), 1.2, np.float32)
    offset = np.array([[0.0, 0.0], [-0.5, -0.5]], np.float32)
    arcs = render_rows(rows, Cutouts(blank, blank + 1, fwhm, fwhm * 0 + 2.8, offset), rendering=Rendering.of(spec))
    yy, xx = np.mgrid[:64, :64]
    for image, (dx, dy) in zip(arcs.images[:, 1], offset, strict=True):
        total = image.sum()
        centroid = ((image * xx).sum() / total - 32, (image * yy).sum() / total - 32)
        np.testing.assert_allclose(centroid, (dx, dy), atol=0.01)


@pytest.mark.parametrize("size", [63, 64])
def test_a_stamp_crop_keeps_the_host_nearest_its_centre_pixel(tmp_path: Path, size: int) -> None:
    cube = np.arange(3 * 70 * 70, dtype=np.float32).reshape(3, 70, 70)
    write_cutout_fits(tmp_path / "c.fits", cube, cube, centre=(40.0, 30.0))
    hosts = mock_catalog(MockSurvey(kind="mock", n_objects=2000), 1, 0).head(1).reset_index(drop=True)
    (tmp_path / "c.fits").rename(tmp_path / cutout_name(hosts.iloc[0]))
    with pytest.raises(ValueError, match=r"too near the edge for a \d+x\d+ stamp"):
        FolderCutoutProvider(tmp_path).cutouts(hosts, size)
    write_cutout_fits(tmp_path / cutout_name(hosts.iloc[0]), cube, cube, centre=(35.0, 34.0))
    stamp = FolderCutoutProvider(tmp_path).cutouts(hosts, size)
    assert stamp.images[0, 0, size // 2, size // 2] == cube[0, 34, 35]
    assert torch.equal(torch.from_numpy(stamp.host_offset), torch.zeros(1, 2))
