"""Robustness metrics: corruption errors and CE (:mod:`.corruption`), flip probability and top-5 distance
(:mod:`.perturbation`), PSNR / SSIM (:mod:`.image`), and the one bootstrap every interval comes from
(:mod:`.bootstrap`). Definitions: docs/metrics.md.
"""

from __future__ import annotations

from .bootstrap import (
    BootstrapResult,
    Resampler,
    bootstrap_ci,
    dropped_note,
    interval,
    paired_bootstrap_diff,
    ratio_or_nan,
    undefined_resamples,
)
from .corruption import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    BENCHMARK_CORRUPTIONS,
    HELD_OUT_CORRUPTIONS,
    alexnet_table,
    corruption_error,
    relative_ce,
    top1_error,
    top1_mistakes,
    topk_error,
    topk_mistakes,
)
from .image import psnr, ssim
from .perturbation import (
    TOP5_CAP,
    compared_pairs,
    flip_probability,
    flip_rates,
    pair_top5_distance,
    top5_distance,
    top5_distances,
)

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "HELD_OUT_CORRUPTIONS",
    "ALEXNET_ERRORS",
    "ALEXNET_CLEAN_ERROR",
    "top1_mistakes",
    "topk_mistakes",
    "top1_error",
    "topk_error",
    "alexnet_table",
    "corruption_error",
    "relative_ce",
    "TOP5_CAP",
    "compared_pairs",
    "flip_rates",
    "flip_probability",
    "pair_top5_distance",
    "top5_distances",
    "top5_distance",
    "psnr",
    "ssim",
    "BootstrapResult",
    "Resampler",
    "interval",
    "ratio_or_nan",
    "dropped_note",
    "undefined_resamples",
    "bootstrap_ci",
    "paired_bootstrap_diff",
]
