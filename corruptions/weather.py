"""Weather corruptions: snow, frost, fog (benchmark) and spatter (held-out), batched in torch.

Each follows the published recipe (ImageNet-C / CIFAR-10-C, and imagecorruptions 1.1.2 for images of other sizes):

- fog: a plasma fractal (diamond-square) per image, side = the next power of two of the image's longer side (256
  for 224 px images, 32 for CIFAR - the CIFAR-10-C rule), added with strength ``param[0]`` and rescaled by
  ``max / (max + strength)``. The fractal is built for the whole batch at once; each image draws from its own
  generator, so an image's map does not depend on the batch.
- frost: a crop of one of the first five of the six frost textures shipped with imagecorruptions (the published
  code draws ``randint(5)``; the sixth is never used), read from the installed package. The textures are used at
  their own resolution for the ImageNet-C table and shrunk to 0.2x for suites written for 32 px images (the
  CIFAR-10-C rule); a texture smaller than the image is enlarged 1.1x beyond covering it, as imagecorruptions does.
- snow: a Gaussian snow layer, zoomed, thresholded, motion-blurred along a random angle in [-135, -45) degrees with
  the shift-and-sum kernel of imagecorruptions (a one-sided Gaussian over ``2 * radius + 1`` taps, edges
  replicated; ``_ops.motion_blur``, shared with the motion_blur corruption), rounded to 8 bits and added twice
  (the second copy rotated 180 degrees) to a brightened image.
- spatter: a Gaussian liquid layer, smoothed and thresholded; rain (mode 0) is shaped by an edge-distance map
  computed per image with OpenCV (Canny, distance transform, histogram equalisation), mud (mode 1) is a smoothed
  mask, all in torch.

Grayscale images (C = 1) take the published single-channel branches: snow brightens with the image itself, frost
uses the luma of the texture, spatter the luma of the coloured layer.
"""

from __future__ import annotations

import functools
import math
import os

import cv2
import numpy as np
import torch
from torch import Tensor

from ._ops import clipped_zoom, gaussian_blur, motion_blur, rgb_to_gray
from .base import CORRUPTIONS, Context

__all__ = ["snow", "frost", "fog", "spatter", "plasma_fractal", "frost_textures"]

_LUMA_REF = (0.2989, 0.5870, 0.1140)  # the reference's rgb2gray
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
_FROST_DRAWN = 5  # the published code draws randint(5): the sixth texture is never used


# --------------------------------------------------------------------------------------------- shared helpers
def _luma(x: Tensor, weights: tuple[float, float, float]) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) weighted sum of the RGB channels."""
    w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


# --------------------------------------------------------------------------------------------- fog
def _next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def plasma_fractal(ctx: Context, mapsize: int, wibbledecay: float) -> Tensor:
    """A diamond-square height map per image, normalised to [0, 1] (float32, on ``ctx.device``).

    Follows the published generator: the random displacement at each level is ``wibble * U(-wibble, wibble)``
    with ``wibble`` starting at 100 and divided by ``wibbledecay`` per level. Image i draws from its own generator.

    Shape:
        (N, mapsize, mapsize); ``mapsize`` must be a power of two.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    m = torch.zeros(len(ctx), mapsize, mapsize, device=ctx.device)
    # Every point but (0, 0) gets one uniform draw: take them all in one call per image, then consume in order.
    draws = ctx.rand(mapsize * mapsize - 1)
    used = 0
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        nonlocal used
        k = total.shape[1] * total.shape[2]
        u = draws[:, used : used + k].view_as(total)
        used += k
        # total / 4 + wibble * U(-wibble, wibble), in three in-place-friendly ops
        w2 = wibble * wibble
        return (u * (2 * w2)).sub_(w2).add_(total, alpha=0.25)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        squares = corners + torch.roll(corners, -1, dims=1)
        squares = squares + torch.roll(squares, -1, dims=2)
        m[:, half::step, half::step] = wibbled_mean(squares)
        centres = m[:, half::step, half::step]
        corners = m[:, 0::step, 0::step]
        left = centres + torch.roll(centres, 1, dims=1) + corners + torch.roll(corners, -1, dims=2)
        m[:, 0::step, half::step] = wibbled_mean(left)
        top = centres + torch.roll(centres, 1, dims=2) + corners + torch.roll(corners, -1, dims=1)
        m[:, half::step, 0::step] = wibbled_mean(top)
        step = half
        wibble /= wibbledecay
    m -= m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


