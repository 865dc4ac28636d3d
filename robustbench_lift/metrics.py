"""Robustness metrics (Hendrycks & Dietterich, ICLR 2019) and bootstrap confidence intervals.

Conventions (docs/DESIGN.md, "Results table"): errors are fractions in [0, 1]; ``corruption_error`` (CE), ``mce``,
``relative_ce`` and ``relative_mce`` are percentages (x100). ``mean_corruption_error`` is the unnormalised mean of the
top-1 error over the corruption x severity cells, a fraction: it is *not* the mCE.

Error tables are arrays shaped ``(C, S, ...)`` (corruption, severity, then any batch axes, e.g. bootstrap
resamples) or mappings ``{corruption: [E(s) for each severity]}``. Every formula reduces the leading axes and
broadcasts over the trailing ones, so the same function gives the point estimate and, applied to resampled means,
a whole bootstrap distribution at once.

Bootstrap: images are resampled with replacement. All cells of a model (and of the models compared with it) were
evaluated on the same images, so one resample is one set of image counts applied to every cell and every model:
:func:`bootstrap_ci` turns per-image arrays ``(..., N)`` into resampled means ``(..., B)`` with a single matrix
product against a ``(N, B)`` count matrix, and the statistic is computed from those means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from corruptions.suites import BENCHMARK, HELD_OUT

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "HELD_OUT_CORRUPTIONS",
    "ALEXNET_ERRORS",
    "ALEXNET_CLEAN_ERROR",
    "top1_mistakes",
    "topk_mistakes",
    "top1_error",
    "topk_error",
    "errors_table",
    "alexnet_table",
    "corruption_error",
    "mce",
    "relative_ce",
    "relative_mce",
    "mean_corruption_error",
    "NormalisedErrors",
    "normalise_by_alexnet",
    "normalise_by_baseline",
    "BootstrapResult",
    "bootstrap_ci",
    "paired_bootstrap_diff",
]

#: The 15 corruptions averaged by mCE, in the canonical order (SPEC §4), and the 4 held-out ones (never in mCE).
BENCHMARK_CORRUPTIONS: tuple[str, ...] = BENCHMARK
HELD_OUT_CORRUPTIONS: tuple[str, ...] = HELD_OUT

#: Top-1 error of torchvision's AlexNet on ImageNet-C, severities 1..5 (the ImageNet CE denominators, SPEC §5).
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

ErrorTable = np.ndarray | Sequence[Sequence[float]] | Mapping[str, Sequence[float]]


# --------------------------------------------------------------------------------------------------------------
# per-image correctness and errors


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


def errors_table(errors: ErrorTable, corruptions: Sequence[str] | None = None) -> np.ndarray:
    """An error table as a float array ``(C, S, ...)``.

    Mappings are read in the order of ``corruptions`` (default :data:`BENCHMARK_CORRUPTIONS`); every one must be
    present. Arrays are returned as they are (``corruptions``, when given, must match their first axis).
    """
    if isinstance(errors, Mapping):
        names = BENCHMARK_CORRUPTIONS if corruptions is None else tuple(corruptions)
        if not names:
            raise ValueError("need at least one corruption")
        missing = [c for c in names if c not in errors]
        if missing:
            raise ValueError(
                f"error table lacks corruption(s) {missing}; present: {', '.join(map(str, errors))}"
            )
        rows = [np.asarray(errors[c], dtype=np.float64) for c in names]
        if len({r.shape for r in rows}) > 1:
            raise ValueError(f"corruptions have different numbers of severities: {[r.shape for r in rows]}")
        table = np.stack(rows)
    else:
        table = np.asarray(errors, dtype=np.float64)
        if corruptions is not None and table.shape[:1] != (len(corruptions),):
            raise ValueError(f"{len(corruptions)} corruption names for a table of shape {table.shape}")
    if table.ndim < 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"an error table is (corruptions, severities, ...), got shape {table.shape}")
    return table


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


def _base_table(errors_base: ErrorTable, corruptions: Sequence[str] | None, like: np.ndarray) -> np.ndarray:
    base = errors_table(errors_base, corruptions)
    if base.shape[:2] != like.shape[:2]:
        raise ValueError(f"model table {like.shape[:2]} and baseline table {base.shape[:2]} differ in shape")
    return base


def mce(
    errors_model: ErrorTable, errors_base: ErrorTable, corruptions: Sequence[str] | None = None
) -> np.ndarray | float:
    """mCE (percent): the mean over corruptions of :func:`corruption_error`.

    Args:
        errors_model, errors_base: error tables ``(C, S, ...)`` or mappings (see :func:`errors_table`).
        corruptions: the corruptions averaged, for mappings (default: the 15 benchmark corruptions).
    """
    m = errors_table(errors_model, corruptions)
    b = _base_table(errors_base, corruptions, m)
    ce = np.stack([np.asarray(corruption_error(m[i], b[i])) for i in range(len(m))])
    out = ce.mean(axis=0)
    return float(out) if out.ndim == 0 else out


def relative_mce(
    errors_model: ErrorTable,
    clean_model: Any,
    errors_base: ErrorTable,
    clean_base: Any,
    corruptions: Sequence[str] | None = None,
) -> np.ndarray | float:
    """Relative mCE (percent): the mean over corruptions of :func:`relative_ce`."""
    m = errors_table(errors_model, corruptions)
    b = _base_table(errors_base, corruptions, m)
    rel = np.stack([np.asarray(relative_ce(m[i], clean_model, b[i], clean_base)) for i in range(len(m))])
    out = rel.mean(axis=0)
    return float(out) if out.ndim == 0 else out


def mean_corruption_error(
    errors_model: ErrorTable, corruptions: Sequence[str] | None = None
) -> np.ndarray | float:
    """Unnormalised mean of the top-1 error over all corruption x severity cells (a fraction, not the mCE)."""
    m = errors_table(errors_model, corruptions)
    out = m.mean(axis=(0, 1))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class NormalisedErrors:
    """Per-corruption CE / relative CE and their means, normalised by ``baseline``.

    ``ce``, ``mce``, ``relative_ce``, ``relative_mce`` are percentages; ``mean_corruption_error`` and
    ``mean_error`` (per corruption, over severities) are fractions. Relative values are None without clean errors.
    """

    baseline: str
    corruptions: tuple[str, ...]
    mean_error: dict[str, float]
    ce: dict[str, float]
    mce: float
    mean_corruption_error: float
    relative_ce: dict[str, float] | None = None
    relative_mce: float | None = None


def _normalise(
    baseline: str,
    names: tuple[str, ...],
    model: np.ndarray,
    base: np.ndarray,
    clean: float | None,
    base_clean: float | None,
) -> NormalisedErrors:
    if model.ndim != 2 or base.shape != model.shape:
        raise ValueError(f"model table {model.shape} and baseline table {base.shape} must both be (C, S)")
    ce = {c: float(corruption_error(model[i], base[i])) for i, c in enumerate(names)}
    rel = rel_mean = None
    if clean is not None:
        if base_clean is None:
            raise ValueError("relative CE needs the baseline's clean error too")
        rel = {c: float(relative_ce(model[i], clean, base[i], base_clean)) for i, c in enumerate(names)}
        rel_mean = float(np.mean(list(rel.values())))
    return NormalisedErrors(
        baseline=baseline,
        corruptions=names,
        mean_error={c: float(model[i].mean()) for i, c in enumerate(names)},
        ce=ce,
        mce=float(np.mean(list(ce.values()))),
        mean_corruption_error=float(model.mean()),
        relative_ce=rel,
        relative_mce=rel_mean,
    )


def normalise_by_alexnet(
    errors_model: Mapping[str, Sequence[float]],
    clean_error: float | None = None,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
) -> NormalisedErrors:
    """CE / mCE (and relative ones when ``clean_error`` is given) against the published AlexNet ImageNet-C table.

    Args:
        errors_model: ``{corruption: [E(s) for s in severities]}``.
        corruptions: averaged corruptions (default: the 15 benchmark ones; the table has no held-out entries).
        severities: the severities the model's lists hold (AlexNet's columns are matched to them).
    """
    names = BENCHMARK_CORRUPTIONS if corruptions is None else tuple(corruptions)
    base = alexnet_table(names, severities)
    model = errors_table(errors_model, names)
    return _normalise("alexnet", names, model, base, clean_error, ALEXNET_CLEAN_ERROR)


def normalise_by_baseline(
    errors_model: Mapping[str, Sequence[float]],
    errors_base: Mapping[str, Sequence[float]],
    clean_error: float | None = None,
    base_clean_error: float | None = None,
    *,
    corruptions: Sequence[str] | None = None,
    baseline: str = "baseline",
) -> NormalisedErrors:
    """CE / mCE normalised by a baseline model of the same run (the baseline scores 100)."""
    names = BENCHMARK_CORRUPTIONS if corruptions is None else tuple(corruptions)
    return _normalise(
        baseline,
        names,
        errors_table(errors_model, names),
        errors_table(errors_base, names),
        clean_error,
        base_clean_error,
    )


# --------------------------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with a percentile bootstrap interval.

    ``significant`` is True when the interval excludes 0 (meaningful for differences).
    """

    estimate: float
    low: float
    high: float
    n: int
    n_boot: int
    alpha: float

    @property
    def significant(self) -> bool:
        return not (self.low <= 0.0 <= self.high)


