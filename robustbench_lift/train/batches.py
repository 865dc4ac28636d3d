"""Batches of a map-style dataset, augmentation, normalisation statistics and seeded subsets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from corruptions.rng import torch_generator


def _load(ds: Any, indices: Tensor) -> tuple[Tensor, Tensor]:
    """uint8 images (B, C, H, W) and int64 labels (B,) of ``indices``."""
    idx = indices.numpy()
    if hasattr(ds, "get_batch"):
        x, y = ds.get_batch(idx)
        return x, torch.as_tensor(y, dtype=torch.int64)
    items = [ds[int(i)] for i in idx]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.tensor([int(y) for _, y in items])


def _batches(n: int, batch_size: int, drop_tiny: bool) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        if drop_tiny and stop - start < 2:  # BN cannot train on a single sample
            return
        yield slice(start, stop)


def _as_float(x: Tensor, channels: int) -> Tensor:
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif x.is_floating_point():
        x = x.float()
    else:
        raise TypeError(f"images must be uint8 or floating point, got {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"expected {channels}-channel images, got shape {tuple(x.shape)}")
    return x


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop of the zero-padded images back to their size, then random horizontal flips, per image.

    Args:
        x: float images (N, C, H, W).
        padding: pixels of zero padding on each side (0 disables cropping).
        flip: flip each image with probability 1/2.
        generator: source of the per-image offsets and flips (CPU).
    """
    n, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h)).to(x.device)
        cols = (ox[:, None] + torch.arange(w)).to(x.device)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def _channel_stats(
    ds: Any, indices: Tensor, channels: int, batch_size: int
) -> tuple[list[float], list[float]]:
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for sl in _batches(len(indices), batch_size, drop_tiny=False):
        x = _as_float(_load(ds, indices[sl])[0], channels).double()
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def _subset(n: int, limit: int | None, seed: int, key: str) -> Tensor:
    if limit is None or limit >= n:
        return torch.arange(n)
    perm = torch.randperm(n, generator=torch_generator(seed, key))
    return perm[:limit].sort().values
