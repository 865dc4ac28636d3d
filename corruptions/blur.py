"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur.

Parameters are in pixels and applied as written at every image size (see ``corruptions.suites``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import _ops
from .base import CORRUPTIONS, Context

__all__ = [
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "gaussian_blur",
    "disk_kernel",
    "glass_shuffle",
]


# ------------------------------------------------------------------------------------------------ defocus blur
@lru_cache(maxsize=32)
def _disk_kernel_cached(radius: float, alias_blur: float) -> np.ndarray:
    # Hendrycks' construction: a binary disk on a grid of at least 17 x 17, normalised, then anti-aliased by a small
    # OpenCV Gaussian blur (3x3 up to radius 8, 5x5 beyond).
    half = 8 if radius <= 8 else int(math.ceil(radius))
    ksize = (3, 3) if radius <= 8 else (5, 5)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = np.asarray(xx**2 + yy**2 <= radius**2, dtype=np.float32)
    disk /= disk.sum()
    kernel = cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)
    # drop the all-zero border rows / columns (exact: they carry no weight) so small radii stay small kernels
    nz = np.nonzero(kernel)
    r = int(max(np.abs(nz[0] - half).max(), np.abs(nz[1] - half).max()))
    return kernel[half - r : half + r + 1, half - r : half + r + 1].copy()


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The defocus kernel: a normalised disk of ``radius`` px blurred by a Gaussian of sigma ``alias_blur``."""
    return torch.from_numpy(_disk_kernel_cached(float(radius), float(alias_blur)))


@CORRUPTIONS.register(
    "defocus_blur",
    category="blur",
    benchmark=True,
    order=4,
    arity=2,
    imagenet_c=((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    cifar10_c=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    reference="defocus_blur",
)
def defocus_blur(x: Tensor, param: tuple[float, float], ctx: Context) -> Tensor:
    """Convolution with an anti-aliased disk; ``param`` = (radius, alias_blur). Borders mirrored (as OpenCV)."""
    return _ops.filter2d(x, disk_kernel(param[0], param[1]), mode="mirror")


# -------------------------------------------------------------------------------------------------- glass blur
def _glass_links(offsets: np.ndarray, h: int, w: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of a batch (flat indices over N * H * W): the pixel it copies from, and whether that pixel was
    visited before it in the reference's scan (so the copied value is that pixel's final one)."""
    n, _, rh, rw = offsets.shape
    hw = h * w
    span = 2 * d
    idx = np.int32 if n * hw < 2**31 else np.int64
    # one code per visited pixel for its (dy, dx); tables give the flat shift and whether the source is visited
    # before p in the bottom-right-to-top-left scan (dy > 0, or dy == 0 and dx > 0)
    code = offsets[:, 0].astype(np.int32)
    code += d
    code *= span
    code += offsets[:, 1]
    code += d
    dy_tab = np.repeat(np.arange(-d, d, dtype=np.int32), span)
    dx_tab = np.tile(np.arange(-d, d, dtype=np.int32), span)
    shift = np.take(dy_tab * w + dx_tab, code)
    link = np.take((dy_tab > 0) | ((dy_tab == 0) & (dx_tab > 0)), code)
    # near the edges of the visited region the source may fall outside it: no link there
    rows = np.arange(d + 1, h - d + 1, dtype=np.int32).reshape(1, rh, 1)
    cols = np.arange(d + 1, w - d + 1, dtype=np.int32).reshape(1, 1, rw)
    every = slice(None)
    for sr, sc in (
        (slice(0, d), every),
        (slice(max(rh - d, 0), rh), every),
        (every, slice(0, d)),
        (every, slice(max(rw - d, 0), rw)),
    ):
        src_r = rows[:, sr] + offsets[:, 0, sr, sc]
        src_c = cols[:, :, sc] + offsets[:, 1, sr, sc]
        link[:, sr, sc] &= (src_r >= d + 1) & (src_r <= h - d) & (src_c >= d + 1) & (src_c <= w - d)
    source = np.arange(n * hw, dtype=idx).reshape(n, h, w)
    region = np.s_[:, d + 1 : h - d + 1, d + 1 : w - d + 1]
    source[region] += shift
    linked = np.zeros((n, h, w), dtype=bool)
    linked[region] = link
    return source.reshape(-1), linked.reshape(-1)


def _glass_resolve(source: np.ndarray, linked: np.ndarray) -> np.ndarray:
    """The original pixel each pixel ends up holding: follow the links (p copies the final value of source[p] when
    ``linked[p]``) until a pixel that copies an original value. Links point to pixels later in raster order, so
    the chains end; only the linked pixels (at most ~40 %) are followed, fewer at each step."""
    out = source.copy()
    active = np.flatnonzero(linked).astype(source.dtype)
    head = source[active]
    while active.size:
        more = linked[head]
        done = ~more
        out[active[done]] = source[head[done]]
        active, head = active[more], source[head[more]]
    return out