@CORRUPTIONS.register(
    "fog",
    category="weather",
    benchmark=True,
    order=10,
    arity=2,
    imagenet_c=((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    cifar10_c=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    reference="fog",
)
def fog(x: Tensor, param, ctx: Context) -> Tensor:
    """Fog: plasma-fractal haze. ``param`` = (strength, wibbledecay)."""
    strength, decay = float(param[0]), float(param[1])
    h, w = x.shape[-2:]
    size = _next_power_of_2(max(h, w))
    haze = plasma_fractal(ctx, size, decay)[:, None, :h, :w].to(dtype=x.dtype, device=x.device)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * peak / (peak + strength)


# --------------------------------------------------------------------------------------------- frost
def _frost_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("imagecorruptions")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("frost needs the frost textures of the package imagecorruptions==1.1.2")
    return os.path.join(next(iter(spec.submodule_search_locations)), "frost")


@functools.lru_cache(maxsize=1)
def _frost_originals() -> tuple[np.ndarray, ...]:
    root = _frost_dir()
    out = []
    for name in _FROST_FILES[:_FROST_DRAWN]:
        path = os.path.join(root, name)
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read the frost texture {path}")
        out.append(np.ascontiguousarray(img[..., ::-1]))  # BGR -> RGB
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _frost_textures_cached(zoom: float, min_h: int, min_w: int) -> tuple[Tensor, ...]:
    textures = []
    for img in _frost_originals():
        th, tw = img.shape[:2]
        z = zoom
        if round(th * z) < min_h or round(tw * z) < min_w:
            # too small for the image: enlarge to cover it, plus 10 % as imagecorruptions does
            z = 1.1 * max(min_h / th, min_w / tw)
        if z < 1.0:  # CIFAR-10-C: cv2.resize(fx=fy=0.2), bilinear
            img = cv2.resize(img, (0, 0), fx=z, fy=z, interpolation=cv2.INTER_LINEAR)
        elif z > 1.0:  # imagecorruptions: ceil(size * factor), bicubic
            img = cv2.resize(img, (math.ceil(tw * z), math.ceil(th * z)), interpolation=cv2.INTER_CUBIC)
        textures.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous())
    return tuple(textures)


def frost_textures(zoom: float = 1.0, min_size: tuple[int, int] = (0, 0)) -> tuple[Tensor, ...]:
    """The five frost textures used by frost, uint8 RGB (3, H, W), zoomed by ``zoom`` and at least ``min_size``."""
    return _frost_textures_cached(float(zoom), int(min_size[0]), int(min_size[1]))


def _frost_zoom(ctx: Context) -> float:
    # CIFAR-10-C shrinks the textures to 0.2x before its 32 px crop; ImageNet-C crops them at full size.
    return 0.2 if ctx.native_size <= 32 else 1.0


@CORRUPTIONS.register(
    "frost",
    category="weather",
    benchmark=True,
    order=9,
    arity=2,
    imagenet_c=((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    cifar10_c=((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    reference="frost",
)
def frost(x: Tensor, param, ctx: Context) -> Tensor:
    """Frost: ``param[0] * x + param[1] * texture crop``. ``param`` = (image weight, frost weight)."""
    img_w, frost_w = float(param[0]), float(param[1])
    n, c, h, w = x.shape
    textures = frost_textures(_frost_zoom(ctx), (h + 1, w + 1))
    crops = []
    for u_tex, u_top, u_left in ctx.rand(3, dtype=torch.float64).tolist():
        tex = textures[min(int(u_tex * _FROST_DRAWN), _FROST_DRAWN - 1)]
        th, tw = tex.shape[-2:]
        top, left = int(u_top * (th - h)), int(u_left * (tw - w))
        crops.append(tex[:, top : top + h, left : left + w])
    layer = torch.stack(crops).to(device=x.device, dtype=x.dtype) / 255.0
    if c == 1:
        layer = _luma(layer, _LUMA_REF)
    return img_w * x + frost_w * layer


# --------------------------------------------------------------------------------------------- snow
@CORRUPTIONS.register(
    "snow",
    category="weather",
    benchmark=True,
    order=8,
    arity=7,
    imagenet_c=(
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
    cifar10_c=(
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    reference="snow",
)
def snow(x: Tensor, param, ctx: Context) -> Tensor:
    """Snow: a zoomed, thresholded, motion-blurred flake layer over a brightened image.

    ``param`` = (loc, scale, zoom, threshold, blur radius, blur sigma, mix).
    """
    loc, scale, zoom, threshold, radius, sigma, mix = (float(p) for p in param)
    n, c, h, w = x.shape
    layer = ctx.randn(1, h, w) * scale + loc
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp_(0, 1)
    angles = ctx.rand().cpu().double() * 90.0 - 135.0
    layer = motion_blur(layer, int(radius), sigma, angles)
    layer = (layer * 255).round() / 255
    layer = layer[..., :h, :w].to(dtype=x.dtype, device=x.device)
    gray = rgb_to_gray(x)  # cv2.COLOR_RGB2GRAY weights
    x = mix * x + (1 - mix) * torch.maximum(x, gray * 1.5 + 0.5)
    return x + layer + torch.flip(layer, dims=(-2, -1))


# --------------------------------------------------------------------------------------------- spatter
_KER_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)


def _rain_shape(liquid: np.ndarray) -> np.ndarray:
    """The rain mask of one image: its liquid layer (8 bit) times an equalised edge-distance map (float32)."""
    liquid_u8 = np.clip(liquid * 255, 0, 255).astype(np.uint8)
    dist = 255 - cv2.Canny(liquid_u8, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, _KER_EMBOSS)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    return liquid_u8.astype(np.float32) * dist


@CORRUPTIONS.register(
    "spatter",
    category="weather",
    benchmark=False,
    order=3,
    arity=6,
    imagenet_c=(
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    cifar10_c=(
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    reference="spatter",
)
def spatter(x: Tensor, param, ctx: Context) -> Tensor:
    """Spatter: rain drops (mode 0) or mud (mode 1).

    ``param`` = (loc, scale, sigma, threshold, intensity, mode).
    """
    loc, scale, sigma, threshold, intensity = (float(p) for p in param[:5])
    mode = int(param[5])
    if mode not in (0, 1):
        raise ValueError(f"spatter mode must be 0 (rain) or 1 (mud), got {param[5]!r}")
    n, c, h, w = x.shape
    liquid = ctx.randn(1, h, w).cpu() * scale + loc
    liquid = gaussian_blur(liquid, sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:
        arr = liquid[:, 0].numpy()
        m = torch.from_numpy(np.stack([_rain_shape(arr[i]) for i in range(n)]))[:, None]
        peak = m.amax(dim=(2, 3), keepdim=True)
        m = torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m)) * intensity
        colour = torch.tensor([175.0, 238.0, 238.0]).view(1, 3, 1, 1) / 255.0
        layer = m * colour
        if c == 1:
            layer = _luma(layer.clamp(0, 1), _LUMA_REF)
        return x + layer.to(dtype=x.dtype, device=x.device)
    mask = (liquid > threshold).float()
    mask = gaussian_blur(mask, intensity)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    colour = torch.tensor([63.0, 42.0, 20.0]).view(1, 3, 1, 1) / 255.0
    mud = mask * colour
    if c == 1:
        mud = _luma(mud, _LUMA_REF)
    mask = mask.to(dtype=x.dtype, device=x.device)
    return x * (1 - mask) + mud.to(dtype=x.dtype, device=x.device)
