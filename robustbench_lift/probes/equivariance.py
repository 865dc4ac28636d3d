"""Feature-level shift equivariance per pooling layer."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..layers.pools import is_pool_module, pool_module_names
from .base import PROBES, ProbeRun, _positive_int

log = logging.getLogger(__name__)


def pool_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's pooling layers, outermost only (a MaxBlurPool2d counts once), in module order."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not is_pool_module(module):
            continue
        if any(name.startswith(parent + ".") for parent, _ in found):
            continue
        found.append((name, module))
    return found


def _fourier_shift(f: Tensor, dy: float, dx: float) -> Tensor:
    """Band-limited circular shift of (N, C, H, W) by (dy, dx) pixels (integer shifts equal torch.roll)."""
    h, w = f.shape[-2:]
    ky = torch.fft.fftfreq(h, device=f.device, dtype=torch.float64)
    kx = torch.fft.fftfreq(w, device=f.device, dtype=torch.float64)
    phase = torch.exp(-2j * math.pi * (ky[:, None] * dy + kx[None, :] * dx))
    return torch.fft.ifft2(torch.fft.fft2(f.double()) * phase).real.to(f.dtype)


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, tuple | list):
        for o in out:
            if isinstance(o, Tensor):
                return o
    raise TypeError(f"a pooling layer returned {type(out).__name__}, expected a tensor")


@PROBES.register("equivariance", suite="shift")
def _equivariance(run: ProbeRun, *, shifts: Sequence[int] | None = None, layers: Sequence[str] | None = None):
    """Feature shift-equivariance error at each pooling layer: where in the network aliasing happens.

    For a circular diagonal input shift d and a layer of cumulative stride r (input side / feature side):
    ``err = ||f(roll(x, d)) - shift(f(x), d / r)|| / ||f(x)||`` per image (L2 over C, H, W), where ``shift`` is
    an integer roll when r divides d and a band-limited (Fourier) fractional shift otherwise.

    Args:
        shifts: input shifts d (default: 1 and the largest cumulative stride, i.e. one misaligned shift and one
            aligned with every layer).
        layers: module names to probe (default: :func:`pool_layers`).
    """
    model = run.model
    named = dict(model.named_modules())
    if layers is None:
        chosen = pool_layers(model)
    else:
        unknown = [n for n in layers if n not in named]
        if unknown:
            raise ValueError(
                f"unknown layer(s) {unknown}; pooling layers: {[n for n, _ in pool_layers(model)]}"
            )
        chosen = [(n, named[n]) for n in layers]
    if not chosen:
        raise ValueError(
            f"the model has no pooling layer ({', '.join(sorted(pool_module_names()))}); pass layers=[module names]"
        )
    captured: dict[str, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, _first_tensor(out)))
        for name, m in chosen
    ]
    errors: dict[tuple[int, str], list[np.ndarray]] = {}
    strides: dict[str, float] = {}
    used_shifts: list[int] = []
    try:
        for _, x, _ in run.batches():
            h, w = x.shape[-2:]
            captured.clear()
            run.logits(x)
            clean = {k: v.detach().float() for k, v in captured.items()}
            for name, _ in chosen:
                if name not in clean:
                    raise ValueError(f"layer {name!r} did not run in the forward pass")
                fh, fw = clean[name].shape[-2:]
                if h % fh or w % fw or h // fh != w // fw:
                    log.warning(
                        "layer %s: feature %sx%s does not divide input %sx%s evenly", name, fh, fw, h, w
                    )
                strides[name] = h / fh
            if not used_shifts:
                used_shifts = (
                    [int(s) for s in shifts]
                    if shifts is not None
                    else sorted({1, int(round(max(strides.values())))})
                )
                for s in used_shifts:
                    _positive_int(s, "shift")
            for d in used_shifts:
                captured.clear()
                run.logits(torch.roll(x, shifts=(d, d), dims=(-2, -1)))
                for name, _ in chosen:
                    f0, f1 = clean[name], captured[name].detach().float()
                    r = strides[name]
                    q = d / r
                    target = (
                        torch.roll(f0, shifts=(int(round(q)), int(round(q))), dims=(-2, -1))
                        if abs(q - round(q)) < 1e-9
                        else _fourier_shift(f0, q, q)
                    )
                    num = (f1 - target).flatten(1).norm(dim=1)
                    den = f0.flatten(1).norm(dim=1).clamp_min(1e-12)
                    errors.setdefault((d, name), []).append((num / den).cpu().numpy().astype(np.float64))
    finally:
        for hnd in handles:
            hnd.remove()
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for d in used_shifts:
        for name, _ in chosen:
            v = np.concatenate(errors[(d, name)])
            r = strides[name]
            aligned = abs(d / r - round(d / r)) < 1e-9
            how = "integer roll" if aligned else "Fourier (band-limited) fractional shift"
            arrays[f"err_d{d}__{name}"] = v
            rows.append(
                run.row(
                    "shift",
                    "equivariance",
                    d,
                    f"equivariance_error:{name}",
                    v,
                    len(v),
                    f"feature shift-equivariance at {name} ({type(named[name]).__name__}, cumulative stride "
                    f"{r:g}): ||f(roll(x,{d}))-shift(f(x),{d}/{r:g})||/||f(x)||, circular diagonal input shift "
                    f"{d} px, {how} at the layer; mean over images, CI over images",
                )
            )
    return arrays, rows
