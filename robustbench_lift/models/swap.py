"""Put a registered pooling kind into an existing model (e.g. a torchvision one) in place.

:func:`swap_pooling` replaces every ``nn.MaxPool2d`` / ``nn.AvgPool2d`` of stride 2 (and every pool that an
earlier swap or :func:`~robustbench_lift.models.build_model` put in) with ``create_pool(kind, channels)`` and,
with ``strided_convs=True``, turns every stride-2 ``nn.Conv2d`` into a stride-1 conv plus that pool. Global pools (``nn.AdaptiveAvgPool2d`` and friends) and pools of other strides are left alone.

How the pool's channel count is found: a dry run. A forward hook on each pool to replace records the channel
count of the tensor that actually reaches it, for one example input (by default zeros of shape
``(1, C, 64, 64)``, then ``224`` if that fails, with ``C`` the first conv's input channels). Reading channels off the
tensor is robust to module registration order, functional ops and branches, which guessing from "the conv
before it" is not. Pools the dry run does not reach fall back to the out-channels of the last conv/BN registered
before them. Convs need no dry run: the pool sits on their output (or input) channels.

Where the pool goes for a strided conv:

* a 1x1 conv with no padding (ResNet shortcuts): the pool comes first and the conv runs on the pooled input
  (4x cheaper; the same function for linear pools; antialiased-cnns' choice);
* a conv followed, inside the same ``nn.Sequential``, by norm and activation layers (torchvision's
  ``Conv2dNormActivation``, VGG features): the pool comes after the last activation of that run, as BlurPool
  recommends (blurring after the nonlinearity), by replacing that activation with ``Sequential(act, pool)``;
* otherwise (e.g. torchvision ResNet blocks, whose BN and ReLU are applied in ``forward``) directly after the conv.

State-dict keys of the existing layers do not change (a wrapped conv keeps its ``weight``/``bias`` keys; a
learned pool adds its own ``...pool.*`` keys), so weights saved before the swap still load after it (with
``strict=False`` when the new pools have parameters). A 2x2 max/avg pool used to floor odd sizes; the registered
pools take ``ceil(H/2)``, so models fed odd sizes may see one more row or column (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustbench_lift.layers.pools import create_pool, list_pools
from robustbench_lift.models import is_pool, mark_pool

__all__ = ["PooledConv2d", "SwapReport", "swap_pooling"]

log = logging.getLogger(__name__)

_POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d)
_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.SyncBatchNorm)
_ACT_TYPES = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
)
_DRY_RUN_SIZES = (64, 224)


class PooledConv2d(nn.Conv2d):
    """A stride-1 conv with a pool on its output (or, with ``pool_first``, on its input).

    Keeps the parameter names of ``nn.Conv2d`` (``weight``, ``bias``), so state dicts of the strided conv load.
    """

    def __init__(self, *args: Any, pool: nn.Module, pool_first: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.pool_first = pool_first

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, pool: nn.Module, pool_first: bool) -> PooledConv2d:
        """Wrap ``conv`` (its parameters are shared, not copied) with its stride set to 1."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=1,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            pool=pool,
            pool_first=pool_first,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if self.pool_first:
            return super().forward(self.pool(x))
        return self.pool(super().forward(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pool_first={self.pool_first}"


@dataclass
class SwapReport:
    """What :func:`swap_pooling` changed (also stored as ``model.pooling_swap``)."""

    kind: str
    pools: list[str] = field(default_factory=list)
    strided_convs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.pools) + len(self.strided_convs)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool_stride(m: nn.Module) -> tuple[int, int]:
    stride = m.stride if m.stride is not None else m.kernel_size
    return _pair(stride)


def _locations(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Module]]:
    """(full name, parent, attribute, child) for every registered child, parents visited in module order."""
    out = []
    for parent_name, parent in model.named_modules(remove_duplicate=False):
        for attr, child in parent.named_children():
            full = f"{parent_name}.{attr}" if parent_name else attr
            out.append((full, parent, attr, child))
    return out


