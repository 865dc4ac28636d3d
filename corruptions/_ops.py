"""Shared batched tensor helpers of the corruption functions.

All functions take float32 tensors of shape (N, C, H, W) (or (N, H, W) planes where said) and work on any device.
Boundary modes follow scipy.ndimage's names, because the reference filters with scipy / scikit-image:

* ``"nearest"``: ``a a | a b c d | d d`` (edge replicated; scikit-image ``gaussian``'s default);
* ``"reflect"``: ``b a | a b c d | d c`` (half-sample symmetric, edge repeated);
* ``"mirror"``: ``c b | a b c d | c b`` (whole-sample symmetric, OpenCV's ``BORDER_REFLECT_101``);
* ``"wrap"``: ``c d | a b c d | a b``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MODES",
    "boundary_index",
    "gaussian_kernel1d",
    "gaussian_radius",
    "filter_matrix",
    "separable_filter",
    "gaussian_blur",
    "filter2d",
    "rgb_to_gray",
    "to_rgb",
    "from_rgb",
    "clipped_zoom",
    "motion_taps",
    "motion_blur",
]

MODES = ("nearest", "reflect", "mirror", "wrap")


def boundary_index(n: int, pad_before: int, pad_after: int, mode: str) -> Tensor:
    """Source indices of an axis of length ``n`` padded by ``pad_before`` / ``pad_after`` (any length) in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown boundary mode {mode!r}; valid: {', '.join(MODES)}")
    i = torch.arange(-pad_before, n + pad_after)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    if mode == "reflect":
        m = i.remainder(2 * n)
        return torch.where(m >= n, 2 * n - 1 - m, m)
    if n == 1:  # mirror of a single sample
        return torch.zeros_like(i)
    m = i.remainder(2 * n - 2)
    return torch.where(m >= n, 2 * n - 2 - m, m)


def gaussian_radius(sigma: float, truncate: float = 4.0) -> int:
    """scipy.ndimage's kernel radius: ``int(truncate * sigma + 0.5)``."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel1d(sigma: float, radius: int) -> Tensor:
    """Normalised 1D Gaussian taps ``exp(-x^2 / (2 sigma^2))`` for x in [-radius, radius] (float64)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    if sigma <= 0:
        return (x == 0).to(torch.float64)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


@lru_cache(maxsize=64)
def _filter_matrix_cached(n: int, taps: tuple[float, ...], mode: str) -> Tensor:
    k = torch.tensor(taps, dtype=torch.float64)
    r = (len(taps) - 1) // 2
    idx = boundary_index(n, r, len(taps) - 1 - r, mode)
    mat = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    for t in range(len(taps)):
        mat.index_put_((rows, idx[rows + t]), k[t].expand(n), accumulate=True)
    return mat.to(torch.float32)


def filter_matrix(n: int, taps: Tensor, mode: str) -> Tensor:
    """The (n, n) matrix of a 1D correlation with ``taps`` (odd length, centred) and boundary ``mode``."""
    return _filter_matrix_cached(int(n), tuple(float(t) for t in taps.tolist()), mode)


def _filter_axis(x: Tensor, taps: Tensor, mode: str, dim: int) -> Tensor:
    """Correlate (N, C, H, W) along ``dim`` (2 or 3) with odd-length ``taps``."""
    n = x.shape[dim]
    k = taps.numel()
    if k == 1:
        return x * float(taps[0])
    r = (k - 1) // 2
    # A direct correlation costs k MACs per value, the matrix product n; measured on CPU, a single-plane conv runs
    # ~25x slower per MAC than a BLAS matrix product, so the matrix wins up to n ~ 32 k (all image sizes of the suites).
    if n <= 32 * k:
        mat = filter_matrix(n, taps, mode).to(x.device)
        return torch.matmul(mat, x) if dim == 2 else torch.matmul(x, mat.t())
    idx = boundary_index(n, r, k - 1 - r, mode).to(x.device)
    xp = x.index_select(dim, idx)
    b, c, h, w = xp.shape
    weight = taps.to(device=x.device, dtype=x.dtype)
    weight = weight.view(1, 1, k, 1) if dim == 2 else weight.view(1, 1, 1, k)
    return F.conv2d(xp.reshape(b * c, 1, h, w), weight).reshape(
        b, c, *([h - k + 1, w] if dim == 2 else [h, w - k + 1])
    )


_CV2_BORDER = {
    "nearest": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "mirror": cv2.BORDER_REFLECT_101,
}


def _prefer_opencv(h: int, w: int, kh: int, kw: int) -> bool:
    """Whether OpenCV's direct separable filter beats the matrix products for one (h, w) plane (a cost model
    fitted on this project's 2-core CPU: ~3 us per call plus kh + kw multiply-adds per value, against H + W
    multiply-adds per value at ~3.6x the speed)."""
    if h + w > 32 * (kh + kw):  # the matrix path would fall back to a convolution there: OpenCV is better
        return True
    return 3.6 * (kh + kw) + 150_000 / (h * w) < h + w


