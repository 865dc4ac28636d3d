"""The bootstrap: one implementation for every confidence interval of the toolkit.

Images are resampled with replacement. All cells of a model (and of the models compared with it) were evaluated on
the same images, so one resample is one set of image counts applied to every cell and every model:
:class:`Resampler` turns per-image arrays ``(R, N)`` into ``(R, 1 + B)`` vectors (column 0 the plain mean, the
point estimate; columns 1..B the means under the resamples) with one matrix product against a count matrix, and a
statistic computed on those vectors gives its value and its bootstrap distribution at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corruptions.rng import numpy_generator


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with a percentile bootstrap interval.

    ``significant`` is True when the interval excludes 0 (meaningful for differences). ``dropped`` counts the
    resamples where the statistic was undefined (non-finite), left out of the interval (:func:`dropped_note`).
    """

    estimate: float
    low: float
    high: float
    n: int
    n_boot: int
    alpha: float
    dropped: int = 0

    @property
    def significant(self) -> bool:
        return not (self.low <= 0.0 <= self.high)


class Resampler:
    """Bootstrap over images with ONE set of resamples shared by every model and cell of a suite (paired CIs).

    :meth:`vectors` turns per-image arrays (R, N) into (R, 1 + B): column 0 the plain mean (the point estimate),
    columns 1..B the means under the resamples. The formula functions of :mod:`robustbench_lift.metrics.corruption` broadcast
    over that trailing axis, so one call gives a statistic's value and its bootstrap distribution.
    """

    def __init__(self, n: int, n_boot: int, seed: int, *keys: Any, block_entries: int = 4_000_000) -> None:
        self.n, self.n_boot, self.seed, self.keys = n, max(0, int(n_boot)), seed, keys
        self.block = max(1, block_entries // max(1, n))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        means = rows.mean(axis=1, keepdims=True)
        if self.n_boot == 0 or self.n == 0:
            return means
        parts = [means]
        for start in range(0, self.n_boot, self.block):
            b = min(self.block, self.n_boot - start)
            rng = numpy_generator(self.seed, "bootstrap", self.n, start, *self.keys)
            counts = rng.multinomial(self.n, np.full(self.n, 1.0 / self.n), size=b)  # (b, N)
            parts.append(rows @ counts.T / self.n)
        return np.concatenate(parts, axis=1)


def interval(v: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """``(value, ci_low, ci_high)`` of a (1 + B,) vector: the point estimate and the percentile interval of the
    resamples where the statistic is defined (finite); NaN bounds when fewer than half of them are."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    point = float(v[0])
    reps = v[1:]
    finite = reps[np.isfinite(reps)]
    if reps.size == 0 or finite.size < 0.5 * reps.size or not math.isfinite(point):
        return point, math.nan, math.nan
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


def undefined_resamples(v: np.ndarray) -> int:
    """How many resamples of a (1 + B,) vector are undefined (non-finite, e.g. a ratio whose denominator is 0)."""
    reps = np.asarray(v, dtype=np.float64).reshape(-1)[1:]
    return int((~np.isfinite(reps)).sum())


def dropped_note(v: np.ndarray) -> str:
    """The protocol note for a (1 + B,) vector with undefined resamples ("" when every resample is defined).

    :func:`interval` leaves undefined resamples out, so the interval is conditional on the statistic being
    defined; the note says how many were dropped (or that there is no interval when more than half were).
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    total = v.size - 1
    k = undefined_resamples(v)
    if k == 0 or not math.isfinite(float(v[0])):
        return ""
    if total - k < 0.5 * total:
        return f"; no CI: the statistic is undefined in {k} of {total} bootstrap resamples"
    return f"; CI from {total - k} of {total} bootstrap resamples ({k} dropped: the statistic is undefined there)"


def ratio_or_nan(fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
    """A metrics ratio formula over (..., 1 + B) vectors; NaN for the resamples whose denominator is zero."""
    try:
        return np.asarray(fn(*args), dtype=np.float64)
    except ValueError:
        width = max(np.shape(a)[-1] for a in args)
        out = np.full(width, math.nan)
        for j in range(width):
            try:
                out[j] = float(fn(*(np.asarray(a)[..., j if np.shape(a)[-1] > 1 else 0] for a in args)))
            except ValueError:
                pass
        return out


def _per_image(arrays: Sequence[Any]) -> tuple[list[np.ndarray], int]:
    if not arrays:
        raise ValueError("bootstrap needs at least one per-image array")
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    if any(a.ndim == 0 for a in out):
        raise ValueError("per-image arrays need images on their last axis")
    n = out[0].shape[-1]
    if any(a.shape[-1] != n for a in out):
        raise ValueError(f"per-image arrays disagree on the number of images: {[a.shape[-1] for a in out]}")
    if n == 0:
        raise ValueError("cannot bootstrap over zero images")
    if any(not np.isfinite(a).all() for a in out):
        raise ValueError("per-image arrays contain NaN or inf")
    return out, n


def _check_boot(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _stat(stat_fn: Callable[..., Any], means: Sequence[np.ndarray], count: int) -> np.ndarray:
    value = np.asarray(stat_fn(*means), dtype=np.float64)
    if value.shape != (count,):
        raise ValueError(
            f"stat_fn must return one value per resample (shape ({count},)), got shape {value.shape}; "
            "reduce every axis but the last"
        )
    return value


def _vector(
    stat_fn: Callable[..., Any], arrays: list[np.ndarray], n: int, n_boot: int, seed: int
) -> np.ndarray:
    flat = np.concatenate([a.reshape(-1, n) for a in arrays])
    vec = Resampler(n, n_boot, seed).vectors(flat)  # (rows, 1 + B)
    means, row = [], 0
    for a in arrays:
        rows = int(np.prod(a.shape[:-1], dtype=np.int64))
        means.append(vec[row : row + rows].reshape(*a.shape[:-1], 1 + n_boot))
        row += rows
    return _stat(stat_fn, means, 1 + n_boot)


def _interval(
    stat_fn: Callable[..., Any], arrays: list[np.ndarray], n: int, n_boot: int, seed: int, alpha: float
) -> BootstrapResult:
    vec = _vector(stat_fn, arrays, n, n_boot, seed)
    estimate, low, high = interval(vec, alpha)
    return BootstrapResult(estimate, low, high, n, int(n_boot), float(alpha), undefined_resamples(vec))


def bootstrap_vector(
    stat_fn: Callable[..., Any], *per_image_arrays: Any, n_boot: int, seed: int = 0
) -> np.ndarray:
    """The ``(1 + B,)`` vector behind :func:`bootstrap_ci` (same arguments, same resamples): the statistic on all
    images, then under each resample; for the seed-aware statistics (:mod:`.seeds`), which need the vectors."""
    _check_boot(n_boot, 0.05)
    arrays, n = _per_image(per_image_arrays)
    return _vector(stat_fn, arrays, n, n_boot, seed)


def bootstrap_ci(
    stat_fn: Callable[..., Any],
    *per_image_arrays: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Percentile bootstrap CI of a statistic of per-image means, resampling images.

    Every array holds one value per image on its last axis (e.g. top-1 mistakes of all cells of a model,
    ``(C, S, N)``); one resample draws N images with replacement and applies the same draw to every array.

    Args:
        stat_fn: maps the means of the arrays (same order, last axis replaced by a resample axis of length
            1 + B: the plain mean first, then the B resamples) to an array (1 + B,). The formula functions of this module qualify, e.g.
            ``lambda e: corruption_error(e, base[:, None])``.
        n_boot: number of resamples; seed: seeds the draw (same seed, same N -> same resamples).
        alpha: 1 - coverage (0.05 gives a 95 % interval).

    Returns:
        estimate (the statistic on the full sample), low, high, ``significant`` (interval excludes 0).
    """
    _check_boot(n_boot, alpha)
    arrays, n = _per_image(per_image_arrays)
    return _interval(stat_fn, arrays, n, n_boot, seed, alpha)


def mean_ci(values: Any, *, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % interval of the mean of per-image ``values`` (NaN, NaN without resamples, under 2 images or with
    non-finite values)."""
    v = np.asarray(values, dtype=np.float64)
    if n_boot <= 0 or len(v) < 2 or not np.isfinite(v).all():
        return math.nan, math.nan
    res = bootstrap_ci(_identity, v, n_boot=n_boot, seed=seed)
    return res.low, res.high


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def paired_bootstrap_diff(
    stat_fn: Callable[..., Any],
    arrays_a: Any,
    arrays_b: Any,
    *,
    common: Sequence[Any] = (),
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Paired bootstrap CI of ``stat(A) - stat(B)`` for two models evaluated on the same images.

    Args:
        stat_fn: as in :func:`bootstrap_ci`, called as ``stat_fn(*means_a, *means_common)`` and
            ``stat_fn(*means_b, *means_common)``.
        arrays_a, arrays_b: one per-image array or a tuple of them per model (same shapes for both models).
        common: per-image arrays both statistics use (e.g. the baseline model's mistakes when normalising by it),
            resampled with the same draw.

    Returns:
        the difference A - B with its interval; ``significant`` when the interval excludes 0.
    """
    _check_boot(n_boot, alpha)
    a = list(arrays_a) if isinstance(arrays_a, (tuple, list)) else [arrays_a]
    b = list(arrays_b) if isinstance(arrays_b, (tuple, list)) else [arrays_b]
    if len(a) != len(b):
        raise ValueError(f"model A has {len(a)} per-image arrays, model B {len(b)}")
    arrays, n = _per_image([*a, *b, *common])
    for x, y in zip(arrays[: len(a)], arrays[len(a) : len(a) + len(b)]):
        if x.shape != y.shape:
            raise ValueError(f"paired arrays differ in shape: {x.shape} vs {y.shape}")
    k, c = len(a), list(range(2 * len(a), len(arrays)))

    def diff(*means: np.ndarray) -> np.ndarray:
        shared = [means[i] for i in c]
        return np.asarray(stat_fn(*means[:k], *shared)) - np.asarray(stat_fn(*means[k : 2 * k], *shared))

    return _interval(diff, arrays, n, n_boot, seed, alpha)
