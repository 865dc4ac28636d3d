"""timm classifiers as toolkit models: ``build_model("timm:NAME", pool=..., num_classes=..., in_channels=...)``.

Any classifier of the optional `timm <https://github.com/huggingface/pytorch-image-models>`_ library (extra
``timm``) is built without weights (``pretrained=False``: weights come from a checkpoint file, never from the hub)
and gets the project's pooling in one of two ways:

* through timm's own anti-aliasing hook, ``timm.create_model(..., aa_layer=...)``, where the model has one (ResNets,
  DenseNets, ...): timm then puts a downsampling layer after each stride-1 conv it would have strided, and that
  layer is ``create_pool(pool, channels)``;
* otherwise by :func:`~robustbench_lift.models.swap.swap_pooling` on the built model (stride-2 max/avg pools, and
  with ``strided_convs=True`` the stride-2 convs too), as for torchvision models.

``pool=None`` keeps timm's own pooling. The model's ``default_cfg`` is replaced by the toolkit's (arch
``timm:NAME``, pool, num_classes, in_channels, input size and normalisation from timm's pretrained config), so
:func:`~robustbench_lift.checkpoint.save_checkpoint` records it and a checkpoint rebuilds it; timm's own config
stays in ``model.pretrained_cfg``.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from robustbench_lift.layers.pools import create_pool, list_pools
from robustbench_lift.models import is_pool, mark_pool

__all__ = ["PREFIX", "TimmNotInstalledError", "build_timm_model", "import_timm"]

log = logging.getLogger(__name__)

#: Architecture names starting with this prefix are timm models.
PREFIX = "timm:"


class TimmNotInstalledError(ValueError):
    """A ``timm:NAME`` architecture was asked for but timm is not installed."""


def import_timm() -> Any:
    """The ``timm`` module, or :class:`TimmNotInstalledError` naming the extra that installs it."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise TimmNotInstalledError(
            "timm:NAME architectures need the timm library: pip install 'robustbench-lift[timm]' (or pip install timm)"
        ) from None


def _check_name(timm: Any, name: str) -> None:
    """ValueError naming close timm model names when ``name`` is not one."""
    if name and timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
    raise ValueError(f"{PREFIX}{name} is not a timm model{hint} (timm.list_models() lists them all)")


def _aa_factory(pool: str, pool_kw: Mapping[str, Any]) -> type:
    """A class timm accepts as ``aa_layer``: instantiating it returns the project's pool for that many channels.

    timm calls ``aa_layer(channels=C, stride=2)`` (and tests ``issubclass(aa_layer, nn.AvgPool2d)``), so this must be
    a class; ``__new__`` returns the pool module itself.
    """

    class ProjectPool:
        def __new__(cls, channels: int | None = None, stride: int = 2, **_: Any) -> nn.Module:  # type: ignore[misc]
            if channels is None or stride != 2:
                raise TypeError(f"the {pool!r} pool needs channels and stride 2 (got {channels}, {stride})")
            return mark_pool(create_pool(pool, int(channels), **pool_kw))

    ProjectPool.__name__ = ProjectPool.__qualname__ = f"ProjectPool[{pool}]"
    return ProjectPool


def _channel_list(
    what: str, given: Sequence[float] | None, timm_values: Sequence[float] | None, channels: int
) -> list[float]:
    """The given per-channel values (checked), else timm's where they fit (its RGB statistics do not fit one
    channel), else 0.5 per channel."""
    if given is not None:
        if len(given) != channels:
            raise ValueError(f"{what} must have one value per input channel ({channels}), got {list(given)}")
        return [float(v) for v in given]
    if timm_values is not None and len(timm_values) == channels:
        return [float(v) for v in timm_values]
    return [0.5] * channels


def build_timm_model(
    arch: str,
    pool: str | None,
    num_classes: int,
    in_channels: int,
    *,
    pool_kwargs: Mapping[str, Any] | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    strided_convs: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build the timm classifier ``arch`` (``timm:NAME``) with the project's ``pool`` (see the module docstring).

    Args:
        arch: ``timm:NAME``, NAME a timm model (a pretrained tag such as ``resnet18.a1_in1k`` is allowed; only its
            architecture is used, never its weights).
        pool: a registered pooling kind, or None for timm's own pooling.
        num_classes, in_channels: head outputs and input channels (timm's ``num_classes`` / ``in_chans``).
        pool_kwargs: options of every pool.
        input_size, mean, std: recorded preprocessing (default: timm's pretrained config where it fits).
        strided_convs: for models without timm's ``aa_layer`` hook, also replace stride-2 convs.
        **kwargs: further ``timm.create_model`` arguments (e.g. ``drop_rate``).

    Raises:
        TimmNotInstalledError: timm is missing. ValueError: NAME is not a timm model, or the pool is unknown.
    """
    timm = import_timm()
    name = arch[len(PREFIX) :] if arch.startswith(PREFIX) else arch
    _check_name(timm, name)
    if pool is not None and pool not in list_pools():
        raise ValueError(f"unknown pooling {pool!r}; valid: {', '.join(list_pools())}")
    pool_kw = dict(pool_kwargs or {})
    create = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels, **kwargs}

    model = None
    hook = False
    if pool is not None:
        try:
            model = timm.create_model(name, aa_layer=_aa_factory(pool, pool_kw), **create)
        except TypeError as exc:  # the model has no aa_layer argument
            log.debug("%s%s: no aa_layer hook (%s); swapping modules instead", PREFIX, name, exc)
        else:
            hook = any(is_pool(m) for m in model.modules())
            if not hook:
                model = None  # the argument was accepted but unused
    if model is None:
        model = timm.create_model(name, **create)
        if pool is not None:
            from robustbench_lift.models.swap import swap_pooling

            report = swap_pooling(model, pool, strided_convs=strided_convs, **pool_kw).pooling_swap
            if report.count == 0:
                log.warning(
                    "%s%s has no stride-2 max/avg pooling to swap for %r%s",
                    PREFIX,
                    name,
                    pool,
                    "" if strided_convs else " (strided_convs=True also replaces its strided convs)",
                )
    log.debug("built %s%s with pool=%s via %s", PREFIX, name, pool, "aa_layer" if hook else "module swap")

    timm_cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if input_size is None:
        input_size = list(timm_cfg.get("input_size", (3, 224, 224)))[-2:]
    cfg: dict[str, Any] = {
        "arch": PREFIX + name,
        "pool": pool,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": [int(s) for s in input_size],
        "mean": _channel_list("mean", mean, timm_cfg.get("mean"), in_channels),
        "std": _channel_list("std", std, timm_cfg.get("std"), in_channels),
        "strided_convs": bool(strided_convs),
    }
    if pool_kw:
        cfg["pool_kwargs"] = pool_kw
    cfg.update(kwargs)
    model.default_cfg = cfg
    return model
