"""Input preprocessing: uint8 -> float [0, 1] -> channels -> size, then normalisation.

The evaluator turns batches into model input with :func:`to_float` -> :func:`match_channels` -> :func:`resize_to`
-> (corruption) -> :class:`Normalize` (:func:`prepare_batch` does the first three).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _parse_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
        h, w = (int(v) for v in image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return (h, w)


# --------------------------------------------------------------------------------------------------------------
# preprocessing

#: ITU-R BT.601 luma weights used for RGB -> grayscale.
LUMA_601: tuple[float, float, float] = (0.299, 0.587, 0.114)


def to_float(batch: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 images -> floating point in [0, 1] (``/ 255``). Floating input is returned unchanged (cast to dtype)."""
    if batch.dtype == torch.uint8:
        return batch.to(dtype).div_(255.0)
    if batch.is_floating_point():
        return batch.to(dtype)
    raise TypeError(f"to_float expects uint8 or floating images, got {batch.dtype}")


def match_channels(x: Tensor, channels: int) -> Tensor:
    """Convert ``(..., C, H, W)`` images to ``channels`` channels.

    Grayscale -> RGB replicates the single channel; RGB -> grayscale takes the ITU-R BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B`` (rounded back for uint8 input). Equal channel counts return ``x`` itself.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if x.dim() < 3:
        raise ValueError(f"expected images (..., C, H, W), got shape {tuple(x.shape)}")
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor(LUMA_601, dtype=torch.float32 if not x.is_floating_point() else x.dtype)
        weights = weights.to(x.device).view(3, 1, 1)
        gray = (x.to(weights.dtype) * weights).sum(dim=-3, keepdim=True)
        if x.dtype == torch.uint8:
            return gray.round_().clamp_(0, 255).to(torch.uint8)
        return gray
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels (supported: 1 <-> 3)")


def resize_to(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``size`` (bilinear, antialiased); same size returns ``x`` itself.

    For fixed-size datasets whose native size differs from the model's input size. Never applied to pre-generated
    ImageNet-C images, which are already at the evaluation size. uint8 input is resized in float and rounded back.
    """
    target = _parse_size(size)
    if x.dim() != 4:
        raise ValueError(f"resize_to expects (N, C, H, W), got shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == target:
        return x
    if x.dtype == torch.uint8:
        y = F.interpolate(x.float(), size=target, mode="bilinear", align_corners=False, antialias=True)
        return y.round_().clamp_(0, 255).to(torch.uint8)
    if not x.is_floating_point():
        raise TypeError(f"resize_to expects uint8 or floating images, got {x.dtype}")
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)


