"""The cutout-service client against a local HTTP server on 127.0.0.1 (threads): no real network."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from cutout_server import CutoutServer, fits_bytes

from darkhalo.spec import CutoutSource, LegacySurvey
from darkhalo.surveys.cutout_fits import cutout_name, sky_sigma, write_cutout_fits
from darkhalo.surveys.http_cutouts import (
    CutoutFetchError,
    HttpCutoutClient,
    HttpCutoutProvider,
    cache_name,
    cutout_url,
)
from darkhalo.surveys.provider import provider_for

SIZE = 16
RA, DEC = 150.1234567, 2.7654321


def fits_body(size: int = SIZE, bands: str = "grz", seed: int = 0) -> bytes:
    """A cutout-service response: a noise cube of ``size`` pixels in ``bands``."""
    return fits_bytes(np.random.default_rng(seed).normal(0, 0.003, (len(bands), size, size)), bands)


@pytest.fixture
def server(monkeypatch) -> Iterator[CutoutServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = CutoutServer()
    yield srv
    srv.close()


@pytest.fixture
def client(server: CutoutServer, tmp_path: Path) -> Callable[..., HttpCutoutClient]:
    def make(**kwargs: object) -> HttpCutoutClient:
        options = {"timeout_s": 2.0, "retries": 2, "max_bytes": 1_000_000, "backoff_s": 0.01} | kwargs
        return HttpCutoutClient(server.url, tmp_path / "cache", **options)

    return make


def test_the_url_has_the_viewer_layout() -> None:
    url = cutout_url("https://www.legacysurvey.org/viewer/fits-cutout", RA, DEC, 64)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith("https://www.legacysurvey.org/viewer/fits-cutout?")
    assert query == {
        "ra": ["150.1234567"],
        "dec": ["2.7654321"],
        "layer": ["ls-dr10"],
        "pixscale": ["0.262"],
        "bands": ["grz"],
        "size": ["64"],
    }


def test_a_good_fits_is_read_in_grz_order_and_cached(server: CutoutServer, client) -> None:
    body = fits_body(bands="zrg")
    server.replies.append((200, body, 0))
    cut = client().fetch(RA, DEC, SIZE)
    cube = fits.getdata(io.BytesIO(body))
    assert np.array_equal(cut.image, cube[::-1])  # zrg on the wire -> g, r, z
    assert len(server.requests) == 1 and "size=16" in server.requests[0]
    cached = client().cache_dir / cache_name(RA, DEC, SIZE)
    assert cached.read_bytes() == body
    assert [p.name for p in client().cache_dir.iterdir()] == [cached.name]  # no temporary left behind


def test_a_cache_hit_makes_no_request(server: CutoutServer, client) -> None:
    server.replies.append((200, fits_body(), 0))
    first = client().fetch(RA, DEC, SIZE)
    again = client().fetch(RA, DEC, SIZE)
    assert len(server.requests) == 1
    assert np.array_equal(first.image, again.image)
    server.replies.append((200, fits_body(seed=1), 0))
    client().fetch(RA + 1e-6, DEC, SIZE)
    assert len(server.requests) == 2  # another position is another cache entry


def test_a_timeout_is_retried_then_fails_naming_the_url(server: CutoutServer, client) -> None:
    server.replies.extend([(200, fits_body(), 1.0)] * 2)
    with pytest.raises(CutoutFetchError, match=r"127\.0\.0\.1.*ra=150\.1234567.*failed 2 time\(s\).*timed out"):
        client(timeout_s=0.2, retries=1).fetch(RA, DEC, SIZE)
    assert len(server.requests) == 2
    assert not (client().cache_dir / cache_name(RA, DEC, SIZE)).exists()


def test_a_garbage_body_fails_naming_the_url_and_is_not_cached(server: CutoutServer, client) -> None:
    server.replies.append((200, b"<html>Internal error: no coverage</html>", 0))
    with pytest.raises(CutoutFetchError, match=r"fits-cutout\?ra=150.*not FITS.*<html>"):
        client().fetch(RA, DEC, SIZE)
    assert len(server.requests) == 1  # a bad body is not retried
    assert not (client().cache_dir / cache_name(RA, DEC, SIZE)).exists()


def test_a_fits_with_a_missing_band_or_the_wrong_shape_is_refused(server: CutoutServer, client) -> None:
    server.replies.append((200, fits_body(bands="gr"), 0))
    with pytest.raises(CutoutFetchError, match=r"fits-cutout\?ra=.*unusable cutout: missing band\(s\) z"):
        client().fetch(RA, DEC, SIZE)
    server.replies.append((200, fits_body(size=SIZE + 1), 0))
    with pytest.raises(CutoutFetchError, match=r"cutout shape \(3, 17, 17\), expected \(3, 16, 16\)"):
        client().fetch(RA, DEC, SIZE)
    assert not client().cache_dir.exists() or not any(client().cache_dir.iterdir())


def test_a_huge_body_is_refused_at_the_size_cap(server: CutoutServer, client) -> None:
    server.replies.append((200, fits_body(size=64), 0))  # 3 x 64 x 64 x 4 bytes + header
    with pytest.raises(CutoutFetchError, match=r"fits-cutout\?ra=.*exceeds max_bytes 10000"):
        client(max_bytes=10_000).fetch(RA, DEC, 64)
    assert len(server.requests) == 1


def test_a_server_error_is_retried_with_backoff_then_succeeds(server: CutoutServer, client) -> None:
    server.replies.extend([(500, b"oops", 0), (503, b"busy", 0), (200, fits_body(), 0)])
    started = time.monotonic()
    cut = client(retries=2, backoff_s=0.1).fetch(RA, DEC, SIZE)
    assert cut.image.shape == (3, SIZE, SIZE)
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 0.1 + 0.2  # waits 0.1 s, then 0.2 s


def test_errors_stop_after_the_retries_and_a_client_error_is_not_retried(server: CutoutServer, client) -> None:
    server.replies.extend([(500, b"oops", 0)] * 3)
    with pytest.raises(CutoutFetchError, match=r"failed 3 time\(s\): HTTP 500"):
        client(retries=2).fetch(RA, DEC, SIZE)
    server.replies.append((404, b"not found", 0))
    with pytest.raises(CutoutFetchError, match=r"fits-cutout\?ra=.*HTTP 404"):
        client(retries=2).fetch(RA, DEC, SIZE)
    assert len(server.requests) == 4


def test_only_http_urls_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"file:///etc/passwd.*http"):
        HttpCutoutClient("file:///etc/passwd", tmp_path)


def test_provider_for_picks_the_service_and_estimates_the_sky_invvar(server: CutoutServer, tmp_path: Path) -> None:
    source = CutoutSource(url=server.url, cache_dir=tmp_path / "cache", timeout_s=2, retries=0)
    survey = LegacySurvey(kind="legacy", catalogs=["x.fits"], cutouts=source)
    provider = provider_for(survey, seed=0)
    assert isinstance(provider, HttpCutoutProvider)
    hosts = pd.DataFrame(
        {"RA": [RA, RA + 0.01], "DEC": [DEC, DEC], "PSFSIZE_G": 1.5, "PSFSIZE_R": 1.3, "PSFSIZE_Z": 1.2}
    )
    server.replies.extend([(200, fits_body(seed=2), 0), (200, fits_body(seed=3), 0)])
    stamps = provider.cutouts(hosts, SIZE)
    assert stamps.images.shape == (2, 3, SIZE, SIZE)
    assert np.allclose(stamps.invvar[0, :, 5, 7], 1 / sky_sigma(stamps.images[0]) ** 2, rtol=1e-6)
    assert np.allclose(stamps.psf_fwhm, [[1.5, 1.3, 1.2]] * 2)
    assert "ra=150.1334567" in server.requests[1]


def test_a_host_in_the_local_folder_is_read_from_it_without_a_request(server: CutoutServer, tmp_path: Path) -> None:
    hosts = pd.DataFrame(
        {"RELEASE": [10000, 10000], "BRICKID": [5, 6], "OBJID": [7, 8], "RA": [RA, RA + 0.01], "DEC": [DEC, DEC]}
    ).assign(PSFSIZE_G=1.5, PSFSIZE_R=1.3, PSFSIZE_Z=1.2)
    local = np.full((3, SIZE, SIZE), 0.5, np.float32)
    write_cutout_fits(tmp_path / "dir" / cutout_name(hosts.iloc[0]), local, np.full_like(local, 4.0))
    source = CutoutSource(dir=tmp_path / "dir", url=server.url, cache_dir=tmp_path / "cache", retries=0)
    server.replies.append((200, fits_body(seed=4), 0))
    stamps = HttpCutoutProvider(source).cutouts(hosts, SIZE)
    assert np.array_equal(stamps.images[0], local) and (stamps.invvar[0] == 4.0).all()
    assert len(server.requests) == 1 and "ra=150.1334567" in server.requests[0]