def _glass_shuffle_torch(x: Tensor, offsets: Tensor, max_delta: int) -> Tensor:
    """``glass_shuffle`` by pointer jumping over the whole batch in torch (any device)."""
    n, c, h, w = x.shape
    d = int(max_delta)
    rh, rw = h - 2 * d, w - 2 * d
    if rh <= 0 or rw <= 0:
        return x.clone()
    dev = x.device
    rows = torch.arange(d + 1, h - d + 1, device=dev).view(1, rh, 1)
    cols = torch.arange(d + 1, w - d + 1, device=dev).view(1, 1, rw)
    dy, dx = offsets[:, 0].to(dev).long(), offsets[:, 1].to(dev).long()
    src_r, src_c = rows + dy, cols + dx
    in_region = (src_r >= d + 1) & (src_r <= h - d) & (src_c >= d + 1) & (src_c <= w - d)
    earlier = (dy > 0) | ((dy == 0) & (dx > 0))  # visited before p in the bottom-right-to-top-left scan
    link = in_region & earlier
    # work in flat pixel indices of the full image; only the visited region carries links
    hw = h * w
    target = torch.arange(hw, device=dev).repeat(n, 1)
    terminal = torch.ones(n, hw, dtype=torch.bool, device=dev)
    flat = (rows * w + cols).expand(n, rh, rw).reshape(n, -1)
    target.scatter_(1, flat, (src_r * w + src_c).reshape(n, -1))
    terminal.scatter_(1, flat, ~link.reshape(n, -1))
    while not bool(terminal.all()):
        nxt_target = target.gather(1, target)
        nxt_terminal = terminal.gather(1, target)
        target = torch.where(terminal, target, nxt_target)
        terminal = terminal | nxt_terminal
    visited = torch.zeros(n, hw, dtype=torch.bool, device=dev)
    visited.scatter_(1, flat, True)
    index = torch.where(visited, target, torch.arange(hw, device=dev).expand(n, hw))
    flat_x = x.reshape(n, c, hw)
    return flat_x.gather(2, index.unsqueeze(1).expand(n, c, hw)).reshape(n, c, h, w)


def _glass_gather(x: Tensor, index: np.ndarray) -> Tensor:
    """``out[i, :, p] = x[i, :, index[i * H * W + p] - i * H * W]`` for (N, C, H, W) on the CPU."""
    n, c, h, w = x.shape
    hw = h * w
    dtype = np.int32 if n * c * hw < 2**31 else np.int64
    local = index.astype(dtype, copy=False).reshape(n, 1, hw) + (
        np.arange(n * c, dtype=np.int64) * hw - np.repeat(np.arange(n, dtype=np.int64) * hw, c)
    ).astype(dtype).reshape(n, c, 1)
    flat = x.detach().contiguous().numpy().reshape(-1)
    return torch.from_numpy(np.take(flat, local).reshape(n, c, h, w))


def glass_shuffle(x: Tensor, offsets: Tensor, max_delta: int) -> Tensor:
    """One pass of glass blur's local pixel shuffle, with the reference's copy semantics, for a whole batch.

    The reference visits rows ``H - d .. d + 1`` and, in each, columns ``W - d .. d + 1`` (bottom-right to top-left),
    and for each pixel p with offset o "swaps" p and p + o through numpy views - which copies p + o onto p and leaves
    p + o unchanged. So p gets the *current* value at p + o: the final value of p + o when p + o was visited before p
    (later in raster order), the original one otherwise. Following those links gives, for every pixel, the original
    pixel it ends up holding, without the sequential scan (on the CPU by following only the linked pixels, elsewhere
    by pointer jumping over the whole batch).

    Args:
        x: (N, C, H, W).
        offsets: (N, 2, H - 2d, W - 2d) integers in [-d, d): (dy, dx) for the visited pixels, row-major from the
            top-left visited pixel (d + 1, d + 1).
        max_delta: d.

    Returns:
        The shuffled batch (a new tensor).
    """
    n, c, h, w = x.shape
    d = int(max_delta)
    if h - 2 * d <= 0 or w - 2 * d <= 0:
        return x.clone()
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return _glass_shuffle_torch(x, offsets, d)
    source, linked = _glass_links(offsets.cpu().numpy(), h, w, d)
    return _glass_gather(x, _glass_resolve(source, linked))


