"""The pool/unpool reconstruction probe: PSNR and SSIM of images and feature maps after pooling then unpooling."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions.rng import torch_generator

from ..metrics.image import psnr, ssim
from .base import PROBES, ProbeRun

log = logging.getLogger(__name__)


def _lift_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    from ..layers.lift import LiftDownPool2d, LiftUpPool2d

    down = LiftDownPool2d(channels)
    g = torch_generator(seed, "reconstruction", "lift", channels)
    with torch.no_grad():
        # random, non-zero P and U, so the exact inverse is not the trivial polyphase one
        for p in down.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    down = down.to(device).eval()
    up = LiftUpPool2d(down)

    def run(x: Tensor) -> Tensor:
        _, details = down(x, return_details=True)
        return up(details.ll, details)

    return run


def _max_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        y, idx = F.max_pool2d(x, 2, 2, return_indices=True)
        return F.max_unpool2d(y, idx, 2, 2, output_size=x.shape[-2:])

    return run


def _avg_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        return F.interpolate(F.avg_pool2d(x, 2, 2), size=x.shape[-2:], mode="nearest")

    return run


def _blur_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    from ..layers.blur import BlurPool2d

    pool = BlurPool2d(channels).to(device)

    def run(x: Tensor) -> Tensor:
        return F.interpolate(pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)

    return run


#: name -> (builder(channels, seed, device) -> reconstruct(x), description)
RECONSTRUCTION_PAIRS: dict[
    str, tuple[Callable[[int, int, torch.device], Callable[[Tensor], Tensor]], str]
] = {
    "lift": (
        _lift_pair,
        "LiftDownPool2d (K=5, random P/U) -> LiftUpPool2d with the LL band and its detail bands",
    ),
    "max": (_max_pair, "MaxPool2d(2) with indices -> MaxUnpool2d (zeros off the argmax)"),
    "avg": (_avg_pair, "AvgPool2d(2) -> nearest 2x upsampling"),
    "blur": (_blur_pair, "BlurPool2d (binomial [1,2,1], reflect) -> bilinear 2x upsampling"),
}


def _feature_extractor(model: nn.Module, features: str, channels: int, seed: int, device: torch.device):
    if features == "model":
        first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        if first is not None:
            conv = first[1]

            def first_conv(x: Tensor) -> Tensor:
                return F.relu(conv(x))

            return f"ReLU of the model's first conv ({first[0]})", first_conv
        log.warning("the model has no nn.Conv2d; reconstruction probe uses random-conv features")
    g = torch_generator(seed, "reconstruction", "random-conv", channels)
    weight = (torch.randn(16, channels, 3, 3, generator=g) * math.sqrt(2.0 / (9 * channels))).to(device)
    return "ReLU of a seeded random 3x3 conv (16 channels, He init)", lambda x: F.relu(
        F.conv2d(x, weight, padding=1)
    )


@PROBES.register("reconstruction", suite="reconstruction")
def _reconstruction(run: ProbeRun, *, pairs: Sequence[str] | None = None, features: str | None = "model"):
    """Pool then unpool real images and feature maps; PSNR and SSIM of the reconstruction.

    Args:
        pairs: down/up pairs (default all of :data:`RECONSTRUCTION_PAIRS`: lift, max, avg, blur).
        features: ``"model"`` (ReLU of the model's first conv, on normalised input), ``"random"`` (a seeded random
            conv) or None (images only). Image metrics use data range 1; feature metrics use each map's own
            (max - min) as data range.
    """
    names = list(pairs) if pairs is not None else list(RECONSTRUCTION_PAIRS)
    unknown = [p for p in names if p not in RECONSTRUCTION_PAIRS]
    if unknown:
        raise ValueError(
            f"unknown reconstruction pair(s) {unknown}; valid: {', '.join(RECONSTRUCTION_PAIRS)}"
        )
    kinds = ("model", "random", None)
    if features not in kinds:
        raise ValueError(f"features must be one of {kinds}, got {features!r}")
    built: dict[tuple[str, int], Callable[[Tensor], Tensor]] = {}
    metrics: dict[tuple[str, str], list[np.ndarray]] = {}
    feat_desc = ""
    extractor = None
    for _, x, _ in run.batches():
        h, w = x.shape[-2:]
        x = x[..., : h - h % 2, : w - w % 2]
        inputs = [("", x, torch.ones(x.shape[0], device=x.device, dtype=torch.float64))]
        if features is not None:
            if extractor is None:
                feat_desc, extractor = _feature_extractor(
                    run.model, features, x.shape[1], run.seed, run.device
                )
            with torch.no_grad():
                f = extractor(run.pipe.normalize(x)).float()
            f = f[..., : f.shape[-2] - f.shape[-2] % 2, : f.shape[-1] - f.shape[-1] % 2]
            rng = (f.flatten(1).amax(1) - f.flatten(1).amin(1)).double().clamp_min(1e-12)
            inputs.append(("feature_", f, rng))
        for prefix, t, data_range in inputs:
            for p in names:
                key = (p, t.shape[1])
                if key not in built:
                    built[key] = RECONSTRUCTION_PAIRS[p][0](t.shape[1], run.seed, run.device)
                with torch.no_grad():
                    rec = built[key](t)
                metrics.setdefault((p, prefix + "psnr"), []).append(psnr(t, rec, data_range).cpu().numpy())
                metrics.setdefault((p, prefix + "ssim"), []).append(ssim(t, rec, data_range).cpu().numpy())
                metrics.setdefault((p, prefix + "max_abs_error"), []).append(
                    (t.double() - rec.double()).abs().flatten(1).amax(1).cpu().numpy()
                )
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for p in names:
        for prefix, what in (
            ("", "images in [0, 1] (data range 1)"),
            ("feature_", f"{feat_desc} (data range: each map's max - min)"),
        ):
            if (p, prefix + "psnr") not in metrics:
                continue
            for m in ("psnr", "ssim", "max_abs_error"):
                v = np.concatenate(metrics[(p, prefix + m)])
                arrays[f"{p}__{prefix}{m}"] = v
                if m == "max_abs_error":
                    continue
                unit = (
                    "PSNR in dB"
                    if m == "psnr"
                    else "SSIM (torch, gaussian window 11, sigma 1.5, K1 .01, K2 .03)"
                )
                rows.append(
                    run.row(
                        "reconstruction",
                        p,
                        0,
                        prefix + m,
                        v,
                        len(v),
                        f"{unit} of pool -> unpool, {RECONSTRUCTION_PAIRS[p][1]}; on {what}; mean over images",
                    )
                )
    return arrays, rows
