"""Digital corruptions: brightness, contrast, saturate, JPEG compression, pixelate, elastic transform.

HSV corruptions (brightness, saturate) are computed in closed form on RGB: changing V (or S) of scikit-image's HSV
model with the hue kept scales every channel's distance to the maximum, so no hue is ever computed. Grayscale images
are treated as RGB with three equal channels and brought back by the mean over the channels.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import _ops
from .base import CORRUPTIONS, Context

__all__ = [
    "brightness",
    "contrast",
    "saturate",
    "jpeg_compression",
    "pixelate",
    "elastic_transform",
    "elastic_imagecorruptions",
    "box_resize_matrix",
    "nearest_index",
]


@CORRUPTIONS.register(
    "brightness",
    category="weather",
    benchmark=True,
    order=11,
    imagenet_c=(0.1, 0.2, 0.3, 0.4, 0.5),
    cifar10_c=(0.05, 0.1, 0.15, 0.2, 0.3),
    reference="brightness",
)
def brightness(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Add ``param`` to the HSV value (clipped to [0, 1]), hue and saturation kept.

    With V = max over channels, the RGB of (H, S, V') is ``rgb * V' / V``; a black pixel (V = 0, S = 0) becomes
    gray ``V'``.
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + float(param)).clamp(0.0, 1.0)
    ratio = torch.where(v > 0, v_new / v.clamp_min(1e-12), torch.zeros_like(v))
    return torch.where(v > 0, x * ratio, v_new.expand_as(x))


@CORRUPTIONS.register(
    "contrast",
    category="digital",
    benchmark=True,
    order=12,
    imagenet_c=(0.4, 0.3, 0.2, 0.1, 0.05),
    cifar10_c=(0.75, 0.5, 0.4, 0.3, 0.15),
    reference="contrast",
)
def contrast(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Pull every channel towards its spatial mean: ``(x - mean) * c + mean``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * float(param) + mean


@CORRUPTIONS.register(
    "saturate",
    category="digital",
    benchmark=False,
    order=4,
    arity=2,
    imagenet_c=((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    cifar10_c=((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    reference="saturate",
)
def saturate(x: Tensor, param: tuple[float, float], ctx: Context) -> Tensor:
    """Set the HSV saturation to ``clip(S * a + b, 0, 1)``, hue and value kept; ``param`` = (a, b).

    Each channel of (H, S', V) is ``V - S' * V * (V - rgb) / (V - min)``. A gray pixel (S = 0) has hue 0 in
    scikit-image's model, so a positive ``b`` tints it red - as the reference does.
    """
    a, b = float(param[0]), float(param[1])
    rgb = _ops.to_rgb(x)
    v = rgb.amax(dim=1, keepdim=True)
    lo = rgb.amin(dim=1, keepdim=True)
    delta = v - lo
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * a + b).clamp(0.0, 1.0)
    colour = v - s_new * v * (v - rgb) / delta.clamp_min(1e-12)
    gray_tint = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    out = torch.where(delta > 0, colour, gray_tint)
    return _ops.from_rgb(out, x.shape[1])


# ---------------------------------------------------------------------------------------------- JPEG compression
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="jpeg")
    return _POOL


def _jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded)


@CORRUPTIONS.register(
    "jpeg_compression",
    category="digital",
    benchmark=True,
    order=15,
    imagenet_c=(25, 18, 15, 10, 7),
    cifar10_c=(80, 65, 58, 50, 40),
    reference="jpeg_compression",
)
def jpeg_compression(x: Tensor, param: int, ctx: Context) -> Tensor:
    """Encode as JPEG with quality ``param`` (Pillow / libjpeg defaults: 4:2:0 chroma subsampling) and decode.

    Runs per image in a thread pool (the codec releases the GIL). Grayscale images are coded as one-channel JPEGs.
    """
    n, c, h, w = x.shape
    u8 = torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    planes = [np.ascontiguousarray(u8[i, :, :, 0] if c == 1 else u8[i]) for i in range(n)]
    quality = int(param)
    if n == 1:
        results = [_jpeg_roundtrip(planes[0], quality)]
    else:
        results = list(_pool().map(lambda a: _jpeg_roundtrip(a, quality), planes))
    out = torch.from_numpy(np.stack(results).reshape(n, h, w, c)).permute(0, 3, 1, 2)
    return (out.to(torch.float32) / 255.0).to(x.device)


# ------------------------------------------------------------------------------------------------------ pixelate
@lru_cache(maxsize=64)
def box_resize_matrix(in_size: int, out_size: int) -> Tensor:
    """Pillow's BOX resampling weights as an (out_size, in_size) matrix.

    Output pixel j averages the input pixels whose centres fall in ``((j + 0.5) * s - s / 2, (j + 0.5) * s + s / 2]``
    with ``s = in_size / out_size`` (at least 1 px wide), equally weighted.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    for j in range(out_size):
        centre = (j + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        for i in range(lo, hi):
            t = (i - centre + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                mat[j, i] = 1.0
        total = mat[j].sum()
        if total > 0:
            mat[j] /= total
    return mat.to(torch.float32)


def nearest_index(in_size: int, out_size: int) -> Tensor:
    """Pillow's NEAREST (and, for enlargements, BOX) source index of each output pixel: ``floor((j + 0.5) * s)``."""
    scale = in_size / out_size
    j = torch.arange(out_size, dtype=torch.float64)
    return torch.floor((j + 0.5) * scale).to(torch.long).clamp_(0, in_size - 1)


@CORRUPTIONS.register(
    "pixelate",
    category="digital",
    benchmark=True,
    order=14,
    imagenet_c=(0.6, 0.5, 0.4, 0.3, 0.25),
    cifar10_c=(0.95, 0.9, 0.85, 0.75, 0.65),
    reference="pixelate",
)
def pixelate(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Shrink to ``int(size * param)`` with Pillow's BOX filter, enlarge back by nearest-neighbour sampling.

    Works on 8-bit levels like Pillow: the input is rounded to them, and the result of each of the two BOX passes
    (horizontal first) is rounded half up. Enlarging with Pillow's BOX or NEAREST filter picks the same pixels (an enlargement's
    box covers one source centre), so this matches ImageNet-C / CIFAR-10-C (BOX) and imagecorruptions (NEAREST).
    """
    n, c, h, w = x.shape
    sh, sw = max(int(h * float(param)), 1), max(int(w * float(param)), 1)
    y = torch.round(x * 255.0)
    # Pillow rounds each pass half up (fixed point); a 2-pixel average hits .5 often, so torch.round (half to even)
    # would differ from it on many pixels
    if sw != w:
        y = torch.floor(torch.matmul(y, box_resize_matrix(w, sw).to(x.device).t()) + 0.5 + 1e-4)
    if sh != h:
        y = torch.floor(torch.matmul(box_resize_matrix(h, sh).to(x.device), y) + 0.5 + 1e-4)
    y = y.index_select(2, nearest_index(sh, h).to(x.device)).index_select(
        3, nearest_index(sw, w).to(x.device)
    )
    return y / 255.0


# -------------------------------------------------------------------------------------------- elastic transform
def _sample(x: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """Bilinear sampling of (N, C, H, W) at pixel coordinates (N, H, W); ``mode``: "mirror" or "reflect"."""
    h, w = x.shape[2:]
    if mode == "mirror":  # whole-sample symmetric: OpenCV BORDER_REFLECT_101
        gx = cols * (2.0 / max(w - 1, 1)) - 1.0
        gy = rows * (2.0 / max(h - 1, 1)) - 1.0
        align = True
    else:  # half-sample symmetric: scipy.ndimage "reflect"
        gx = (2.0 * cols + 1.0) / w - 1.0
        gy = (2.0 * rows + 1.0) / h - 1.0
        align = False
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=align)


def _times(k: float, *values: float) -> tuple[float, ...]:
    return tuple(k * v for v in values)


@CORRUPTIONS.register(
    "elastic_transform",
    category="digital",
    benchmark=True,
    order=13,
    arity=3,
    # Hendrycks' ImageNet-C code writes 244 (not 224) as the multiplier; kept as published.
    imagenet_c=(
        _times(244, 2, 0.7, 0.1),
        _times(244, 2, 0.08, 0.2),
        _times(244, 0.05, 0.01, 0.02),
        _times(244, 0.07, 0.01, 0.02),
        _times(244, 0.12, 0.01, 0.02),
    ),
    cifar10_c=(
        _times(32, 0, 0, 0.08),
        _times(32, 0.05, 0.2, 0.07),
        _times(32, 0.08, 0.06, 0.06),
        _times(32, 0.1, 0.04, 0.05),
        _times(32, 0.1, 0.03, 0.03),
    ),
    # imagecorruptions 1.1.2's own variant, (alpha, sigma, max_shift): alpha = 250 * (.05, .065, .085, .1, .12),
    # sigma 1 % and the uniform field's bound 0.5 % of the image side
    imagecorruptions=tuple((250 * a, 0.01, 0.005) for a in (0.05, 0.065, 0.085, 0.1, 0.12)),
    reference="elastic_transform",
)
def elastic_transform(x: Tensor, param: tuple[float, float, float], ctx: Context) -> Tensor:
    """Elastic transform in the suite's variant (``ctx.elastic_variant``).

    ``"hendrycks"`` (ImageNet-C / CIFAR-10-C, the default): a random affine warp, then a smooth random displacement
    field. ``param`` = (alpha, sigma, affine) in pixels at the suite's native size, scaled by
    ``min(H, W) / native_size`` (the published values are multiples of the image size). The three corners of a
    centred square of side ``2 * (min(H, W) // 3)`` each move by uniform offsets in [-affine, affine] (bilinear,
    mirrored borders); then each pixel is displaced by ``alpha * G_sigma * U(-1, 1)`` per axis (Gaussian truncated
    at 3 sigma, reflected borders) and resampled bilinearly.

    ``"imagecorruptions"``: imagecorruptions 1.1.2's own version, see ``elastic_imagecorruptions``.
    """
    variant = getattr(ctx, "elastic_variant", "hendrycks")
    if variant == "imagecorruptions":
        return elastic_imagecorruptions(x, param, ctx)
    if variant != "hendrycks":
        raise ValueError(f"unknown elastic variant {variant!r}; valid: hendrycks, imagecorruptions")
    n, c, h, w = x.shape
    k = ctx.scale(h, w)
    alpha, sigma, affine = float(param[0]) * k, float(param[1]) * k, float(param[2]) * k
    dev = x.device
    # --- random affine: solve for the map taking the square's corners to their moved positions (x, y order)
    cy, cx, sq = h // 2, w // 2, min(h, w) // 3
    src = torch.tensor(
        [[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=torch.float64
    )  # (3, 2) as (x, y)
    moved = src + (ctx.rand(3, 2, dtype=torch.float64).cpu() * 2.0 - 1.0) * affine  # (N, 3, 2)
    ones = torch.ones(3, 1, dtype=torch.float64)
    a_mat = torch.cat([src, ones], dim=1)  # (3, 3)
    fwd = torch.linalg.solve(a_mat, moved).transpose(1, 2)  # (N, 2, 3): dst = fwd @ [x, y, 1]
    full = torch.cat([fwd, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(n, 1, 3)], dim=1)
    inv = torch.linalg.inv(full)[:, :2].to(torch.float32).to(dev)  # dst pixel -> source coordinate
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=dev),
        torch.arange(w, dtype=torch.float32, device=dev),
        indexing="ij",
    )
    src_x = inv[:, 0, 0, None, None] * xs + inv[:, 0, 1, None, None] * ys + inv[:, 0, 2, None, None]
    src_y = inv[:, 1, 0, None, None] * xs + inv[:, 1, 1, None, None] * ys + inv[:, 1, 2, None, None]
    warped = _sample(x, src_y, src_x, "mirror")
    # --- smooth displacement field (dx, dy) per image
    field = ctx.rand(2, h, w) * 2.0 - 1.0
    disp = (
        _ops.gaussian_blur(field, sigma, mode="reflect", truncate=3.0) * alpha if sigma > 0 else field * 0.0
    )
    return _sample(warped, ys + disp[:, 1], xs + disp[:, 0], "reflect")


def elastic_imagecorruptions(x: Tensor, param: tuple[float, float, float], ctx: Context) -> Tensor:
    """imagecorruptions 1.1.2's elastic transform: a smooth random displacement field, no affine step.

    ``param`` = (alpha, sigma, max_shift); sigma and max_shift are fractions of the image side, so nothing depends
    on the suite's native size. As the package: a field ``U(-m, m)`` with ``m = max_shift * H`` (the height, for both
    axes) per axis - dx (columns) drawn first, then dy (rows) - is blurred by a Gaussian of sigma ``sigma * H`` along
    the rows and ``sigma * W`` along the columns (truncated at 3 sigma, reflected borders), multiplied by ``alpha``,
    and the image is resampled bilinearly at ``(row + dy, col + dx)`` with reflected borders (scipy's
    ``map_coordinates(order=1, mode="reflect")``).
    """
    n, c, h, w = x.shape
    alpha, sigma, max_shift = float(param[0]), float(param[1]), float(param[2])
    bound = h * max_shift
    field = (ctx.rand(2, h, w) * 2.0 - 1.0) * bound  # [:, 0] = dx, [:, 1] = dy, in the package's draw order
    sig_h, sig_w = h * sigma, w * sigma
    taps_h = _ops.gaussian_kernel1d(sig_h, _ops.gaussian_radius(sig_h, 3.0))
    taps_w = _ops.gaussian_kernel1d(sig_w, _ops.gaussian_radius(sig_w, 3.0))
    disp = _ops.separable_filter(field, taps_h, taps_w, mode="reflect") * alpha
    dev = x.device
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=dev),
        torch.arange(w, dtype=torch.float32, device=dev),
        indexing="ij",
    )
    return _sample(x, ys + disp[:, 1], xs + disp[:, 0], "reflect")
