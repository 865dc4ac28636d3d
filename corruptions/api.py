"""Public entry points: ``corrupt`` and ``list_corruptions``.

``corrupt`` validates the input, converts it to float32 in [0, 1], derives one seed per image from
``(seed, ids[i], name, severity)``, runs the registered corruption function, clamps to [0, 1], quantises to 8-bit
levels and returns the caller's dtype and device. Quantisation is the published sets' own by default: their
generators store ``np.uint8(x * 255)``, a truncation, so ``quantize="trunc"`` gives ``floor(x * 255) / 255``;
``quantize="round"`` rounds to the nearest level instead (about half a level brighter than the published files;
see docs/corruptions.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .base import CATEGORIES, CORRUPTIONS, Context
from .rng import per_sample_seeds
from .suites import SUITES, Suite, _check_severity, get_suite, resolve_suite

__all__ = ["corrupt", "list_corruptions", "quantize_levels", "BACKENDS", "CATEGORIES", "QUANTIZE_MODES"]

BACKENDS: tuple[str, ...] = ("torch", "reference")
#: How float results become 8-bit levels: ``"trunc"`` (the published generators' ``np.uint8``) or ``"round"``.
QUANTIZE_MODES: tuple[str, ...] = ("trunc", "round")
_FLOAT_DTYPES = (torch.float16, torch.float32, torch.float64)

#: On the CPU, batches are processed in chunks of about this many values: intermediate tensors then stay in the
#: allocator's reused memory and the caches (fresh multi-megabyte buffers page-fault on every operation, which
#: measured 3-5x slower per value). Results do not depend on it: every draw is per image.
CPU_CHUNK_VALUES = 1 << 19


def list_corruptions(
    suite: str | Suite | Mapping[str, Any] | None = None,
    category: str | None = None,
    benchmark: bool | None = None,
) -> list[str]:
    """Corruption names, in the canonical order (15 benchmark, then 4 held-out).

    Args:
        suite: only the corruptions of this suite (default: every registered corruption).
        category: only ``"noise"``, ``"blur"``, ``"weather"`` or ``"digital"``.
        benchmark: True for the mCE corruptions, False for the held-out ones, None for both.
    """
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; valid: {', '.join(CATEGORIES)}")
    if suite is None:
        names = _canonical(CORRUPTIONS.names())
        bench = {n for n in names if CORRUPTIONS.meta(n).get("benchmark")}
    else:
        s = resolve_suite(suite)
        names = [n for n in s.corruptions if n in CORRUPTIONS]
        bench = set(s.benchmark)
    if category is not None:
        names = [n for n in names if CORRUPTIONS.meta(n).get("category") == category]
    if benchmark is not None:
        names = [n for n in names if (n in bench) == bool(benchmark)]
    return names


def _canonical(names: Sequence[str]) -> list[str]:
    order = {n: i for i, n in enumerate(SUITES["imagenet-c"].corruptions)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def _check_images(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 and images.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"images must be uint8 (0..255) or float16/32/64 (0..1), got {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must have shape (N, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    x = images if images.ndim == 4 else images.unsqueeze(0)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (dimension 1 of N, C, H, W), got {x.shape[1]}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"images must have a positive height and width, got {tuple(x.shape[2:])}")
    if x.is_floating_point() and x.numel():
        lo, hi = torch.aminmax(x.detach())
        if bool(torch.isnan(x).any()) or float(lo) < 0.0 or float(hi) > 1.0:
            raise ValueError(
                f"float images must lie in [0, 1] (got min {float(lo):.4g}, max {float(hi):.4g}); "
                "pass uint8 for 0..255 data"
            )
    return x


def _check_ids(ids: Sequence[int] | torch.Tensor | np.ndarray | None, n: int) -> list[int]:
    if ids is None:
        return list(range(n))
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        if ids.ndim != 1:
            raise ValueError(f"ids must be one-dimensional, got shape {tuple(ids.shape)}")
        values = ids.tolist()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"ids must be a sequence of integers, got {type(ids).__name__}")
    else:
        values = list(ids)
    if len(values) != n:
        raise ValueError(f"ids must have one entry per image ({n}), got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"ids must be integers, got {v!r}")
        out.append(int(v))
    return out


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    suite: str | Suite | Mapping[str, Any] = "imagenet-c",
    seed: int = 0,
    ids: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    backend: str = "torch",
    quantize: str = "trunc",
) -> torch.Tensor:
    """Corrupt a batch of images.

    Args:
        images: uint8 in 0..255 or float16/32/64 in [0, 1]; (N, C, H, W) or a single (C, H, W); C in {1, 3}.
        name: a corruption of the suite (``list_corruptions(suite)``).
        severity: 1..5.
        suite: a built-in suite name (``list_suites()``), a ``Suite`` or a user dict (``load_suite``).
        seed: global seed.
        ids: one integer per image (default: its index in the batch). Image i's output depends only on
            ``(seed, ids[i], name, severity)``.
        backend: ``"torch"`` (this engine, batched) or ``"reference"`` (imagecorruptions 1.1.2; suites
            ``imagenet-c`` and ``imagecorruptions`` only, both run the package as published).
        quantize: ``"trunc"`` (default: ``floor(255 x)``, as the published sets are stored) or ``"round"``
            (nearest level). The reference backend always truncates, as the package does.

    Returns:
        The corrupted images, same shape, dtype and device as ``images``; floats lie on the 8-bit levels k / 255.

    Raises:
        TypeError / ValueError: bad images, ids, name, severity, suite or backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    _check_quantize(quantize)
    s = resolve_suite(suite)
    if name not in s.params:
        raise ValueError(
            f"unknown corruption {name!r} for suite {s.name!r}; valid: {', '.join(s.corruptions)}"
        )
    if name not in CORRUPTIONS:
        raise ValueError(CORRUPTIONS.unknown_message(name))
    _check_severity(severity)
    severity = int(severity)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    x = _check_images(images)
    n, _, h, w = x.shape
    id_list = _check_ids(ids, n)

    if backend == "reference":
        from . import reference  # imported on use: it loads the reference package lazily

        if not any(s == get_suite(r) for r in reference.REFERENCE_SUITES):
            raise ValueError(
                "backend 'reference' (imagecorruptions) only implements the built-in suites "
                f"{', '.join(map(repr, reference.REFERENCE_SUITES))}, got {s.name!r}; use backend='torch'"
            )
        out = reference.corrupt_reference(x, name, severity, seed=int(seed), ids=id_list, suite=s.name)
        return out if images.ndim == 4 else out[0]

    s.check_size(h, w)
    if n == 0:
        return images.clone()
    fn = CORRUPTIONS.get(name)
    param = s.param(name, severity)
    seeds = per_sample_seeds(int(seed), id_list, name, severity)
    per_image = x[0].numel()
    step = n if x.device.type != "cpu" else max(1, CPU_CHUNK_VALUES // per_image)
    out = torch.empty_like(x)
    for start in range(0, n, step):
        stop = min(n, start + step)
        ctx = Context(
            seeds=seeds[start:stop],
            native_size=s.native_size,
            suite=s.name,
            device=x.device,
            elastic_variant=s.elastic_variant,
        )
        out[start:stop] = _run(fn, name, x[start:stop], param, ctx, quantize)
    return out if images.ndim == 4 else out[0]


def _check_quantize(quantize: object) -> str:
    if not isinstance(quantize, str) or quantize not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantize mode {quantize!r}; valid: {', '.join(QUANTIZE_MODES)}")
    return quantize


def quantize_levels(y: torch.Tensor, quantize: str = "trunc") -> torch.Tensor:
    """8-bit levels 0..255 (as floats) of images ``y`` in [0, 1]: ``floor(255 y)`` or ``round(255 y)``.

    Clamps first. ``floor(255 * k / 255) == k`` holds exactly in float32 for every level k, so a pixel the
    corruption leaves unchanged keeps its level under truncation too.
    """
    scaled = y.clamp(0.0, 1.0) * 255.0
    return torch.floor(scaled) if _check_quantize(quantize) == "trunc" else torch.round(scaled)


def _run(
    fn: Any, name: str, x: torch.Tensor, param: Any, ctx: Context, quantize: str = "trunc"
) -> torch.Tensor:
    """Run one corruption on a chunk: float32 in, clamp, quantise to 8-bit levels, caller's dtype out."""
    xf = x.detach().to(torch.float32)
    if x.dtype == torch.uint8:
        xf = xf / 255.0
    elif xf.data_ptr() == x.data_ptr():
        xf = xf.clone()  # corruption functions may work in place; never touch the caller's tensor
    y = fn(xf, param, ctx)
    if y.shape != xf.shape:
        raise RuntimeError(f"corruption {name!r} returned shape {tuple(y.shape)} for input {tuple(xf.shape)}")
    levels = quantize_levels(y, quantize)
    if x.dtype == torch.uint8:
        return levels.to(torch.uint8)
    return (levels / 255.0).to(x.dtype)
