"""Model registry: architectures that differ only in their pooling layers.

Every downsampling point of every registered architecture is a module made by
:func:`robustbench_lift.layers.pools.create_pool`, so ``build_model("resnet18", pool="lift")`` and
``build_model("resnet18", pool="max")`` have the same module tree except for the pool modules themselves.

A registered builder is called as ``builder(pool_layer, num_classes=..., in_channels=..., **kwargs)`` where
``pool_layer(channels) -> nn.Module`` is the one place the pooling kind is resolved. The builder's keyword
parameters (with their defaults) are recorded in ``model.default_cfg``, so a checkpoint can rebuild the model from
that dict alone (:func:`build_model_from_cfg`).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from corruptions.registry import Registry
from robustbench_lift.layers.pools import create_pool, list_pools

__all__ = [
    "CFG_KEYS",
    "MODELS",
    "PoolLayer",
    "build_model",
    "build_model_from_cfg",
    "init_weights",
    "is_pool",
    "list_models",
    "mark_pool",
    "register_model",
]

log = logging.getLogger(__name__)

#: ``pool_layer(channels) -> nn.Module`` mapping (N, C, H, W) to (N, C, ceil(H/2), ceil(W/2)).
PoolLayer = Callable[[int], nn.Module]
ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")

#: Keys of ``default_cfg`` that are not builder keyword arguments.
CFG_KEYS: tuple[str, ...] = ("arch", "pool", "num_classes", "in_channels", "input_size", "mean", "std")

_STANDARD_PARAMS = ("pool_layer", "num_classes", "in_channels")


def register_model(name: str | None = None, **meta: Any) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(pool_layer, *, num_classes, in_channels, **kwargs) -> nn.Module``.

    Variants are registered as ``functools.partial`` of one architecture builder (see ``MODELS.add``); a duplicate
    name raises ``ValueError``. ``meta`` is free-form (e.g. ``family="resnet"``).
    """
    return MODELS.register(name, **meta)


def list_models(**filters: Any) -> list[str]:
    """Registered model names in registration order, optionally filtered by metadata (e.g. ``family="resnet"``)."""
    return MODELS.names(**filters)


_POOL_FLAG = "_rbl_pool"


def mark_pool(module: nn.Module) -> nn.Module:
    """Flag ``module`` as a downsampling layer (weight init leaves it alone; tools can find it). Returns it."""
    setattr(module, _POOL_FLAG, True)
    return module


def is_pool(module: nn.Module) -> bool:
    """True for modules made by a model's ``pool_layer`` or put in by :func:`~robustbench_lift.models.swap_pooling`."""
    return bool(getattr(module, _POOL_FLAG, False))


def init_weights(model: nn.Module) -> None:
    """He init for convs, unit/zero norm layers, small normal linear layers; pool layers keep their own init.

    Pools (see :func:`is_pool`) are skipped with everything inside them, so e.g. LiftPool's zero-initialised
    P/U (which make a fresh layer plain polyphase subsampling) stay as their ``reset_parameters`` set them.
    """

    def visit(module: nn.Module) -> None:
        if is_pool(module):
            return
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        for child in module.children():
            visit(child)

    visit(model)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _builder_defaults(builder: ModelBuilder) -> dict[str, Any]:
    """Keyword parameters of ``builder`` a user may set, with their defaults (partial-bound ones excluded)."""
    bound = builder.keywords if isinstance(builder, functools.partial) else {}
    out: dict[str, Any] = {}
    for p in inspect.signature(builder).parameters.values():
        if p.name in _STANDARD_PARAMS or p.name in bound:
            continue
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = None if p.default is p.empty else p.default
    return out


