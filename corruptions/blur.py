"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur."""

from __future__ import annotations

from torch import Tensor

from . import _ops
from .base import CORRUPTIONS, Context

__all__ = ["gaussian_blur"]


@CORRUPTIONS.register("gaussian_blur", category="blur", benchmark=False)
def gaussian_blur(x: Tensor, param: float, ctx: Context) -> Tensor:
    """Gaussian blur with sigma = ``param`` px, edges replicated (scikit-image ``gaussian``'s defaults)."""
    return _ops.gaussian_blur(x, float(param), mode="nearest")