def _first_conv_in_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def _dry_run_channels(
    model: nn.Module, pools: list[nn.Module], example_input: Tensor | None
) -> tuple[dict[int, int], dict[int, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Channel count and (input, output) shapes reaching each pool in one forward pass."""
    channels: dict[int, int] = {}
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    conflicts: list[str] = []

    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
        x = args[0]
        if not isinstance(x, Tensor) or x.dim() != 4:
            return
        seen = channels.setdefault(id(module), int(x.shape[1]))
        if seen != x.shape[1]:
            conflicts.append(f"{module!r} sees {seen} and {x.shape[1]} channels")
        shapes.setdefault(id(module), (tuple(x.shape), tuple(output.shape)))

    if example_input is not None:
        inputs = [example_input]
    else:
        c = _first_conv_in_channels(model)
        if c is None:
            raise ValueError(
                "cannot infer the input channels (the model has no nn.Conv2d): pass example_input="
            )
        param = next(model.parameters(), None)
        kw = {"device": param.device, "dtype": param.dtype} if param is not None else {}
        inputs = [torch.zeros(1, c, s, s, **kw) for s in _DRY_RUN_SIZES]

    modes = {m: m.training for m in model.modules()}
    handles = [p.register_forward_hook(hook) for p in pools]
    try:
        model.eval()
        errors = []
        for x in inputs:
            channels.clear()
            shapes.clear()
            try:
                with torch.no_grad():
                    model(x)
                break
            except RuntimeError as exc:  # too small for the architecture: try the next size
                errors.append(f"input {tuple(x.shape)}: {exc}")
        else:
            raise ValueError(
                "swap_pooling could not run the model to find pool channels; pass example_input=. "
                + " | ".join(errors)
            )
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if conflicts:
        raise ValueError("one pooling module is used with different channel counts: " + "; ".join(conflicts))
    return channels, shapes


def _order_channels(model: nn.Module, target: nn.Module) -> int | None:
    """Out-channels of the last conv / BN registered before ``target`` (fallback when the dry run missed it)."""
    last = None
    for m in model.modules():
        if m is target:
            return last
        if isinstance(m, nn.Conv2d):
            last = m.out_channels
        elif isinstance(m, nn.BatchNorm2d):
            last = m.num_features
    return None


def swap_pooling(
    model: nn.Module,
    kind: str | Callable[..., nn.Module],
    *,
    strided_convs: bool = False,
    example_input: Tensor | None = None,
    **pool_kw: Any,
) -> nn.Module:
    """Replace the stride-2 pooling (and optionally strided convs) of ``model`` with ``create_pool(kind, C)``.

    Args:
        model: any ``nn.Module``; changed in place.
        kind: a registered pooling kind (see :func:`robustbench_lift.layers.pools.list_pools`) or a pool builder.
        strided_convs: also turn stride-2 convs into stride-1 conv + pool (see the module docstring for where).
        example_input: one input batch for the dry run that finds channel counts (default: zeros, 64 then 224 px).
        **pool_kw: options of the pool (e.g. ``filt_size=5`` for ``blur``).

    Returns:
        ``model`` itself, with ``model.pooling_swap`` a :class:`SwapReport` naming what was replaced.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(kind, str):
        if kind not in list_pools():
            raise ValueError(f"unknown pooling {kind!r}; valid: {', '.join(list_pools())}")
        kind_name = kind
    elif callable(kind):
        kind_name = getattr(kind, "__name__", repr(kind))
    else:
        raise TypeError(f"kind must be a pooling name or a callable, got {type(kind).__name__}: {kind!r}")
    if example_input is not None and not isinstance(example_input, Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    report = SwapReport(kind=kind_name)

    def make(channels: int) -> nn.Module:
        return mark_pool(create_pool(kind, channels, **pool_kw))

    # Pools put in by build_model or an earlier swap are replaced as a whole; their insides are not looked at.
    marked = tuple(f"{n}." for n, m in model.named_modules() if n and is_pool(m))
    locations = [loc for loc in _locations(model) if not loc[0].startswith(marked)]
    pool_locs = []
    for full, parent, attr, child in locations:
        if is_pool(child):
            pool_locs.append((full, parent, attr, child))
            continue
        if not isinstance(child, _POOL_TYPES):
            continue
        if _pool_stride(child) != (2, 2) or getattr(child, "return_indices", False):
            report.skipped.append(full)
            continue
        pool_locs.append((full, parent, attr, child))
    conv_locs = [
        loc
        for loc in locations
        if strided_convs
        and isinstance(loc[3], nn.Conv2d)
        and not is_pool(loc[3])
        and _pair(loc[3].stride) == (2, 2)
    ]
    for full, _, _, child in locations:
        if strided_convs and isinstance(child, nn.Conv2d) and _pair(child.stride) not in ((1, 1), (2, 2)):
            report.skipped.append(full)

    channels: dict[int, int] = {}
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    if pool_locs:
        channels, shapes = _dry_run_channels(model, [loc[3] for loc in pool_locs], example_input)

    replacements: dict[int, nn.Module] = {}  # one new module per old instance, so shared modules stay shared
    for full, parent, attr, child in pool_locs:
        new = replacements.get(id(child))
        if new is None:
            c = channels.get(id(child))
            if c is None:
                c = _order_channels(model, child)
                if c is None:
                    raise ValueError(
                        f"cannot find the channel count of {full} ({child!r}): pass example_input="
                    )
                log.info(
                    "swap_pooling: %s not reached by the dry run; using %d channels from module order",
                    full,
                    c,
                )
            if id(child) in shapes:
                (n, _, h, w), out = shapes[id(child)]
                if tuple(out[-2:]) != ((h + 1) // 2, (w + 1) // 2):
                    log.warning(
                        "swap_pooling: %s maps %dx%d to %dx%d; the %r pool gives %dx%d",
                        full, h, w, out[-2], out[-1], kind_name, (h + 1) // 2, (w + 1) // 2,
                    )  # fmt: skip
            new = replacements[id(child)] = make(c)
        setattr(parent, attr, new)
        report.pools.append(full)

    for full, parent, attr, conv in conv_locs:
        new = replacements.get(id(conv))
        if new is None:
            new = replacements[id(conv)] = _swap_conv(parent, attr, conv, make)
        setattr(parent, attr, new)
        report.strided_convs.append(full)

    model.pooling_swap = report
    log.info(
        "swap_pooling: replaced %d pooling layers and %d strided convs with %r (%d left alone)",
        len(report.pools), len(report.strided_convs), kind_name, len(report.skipped),
    )  # fmt: skip
    return model


def _swap_conv(parent: nn.Module, attr: str, conv: nn.Conv2d, make: Callable[[int], nn.Module]) -> nn.Module:
    """The module to put at ``parent.attr`` in place of the strided ``conv``; may also wrap a later sibling."""
    pool_first = (
        _pair(conv.kernel_size) == (1, 1) and _pair(conv.padding) == (0, 0) and conv.padding_mode == "zeros"
    )
    if not pool_first and isinstance(parent, nn.Sequential):
        names = [name for name, _ in parent.named_children()]
        i = names.index(attr)
        last_act = None
        for name in names[i + 1 :]:
            sibling = parent._modules[name]
            if isinstance(sibling, _ACT_TYPES):
                last_act = name
            elif not isinstance(sibling, _NORM_TYPES):
                break
        if last_act is not None:
            act = parent._modules[last_act]
            setattr(parent, last_act, nn.Sequential(act, make(conv.out_channels)))
            conv.stride = (1, 1)
            return conv
    channels = conv.in_channels if pool_first else conv.out_channels
    return PooledConv2d.from_conv(conv, make(channels), pool_first=pool_first)
