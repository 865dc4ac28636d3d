"""Corruption metrics (Hendrycks & Dietterich, ICLR 2019): per-image mistakes, errors, CE and relative CE.

Conventions (docs/DESIGN.md, "Results table"): errors are fractions in [0, 1]; ``corruption_error`` (CE) and
``relative_ce`` are percentages (x100). Error arrays have severities on axis 0 and broadcast over trailing axes
(e.g. bootstrap resamples), so the same function gives the point estimate and a whole bootstrap distribution.
The mean corruption error is the unnormalised mean of the top-1 error over the corruption x severity cells: it is
*not* the mCE. Definitions and the AlexNet table: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from corruptions.suites import BENCHMARK, HELD_OUT

#: The 15 corruptions averaged by mCE, in the canonical order, and the 4 held-out ones (never in mCE).
BENCHMARK_CORRUPTIONS: tuple[str, ...] = BENCHMARK
HELD_OUT_CORRUPTIONS: tuple[str, ...] = HELD_OUT

#: Top-1 error of torchvision's AlexNet on ImageNet-C, severities 1..5 (the ImageNet CE denominators; docs/metrics.md).
ALEXNET_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}
#: AlexNet's clean top-1 error on the ImageNet validation set.
ALEXNET_CLEAN_ERROR = 0.43478


# --------------------------------------------------------------------------------------------------------------


def _labels(labels: Any, n: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d integer array, got {labels.dtype} {labels.shape}")
    if n is not None and len(labels) != n:
        raise ValueError(f"{n} predictions but {len(labels)} labels")
    return labels


def top1_mistakes(pred: Any, labels: Any) -> np.ndarray:
    """Per-image top-1 mistakes (bool, N).

    Args:
        pred: predicted classes (N,) or ordered top-k predictions (N, K) (column 0 is the top-1). A negative class
            (e.g. -1 for NaN/inf logits) never matches a label, so it counts as a mistake.
        labels: true classes (N,).
    """
    pred = np.asarray(pred)
    if not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"predictions must be integer class indices (not logits), got {pred.dtype}")
    if pred.ndim == 2:
        if pred.shape[1] == 0:
            raise ValueError("top-k predictions need at least one column")
        pred = pred[:, 0]
    if pred.ndim != 1:
        raise ValueError(f"predictions must be (N,) or (N, K), got shape {pred.shape}")
    return pred != _labels(labels, len(pred))


def topk_mistakes(topk_preds: Any, labels: Any, k: int | None = None) -> np.ndarray:
    """Per-image top-k mistakes (bool, N): the label is not among the first ``k`` columns (default: all K)."""
    topk = np.asarray(topk_preds)
    if topk.ndim != 2 or not np.issubdtype(topk.dtype, np.integer):
        raise ValueError(f"top-k predictions must be an integer array (N, K), got {topk.dtype} {topk.shape}")
    k = topk.shape[1] if k is None else int(k)
    if not 1 <= k <= topk.shape[1]:
        raise ValueError(f"k must be in 1..{topk.shape[1]} for {topk.shape[1]} predicted columns, got {k}")
    lab = _labels(labels, len(topk))
    return ~(topk[:, :k] == lab[:, None]).any(axis=1)


def _mean(mistakes: np.ndarray) -> float:
    if mistakes.size == 0:
        raise ValueError("cannot compute an error over zero images")
    return float(mistakes.mean())


def top1_error(pred: Any, labels: Any) -> float:
    """Top-1 error (fraction) of predictions (N,) or ordered top-k predictions (N, K) against labels (N,)."""
    return _mean(top1_mistakes(pred, labels))


def topk_error(topk_preds: Any, labels: Any, k: int | None = None) -> float:
    """Top-k error (fraction): share of images whose label is not in their first ``k`` predictions."""
    return _mean(topk_mistakes(topk_preds, labels, k))


# --------------------------------------------------------------------------------------------------------------
# corruption errors


def alexnet_table(
    corruptions: Sequence[str] | None = None, severities: Sequence[int] = (1, 2, 3, 4, 5)
) -> np.ndarray:
    """AlexNet's ImageNet-C errors as an array ``(C, S)`` for the given corruptions and severities."""
    names = BENCHMARK_CORRUPTIONS if corruptions is None else tuple(corruptions)
    unknown = [c for c in names if c not in ALEXNET_ERRORS]
    if unknown:
        raise ValueError(
            f"no AlexNet errors for {unknown} (the table covers the 15 benchmark corruptions: "
            f"{', '.join(ALEXNET_ERRORS)})"
        )
    bad = [s for s in severities if s not in (1, 2, 3, 4, 5)]
    if bad or not severities:
        raise ValueError(f"severities must be a non-empty subset of 1..5, got {list(severities)}")
    return np.array([[ALEXNET_ERRORS[c][s - 1] for s in severities] for c in names], dtype=np.float64)


#: Denominators this close to zero are float residue of equal error sums (errors are multiples of 1/n_images).
_ZERO = 1e-9


def _ratio(num: np.ndarray, den: np.ndarray, what: str, *, positive: bool = False) -> np.ndarray | float:
    """``100 * num / den``; ValueError where ``den`` is zero (or, with ``positive``, not above zero)."""
    den = np.asarray(den, dtype=np.float64)
    bad = den <= _ZERO if positive else np.abs(den) <= _ZERO
    if np.any(bad):
        why = "not positive (the baseline's error does not grow)" if positive else "zero"
        raise ValueError(f"{what}: the baseline's denominator is {why}, the ratio is undefined")
    out = 100.0 * np.asarray(num, dtype=np.float64) / den
    return float(out) if out.ndim == 0 else out


def corruption_error(errors_model: Any, errors_base: Any) -> np.ndarray | float:
    """CE = 100 * sum_s E(f, c, s) / sum_s E(base, c, s).

    Shape: severities on axis 0, any trailing batch axes broadcast; a scalar for 1-d input.
    """
    m = np.asarray(errors_model, dtype=np.float64)
    b = np.asarray(errors_base, dtype=np.float64)
    if m.ndim == 0 or b.ndim == 0:
        raise ValueError("corruption_error needs errors per severity (severities on axis 0)")
    if b.shape[0] != m.shape[0]:
        raise ValueError(f"model has {m.shape[0]} severities, baseline {b.shape[0]}")
    return _ratio(m.sum(axis=0), b.sum(axis=0), "corruption_error")


def relative_ce(errors_model: Any, clean_model: Any, errors_base: Any, clean_base: Any) -> np.ndarray | float:
    """Relative CE = 100 * sum_s (E(f, c, s) - E(f, clean)) / sum_s (E(base, c, s) - E(base, clean)).

    Undefined (ValueError) when the baseline's error does not grow under the corruption (denominator <= 0): the
    ratio would flip sign or explode, so it is reported as missing rather than as a number.
    """
    m = np.asarray(errors_model, dtype=np.float64)
    b = np.asarray(errors_base, dtype=np.float64)
    if m.ndim == 0 or b.ndim == 0:
        raise ValueError("relative_ce needs errors per severity (severities on axis 0)")
    if b.shape[0] != m.shape[0]:
        raise ValueError(f"model has {m.shape[0]} severities, baseline {b.shape[0]}")
    cm = np.asarray(clean_model, dtype=np.float64)
    cb = np.asarray(clean_base, dtype=np.float64)
    return _ratio((m - cm).sum(axis=0), (b - cb).sum(axis=0), "relative_ce", positive=True)
