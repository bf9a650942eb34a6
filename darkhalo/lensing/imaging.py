"""Pixel grids, FFT convolution and binning: the image-formation steps shared by the arc renderer
and the mock survey. Stamp convention: the centre (host position) is pixel index ``size // 2``
on both axes; arrays are (..., y, x)."""

from __future__ import annotations

import torch


def pixel_offsets(size: int, pixel_scale: float, supersample: int = 1, **like: object) -> torch.Tensor:
    """1-D coordinates (arcsec) of the (sub-)pixel centres along one axis of a ``size`` stamp.

    Pixel ``i`` is centred at ``(i - size // 2) * pixel_scale``; with ``supersample`` s it is split
    into s sub-pixels of width ``pixel_scale / s``. Returns ``size * s`` values.
    """
    dtype = like.get("dtype", torch.float32)
    device = like.get("device")
    centres = (torch.arange(size, dtype=torch.float64) - size // 2) * pixel_scale
    sub = ((torch.arange(supersample, dtype=torch.float64) + 0.5) / supersample - 0.5) * pixel_scale
    return (centres[:, None] + sub[None, :]).reshape(-1).to(dtype=dtype, device=device)


def pixel_grid(
    size: int, pixel_scale: float, supersample: int = 1, **like: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D (x, y) coordinates (arcsec) of (sub-)pixel centres, each of shape (size*s, size*s)."""
    axis = pixel_offsets(size, pixel_scale, supersample, **like)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def bin_pixels(image: torch.Tensor, supersample: int) -> torch.Tensor:
    """Sum ``supersample`` x ``supersample`` blocks of the last two axes (flux is conserved)."""
    if supersample == 1:
        return image
    *lead, h, w = image.shape
    rows = image.reshape(*lead, h, w // supersample, supersample).sum(dim=-1)  # contiguous reduce: fast
    return rows.reshape(*lead, h // supersample, supersample, w // supersample).sum(dim=-2)


#: How one plane of moments enters the light's spectrum: terms ((a, b), weight), each standing for
#: weight (-i kx)^a (-i ky)^b / (a! b!) (the Taylor terms of a shift by (dx, dy)).
SpectralTerms = tuple[tuple[tuple[int, int], float], ...]
#: One plane, the light itself at the pixel centres: plain convolution.
PLAIN: tuple[SpectralTerms, ...] = ((((0, 0), 1.0),),)


def fft_convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Linear (zero-padded, not circular) convolution of images (..., H, W) with kernels (..., K, K).

    The kernel's centre is its pixel ``K // 2`` (odd K): a delta at pixel (i, j) becomes the kernel
    centred at (i, j). Leading axes broadcast; the output has the images' shape ("same" mode).
    Light spread past the edges of the images is lost; the FFT period (``_fft_period``) is long
    enough that nothing wraps into the output window.
    """
    return fft_convolve_moments(images[..., None, :, :], kernels, 0, PLAIN)


def fft_convolve_moments(
    moments: torch.Tensor, kernels: torch.Tensor, margin: int, terms: tuple[SpectralTerms, ...]
) -> torch.Tensor:
    """Convolve light given as per-pixel moments (..., M, H, W) with kernels (..., K, K), cropping
    ``margin`` pixels from each side of the result: (..., H - 2 margin, W - 2 margin).

    The exact convolution of light at offset d (pixels) from a pixel centre multiplies the kernel's
    spectrum by exp(-i k.d); its Taylor series in d is the sum over (a, b) of (-i kx)^a (-i ky)^b /
    (a! b!) times the spectrum of the moment dx^a dy^b. ``terms[m]`` says which Taylor terms plane m
    carries (a moment, or a moment standing in for others it predicts). So light lands at its
    sub-pixel position (the kernel interpolated band-limited), at the cost of one row pass per plane
    and one column pass per power of dy, shared by every kernel. Odd powers of a Nyquist frequency
    are dropped (they have no real counterpart); a well-sampled PSF has no power there.
    """
    h, w = moments.shape[-2:]
    kh, kw = kernels.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sides must be odd to have a centre pixel, got {kh}x{kw}")
    ph, pw = _fft_period(h, kh, margin), _fft_period(w, kw, margin)

    def transform(a: torch.Tensor) -> torch.Tensor:
        # rows, then columns: the zero padding rows are never transformed by the row pass, and
        # every array stays (..., y, x frequency), so no pass needs a transposed copy
        return torch.fft.fft(torch.fft.rfft(a, n=pw, dim=-1), n=ph, dim=-2)

    if terms == PLAIN:
        light = transform(moments[..., 0, :, :])
    else:
        # the x factors are applied between the row and the column pass, so the column pass runs
        # once per power of dy instead of once per plane
        rows = torch.fft.rfft(moments, n=pw, dim=-1)  # (..., M, H, pw // 2 + 1)
        powers = [ab for plane in terms for ab, _ in plane]
        kx = _taylor_factors(torch.fft.rfftfreq(pw, dtype=torch.float64), pw, max(a for a, _ in powers))
        ky = _taylor_factors(torch.fft.fftfreq(ph, dtype=torch.float64), ph, max(b for _, b in powers))
        kx, ky = ([f.to(device=moments.device, dtype=rows.dtype) for f in fs] for fs in (kx, ky))
        by_dy = rows.new_zeros(*rows.shape[:-3], len(ky), ph, rows.shape[-1])  # zero rows pad to ph
        for m, plane in enumerate(terms):
            for (a, b), weight in plane:
                by_dy[..., b, :h, :].addcmul_(rows[..., m, :, :], kx[a] * weight)
        columns = torch.fft.fft(by_dy, dim=-2)
        light = columns[..., 0, :, :]
        for b in range(1, len(ky)):
            light = light.addcmul(columns[..., b, :, :], ky[b][:, None])
    rows = torch.fft.ifft(light * transform(kernels), dim=-2)[..., kh // 2 + margin : kh // 2 + h - margin, :]
    return torch.fft.irfft(rows, n=pw, dim=-1)[..., kw // 2 + margin : kw // 2 + w - margin]


def _taylor_factors(frequency: torch.Tensor, period: int, order: int) -> list[torch.Tensor]:
    """(-i k)^a / a! for a = 0..order at FFT frequencies (cycles per pixel) of ``period``; odd
    powers are zero at the Nyquist frequency."""
    k = 2 * torch.pi * frequency
    nyquist = (frequency.abs() == 0.5) if period % 2 == 0 else torch.zeros_like(frequency, dtype=torch.bool)
    factors, term = [], torch.ones_like(k, dtype=torch.complex128)
    for a in range(order + 1):
        factors.append(torch.where(nyquist, 0, term) if a % 2 else term)
        term = term * (-1j * k) / (a + 1)
    return factors


def _fft_period(n: int, k: int, margin: int) -> int:
    """The FFT length for convolving n samples with a k-sample kernel and keeping the output less
    ``margin`` at each end: long enough to hold the image and the kernel, and for the linear
    convolution's tail not to wrap into the kept window (n - margin + k // 2), rounded to a fast size."""
    return _fast_fft_size(max(n, k, n - margin + k // 2))


def _fast_fft_size(n: int) -> int:
    """The smallest m >= n whose prime factors are 2, 3 and 5 (FFTs of such sizes are fast)."""
    m = n
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1