def separable_filter(x: Tensor, taps_h: Tensor, taps_w: Tensor, mode: str = "nearest") -> Tensor:
    """Correlate each plane of (N, C, H, W) with ``taps_h`` along H then ``taps_w`` along W.

    On the CPU, short kernels on large planes run through OpenCV's ``sepFilter2D`` plane by plane (4-5x faster than
    torch's convolution here); otherwise, and on other devices, as batched matrix products (or convolutions for very
    large images). A matrix product costs H + W multiply-adds per value against OpenCV's kh + kw, but at several
    times the speed per multiply-add and without a per-plane call: measured here, OpenCV wins at 224 px up to about
    60 taps and never on 32 px planes (``_prefer_opencv``).
    """
    n, c, h, w = x.shape
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and mode in _CV2_BORDER
        and taps_h.numel() <= h
        and taps_w.numel() <= w
        and taps_h.numel() % 2 == 1
        and taps_w.numel() % 2 == 1
        and _prefer_opencv(h, w, taps_h.numel(), taps_w.numel())
    ):
        src = x.detach().contiguous().reshape(n * c, h, w).numpy()
        out = np.empty_like(src)
        kx = taps_w.to(torch.float32).numpy()
        ky = taps_h.to(torch.float32).numpy()
        border = _CV2_BORDER[mode]
        for i in range(n * c):
            cv2.sepFilter2D(src[i], -1, kx, ky, dst=out[i], borderType=border)
        return torch.from_numpy(out).reshape(n, c, h, w)
    return _filter_axis(_filter_axis(x, taps_h, mode, 2), taps_w, mode, 3)


def gaussian_blur(x: Tensor, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """Gaussian blur of every plane with scipy.ndimage / scikit-image semantics (``gaussian_filter``).

    Args:
        x: (N, C, H, W) float.
        sigma: standard deviation in pixels (both axes); 0 returns ``x``.
        mode: boundary mode (``MODES``).
        truncate: the kernel's radius in sigmas.
    """
    if sigma <= 0:
        return x
    taps = gaussian_kernel1d(sigma, gaussian_radius(sigma, truncate))
    return separable_filter(x, taps, taps, mode)


def _fft_size(n: int) -> int:
    """The smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def filter2d(x: Tensor, kernel: Tensor, mode: str = "mirror") -> Tensor:
    """Correlate every plane of (N, C, H, W) with a 2D ``kernel`` (kh, kw) anchored at its centre (OpenCV's
    ``filter2D`` for odd kernels; its default border is ``"mirror"``).

    On the CPU, odd kernels that fit the image run through OpenCV's ``filter2D`` plane by plane (what the reference
    calls; 2-10x faster than the torch paths here). Otherwise small kernels run as a direct convolution, larger
    ones through the FFT of the padded planes (exact up to float rounding: the padding holds the boundary values,
    so the circular wrap never reaches the kept region).
    """
    kh, kw = kernel.shape
    n, c, h, w = x.shape
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and mode in _CV2_BORDER
        and kh % 2 == 1
        and kw % 2 == 1
        and kh <= h
        and kw <= w
    ):
        src = x.detach().contiguous().reshape(n * c, h, w).numpy()
        out = np.empty_like(src)
        k = kernel.detach().to(torch.float32).contiguous().numpy()
        border = _CV2_BORDER[mode]
        for i in range(n * c):
            cv2.filter2D(src[i], -1, k, dst=out[i], borderType=border)
        return torch.from_numpy(out).reshape(n, c, h, w)
    return _filter2d_torch(x, kernel, mode)


def _filter2d_torch(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """``filter2d`` in torch (any device): a direct convolution for small kernels, else an FFT."""
    kh, kw = kernel.shape
    rh, rw = (kh - 1) // 2, (kw - 1) // 2
    n, c, h, w = x.shape
    ih = boundary_index(h, rh, kh - 1 - rh, mode).to(x.device)
    iw = boundary_index(w, rw, kw - 1 - rw, mode).to(x.device)
    xp = x.index_select(2, ih).index_select(3, iw)
    weight = kernel.to(device=x.device, dtype=x.dtype)
    if kh * kw <= 25:
        return F.conv2d(xp.reshape(n * c, 1, h + kh - 1, w + kw - 1), weight.view(1, 1, kh, kw)).reshape(
            n, c, h, w
        )
    ph, pw = _fft_size(h + kh - 1), _fft_size(w + kw - 1)
    spec = torch.fft.rfft2(xp, s=(ph, pw))
    # correlation = convolution with the flipped kernel; the valid part starts at (kh - 1, kw - 1)
    kspec = torch.fft.rfft2(weight.flip(0, 1), s=(ph, pw))
    full = torch.fft.irfft2(spec * kspec, s=(ph, pw))
    return full[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w].contiguous()


def rgb_to_gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma (0.299, 0.587, 0.114) of (N, 3, H, W) -> (N, 1, H, W); (N, 1, H, W) is returned as is."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def to_rgb(x: Tensor) -> Tensor:
    """(N, 1, H, W) replicated to (N, 3, H, W); RGB returned as is."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def from_rgb(y: Tensor, channels: int) -> Tensor:
    """Back to ``channels`` channels: the mean over RGB for grayscale (what the reference backend does)."""
    return y.mean(dim=1, keepdim=True) if channels == 1 else y


