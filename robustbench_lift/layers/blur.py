"""Anti-aliased downsampling: BlurPool and MaxBlurPool (Zhang, ICML 2019).

A binomial low-pass filter applied depthwise before subsampling. ``filt_size`` 1 is plain subsampling, 2 is 2x2
average pooling (on even sizes), 3 and up are the ``Bin-k`` filters of the paper. With stride 2 and padding
``[(k-1)//2, ceil((k-1)/2)]`` every size maps ``H -> ceil(H/2)``, odd sizes included.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BlurPool2d", "MaxBlurPool2d", "binomial_filter", "blur_pool2d", "pad_nd"]

_BINOMIAL_ROWS: dict[int, tuple[int, ...]] = {
    1: (1,),
    2: (1, 1),
    3: (1, 2, 1),
    4: (1, 3, 3, 1),
    5: (1, 4, 6, 4, 1),
    6: (1, 5, 10, 10, 5, 1),
    7: (1, 6, 15, 20, 15, 6, 1),
}
_PAD_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular", "zeros": "constant"}


def _check_filt_size(filt_size: int) -> None:
    if isinstance(filt_size, bool) or not isinstance(filt_size, int) or filt_size not in _BINOMIAL_ROWS:
        raise ValueError(f"filt_size must be an int in 1..7, got {filt_size!r}")


def _check_stride(stride: int) -> None:
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")


def _check_pad_mode(pad_mode: str) -> str:
    if pad_mode not in _PAD_MODES:
        raise ValueError(f"unknown pad_mode {pad_mode!r}; valid: {', '.join(_PAD_MODES)}")
    return _PAD_MODES[pad_mode]


def _check_input(x: Tensor, channels: int | None = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected a 4D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"expected {channels} channels, got input of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating point tensor, got dtype {x.dtype}")


def binomial_filter(
    filt_size: int, *, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> Tensor:
    """Normalised 2D binomial filter (outer product of a binomial row, sums to 1).

    Args:
        filt_size: 1..7.

    Returns:
        Tensor of shape (filt_size, filt_size).
    """
    _check_filt_size(filt_size)
    row = torch.tensor(_BINOMIAL_ROWS[filt_size], dtype=torch.float64)
    filt = torch.outer(row, row)
    filt = filt / filt.sum()
    return filt.to(dtype=dtype or torch.get_default_dtype(), device=device)


def _reflect_index(length: int, before: int, after: int, device: torch.device) -> Tensor:
    # Index map of reflect padding that stays defined when the padding is as long as the input or longer
    # (torch's reflect mode requires pad < length): mirror with period 2 * (length - 1).
    idx = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(idx)
    period = 2 * (length - 1)
    idx = idx.remainder(period)
    return torch.where(idx < length, idx, period - idx)


def pad_nd(x: Tensor, pad: tuple[int, int, int, int], mode: str) -> Tensor:
    """``F.pad`` over the last two dims that also handles reflect padding longer than the input.

    Args:
        x: (..., H, W).
        pad: (left, right, top, bottom).
        mode: a ``torch.nn.functional.pad`` mode ("reflect", "replicate", "circular", "constant").

    Returns:
        The padded tensor. Reflect padding of at least the input length (undefined in ``F.pad``) continues the
        mirror periodically; a length-1 axis is replicated.
    """
    if not any(pad):
        return x
    left, right, top, bottom = pad
    height, width = x.shape[-2:]
    if mode != "reflect" or (max(left, right) < width and max(top, bottom) < height):
        return F.pad(x, pad, mode=mode)
    if left or right:
        x = x.index_select(-1, _reflect_index(width, left, right, x.device))
    if top or bottom:
        x = x.index_select(-2, _reflect_index(height, top, bottom, x.device))
    return x


def _blur(x: Tensor, filt: Tensor, stride: int, mode: str) -> Tensor:
    k = filt.shape[-1]
    if k == 1:
        return x[..., ::stride, ::stride]
    lo, hi = (k - 1) // 2, math.ceil((k - 1) / 2)
    x = pad_nd(x, (lo, hi, lo, hi), mode)
    return F.conv2d(x, filt, stride=stride, groups=x.shape[1])


def blur_pool2d(x: Tensor, filt_size: int = 3, stride: int = 2, pad_mode: str = "reflect") -> Tensor:
    """Blur with a normalised binomial filter (depthwise), then subsample.

    Args:
        x: input images or features.
        filt_size: binomial filter size, 1..7 (1 = plain subsampling, 2 = 2x2 average).
        stride: subsampling factor.
        pad_mode: "reflect" (default), "replicate", "circular" or "zeros".

    Returns:
        The blurred, subsampled tensor, same dtype and device as ``x``.

    Shape:
        (N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride)).
    """
    _check_input(x)
    _check_filt_size(filt_size)
    _check_stride(stride)
    mode = _check_pad_mode(pad_mode)
    channels = x.shape[1]
    filt = binomial_filter(filt_size, dtype=x.dtype, device=x.device)
    return _blur(x, filt.expand(channels, 1, filt_size, filt_size), stride, mode)


class BlurPool2d(nn.Module):
    """Module form of :func:`blur_pool2d`; the filter is a non-persistent buffer (not in the state_dict).

    Args:
        channels: number of input channels.
        filt_size: binomial filter size, 1..7.
        stride: subsampling factor.
        pad_mode: "reflect" (default), "replicate", "circular" or "zeros".

    Shape:
        (N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride)).
    """

    filt: Tensor

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2, pad_mode: str = "reflect") -> None:
        super().__init__()
        _check_channels(channels)
        _check_filt_size(filt_size)
        _check_stride(stride)
        self._mode = _check_pad_mode(pad_mode)
        self.channels = channels
        self.filt_size = filt_size
        self.stride = stride
        self.pad_mode = pad_mode
        filt = binomial_filter(filt_size).expand(channels, 1, filt_size, filt_size).contiguous()
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.channels)
        return _blur(x, self.filt.to(x.dtype), self.stride, self._mode)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, filt_size={self.filt_size}, stride={self.stride}, pad_mode={self.pad_mode!r}"
        )


class MaxBlurPool2d(nn.Module):
    """Anti-aliased max pooling: MaxPool(2, stride 1) then BlurPool (Zhang, ICML 2019; docs/pooling.md).

    For an odd H (or W) the input is first padded by one row (column) at the bottom (right) by replication, so the
    dense max keeps H rows and the blur gives ceil(H/2), like every pool of the project. Even sizes are unchanged
    from the paper's composition (H - 1 rows after the dense max, ceil((H - 1) / 2) = H / 2 after the blur).

    Args:
        channels: number of input channels.
        filt_size: binomial filter size of the blur, 1..7.
        stride: subsampling factor of the blur.
        pad_mode: padding of the blur.

    Shape:
        (N, C, H, W) -> (N, C, ceil(H / 2), ceil(W / 2)) with the default stride.
    """

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2, pad_mode: str = "reflect") -> None:
        super().__init__()
        self.blur = BlurPool2d(channels, filt_size=filt_size, stride=stride, pad_mode=pad_mode)

    @property
    def channels(self) -> int:
        return self.blur.channels

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.channels)
        height, width = x.shape[-2:]
        if height % 2 or width % 2:
            x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
        x = F.max_pool2d(x, kernel_size=2, stride=1)
        return self.blur(x)


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
