"""The perturbation suite kind (ImageNet-P / CIFAR-10-P).

:func:`run_perturbation_cell` streams one (model, perturbation, difficulty) through the model - sequences
generated on the fly by ``corruptions.perturb`` or read from a pre-generated CIFAR-10-P set - and returns
per-sequence top-5 lists plus result rows. :func:`aggregate_perturbations` turns the arrays of several models into
the suite's rows (FP, T5D, FR, mFR, mFP, mT5D; see :mod:`robustbench_lift.metrics.perturbation`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from corruptions.geometry import resize_shorter
from corruptions.perturbations import (
    IMAGENET_P_NOT_REPRODUCED,
    PerturbationSuite,
    get_perturbation_suite,
    is_noise_perturbation,
    iter_perturb,
    list_perturbations,
    num_frames,
    perturb,
)
from corruptions.registry import suggest

from ...data import as_pipeline, get_batch, select_indices
from ...metrics.bootstrap import bootstrap_ci, bootstrap_vector
from ...metrics.perturbation import TOP5_CAP, _check_difficulty, flip_rates, top5_distances
from ...schema import model_fields, result_row
from ..cells import CellResult, CellSpec
from ..suite_kinds import SuiteKind, register_suite_kind

log = logging.getLogger(__name__)


def _ci(
    stat: Callable[..., Any], arrays: Sequence[np.ndarray], n_boot: int, seed: int
) -> tuple[float, float]:
    """95 % percentile bootstrap over sequences (the last axis), the same draw for every array."""
    if n_boot <= 0 or arrays[0].shape[-1] < 2:
        return math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        res = bootstrap_ci(stat, *arrays, n_boot=n_boot, seed=seed)
    return res.low, res.high


def _mean(x: np.ndarray) -> np.ndarray:
    return x


def _pair_text(noise: bool, difficulty: int) -> str:
    return "every frame vs the clean frame 0" if noise else f"consecutive frames, stride {difficulty}"


def perturbation_rows(
    arrays: Mapping[str, np.ndarray],
    *,
    suite: str,
    perturbation: str,
    difficulty: int,
    source: str = "generated on the fly",
    info: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``flip_probability`` and ``top5_distance`` rows (with bootstrap CIs over sequences) of one cell's arrays."""
    info = dict(info or {})
    noise = is_noise_perturbation(perturbation)
    top5 = np.asarray(arrays["top5"])
    n, t = top5.shape[:2]
    fp = flip_rates(top5[..., 0], noise=noise, difficulty=difficulty)
    td = top5_distances(top5, noise=noise, difficulty=difficulty)
    where = f"{suite} {perturbation}, {t} frames {source}; {_pair_text(noise, difficulty)}"
    return [
        result_row(
            info,
            suite,
            perturbation,
            difficulty,
            "flip_probability",
            fp.mean(),
            _ci(_mean, [fp], n_boot, seed),
            n,
            f"flip probability (Hendrycks & Dietterich): {where}; fraction of pairs whose top-1 changes",
        ),
        result_row(
            info,
            suite,
            perturbation,
            difficulty,
            "top5_distance",
            td.mean(),
            _ci(_mean, [td], n_boot, seed),
            n,
            f"top-5 distance (Hendrycks & Dietterich, positions capped at 5): {where}",
        ),
    ]


def sequence_file(perturbation: str, difficulty: int) -> str:
    """Stem of a pre-generated CIFAR-10-P file: ``<name>`` or, for noise at difficulty 2/3, ``<name>_<d>``."""
    d = _check_difficulty(difficulty)
    if is_noise_perturbation(perturbation) and d > 1:
        return f"{perturbation}_{d}"
    return perturbation


class _ArraySequences:
    """(N, T, H, W, C) or (N, T, C, H, W) uint8 array -> uint8 (B, T, C, H, W) batches."""

    def __init__(self, array: Any) -> None:
        a = np.asarray(array)
        if a.dtype != np.uint8 or a.ndim != 5:
            raise ValueError(
                f"sequences must be uint8 (N, T, H, W, C) or (N, T, C, H, W), got {a.dtype} {a.shape}"
            )
        if a.shape[-1] in (1, 3):
            a = np.moveaxis(a, -1, 2)
        elif a.shape[2] not in (1, 3):
            raise ValueError(f"sequences need 1 or 3 channels on axis 2 or 4, got shape {a.shape}")
        self._a = a

    def __len__(self) -> int:
        return self._a.shape[0]

    @property
    def num_frames(self) -> int:
        return self._a.shape[1]

    def __getitem__(self, index: Any) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._a[index]))


