"""Real cutouts fetched from the Legacy Surveys cutout service over HTTP, cached on disk.

The request is the viewer's ``fits-cutout`` layout (``?ra=..&dec=..&layer=ls-dr10&pixscale=0.262
&bands=grz&size=N``) on a configurable base URL. Each response is checked before it is kept: at
most ``max_bytes`` long, FITS magic, a (3, N, N) grz cube read by darkhalo.surveys.cutout_fits.
Good responses are cached atomically under a name keyed by layer, pixel scale, size and position,
so a cached cutout is never fetched again. Timeouts, connection errors, HTTP 429 and 5xx are
retried with exponential backoff; every error names the URL.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pandas as pd

from darkhalo.artifacts import atomic_file
from darkhalo.spec import CutoutSource
from darkhalo.surveys.columns import BANDS
from darkhalo.surveys.cutout_fits import (
    CutoutFile,
    CutoutFileError,
    FolderCutoutProvider,
    crop_at,
    cutout_name,
    read_cutout_fits,
    sky_invvar,
    survey_psf,
)
from darkhalo.surveys.provider import Cutouts

DEFAULT_LAYER = "ls-dr10"
PIXEL_SCALE = 0.262  # arcsec per pixel of the Legacy Surveys coadds
FITS_MAGIC = b"SIMPLE  ="
CHUNK = 1 << 16  # bytes read per socket call


class CutoutFetchError(RuntimeError):
    """A cutout that could not be fetched or is unusable; the message names the URL."""


class _Transient(Exception):
    """A failure worth retrying (timeout, dropped connection, HTTP 429 or 5xx)."""


def cutout_url(base_url: str, ra: float, dec: float, size: int, layer: str = DEFAULT_LAYER) -> str:
    """The service URL of a size x size grz cutout centred on (ra, dec) in degrees."""
    query = urlencode(
        {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "layer": layer, "pixscale": PIXEL_SCALE, "bands": "grz", "size": size}
    )
    return f"{base_url}{'&' if '?' in base_url else '?'}{query}"


def cache_name(ra: float, dec: float, size: int, layer: str = DEFAULT_LAYER) -> str:
    """The cache file of a cutout: keyed by layer, pixel scale, size and position (1e-7 deg)."""
    return f"{layer}_{PIXEL_SCALE:g}_{size}_{ra:.7f}_{dec:+.7f}.fits"


@dataclass(frozen=True)
class HttpCutoutClient:
    """Fetches, checks and caches cutouts; ``backoff_s`` doubles after each failed attempt."""

    base_url: str
    cache_dir: Path
    timeout_s: float = 30.0
    retries: int = 3
    max_bytes: int = 50_000_000
    backoff_s: float = 0.5
    layer: str = DEFAULT_LAYER

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"cutout service URL {self.base_url!r}: need an http:// or https:// URL with a host")

    def fetch(self, ra: float, dec: float, size: int) -> CutoutFile:
        """The size x size cutout at (ra, dec): from the cache, or fetched, checked and cached."""
        path = Path(self.cache_dir) / cache_name(ra, dec, size, self.layer)
        if path.is_file():
            return read_cutout_fits(path)
        url = cutout_url(self.base_url, ra, dec, size, self.layer)
        body = self._download(url)
        if not body.startswith(FITS_MAGIC):
            raise CutoutFetchError(f"{url}: response is not FITS (starts {body[:40]!r})")
        try:
            cut = read_cutout_fits(io.BytesIO(body))
        except CutoutFileError as exc:  # the reader names its buffer; the URL is the name here
            raise CutoutFetchError(f"{url}: unusable cutout: {str(exc).split(': ', 1)[-1]}") from None
        if cut.image.shape != (len(BANDS), size, size):
            raise CutoutFetchError(f"{url}: cutout shape {cut.image.shape}, expected {(len(BANDS), size, size)}")
        with atomic_file(path, "wb") as handle:
            handle.write(body)
        return cut

    def _download(self, url: str) -> bytes:
        failures = []
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._get(url)
            except _Transient as exc:
                failures.append(str(exc))
        raise CutoutFetchError(f"{url}: failed {len(failures)} time(s): {'; '.join(failures)}")

    def _get(self, url: str) -> bytes:
        """One GET with a whole-response deadline of ``timeout_s`` and the size cap."""
        deadline = time.monotonic() + self.timeout_s
        request = urllib.request.Request(url, headers={"User-Agent": "darkhalo"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise CutoutFetchError(f"{url}: response of {declared} bytes exceeds max_bytes {self.max_bytes}")
                body = bytearray()
                while chunk := response.read(CHUNK):
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise CutoutFetchError(f"{url}: response exceeds max_bytes {self.max_bytes}")
                    if time.monotonic() > deadline:
                        raise _Transient(f"timed out after {self.timeout_s:g} s reading the body")
                if declared is not None and declared.isdigit() and len(body) != int(declared):
                    raise _Transient(f"body cut short: {len(body)} of {declared} bytes")
                return bytes(body)
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
            raise CutoutFetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException) as exc:
            raise _Transient(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None


class HttpCutoutProvider:
    """Real stamps from the cutout service (spec ``survey.cutouts.url``), cached in ``cache_dir``;
    a host whose file is in the spec's cutout ``dir`` (if any) is read from there instead.

    The service returns no inverse variance with a plain cutout, so each band's invvar is the
    sky's (1 / robust background sigma^2, constant over the stamp); the PSF is the survey model
    at the host's PSFSIZE (as for a folder of cutouts).
    """

    def __init__(self, source: CutoutSource) -> None:
        if source.url is None:
            raise ValueError("survey.cutouts.url: the HTTP provider needs the cutout service URL")
        self.client = HttpCutoutClient(source.url, source.cache_dir, source.timeout_s, source.retries, source.max_bytes)
        self.folder = None if source.dir is None else FolderCutoutProvider(source.dir)

    def cutouts(self, hosts: pd.DataFrame, size: int) -> Cutouts:
        """Stamps for ``hosts`` (RA, DEC, PSFSIZE_*), in the rows' order."""
        images = np.zeros((len(hosts), len(BANDS), size, size), np.float32)
        invvar = np.zeros_like(images)
        offset = np.zeros((len(hosts), 2), np.float32)
        for i, (ra, dec) in enumerate(zip(hosts["RA"].to_numpy(), hosts["DEC"].to_numpy(), strict=True)):
            if self.folder is not None and (self.folder.folder / cutout_name(hosts.iloc[i])).is_file():
                local = self.folder.cutouts(hosts.iloc[[i]], size)
                images[i], invvar[i], offset[i] = local.images[0], local.invvar[0], local.host_offset[0]
                continue
            cut = self.client.fetch(float(ra), float(dec), size)
            rows, cols, offset[i] = crop_at(cut, size, cutout_url(self.client.base_url, ra, dec, size))
            images[i] = cut.image[:, rows, cols]
            invvar[i] = (cut.invvar if cut.invvar is not None else sky_invvar(cut.image))[:, rows, cols]
        fwhm, beta = survey_psf(hosts)
        return Cutouts(images, invvar, fwhm, beta, offset)
