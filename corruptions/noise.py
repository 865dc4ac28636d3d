"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Noise is drawn independently per channel (as the reference does for RGB); a grayscale image gets one noise plane.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .base import CORRUPTIONS, Context

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


@CORRUPTIONS.register(
    "gaussian_noise",
    category="noise",
    benchmark=True,
    order=1,
    imagenet_c=(0.08, 0.12, 0.18, 0.26, 0.38),
    cifar10_c=(0.04, 0.06, 0.08, 0.09, 0.10),
    reference="gaussian_noise",
)
def gaussian_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Additive Gaussian noise, ``x + N(0, sigma^2)``; ``param`` = sigma."""
    return x + ctx.randn(*x.shape[1:]) * float(param)


_BUCKET_BITS = 12
_BUCKETS = 1 << _BUCKET_BITS  # uniform buckets per level of the look-up table


@lru_cache(maxsize=16)
def _poisson_tables(lam: float) -> tuple[np.ndarray, np.ndarray, int]:
    """CDF and look-up tables for the 256 Poisson rates ``lam * l / 255`` (l = 0..255).

    Returns:
        cdf: flat (256 * K,) float64, entry ``l * K + k`` = ``2 l + CDF(k; lam l / 255)``, the last entry of each
            row set to ``2 l + 1`` (rows never overlap, and every u < 1 finds its k inside its own row);
        table: flat (256 * B,) integers, one entry per level and uniform bucket ``[b / B, (b + 1) / B)``: the answer
            k when no CDF value falls inside the bucket (so every u in it gives the same k), else a negative number
            (a binary search over ``cdf`` finds the answer);
        K: the row length.
    """
    k_max = int(lam + 12.0 * math.sqrt(lam) + 25.0)
    mu = torch.arange(256, dtype=torch.float64).unsqueeze(1) * (lam / 255.0)
    k = torch.arange(k_max, dtype=torch.float64).unsqueeze(0)
    log_pmf = k * torch.log(mu.clamp_min(1e-300)) - mu - torch.lgamma(k + 1.0)
    pmf = torch.where(mu > 0, torch.exp(log_pmf), (k == 0).to(torch.float64))
    cdf = torch.cumsum(pmf, dim=1).clamp_(max=1.0)
    cdf[:, -1] = 1.0
    rows = 2.0 * torch.arange(256, dtype=torch.float64).unsqueeze(1)
    cdf += rows
    # the search compares v = 2 l + u (rounded to float64) with the row: v lies in [lo, hi] for u in the bucket
    edges = torch.arange(_BUCKETS + 1, dtype=torch.float64) / _BUCKETS
    first = torch.searchsorted(cdf, (rows + edges[:-1]).contiguous())  # number of row entries < lo
    last = torch.searchsorted(cdf, (rows + edges[1:]).contiguous(), right=True)  # number of entries <= hi
    table = torch.where(first == last, first, -1)
    dtype = np.int16 if k_max < 2**15 - 1 else np.int32
    return cdf.reshape(-1).numpy(), table.reshape(-1).numpy().astype(dtype), k_max


def poisson_levels(levels: Tensor, lam: float, u: Tensor) -> Tensor:
    """Exact Poisson draws with means ``lam * levels / 255``: the smallest k with ``CDF(k) >= u``.

    A table indexed by (level, u's bucket of width 1/4096) holds the answer for the buckets that no CDF value falls
    into (about 99 % of the draws); the others are found by a binary search over the flat CDF.

    Args:
        levels: integer levels 0..255 (any shape, any integer dtype).
        lam: the rate of level 255.
        u: uniforms in [0, 1), float64, same shape.

    Returns:
        The counts, float32, same shape and device as ``levels``.
    """
    cdf, table, k_max = _poisson_tables(float(lam))
    lv = levels.reshape(-1).cpu().numpy().astype(np.int32, copy=False)
    uf = u.reshape(-1).cpu().numpy().astype(np.float64, copy=False)
    idx = np.left_shift(lv, _BUCKET_BITS)
    bucket = (uf * _BUCKETS).astype(np.int32)
    np.minimum(bucket, _BUCKETS - 1, out=bucket)
    idx |= bucket
    counts = np.take(table, idx)
    open_ = np.flatnonzero(counts < 0)
    if open_.size:
        # the rows of the flat CDF never overlap, so it is sorted as a whole: a binary search over it finds the
        # smallest position with v <= cdf[pos], which lies in the value's own row
        lo = lv[open_]
        pos = np.searchsorted(cdf, 2.0 * lo + uf[open_], side="left")
        counts = counts.astype(np.int32)
        counts[open_] = pos - lo * k_max
    return torch.from_numpy(counts.astype(np.float32)).reshape(levels.shape).to(levels.device)


@CORRUPTIONS.register(
    "shot_noise",
    category="noise",
    benchmark=True,
    order=2,
    imagenet_c=(60, 25, 12, 5, 3),
    cifar10_c=(500, 250, 100, 75, 50),
    reference="shot_noise",
)
def shot_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Poisson (photon) noise, ``Poisson(x * lam) / lam``; ``param`` = lam (smaller is noisier).

    Images on 8-bit levels (every uint8 input) are sampled exactly by inverting tabulated CDFs with one uniform per
    value (``poisson_levels``, many times faster than ``torch.poisson``); other inputs use ``torch.poisson``.
    """
    lam = float(param)
    scaled = x.detach().cpu().numpy() * np.float32(255.0)
    levels = np.rint(scaled)
    off = np.subtract(scaled, levels, out=scaled)
    if off.size == 0 or max(float(off.max()), -float(off.min())) < 1e-3:
        u = _uniform64(ctx, x.shape[1:])
        counts = poisson_levels(torch.from_numpy(levels.astype(np.int32)), lam, u)
        return (counts / lam).to(x.device)
    rate = (x * lam).cpu()
    counts = torch.stack([torch.poisson(rate[i], generator=g) for i, g in enumerate(ctx.generators)])
    return counts.to(x.device) / lam


def _uniform64(ctx: Context, shape: torch.Size) -> Tensor:
    """``ctx.rand(*shape, dtype=torch.float64)`` on the CPU, drawn straight into one buffer (same values)."""
    out = torch.empty(len(ctx), *shape, dtype=torch.float64)
    for i, g in enumerate(ctx.generators):
        torch.rand(tuple(shape), generator=g, dtype=torch.float64, out=out[i])
    return out


@CORRUPTIONS.register(
    "impulse_noise",
    category="noise",
    benchmark=True,
    order=3,
    imagenet_c=(0.03, 0.06, 0.09, 0.17, 0.27),
    cifar10_c=(0.01, 0.02, 0.03, 0.05, 0.07),
    reference="impulse_noise",
)
def impulse_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Salt and pepper noise with scikit-image's ``random_noise(mode="s&p")`` semantics.

    Each value (per channel) is replaced with probability ``amount`` (= ``param``), by 1 or 0 with equal odds.
    """
    shape = x.shape[1:]
    flipped = ctx.rand(*shape) < float(param)
    salted = ctx.rand(*shape) < 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)


@CORRUPTIONS.register(
    "speckle_noise",
    category="noise",
    benchmark=False,
    order=1,
    imagenet_c=(0.15, 0.2, 0.35, 0.45, 0.6),
    cifar10_c=(0.06, 0.1, 0.12, 0.16, 0.2),
    reference="speckle_noise",
)
def speckle_noise(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Multiplicative noise, ``x + x * N(0, sigma^2)``; ``param`` = sigma."""
    return x + x * ctx.randn(*x.shape[1:]) * float(param)
