"""Digital corruptions: brightness, contrast, saturate, JPEG compression, pixelate, elastic transform.

HSV corruptions (brightness, saturate) are computed in closed form on RGB: changing V (or S) of scikit-image's HSV
model with the hue kept scales every channel's distance to the maximum, so no hue is ever computed. Grayscale images
are treated as RGB with three equal channels and brought back by the mean over the channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .base import CORRUPTIONS, Context

__all__ = ["brightness", "contrast", "saturate"]


@CORRUPTIONS.register("brightness", category="weather", benchmark=True)
def brightness(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Add ``param`` to the HSV value (clipped to [0, 1]), hue and saturation kept.

    With V = max over channels, the RGB of (H, S, V') is ``rgb * V' / V``; a black pixel (V = 0, S = 0) becomes
    gray ``V'``.
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + float(param)).clamp(0.0, 1.0)
    ratio = torch.where(v > 0, v_new / v.clamp_min(1e-12), torch.zeros_like(v))
    return torch.where(v > 0, x * ratio, v_new.expand_as(x))


@CORRUPTIONS.register("contrast", category="digital", benchmark=True)
def contrast(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Pull every channel towards its spatial mean: ``(x - mean) * c + mean``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * float(param) + mean


@CORRUPTIONS.register("saturate", category="digital", benchmark=False)
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
