"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Noise is drawn independently per channel (as the reference does for RGB); a grayscale image gets one noise plane.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from .base import CORRUPTIONS, Context

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


@CORRUPTIONS.register("gaussian_noise", category="noise", benchmark=True)
def gaussian_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Additive Gaussian noise, ``x + N(0, sigma^2)``; ``param`` = sigma."""
    return x + ctx.randn(*x.shape[1:]) * float(param)


_GUIDE = 256  # uniform buckets of the guide table


@lru_cache(maxsize=16)
def _poisson_tables(lam: float) -> tuple[Tensor, Tensor, int]:
    """CDF and guide tables for the 256 Poisson rates ``lam * l / 255`` (l = 0..255).

    Returns:
        cdf: flat (256 * K,) float64, entry ``l * K + k`` = ``2 l + CDF(k; lam l / 255)``, the last entry of each
            row set to ``2 l + 1`` (rows never overlap, and every u < 1 finds its k inside its own row);
        guide: flat (256 * G,) long, entry ``l * G + j`` = ``l * K + (smallest k with CDF(k) >= j / G)``;
        K: the row length.
    """
    k_max = int(lam + 12.0 * math.sqrt(lam) + 25.0)
    mu = torch.arange(256, dtype=torch.float64).unsqueeze(1) * (lam / 255.0)
    k = torch.arange(k_max, dtype=torch.float64).unsqueeze(0)
    log_pmf = k * torch.log(mu.clamp_min(1e-300)) - mu - torch.lgamma(k + 1.0)
    pmf = torch.where(mu > 0, torch.exp(log_pmf), (k == 0).to(torch.float64))
    cdf = torch.cumsum(pmf, dim=1).clamp_(max=1.0)
    cdf[:, -1] = 1.0
    starts = (torch.arange(_GUIDE, dtype=torch.float64) / _GUIDE).expand(256, _GUIDE).contiguous()
    guide = torch.searchsorted(cdf, starts).clamp_(max=k_max - 1)
    rows = torch.arange(256).unsqueeze(1)
    flat_cdf = (cdf + 2.0 * rows.to(torch.float64)).reshape(-1).contiguous()
    return flat_cdf, (guide + rows * k_max).reshape(-1).contiguous(), k_max


def poisson_levels(levels: Tensor, lam: float, u: Tensor) -> Tensor:
    """Exact Poisson draws with means ``lam * levels / 255``: the smallest k with ``CDF(k) >= u``.

    A guide table gives, for u's bucket of width 1/256, the first candidate k; a few table look-ups move it up to
    the answer (usually zero or one step).

    Args:
        levels: integer levels 0..255 (any shape, long).
        lam: the rate of level 255.
        u: uniforms in [0, 1), float64, same shape.

    Returns:
        The counts, float32, same shape.
    """
    cdf, guide, k_max = _poisson_tables(float(lam))
    cdf, guide = cdf.to(levels.device), guide.to(levels.device)
    lv = levels.reshape(-1)
    uf = u.reshape(-1)
    v = 2.0 * lv.to(torch.float64) + uf
    bucket = (uf * _GUIDE).to(torch.long).clamp_(0, _GUIDE - 1)
    pos = guide.index_select(0, lv * _GUIDE + bucket)
    active = (v > cdf.index_select(0, pos)).nonzero().squeeze(1)
    while active.numel():
        nxt = pos.index_select(0, active) + 1
        pos.index_copy_(0, active, nxt)
        active = active[v.index_select(0, active) > cdf.index_select(0, nxt)]
    return (pos - lv * k_max).reshape(levels.shape).to(torch.float32)


@CORRUPTIONS.register("shot_noise", category="noise", benchmark=True)
def shot_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Poisson (photon) noise, ``Poisson(x * lam) / lam``; ``param`` = lam (smaller is noisier).

    Images on 8-bit levels (every uint8 input) are sampled exactly by inverting tabulated CDFs with one uniform per
    value (``poisson_levels``, several times faster than ``torch.poisson``); other inputs use ``torch.poisson``.
    """
    lam = float(param)
    levels = torch.round(x * 255.0)
    if float((x * 255.0 - levels).abs().max()) < 1e-3:
        u = ctx.rand(*x.shape[1:], dtype=torch.float64)
        return poisson_levels(levels.to(torch.long), lam, u) / lam
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