def prepare_batch(batch: Tensor, *, channels: int, size: int | tuple[int, int] | None = None) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1] with the model's channel count and input size.

    Corruptions then apply to this, and :class:`Normalize` comes last.
    """
    x = match_channels(to_float(batch), channels)
    return x if size is None else resize_to(x, size)


_JPEG_POOL: Any = None


def _jpeg_pool() -> Any:
    global _JPEG_POOL
    if _JPEG_POOL is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _JPEG_POOL = ThreadPoolExecutor(
            max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="store"
        )
    return _JPEG_POOL


def _jpeg_file_round_trip(plane: Any, quality: int) -> Any:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    # the generator also asked for optimize=True: optimal Huffman tables, a smaller file with the same pixels
    Image.fromarray(plane[..., 0] if plane.shape[-1] == 1 else plane).save(
        buf, format="JPEG", quality=quality
    )
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded, dtype=np.uint8).reshape(plane.shape)


def store_as_jpeg(x: Tensor, quality: int = 85) -> Tensor:
    """Write each image to an in-memory JPEG file and read it back (Pillow's encoder, 4:2:0 chroma subsampling).

    The published ImageNet-C images were corrupted, converted to 8-bit and saved as quality-85 JPEG files
    (docs/metrics.md, "Normalisers"); this is that storage step for images corrupted on the fly. ``x`` is
    ``(N, C, H, W)`` uint8 or float in [0, 1] on the 8-bit levels k / 255 (what ``corruptions.corrupt`` returns;
    the level is recovered by rounding). Returns the decoded images, same shape, dtype and device. Images are
    coded in a thread pool (the codec releases the GIL); each depends only on itself.
    """
    import numpy as np

    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality!r}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"store_as_jpeg expects (N, 1 | 3, H, W) images, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        levels = x
    elif x.is_floating_point():
        levels = (x.detach().float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    else:
        raise TypeError(f"store_as_jpeg expects uint8 or floating images, got {x.dtype}")
    planes = levels.permute(0, 2, 3, 1).cpu().numpy()
    if len(planes) == 0:
        return x.clone()
    decoded = list(_jpeg_pool().map(lambda p: _jpeg_file_round_trip(p, q), planes))
    y = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(x.device)
    if x.dtype == torch.uint8:
        return y.contiguous()
    return (y.to(torch.float32) / 255.0).to(x.dtype)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for ``(N, C, H, W)`` input in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape or mean_t.numel() == 0:
            raise ValueError(f"mean and std need the same non-zero length, got {list(mean)} and {list(std)}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"Normalize expects (N, {self.mean.shape[1]}, H, W) input, got shape {tuple(x.shape)}"
            )
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        std = self.std.to(device=x.device, dtype=x.dtype)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input, and the two steps that produce it.

    :meth:`prepare` turns uint8 ``(N, C, H, W)`` batches into float [0, 1] images at the model's channel count and
    input size (corruptions, perturbations and shifts act on these); :meth:`normalize` turns them into model input.

    Args:
        channels: the model's input channels.
        input_size: (H, W) to resize to (None: keep the data's size).
        mean, std: per-channel normalisation (None: the model takes [0, 1] images).
        resize: False keeps the images' size whatever ``input_size`` says (pre-generated ImageNet-C).
    """

    channels: int
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: bool = True

    def prepare(self, batch: Tensor) -> Tensor:
        return prepare_batch(batch, channels=self.channels, size=self.input_size if self.resize else None)

    @functools.cached_property
    def _normalizer(self) -> Normalize | None:
        return None if self.mean is None else Normalize(self.mean, self.std)

    def normalizer(self, device: torch.device | str | None = None) -> Normalize | None:
        """The :class:`Normalize` module, on ``device`` when given (None without normalisation)."""
        norm = self._normalizer
        return norm if norm is None or device is None else norm.to(device)

    def normalize(self, x: Tensor) -> Tensor:
        norm = self.normalizer(x.device)
        return x if norm is None else norm(x)


@dataclass(frozen=True)
class InputPipeline:
    """A custom model input in two steps (for callers whose preprocessing is not a :class:`Preprocess`).

    Args:
        prepare: uint8 (N, C, H, W) -> float (N, C', H', W') in [0, 1] at the model's channels and size.
        normalize: [0, 1] images -> model input (e.g. mean/std normalisation).
    """

    prepare: Callable[[Tensor], Tensor]
    normalize: Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


def as_pipeline(preprocess: Any = None) -> Preprocess | InputPipeline:
    """Turn the ways a caller may describe preprocessing into an object with ``prepare`` and ``normalize``.

    Accepts: None (uint8 -> [0, 1], no normalisation); a :class:`Preprocess` or any object with ``prepare`` and
    ``normalize`` callables (returned as it is); a ``(prepare, normalize)`` pair; or a single callable, taken as
    ``normalize`` on [0, 1] images.
    """
    if preprocess is None:
        return InputPipeline(to_float, _identity)
    if hasattr(preprocess, "prepare") and hasattr(preprocess, "normalize"):
        return preprocess
    if isinstance(preprocess, tuple) and len(preprocess) == 2 and all(callable(p) for p in preprocess):
        return InputPipeline(preprocess[0], preprocess[1])
    if callable(preprocess):
        return InputPipeline(to_float, preprocess)
    raise TypeError(
        "preprocess must be None, a Preprocess, an object with prepare/normalize, a (prepare, normalize) pair or "
        f"a callable; got {type(preprocess).__name__}"
    )
