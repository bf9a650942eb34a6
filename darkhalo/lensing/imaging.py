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


def fft_convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Linear (zero-padded, not circular) convolution of images (..., H, W) with kernels (..., K, K).

    The kernel's centre is its pixel ``K // 2`` (odd K): a delta at pixel (i, j) becomes the kernel
    centred at (i, j). Leading axes broadcast; the output has the images' shape ("same" mode).
    Light spread past the edges is lost; the FFT period, at least H + K // 2 (rounded up to a fast
    FFT size), is long enough that nothing wraps into the output window.
    """
    h, w = images.shape[-2:]
    kh, kw = kernels.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sides must be odd to have a centre pixel, got {kh}x{kw}")
    ph, pw = _fast_fft_size(max(h + kh // 2, kh)), _fast_fft_size(max(w + kw // 2, kw))

    def transform(a: torch.Tensor) -> torch.Tensor:
        # rows, then columns of the transposed result: each 1-D pass runs along contiguous memory,
        # and the zero padding rows are never transformed (~1.5x as fast as rfft2 on CPU)
        return torch.fft.fft(torch.fft.rfft(a, n=pw, dim=-1).transpose(-1, -2), n=ph, dim=-1)

    columns = torch.fft.ifft(transform(images) * transform(kernels), dim=-1)[..., kh // 2 : kh // 2 + h]
    return torch.fft.irfft(columns.transpose(-1, -2), n=pw, dim=-1)[..., kw // 2 : kw // 2 + w]


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
