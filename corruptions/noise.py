"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Noise is drawn independently per channel (as the reference does for RGB); a grayscale image gets one noise plane.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CORRUPTIONS, Context

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


@CORRUPTIONS.register("gaussian_noise", category="noise", benchmark=True)
def gaussian_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Additive Gaussian noise, ``x + N(0, sigma^2)``; ``param`` = sigma."""
    return x + ctx.randn(*x.shape[1:]) * float(param)


@CORRUPTIONS.register("shot_noise", category="noise", benchmark=True)
def shot_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Poisson (photon) noise, ``Poisson(x * lam) / lam``; ``param`` = lam (smaller is noisier)."""
    lam = float(param)
    rate = (x * lam).cpu()
    counts = torch.stack([torch.poisson(rate[i], generator=g) for i, g in enumerate(ctx.generators)])
    return counts.to(x.device) / lam


@CORRUPTIONS.register("impulse_noise", category="noise", benchmark=True)
def impulse_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Salt and pepper noise with scikit-image's ``random_noise(mode="s&p")`` semantics.

    Each value (per channel) is replaced with probability ``amount`` (= ``param``), by 1 or 0 with equal odds.
    """
    shape = x.shape[1:]
    flipped = ctx.rand(*shape) < float(param)
    salted = ctx.rand(*shape) < 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)


@CORRUPTIONS.register("speckle_noise", category="noise", benchmark=False)
def speckle_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Multiplicative noise, ``x + x * N(0, sigma^2)``; ``param`` = sigma."""
    return x + x * ctx.randn(*x.shape[1:]) * float(param)
