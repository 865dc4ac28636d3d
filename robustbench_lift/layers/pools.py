"""Pooling registry: one place that turns a pooling name into a 2x downsampling module.

Every registered kind maps (N, C, H, W) to (N, C, ceil(H/2), ceil(W/2)), odd sizes included, so models built with
different kinds have identical shapes everywhere.

Kinds:
    ``max``      2x2 max pooling, stride 2 (``ceil_mode`` for odd sizes).
    ``avg``      2x2 average pooling, stride 2 (``ceil_mode``; a clipped edge window averages what it covers).
    ``stride``   plain subsampling ``x[..., ::2, ::2]``, what a strided convolution does (the "no pooling" baseline).
    ``blur``     :class:`~robustbench_lift.layers.blur.BlurPool2d` (binomial filter, default size 3).
    ``maxblur``  :class:`~robustbench_lift.layers.blur.MaxBlurPool2d` (dense max, then blur).
    ``lift``     :class:`~robustbench_lift.layers.lift.LiftDownPool2d` (learned lifting, sum of sub-bands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from corruptions.registry import Registry

__all__ = [
    "POOLS",
    "Subsample2d",
    "create_pool",
    "is_pool_module",
    "list_pools",
    "pool_module_names",
    "register_pool",
]

PoolBuilder = Callable[..., nn.Module]

POOLS: Registry[PoolBuilder] = Registry("pooling")


def register_pool(name: str | None = None, **meta: Any) -> Callable[[PoolBuilder], PoolBuilder]:
    """Decorator registering a pool builder ``builder(channels, **kw) -> nn.Module`` under ``name``.

    The module must map (N, C, H, W) to (N, C, ceil(H/2), ceil(W/2)). Duplicate names raise ``ValueError``.
    Metadata (e.g. ``learned=True``) is free-form and readable with ``POOLS.meta(name)``; ``module="ClassName"``
    names the class the builder returns, so the probes that look for pooling layers in a model find it.
    A pool with an auxiliary loss exposes it as an ``aux_loss`` attribute (see :mod:`robustbench_lift.layers.aux`).
    """
    return POOLS.register(name, **meta)


def list_pools(**filters: Any) -> list[str]:
    """Registered pooling kinds in registration order, optionally filtered by metadata (e.g. ``learned=True``)."""
    return POOLS.names(**filters)


#: torch's own pooling classes, recognised in any model besides the registered ones.
_TORCH_POOL_NAMES = ("MaxPool2d", "AvgPool2d")


def pool_module_names() -> frozenset[str]:
    """Class names treated as pooling layers: torch's max/avg pools and every registered pool's ``module``."""
    names = set(_TORCH_POOL_NAMES)
    for kind in POOLS.names():
        module = POOLS.meta(kind).get("module")
        if module:
            names.add(module)
    return frozenset(names)


def is_pool_module(module: nn.Module) -> bool:
    """Whether ``module`` is a pooling layer (see :func:`pool_module_names`)."""
    return type(module).__name__ in pool_module_names()


def create_pool(kind: str | PoolBuilder, channels: int, **kwargs: Any) -> nn.Module:
    """Build a 2x downsampling module.

    Args:
        kind: a registered name (see :func:`list_pools`) or a builder called as ``kind(channels, **kwargs)``.
        channels: number of input channels (learned and depthwise pools need it; others ignore it).
        **kwargs: passed to the builder (e.g. ``filt_size=5`` for ``blur``, ``kernel_size=3`` for ``lift``).

    Returns:
        A module mapping (N, C, H, W) to (N, C, ceil(H/2), ceil(W/2)).
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if isinstance(kind, str):
        builder = POOLS.get(kind)
    elif callable(kind):
        builder = kind
    else:
        raise TypeError(f"pool kind must be a name or a callable, got {type(kind).__name__}: {kind!r}")
    return builder(channels, **kwargs)


class Subsample2d(nn.Module):
    """Keep every ``stride``-th row and column: ``x[..., ::stride, ::stride]``.

    Shape:
        (N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a 4D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        return x[..., :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def _no_kwargs(kind: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"pool {kind!r} takes no options, got {sorted(kwargs)}")


@register_pool("max", learned=False, module="MaxPool2d")
def _max(channels: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("max", kwargs)
    return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)


@register_pool("avg", learned=False, module="AvgPool2d")
def _avg(channels: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("avg", kwargs)
    # No padding, so a window clipped by ceil_mode is divided by the number of elements it covers.
    return nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)


@register_pool("stride", learned=False, module="Subsample2d")
def _stride(channels: int, **kwargs: Any) -> nn.Module:
    _no_kwargs("stride", kwargs)
    return Subsample2d(2)


@register_pool("blur", learned=False, module="BlurPool2d")
def _blur(channels: int, filt_size: int = 3, pad_mode: str = "reflect") -> nn.Module:
    from robustbench_lift.layers.blur import BlurPool2d

    return BlurPool2d(channels, filt_size=filt_size, stride=2, pad_mode=pad_mode)


@register_pool("maxblur", learned=False, module="MaxBlurPool2d")
def _maxblur(channels: int, filt_size: int = 3, pad_mode: str = "reflect") -> nn.Module:
    from robustbench_lift.layers.blur import MaxBlurPool2d

    return MaxBlurPool2d(channels, filt_size=filt_size, stride=2, pad_mode=pad_mode)


@register_pool("lift", learned=True, module="LiftDownPool2d")
def _lift(
    channels: int, kernel_size: int = 5, bands: str = "all", lambda_u: float = 0.01, lambda_p: float = 0.1
) -> nn.Module:
    from robustbench_lift.layers.lift import LiftDownPool2d

    return LiftDownPool2d(
        channels, kernel_size=kernel_size, bands=bands, lambda_u=lambda_u, lambda_p=lambda_p
    )
