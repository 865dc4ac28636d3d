"""Perturbation metrics (ImageNet-P / CIFAR-10-P): flip probability and top-5 distance of per-frame predictions.

* pairs compared: for noise perturbations every frame k >= 1 with the clean frame 0; otherwise frames
  ``(t, t + d)`` for every t, with stride d = difficulty (1..3);
* flip probability FP: per sequence, the fraction of compared pairs whose top-1 prediction differs; FP = mean over
  sequences;
* top-5 distance T5D: per pair, with sigma the permutation taking the first frame's class ranking to the second's,
  ``d = sum_{i=1..5} |(i - 1) - min(sigma(i) - 1, 5)|``; only each frame's top-5 list is needed, because a class
  outside the second frame's top 5 counts as position 5 whatever its true rank;
* FR = 100 * FP(model) / FP(baseline) and T5D normalised the same way; mFR / normalised mT5D average them over the
  10 test perturbations; mFP / mT5D are the unnormalised means.

See docs/perturbations_and_probes.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from corruptions.perturbations import DIFFICULTIES

#: Positions beyond the top 5 all count as 5 in the top-5 distance.
TOP5_CAP = 5


# ====================================================================================================== metrics
def _check_difficulty(difficulty: int) -> int:
    if (
        isinstance(difficulty, bool)
        or not isinstance(difficulty, int | np.integer)
        or difficulty not in DIFFICULTIES
    ):
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    return int(difficulty)


def compared_pairs(num_frames: int, *, noise: bool, difficulty: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Frame index pairs (first, second) the metrics compare in a sequence of ``num_frames`` frames.

    Noise: (0, k) for k = 1..T-1 (the stride does not apply). Otherwise (t, t + d) for t = 0..T-1-d.
    """
    d = _check_difficulty(difficulty)
    if num_frames < 2:
        raise ValueError(f"a sequence needs at least 2 frames, got {num_frames}")
    if noise:
        second = np.arange(1, num_frames)
        return np.zeros_like(second), second
    if num_frames <= d:
        raise ValueError(f"stride {d} needs more than {d} frames, got {num_frames}")
    first = np.arange(0, num_frames - d)
    return first, first + d


def flip_rates(preds: Any, *, noise: bool, difficulty: int = 1) -> np.ndarray:
    """Per-sequence fraction of compared frame pairs whose top-1 prediction changes.

    Args:
        preds: top-1 class per frame, (N, T).

    Returns:
        (N,) float64 in [0, 1].
    """
    p = np.asarray(preds)
    if p.ndim != 2:
        raise ValueError(f"preds must have shape (N, T), got {p.shape}")
    a, b = compared_pairs(p.shape[1], noise=noise, difficulty=difficulty)
    return (p[:, a] != p[:, b]).mean(axis=1, dtype=np.float64)


def flip_probability(preds: Any, *, noise: bool, difficulty: int = 1) -> float:
    """FP: mean over sequences of :func:`flip_rates`."""
    return float(flip_rates(preds, noise=noise, difficulty=difficulty).mean())


def pair_top5_distance(top_a: Any, top_b: Any) -> np.ndarray:
    """Top-5 distance between two frames given their top-k class lists (best first).

    ``d = sum_{i=1..k} |(i - 1) - min(pos_b(a_i), 5)|`` where ``pos_b(c)`` is c's 0-based position in frame b's
    ranking (5 when c is not in b's top 5). k = 5 normally; fewer for models with fewer classes.

    Shape:
        top_a, top_b: (..., k) -> (...,) float64.
    """
    a, b = np.asarray(top_a), np.asarray(top_b)
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"top-k arrays must have the same shape (..., k), got {a.shape} and {b.shape}")
    k = a.shape[-1]
    if k > TOP5_CAP:
        a, b = a[..., :TOP5_CAP], b[..., :TOP5_CAP]
        k = TOP5_CAP
    match = a[..., :, None] == b[..., None, :]  # (..., i, j): a_i is b_j
    pos = np.where(match.any(axis=-1), match.argmax(axis=-1), TOP5_CAP)
    return np.abs(np.arange(k) - np.minimum(pos, TOP5_CAP)).sum(axis=-1).astype(np.float64)


def top5_distances(top5: Any, *, noise: bool, difficulty: int = 1) -> np.ndarray:
    """Per-sequence mean top-5 distance over the compared pairs.

    Args:
        top5: top-k classes per frame, best first, (N, T, k).

    Returns:
        (N,) float64.
    """
    t = np.asarray(top5)
    if t.ndim != 3:
        raise ValueError(f"top5 must have shape (N, T, k), got {t.shape}")
    a, b = compared_pairs(t.shape[1], noise=noise, difficulty=difficulty)
    return pair_top5_distance(t[:, a], t[:, b]).mean(axis=1)


def top5_distance(top5: Any, *, noise: bool, difficulty: int = 1) -> float:
    """T5D: mean over sequences of :func:`top5_distances`."""
    return float(top5_distances(top5, noise=noise, difficulty=difficulty).mean())