# ------------------------------------------------------------------------------------ zoom and motion blur
def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Zoom into the centre by ``factor`` (bilinear, corners aligned as ``scipy.ndimage.zoom(order=1)``).

    The reference's ``clipped_zoom``: crops the centre ``ceil(H / factor) x ceil(W / factor)`` and enlarges it to
    ``round(size * factor)``. Returns the zoomed centre crop, at least as large as ``x`` (callers crop the top-left
    (H, W)). Works on any leading dimensions (..., H, W) that ``F.interpolate`` accepts.
    """
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    size = (int(round(ch * factor)), int(round(cw * factor)))
    if size == (ch, cw):
        return crop
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=True)


def motion_taps(
    radius: float, sigma: float, angles: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The reference's shift-and-sum motion kernel (its stand-in for ImageMagick's ``-motion-blur``).

    ``T = 2 * ceil(radius) + 1`` taps with one-sided Gaussian weights ``exp(-i^2 / (2 sigma^2))`` normalised over all
    taps; tap i of an image blurred at ``angle`` (degrees) shifts it by ``dy = -ceil(i * py / hypot - 0.5)``,
    ``dx = -ceil(i * px / hypot - 0.5)`` with ``(py, px) = T * (sin, cos)(angle)``, written as the reference
    computes it. From the first tap whose shift reaches the image size on, taps are dropped (the reference stops its
    loop there) without renormalising.

    Returns:
        ``(kernel, dy, dx, alive)``: float64 (T,), long (N, T), long (N, T), bool (N, T), all on the CPU.
    """
    taps_n = 2 * int(math.ceil(float(radius))) + 1
    taps = torch.arange(taps_n, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    kernel = kernel / kernel.sum()
    rad = torch.deg2rad(angles.detach().to("cpu", torch.float64).reshape(-1))
    py, px = taps_n * torch.sin(rad), taps_n * torch.cos(rad)
    hyp = torch.hypot(py, px)
    dy = -torch.ceil(taps[None, :] * py[:, None] / hyp[:, None] - 0.5).long()  # (N, T)
    dx = -torch.ceil(taps[None, :] * px[:, None] / hyp[:, None] - 0.5).long()
    alive = torch.cumprod(((dy.abs() < height) & (dx.abs() < width)).long(), dim=1).bool()
    return kernel, dy, dx, alive


def motion_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """The reference's shift-and-sum motion blur (``motion_taps``), one angle (degrees) per image.

    ``out[h, w] = sum_i k_i * x[clamp(h - dy_i), clamp(w - dx_i)]`` (edges replicated) over the live taps. Used by
    the motion_blur and snow corruptions and by the motion-blur / snow perturbations.

    Small images: one batched gather per tap. Large images: shifted windows of an edge-padded copy are added image
    by image (plain slices, several times faster than gathers once an image has thousands of pixels).

    Shape:
        x: (N, C, H, W); angles: (N,).
    """
    n, c, h, w = x.shape
    kernel, dy, dx, alive = motion_taps(radius, sigma, angles, h, w)
    width = kernel.numel()
    out = torch.zeros(n, c, h, w, dtype=x.dtype, device=x.device)
    if h * w >= 4096:
        pad = width - 1
        rows = torch.arange(-pad, h + pad).clamp_(0, h - 1).to(x.device)
        cols = torch.arange(-pad, w + pad).clamp_(0, w - 1).to(x.device)
        xp = x.index_select(2, rows).index_select(3, cols)
        tops, lefts, live, k = (pad - dy).tolist(), (pad - dx).tolist(), alive.tolist(), kernel.tolist()
        for i in range(n):
            oi, xi = out[i], xp[i]
            for t in range(width):
                if not live[i][t]:
                    break
                y0, x0 = tops[i][t], lefts[i][t]
                oi.add_(xi[:, y0 : y0 + h, x0 : x0 + w], alpha=k[t])
        return out
    # one gather per tap from the edge-padded planes, flattened: tap t of plane p starts at base[p, t]
    pad = width - 1
    dy, dx = dy.clamp(-pad, pad), dx.clamp(-pad, pad)
    rows = torch.arange(-pad, h + pad).clamp_(0, h - 1).to(x.device)
    cols = torch.arange(-pad, w + pad).clamp_(0, w - 1).to(x.device)
    wp = w + 2 * pad
    flat = x.index_select(2, rows).index_select(3, cols).reshape(n * c, -1)
    base = ((pad - dy) * wp + (pad - dx)).repeat_interleave(c, dim=0).to(x.device)  # (N * C, T)
    weights = (kernel[None, :] * alive).repeat_interleave(c, dim=0).to(dtype=x.dtype, device=x.device)
    grid = (torch.arange(h)[:, None] * wp + torch.arange(w)[None, :]).reshape(1, -1).to(x.device)
    acc = out.view(n * c, h * w)
    for t in range(width):
        if not bool(alive[:, t].any()):
            break
        acc.addcmul_(flat.gather(1, base[:, t : t + 1] + grid), weights[:, t : t + 1])
    return out