def _plain(value: Any) -> Any:
    """Tuples -> lists recursively, so ``default_cfg`` equals its JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _float_list(name: str, value: Sequence[float], channels: int) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of {channels} numbers, got {value!r}") from None
    if len(out) != channels:
        raise ValueError(f"{name} must have one value per input channel ({channels}), got {value!r}")
    return out


def build_model(
    name: str,
    pool: str = "max",
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    pool_kwargs: Mapping[str, Any] | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered architecture with every downsampling point made by ``create_pool(pool, channels)``.

    Args:
        name: a registered model (see :func:`list_models`), or ``timm:NAME`` for any timm classifier (optional
            extra ``timm``; built without weights, its pooling put in through timm's ``aa_layer`` hook where the
            model has one, by :func:`~robustbench_lift.models.swap.swap_pooling` otherwise; see
            :mod:`robustbench_lift.models.timm_models`).
        pool: a registered pooling kind (see :func:`robustbench_lift.layers.pools.list_pools`); for ``timm:NAME``,
            None keeps timm's own pooling.
        num_classes: size of the output layer.
        in_channels: channels of the input images (1 for grayscale, 3 for RGB).
        pool_kwargs: options passed to every pool (e.g. ``{"kernel_size": 3}`` for ``lift``).
        input_size: ``(H, W)`` the model is meant for (default: the architecture's own).
        mean, std: per-channel input normalisation the model expects (recorded only; the model does not apply it).
        **kwargs: architecture options (e.g. ``stem="imagenet"`` for ResNets).

    Returns:
        The model, with ``model.default_cfg`` holding everything needed to rebuild it.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    if name.startswith("timm:"):
        from robustbench_lift.models.timm_models import build_timm_model

        if pool is not None and not isinstance(pool, str):
            raise TypeError(f"pool must be a pooling name or None, got {type(pool).__name__}: {pool!r}")
        model = build_timm_model(
            name,
            pool,
            _check_positive_int("num_classes", num_classes),
            _check_positive_int("in_channels", in_channels),
            pool_kwargs=pool_kwargs,
            input_size=input_size,
            mean=mean,
            std=std,
            **kwargs,
        )
        model.default_cfg = _plain(model.default_cfg)
        return model
    builder = MODELS.get(name)
    if not isinstance(pool, str):
        raise TypeError(f"pool must be a pooling name, got {type(pool).__name__}: {pool!r}")
    if pool not in list_pools():
        raise ValueError(f"unknown pooling {pool!r}; valid: {', '.join(list_pools())}")
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    pool_kw = dict(pool_kwargs or {})

    defaults = _builder_defaults(builder)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown and not takes_any:
        valid = ", ".join(sorted(defaults)) or "(none)"
        raise TypeError(f"model {name!r} got unknown option(s) {unknown}; valid: {valid}")
    arch_kwargs = {**defaults, **kwargs}

    def pool_layer(channels: int) -> nn.Module:
        return mark_pool(create_pool(pool, channels, **pool_kw))

    model = builder(pool_layer, num_classes=num_classes, in_channels=in_channels, **arch_kwargs)

    size = input_size if input_size is not None else getattr(model, "default_input_size", (32, 32))
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"input_size must be (H, W) positive ints, got {input_size!r}")
    default_mean, default_std = getattr(
        model, "default_mean_std", ((0.5,) * in_channels, (0.5,) * in_channels)
    )
    mean_l = _float_list("mean", mean if mean is not None else default_mean, in_channels)
    std_l = _float_list("std", std if std is not None else default_std, in_channels)
    if any(s <= 0 for s in std_l):
        raise ValueError(f"std must be positive, got {std_l}")

    cfg: dict[str, Any] = {
        "arch": name,
        "pool": pool,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": list(size),
        "mean": mean_l,
        "std": std_l,
    }
    if pool_kw:
        cfg["pool_kwargs"] = pool_kw
    cfg.update(arch_kwargs)
    model.default_cfg = _plain(cfg)
    log.debug("built %s with pool=%s: %d parameters", name, pool, sum(p.numel() for p in model.parameters()))
    return model


def build_model_from_cfg(cfg: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Rebuild a model from a ``default_cfg`` dict (e.g. read from checkpoint metadata).

    ``overrides`` replace entries of ``cfg``. Unknown entries raise ``TypeError`` naming them.
    """
    merged = {**dict(cfg), **overrides}
    if "arch" not in merged:
        raise ValueError(f"model config needs an 'arch' entry, got keys {sorted(merged)}")
    name = merged.pop("arch")
    return build_model(name, **merged)


# Register the architectures (import for the side effect).
from robustbench_lift.models import convnet, mobilenet, resnet, vgg  # noqa: E402,F401