#: Resample-count matrices are built in blocks of at most this many entries (bounds memory for large N).
_BLOCK_ENTRIES = 4_000_000


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


def _resampled_means(arrays: list[np.ndarray], n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    """Means of each array (..., N) under ``n_boot`` resamples of the images -> (..., n_boot)."""
    rng = np.random.default_rng(seed)
    flat = np.concatenate([a.reshape(-1, n) for a in arrays])
    block = max(1, _BLOCK_ENTRIES // n)
    parts = []
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        idx += np.arange(b)[:, None] * n
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
        parts.append(flat @ counts.T.astype(np.float64))
    sums = np.concatenate(parts, axis=1) / n
    out, row = [], 0
    for a in arrays:
        rows = int(np.prod(a.shape[:-1], dtype=np.int64))
        out.append(sums[row : row + rows].reshape(*a.shape[:-1], n_boot))
        row += rows
    return out


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


def _interval(
    stat_fn: Callable[..., Any], arrays: list[np.ndarray], n: int, n_boot: int, seed: int, alpha: float
) -> BootstrapResult:
    estimate = _stat(stat_fn, [a.mean(axis=-1)[..., None] for a in arrays], 1)[0]
    boot = _stat(stat_fn, _resampled_means(arrays, n, n_boot, seed), n_boot)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(float(estimate), float(low), float(high), n, int(n_boot), float(alpha))


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
        stat_fn: maps the means of the arrays (same order, last axis replaced by a resample axis of length B) to
            an array (B,). The formula functions of this module qualify, e.g.
            ``lambda e: mce(e, alexnet_table()[..., None])``.
        n_boot: number of resamples; seed: seeds the draw (same seed, same N -> same resamples).
        alpha: 1 - coverage (0.05 gives a 95 % interval).

    Returns:
        estimate (the statistic on the full sample), low, high, ``significant`` (interval excludes 0).
    """
    _check_boot(n_boot, alpha)
    arrays, n = _per_image(per_image_arrays)
    return _interval(stat_fn, arrays, n, n_boot, seed, alpha)


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