def _pregenerated(dataset: Any, sequences: Any, perturbation: str, difficulty: int) -> tuple[Any, Any] | None:
    """(sequence array, labels or None) when the frames come from a pre-generated set, else None."""
    if sequences is not None:
        return _ArraySequences(sequences), None
    if hasattr(dataset, "sequences") and not hasattr(dataset, "get_batch"):
        stem = sequence_file(perturbation, difficulty)
        return dataset.sequences(stem), getattr(dataset, "labels", None)
    return None


@torch.no_grad()
def _predict_frames(
    model: nn.Module, frames: Tensor, normalize: Callable[[Tensor], Tensor], k: int | None
) -> Tensor:
    """(B, F, C, H, W) in [0, 1] -> top-k classes (B, F, k); non-finite logits give -1."""
    b, f = frames.shape[:2]
    logits = model(normalize(frames.reshape(b * f, *frames.shape[2:])))
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != b * f:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits (B, K); got {shape} for B={b * f}")
    logits = logits.float()
    kk = min(TOP5_CAP, logits.shape[1]) if k is None else k
    top = logits.topk(kk, dim=1).indices
    top[~torch.isfinite(logits).all(dim=1)] = -1
    return top.reshape(b, f, kk)


def run_perturbation_cell(
    model: nn.Module,
    dataset: Any,
    *,
    suite: str | PerturbationSuite = "cifar10-p",
    perturbation: str,
    difficulty: int = 1,
    limit: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    preprocess: Any = None,
    chunk_frames: int = 8,
    output_size: int | tuple[int, int] | None = None,
    crop_to: int | tuple[int, int] | None = None,
    resize: int | None = None,
    sequences: Any = None,
    n_boot: int = 1000,
    info: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Evaluate one (model, perturbation, difficulty) cell; no store access.

    Frames are streamed: ``batch_size`` images x ``chunk_frames`` frames go through the model at a time.

    Args:
        model: classifier mapping (B, C, H, W) to logits (B, K).
        dataset: an ImageDataset (sequences generated on the fly from its images) or a pre-generated set with
            ``sequences(name)`` (``open_dataset("cifar10-p:ROOT")``), whose noise files for difficulty 2 / 3 are
            ``<name>_2.npy`` / ``<name>_3.npy``.
        suite: ``"cifar10-p"`` or ``"imagenet-p"`` (frame counts and parameters).
        limit: a seeded random subset of this many images / sequences (the evaluator's ``select_indices``).
        seed: seeds the subset and the sequences (per image: ``derive_seed(seed, id, name, difficulty)``).
        preprocess: see :func:`robustbench_lift.probes.as_pipeline`; perturbations apply between its ``prepare``
            (uint8 -> float [0, 1], channels, size) and its ``normalize``.
        output_size: centre crop after perturbing every sequence (not a published protocol).
        crop_to: the published crop, placed per perturbation (``corruptions.perturb``'s ``crop_to``): ImageNet-P
            crops 224 before photometric and after geometric perturbations.
        resize: ImageNet-P's first step, ``Resize(resize)`` of each original image (shorter side, bilinear) before
            ``preprocess.prepare``; the images may differ in size (the dataset is read image by image).
        sequences: a uint8 array (N, T, H, W, C) to use instead of ``dataset`` (pre-generated frames).
        info: ``model`` / ``pooling`` / ``arch`` for the rows (default: from ``model.default_cfg``).

    Returns:
        ``arrays``: ``top5`` (N, T, k) int, ``ids`` (N,), ``labels`` (N,) (-1 when unknown); ``rows``:
        ``flip_probability`` and ``top5_distance`` with CIs.
    """
    spec = get_perturbation_suite(suite)
    difficulty = _check_difficulty(difficulty)
    noise_frames = spec.frames(perturbation)  # also validates the name
    pipe = as_pipeline(preprocess)
    device = torch.device(device)
    model = model.to(device).eval()
    normalize = pipe.normalize
    pregen = _pregenerated(dataset, sequences, perturbation, difficulty)
    source = "generated on the fly" if pregen is None else "pre-generated"
    n_total = len(pregen[0]) if pregen is not None else len(dataset)
    indices = select_indices(n_total, limit, seed)
    n = len(indices)
    if n == 0:
        raise ValueError("the dataset has no images")
    if pregen is not None:
        seqs, labels_all = pregen
        t = seqs.num_frames if hasattr(seqs, "num_frames") else seqs.shape[1]
        ids = indices.copy()
        labels = (
            np.asarray(labels_all)[indices].astype(np.int64)
            if labels_all is not None
            else np.full(n, -1, np.int64)
        )
    else:
        t = noise_frames
        sid = getattr(dataset, "sample_id", None)
        ids = np.asarray([sid(int(i)) if sid else int(i) for i in indices], dtype=np.int64)
        labels = np.empty(n, dtype=np.int64)
    top5: np.ndarray | None = None
    for start in range(0, n, batch_size):
        idx = indices[start : start + batch_size]
        b = len(idx)
        if pregen is not None:
            block = seqs[idx] if not isinstance(seqs, _ArraySequences) else seqs[idx]
            for f0 in range(0, t, chunk_frames):
                part = block[:, f0 : f0 + chunk_frames].to(device)
                bf = part.shape[1]
                x = pipe.prepare(part.reshape(b * bf, *part.shape[2:]))
                if output_size is not None:
                    x = _centre(x, output_size)
                top = _predict_frames(model, x.reshape(b, bf, *x.shape[1:]), normalize, None)
                top5 = _store(top5, top, n, t, start, f0)
        elif resize is not None:
            prepared, ys = _resized_originals(dataset, idx, resize, pipe)
            labels[start : start + b] = ys
            batch_ids = ids[start : start + b].tolist()
            groups: dict[tuple[int, ...], list[int]] = {}
            for j, img in enumerate(prepared):
                groups.setdefault(tuple(img.shape), []).append(j)
            for f0 in range(0, t, chunk_frames):
                part = list(range(f0, min(t, f0 + chunk_frames)))
                frames = None
                for members in groups.values():
                    seq = perturb(
                        torch.stack([prepared[j] for j in members]).to(device),
                        perturbation,
                        suite=spec,
                        difficulty=difficulty,
                        seed=seed,
                        ids=[batch_ids[j] for j in members],
                        frames=part,
                        crop_to=crop_to,
                    )
                    if frames is None:
                        frames = seq.new_empty((b, *seq.shape[1:]))
                    frames[members] = seq
                top = _predict_frames(model, frames, normalize, None)
                top5 = _store(top5, top, n, t, start, f0)
        else:
            images, ys = get_batch(dataset, idx)
            labels[start : start + b] = ys.numpy()
            x = pipe.prepare(images.to(device))
            batch_ids = ids[start : start + b].tolist()
            for part_idx, frames in iter_perturb(
                x,
                perturbation,
                chunk=chunk_frames,
                suite=spec,
                difficulty=difficulty,
                seed=seed,
                ids=batch_ids,
                output_size=output_size,
                crop_to=crop_to,
            ):
                top = _predict_frames(model, frames, normalize, None)
                top5 = _store(top5, top, n, t, start, part_idx[0])
        if progress is not None:
            progress(b)
    assert top5 is not None
    arrays = {"top5": top5, "ids": ids, "labels": labels}
    row_info = {**model_fields(model), **dict(info or {})}
    rows = perturbation_rows(
        arrays,
        suite=spec.name,
        perturbation=perturbation,
        difficulty=difficulty,
        source=source,
        info=row_info,
        n_boot=n_boot,
        seed=seed,
    )
    return arrays, rows


def _resized_originals(
    dataset: Any, idx: np.ndarray, size: int, pipe: Any
) -> tuple[list[Tensor], np.ndarray]:
    """Resize(size) of each original image (uint8, PIL bilinear), then the pipeline's ``prepare`` (float, channels;
    no further resizing), one image at a time: the originals may differ in size."""
    out, ys = [], []
    for i in np.asarray(idx).reshape(-1):
        img, y = dataset[int(i)]
        if not isinstance(img, Tensor) or img.dtype != torch.uint8 or img.dim() != 3:
            raise ValueError("ImageNet-P from originals needs a dataset of uint8 (C, H, W) images")
        out.append(pipe.prepare(resize_shorter(img, size)[None])[0])
        ys.append(int(y))
    return out, np.asarray(ys, dtype=np.int64)


def _centre(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def _store(top5: np.ndarray | None, top: Tensor, n: int, t: int, start: int, f0: int) -> np.ndarray:
    top_np = top.cpu().numpy()
    if top5 is None:
        top5 = np.empty((n, t, top_np.shape[-1]), dtype=np.int32)
    top5[start : start + top_np.shape[0], f0 : f0 + top_np.shape[1]] = top_np
    return top5


def _align_ids(cells: Mapping[Any, Mapping[str, np.ndarray]]) -> np.ndarray:
    common: np.ndarray | None = None
    for arrays in cells.values():
        ids = np.asarray(arrays["ids"])
        common = ids if common is None else np.intersect1d(common, ids)
    return np.asarray(common if common is not None else [], dtype=np.int64)


def _take(arrays: Mapping[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    own = np.asarray(arrays["ids"])
    top5 = np.asarray(arrays["top5"])
    if len(own) == len(ids) and np.array_equal(own, ids):
        return top5
    order = np.argsort(own, kind="stable")
    return top5[order[np.searchsorted(own, ids, sorter=order)]]


def _ratio_stat(fm: np.ndarray, fb: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * fm / fb


def _mean_ratio_stat(fm: np.ndarray, fb: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (100.0 * fm / fb).mean(axis=0)


def _mean_over_perturbations(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


def aggregate_perturbations(
    per_model_arrays: Mapping[str, Mapping[tuple[str, int], Mapping[str, np.ndarray]]],
    baseline: str | None,
    *,
    suite: str = "cifar10-p",
    models_info: Mapping[str, Mapping[str, Any]] | None = None,
    difficulties: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    source: str = "generated on the fly",
    vectors: dict[Any, Any] | None = None,
) -> list[dict[str, Any]]:
    """Result rows of a perturbation suite for several models.

    Args:
        per_model_arrays: ``{model: {(perturbation, difficulty): arrays}}`` with the arrays of
            :func:`run_perturbation_cell`. A non-noise perturbation's sequence does not depend on the difficulty:
            its difficulty-1 arrays also give the stride-2 and stride-3 metrics.
        baseline: the model FR / normalised T5D are relative to (= 100); None: no normalised rows.
        models_info: ``{model: {"pooling": ..., "arch": ...}}``.
        difficulties: difficulties to report (default: those present among the cells, and 1).
        vectors: where to leave the bootstrap vectors of the suite aggregates (see ``AggregateInput.vectors``).

    Returns:
        per perturbation and difficulty: ``flip_probability``, ``top5_distance`` and, with a baseline, ``fr``,
        ``t5d`` (x100); per difficulty, corruption ``all`` (the test perturbations present): ``mfp``, ``mt5d``,
        and with a baseline ``mfr``, ``mt5d_normalised``. CIs resample sequences, paired across models.
    """
    spec = get_perturbation_suite(suite)
    models_info = models_info or {}
    if baseline is not None and baseline not in per_model_arrays:
        raise ValueError(
            f"baseline model {baseline!r} is not among the models: {', '.join(per_model_arrays)}"
        )
    present = {key for cells in per_model_arrays.values() for key in cells}
    if difficulties is None:
        difficulties = sorted({d for _, d in present} | {1})
    difficulties = [_check_difficulty(int(d)) for d in difficulties]
    test = list_perturbations(split="test")
    order = list_perturbations()
    rows: list[dict[str, Any]] = []

    def source_key(pert: str, d: int) -> tuple[str, int]:
        return (pert, d) if is_noise_perturbation(pert) else (pert, 1)

    for d in difficulties:
        perts = [p for p in order if any(source_key(p, d) in cells for cells in per_model_arrays.values())]
        # per-sequence FP and T5D of every model, on the ids common to every model (paired)
        per: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for p in perts:
            key = source_key(p, d)
            holders = {m: cells[key] for m, cells in per_model_arrays.items() if key in cells}
            ids = _align_ids(holders)
            noise = is_noise_perturbation(p)
            for m, arrays in holders.items():
                top5 = _take(arrays, ids)
                per.setdefault(m, {})[p] = (
                    flip_rates(top5[..., 0], noise=noise, difficulty=d),
                    top5_distances(top5, noise=noise, difficulty=d),
                )
        for m in per_model_arrays:
            info = {"model": m, **dict(models_info.get(m, {}))}
            mine = per.get(m, {})
            base = per.get(baseline, {}) if baseline is not None else {}
            for p in perts:
                if p not in mine:
                    continue
                fp, td = mine[p]
                t = num_frames(p, spec) if source != "pre-generated" else None
                frames = f"{t} frames " if t else ""
                where = f"{spec.name} {p}, {frames}{source}; {_pair_text(is_noise_perturbation(p), d)}"
                n = len(fp)
                rows.append(
                    result_row(
                        info,
                        spec.name,
                        p,
                        d,
                        "flip_probability",
                        fp.mean(),
                        _ci(_mean, [fp], n_boot, seed),
                        n,
                        f"flip probability (Hendrycks & Dietterich): {where}; fraction of pairs whose top-1 changes",
                    )
                )
                rows.append(
                    result_row(
                        info,
                        spec.name,
                        p,
                        d,
                        "top5_distance",
                        td.mean(),
                        _ci(_mean, [td], n_boot, seed),
                        n,
                        f"top-5 distance (Hendrycks & Dietterich, positions capped at 5): {where}",
                    )
                )
                if p in base and len(base[p][0]) == n:
                    for metric, a, bvec, what in (
                        ("fr", fp, base[p][0], "FR"),
                        ("t5d", td, base[p][1], "T5D"),
                    ):
                        if bvec.mean() == 0:
                            log.warning(
                                "%s of baseline %r is 0 for %s/%d: no %s row", what, baseline, p, d, metric
                            )
                            continue
                        rows.append(
                            result_row(
                                info,
                                spec.name,
                                p,
                                d,
                                metric,
                                100.0 * a.mean() / bvec.mean(),
                                _ci(_ratio_stat, [a, bvec], n_boot, seed),
                                n,
                                f"{what} = 100 x {what.replace('FR', 'FP')} / that of baseline model {baseline!r} "
                                f"(= 100); {where}",
                            )
                        )
            # suite aggregates over the test perturbations present
            tests = [p for p in test if p in mine]
            if not tests:
                continue
            ns = {len(mine[p][0]) for p in tests}
            scope = f"over {len(tests)}/{len(test)} test perturbations" + (
                "" if len(tests) == len(test) else f" ({', '.join(tests)})"
            )
            if len(ns) != 1:
                log.warning(
                    "model %r: test perturbations differ in sequence count; aggregates without CIs", m
                )
            nn_ = min(ns)
            fps = np.stack([mine[p][0][:nn_] for p in tests])
            tds = np.stack([mine[p][1][:nn_] for p in tests])
            boot = n_boot if len(ns) == 1 else 0
            rows.append(
                result_row(
                    info,
                    spec.name,
                    "all",
                    d,
                    "mfp",
                    fps.mean(axis=1).mean(),
                    _ci(_mean_over_perturbations, [fps], boot, seed),
                    nn_,
                    f"mFP: unnormalised mean flip probability {scope}; {spec.name}, difficulty {d}, {source}",
                )
            )
            _keep_vector(vectors, rows[-1], _mean_over_perturbations, [fps], boot, seed)
            rows.append(
                result_row(
                    info,
                    spec.name,
                    "all",
                    d,
                    "mt5d",
                    tds.mean(axis=1).mean(),
                    _ci(_mean_over_perturbations, [tds], boot, seed),
                    nn_,
                    f"mT5D: unnormalised mean top-5 distance {scope}; {spec.name}, difficulty {d}, {source}",
                )
            )
            _keep_vector(vectors, rows[-1], _mean_over_perturbations, [tds], boot, seed)
            if baseline is None or not all(p in base and len(base[p][0]) == nn_ for p in tests):
                continue
            bfp = np.stack([base[p][0] for p in tests])
            btd = np.stack([base[p][1] for p in tests])
            for metric, a, bv, what in (("mfr", fps, bfp, "mFR"), ("mt5d_normalised", tds, btd, "mT5D")):
                # A perturbation on which the baseline never flips has no ratio: average over the others and
                # say which were left out, rather than dropping the whole aggregate.
                keep = bv.mean(axis=1) > 0
                if not keep.any():
                    log.warning(
                        "baseline %r has a zero denominator for every perturbation at difficulty %d: no %s row",
                        baseline,
                        d,
                        metric,
                    )
                    continue
                dropped = [p for p, k in zip(tests, keep) if not k]
                note = ""
                if dropped:
                    log.warning(
                        "baseline %r is 0 for %s at difficulty %d: %s averages the other perturbations",
                        baseline,
                        ", ".join(dropped),
                        d,
                        metric,
                    )
                    note = f", excluding {', '.join(dropped)} (the baseline's value is 0 there)"
                a, bv = a[keep], bv[keep]
                rows.append(
                    result_row(
                        info,
                        spec.name,
                        "all",
                        d,
                        metric,
                        float(_mean_ratio_stat(a.mean(1), bv.mean(1))),
                        _ci(_mean_ratio_stat, [a, bv], boot, seed),
                        nn_,
                        f"{what} normalised by baseline model {baseline!r} (= 100), mean of per-perturbation "
                        f"ratios {scope}{note}; {spec.name}, difficulty {d}, {source}",
                    )
                )
                _keep_vector(vectors, rows[-1], _mean_ratio_stat, [a, bv], boot, seed)
    return rows


def _keep_vector(
    vectors: dict[Any, Any] | None,
    row: Mapping[str, Any],
    stat: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    n_boot: int,
    seed: int,
) -> None:
    """Leave a suite aggregate's bootstrap vector (the resamples of its CI) for the seed-aware statistics."""
    if vectors is None or n_boot <= 0 or arrays[0].shape[-1] < 2:
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        vec = bootstrap_vector(stat, *arrays, n_boot=n_boot, seed=seed)
    key = (row["model"], row["suite"], row["corruption"], int(row["severity"]), row["metric"])
    vectors[key] = (vec, row["protocol"], int(row["n"]))


def _kind_accepts(value: Any) -> bool:
    from corruptions.perturbations import PERTURBATION_SUITES

    return isinstance(value, PerturbationSuite) or (isinstance(value, str) and value in PERTURBATION_SUITES)


def _kind_names() -> list[str]:
    from corruptions.perturbations import PERTURBATION_SUITES

    return list(PERTURBATION_SUITES)


def _is_pregenerated(dataset: Any) -> bool:
    return hasattr(dataset, "sequences") and not hasattr(dataset, "get_batch")


def _kind_resolve(value: Any, dataset: Any) -> tuple[str, Any, dict[str, Any]]:
    spec = get_perturbation_suite(value)
    pregen = _is_pregenerated(dataset)
    params = {
        "suite": spec.name,
        "pregenerated": pregen,
        "native_size": spec.native_size,
        "frames": {p: spec.frames(p) for p in list_perturbations()},
        "source": perturbation_source(spec, dataset),
    }
    if pregen:
        params["root"] = str(getattr(dataset, "root", ""))
    return spec.name, spec, params


def _kind_plan(name: str, suite: Any, opts: Any) -> list[Any]:
    valid = list_perturbations()
    # --corruptions may also name other suites' entries: keep this suite's, refuse a list with none of them
    chosen = [p for p in opts.corruptions if p in valid] if opts.corruptions else valid
    if opts.corruptions and not chosen:
        raise ValueError(
            f"none of {list(opts.corruptions)} is a perturbation of {name!r}; valid: {', '.join(valid)}"
            + suggest(opts.corruptions, valid)
        )
    diffs = [_check_difficulty(int(d)) for d in (opts.severities or (1,))]
    pregen = _is_pregenerated(opts.dataset)
    if pregen:
        have = set(opts.dataset.perturbations)
        chosen = [p for p in chosen if sequence_file(p, 1) in have] if not opts.corruptions else chosen
        missing = [
            sequence_file(p, d)
            for p in chosen
            for d in (diffs if is_noise_perturbation(p) else [1])
            if sequence_file(p, d) not in have
        ]
        if missing:
            raise ValueError(f"the pre-generated set lacks {', '.join(f + '.npy' for f in missing)}")
    cells = []
    for m in opts.models:
        for p in chosen:
            for d in diffs if is_noise_perturbation(p) else [1]:
                cells.append(
                    CellSpec(
                        model=m.name,
                        suite=name,
                        corruption=p,
                        severity=d,
                        kind="perturbation",
                        seed=opts.seed,
                        limit=opts.limit,
                    )
                )
    return cells


def _has_originals(dataset: Any) -> bool:
    """True for a dataset that keeps every image's own size (an image folder opened without ``image_size``)."""
    return not _is_pregenerated(dataset) and getattr(dataset, "image_size", (0, 0)) is None


def perturbation_source(suite: PerturbationSuite, dataset: Any) -> str:
    """How the frames of ``suite`` on ``dataset`` are made: the text every row's protocol string carries."""
    if _is_pregenerated(dataset):
        return "pre-generated"
    if suite.name == "cifar10-p":
        text = "generated on the fly with make_cifar_p.py's parameters"
        size = getattr(dataset, "image_size", None)
        if size is not None and tuple(size) != (suite.native_size, suite.native_size):
            text += (
                f" on {size[0]}x{size[1]} images, not CIFAR-10-P's 32 px (pixel-sized parameters scaled by "
                f"{min(size) / suite.native_size:.3g})"
            )
        return text
    if suite.name == "imagenet-p":
        if _has_originals(dataset):
            return (
                "generated on the fly as make_imagenet_p.py: Resize(256) of the original images, photometric "
                "sequences crop 224 then perturb, geometric ones perturb then crop 224; "
                f"{IMAGENET_P_NOT_REPRODUCED}"
            )
        return (
            "generated on the fly from the dataset's fixed-size images resized to 256 (not Resize(256) of the "
            "original images, so not ImageNet-P's order), crop 224 per perturbation as make_imagenet_p.py; "
            f"{IMAGENET_P_NOT_REPRODUCED}"
        )
    return "generated on the fly"


def _kind_run(spec: Any, ctx: Any, progress: Callable[[int], None] | None) -> Any:
    entry = ctx.models[spec.model]
    pregen = _is_pregenerated(ctx.dataset)
    suite = get_perturbation_suite(ctx.suites.get(spec.suite, spec.suite))
    originals = suite.name == "imagenet-p" and not pregen and _has_originals(ctx.dataset)
    data = ctx.dataset if pregen or originals else ctx.dataset_for(entry)
    pre = entry.preprocess(channels=getattr(data, "channels", None))
    crop_to = None
    resize = None
    if suite.name == "imagenet-p" and not pregen:
        # ImageNet-P: Resize(256) -> CenterCrop(224) placed per perturbation, scaled to the model's input size
        h, w = pre.input_size or (suite.crop, suite.crop)
        crop_to = (h, w)
        big = round(max(h, w) * suite.native_size / suite.crop)
        if originals:
            resize = big
            pre = dataclasses.replace(pre, input_size=None)
        else:
            pre = dataclasses.replace(
                pre, input_size=(round(h * big / max(h, w)), round(w * big / max(h, w)))
            )
    arrays, _ = run_perturbation_cell(
        entry.model,
        data,
        suite=suite,
        perturbation=spec.corruption,
        difficulty=spec.severity,
        limit=spec.limit,
        batch_size=ctx.batch_size,
        device=ctx.device,
        seed=spec.seed,
        preprocess=pre,
        crop_to=crop_to,
        resize=resize,
        n_boot=0,
        progress=progress,
    )
    return CellResult(arrays=arrays, info={"n": len(arrays["ids"]), "frames": int(arrays["top5"].shape[1])})


def _kind_aggregate(name: str, params: Any, data: Any) -> list[dict[str, Any]]:
    per_model: dict[str, dict[tuple[str, int], Mapping[str, np.ndarray]]] = {}
    for model in data.model_order:
        for _, (spec, arrays, _) in data.cells.get(model, {}).items():
            if spec.get("kind") == "perturbation" and spec.get("suite") == name:
                per_model.setdefault(model, {})[(spec["corruption"], int(spec["severity"]))] = arrays
    if not per_model:
        return []
    baseline = data.baseline if data.baseline in per_model else None
    pregen = bool(params.get("pregenerated", False)) if isinstance(params, Mapping) else False
    source = "pre-generated" if pregen else "generated on the fly"
    if isinstance(params, Mapping) and params.get("source"):
        source = str(params["source"])
    return aggregate_perturbations(
        per_model,
        baseline,
        suite=params.get("suite", name) if isinstance(params, Mapping) else name,
        models_info=data.models,
        n_boot=data.n_boot,
        seed=data.seed,
        source=source,
        vectors=data.vectors,
    )


register_suite_kind(
    SuiteKind(
        name="perturbation",
        accepts=_kind_accepts,
        names=_kind_names,
        resolve=_kind_resolve,
        plan=_kind_plan,
        run=_kind_run,
        aggregate=_kind_aggregate,
        cell_kinds=("perturbation",),
        needs_clean=False,
    )
)