@CORRUPTIONS.register(
    "glass_blur",
    category="blur",
    benchmark=True,
    order=5,
    arity=3,
    imagenet_c=((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    cifar10_c=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    reference="glass_blur",
)
def glass_blur(x: Tensor, param: tuple[float, int, int], ctx: Context) -> Tensor:
    """Gaussian blur, local pixel shuffling (``iterations`` passes, offsets in [-max_delta, max_delta)), blur again.

    ``param`` = (sigma, max_delta, iterations). As in the reference, the first blur is truncated to 8-bit levels
    (``np.uint8``) before shuffling, and the shuffle copies instead of swapping (see ``glass_shuffle``).
    """
    sigma, d, iterations = float(param[0]), int(param[1]), int(param[2])
    n, _, h, w = x.shape
    y = torch.floor(_ops.gaussian_blur(x, sigma, mode="nearest") * 255.0 + 1e-4) / 255.0
    rh, rw = h - 2 * d, w - 2 * d
    if rh > 0 and rw > 0 and iterations > 0:
        # the same draws as ctx.randint(-d, d, ...) (one 32-bit draw per value whatever the dtype), in less memory
        dtype = torch.int16 if d < 2**14 else torch.int64
        offsets = torch.empty(n, iterations, 2, rh, rw, dtype=dtype)
        for i, g in enumerate(ctx.generators):
            torch.randint(-d, d, (iterations, 2, rh, rw), generator=g, dtype=dtype, out=offsets[i])
        if y.device.type == "cpu":
            # compose the passes' index maps, then gather the pixels once
            index = None
            for it in range(iterations):
                step = _glass_resolve(*_glass_links(offsets[:, it].numpy(), h, w, d))
                index = step if index is None else index[step]
            y = _glass_gather(y.contiguous(), index)
        else:
            for it in range(iterations):
                y = _glass_shuffle_torch(y, offsets[:, it], d)
    return _ops.gaussian_blur(y, sigma, mode="nearest")


# ------------------------------------------------------------------------------------------------- motion blur
@CORRUPTIONS.register(
    "motion_blur",
    category="blur",
    benchmark=True,
    order=6,
    arity=2,
    imagenet_c=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    cifar10_c=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    reference="motion_blur",
)
def motion_blur(x: Tensor, param: tuple[float, float], ctx: Context) -> Tensor:
    """Blur along a random direction (angle uniform in [-45, 45) degrees per image); ``param`` = (radius, sigma).

    The reference's shift-and-sum kernel (``_ops.motion_taps``): each tap shifts the image (edges replicated) and
    adds it with its weight, ``out[h, w] = sum_i k_i * x[clamp(h - dy_i), clamp(w - dx_i)]``.
    """
    angles = (ctx.rand(1) * 90.0 - 45.0).view(-1)
    return _ops.motion_blur(x, float(param[0]), float(param[1]), angles)


# --------------------------------------------------------------------------------------------------- zoom blur
def _arange(start: float, stop: float, step: float) -> tuple[float, ...]:
    # The reference writes the zoom factors as np.arange(start, stop, step); keep its exact values (and lengths).
    return tuple(float(v) for v in np.arange(start, stop, step))


@CORRUPTIONS.register(
    "zoom_blur",
    category="blur",
    benchmark=True,
    order=7,
    arity=-1,
    imagenet_c=(
        _arange(1, 1.11, 0.01),
        _arange(1, 1.16, 0.01),
        _arange(1, 1.21, 0.02),
        _arange(1, 1.26, 0.02),
        _arange(1, 1.31, 0.03),
    ),
    cifar10_c=(
        _arange(1, 1.06, 0.01),
        _arange(1, 1.11, 0.01),
        _arange(1, 1.16, 0.01),
        _arange(1, 1.21, 0.01),
        _arange(1, 1.26, 0.01),
    ),
    reference="zoom_blur",
)
def zoom_blur(x: Tensor, param: tuple[float, ...], ctx: Context) -> Tensor:
    """Average of the image and its centre zooms by each factor of ``param``.

    Each zoom crops the centre ``ceil(H / z) x ceil(W / z)``, resizes it bilinearly to ``round(size * z)`` with
    corner-aligned sampling (scipy's ``zoom(order=1)``) and keeps the top-left H x W, as the reference does.
    """
    n, c, h, w = x.shape
    # channels-last: torch's bilinear kernel runs about 1.6x faster on it on the CPU (same values)
    xc = x.contiguous(memory_format=torch.channels_last)
    acc = xc.clone()
    for z in param:
        z = float(z)
        ch, cw = int(math.ceil(h / z)), int(math.ceil(w / z))
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = xc[:, :, top : top + ch, left : left + cw]
        size = (int(round(ch * z)), int(round(cw * z)))
        zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
        acc += zoomed[:, :, :h, :w]
    return (acc / (len(param) + 1)).contiguous()


# ----------------------------------------------------------------------------------------------- gaussian blur
@CORRUPTIONS.register(
    "gaussian_blur",
    category="blur",
    benchmark=False,
    order=2,
    imagenet_c=(1, 2, 3, 4, 6),
    cifar10_c=(0.4, 0.6, 0.7, 0.8, 1),
    reference="gaussian_blur",
)
def gaussian_blur(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Gaussian blur with sigma = ``param`` px, edges replicated (scikit-image ``gaussian``'s defaults)."""
    return _ops.gaussian_blur(x, float(param), mode="nearest")
