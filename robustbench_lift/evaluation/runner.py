"""Running one classification cell (clean, corrupted on the fly, or pre-generated), and the context executors run
cells in.

Input pipeline for every batch (streamed; the corrupted dataset is never held in memory)::

    uint8 (B, C, H, W) -> device -> float [0, 1] -> match channels -> resize to the model's input size
      -> corrupt (per-image seeds from the sample ids) -> [store as JPEG and decode: on-the-fly imagenet-c]
      -> normalise (checkpoint mean/std) -> model -> top-5
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from corruptions.api import corrupt

from ..data import Preprocess, iter_batches, open_dataset, select_indices, store_as_jpeg
from .cells import TOPK, CellResult, CellSpec
from .models import ModelEntry, prepare_model
from .suite_kinds import kind_of_cell

log = logging.getLogger(__name__)


def _autocast(device: torch.device, amp: str | None):
    if not amp:
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def run_cell(
    spec: CellSpec,
    model: nn.Module,
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    preprocess: Preprocess,
    workers: int = 0,
    amp: str | None = None,
    channels_last: bool = False,
    suite: Any = None,
    progress: Callable[[int], None] | None = None,
) -> CellResult:
    """Evaluate one classification cell (clean, corrupted on the fly, or pre-generated); no store access.

    Args:
        spec: the cell; ``spec.kind`` picks where images come from.
        model: any classifier ``nn.Module`` mapping (B, C, H, W) to logits (B, K).
        dataset: an ImageDataset (clean / on-the-fly cells) or a PregeneratedSet (``kind == "pregenerated"``).
        preprocess: channels, input size and normalisation of ``model``.
        amp: ``"bf16"`` / ``"fp16"`` autocast on CUDA, None for full precision.
        suite: the corruption suite (name or ``corruptions.suites.Suite``); default ``spec.suite``.
        progress: called with the number of images after each batch.

    Returns:
        top-5 predictions, labels and sample ids per image, and counts.
    """
    (result,) = run_cells(
        [(spec, model, preprocess)],
        dataset,
        device=device,
        batch_size=batch_size,
        workers=workers,
        amp=amp,
        channels_last=channels_last,
        suite=suite,
        progress=progress,
    )
    return result


def share_key(spec: CellSpec, preprocess: Preprocess) -> tuple[Any, ...]:
    """What cells must have in common to be run on the same (corrupted) batches: everything but the model and its
    normalisation."""
    return (
        spec.kind,
        spec.suite,
        spec.corruption,
        spec.severity,
        spec.seed,
        spec.limit,
        spec.backend,
        spec.options,
        preprocess.channels,
        preprocess.input_size if preprocess.resize else None,
    )


def run_cells(
    cells: Sequence[tuple[CellSpec, nn.Module, Preprocess]],
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    workers: int = 0,
    amp: str | None = None,
    channels_last: bool = False,
    suite: Any = None,
    progress: Callable[[int], None] | None = None,
) -> list[CellResult]:
    """Evaluate cells that differ only in the model (same :func:`share_key`) on one stream of batches.

    Each batch is read, converted, corrupted (and JPEG-stored) once, then normalised for and fed to every model,
    so N models cost one corruption pass instead of N. Each model's result equals what :func:`run_cell` gives it
    alone: the images, seeds and operations are the same.
    """
    if not cells:
        return []
    spec0, _, pre0 = cells[0]
    key0 = share_key(spec0, pre0)
    for spec, _, pre in cells[1:]:
        if share_key(spec, pre) != key0:
            raise ValueError(
                f"cells {spec0.key} and {spec.key} cannot share batches: they differ in more than the model"
            )
    device = torch.device(device)
    if spec0.kind == "pregenerated":
        data = dataset.cell(spec0.corruption, spec0.severity)
    elif spec0.kind in ("clean", "corruption"):
        data = dataset
    else:
        raise ValueError(
            f"run_cell handles clean, corruption and pregenerated cells, not kind {spec0.kind!r}"
        )
    corrupting = spec0.kind == "corruption"
    if corrupting:
        suite = spec0.suite if suite is None else suite
    jpeg_quality = _storage_quality(spec0)
    models = [prepare_model(model, device, channels_last=channels_last) for _, model, _ in cells]
    normalizers = [pre.normalizer(device) for _, _, pre in cells]

    indices = select_indices(len(data), spec0.limit, spec0.seed)
    n = len(indices)
    ids = np.fromiter((data.sample_id(int(i)) for i in indices), dtype=np.int64, count=n)
    id_of = dict(zip(indices.tolist(), ids.tolist()))
    outs = [_Predictions(n) for _ in cells]
    labels_out = np.empty(n, dtype=np.int64)
    pos = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for idx, images, labels in iter_batches(data, indices, batch_size, workers=workers):
            x = pre0.prepare(images.to(device, non_blocking=True))
            if corrupting:
                batch_ids = [id_of[int(i)] for i in idx]
                kwargs = {"backend": spec0.backend} if spec0.backend else {}
                x = corrupt(
                    x, spec0.corruption, spec0.severity, suite=suite, seed=spec0.seed, ids=batch_ids, **kwargs
                )
                if jpeg_quality is not None:
                    x = store_as_jpeg(x, jpeg_quality)
            b = len(idx)
            for (spec, _, _), model, normalize, out in zip(cells, models, normalizers, outs):
                xm = normalize(x) if normalize is not None else x
                if channels_last:
                    xm = xm.contiguous(memory_format=torch.channels_last)
                with _autocast(device, amp):
                    logits = model(xm)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != b:
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ValueError(f"model {spec.model!r} must return logits (B, K); got {shape} for B={b}")
                out.add(pos, logits.float())
                if progress is not None:
                    progress(b)
            labels_out[pos : pos + b] = labels.numpy()
            pos += b
    seconds = (time.perf_counter() - start) / len(cells)
    if pos == 0:
        raise ValueError(f"cell {spec0.key}: the dataset has no images")
    return [out.result(labels_out, ids, seconds, device) for out in outs]


class _Predictions:
    """Top-5 predictions of one model over a cell's images, filled batch by batch."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.top5: np.ndarray | None = None
        self.nonfinite = 0

    def add(self, pos: int, logits: torch.Tensor) -> None:
        if self.top5 is None:
            num_classes = logits.shape[1]
            self.k = min(TOPK, num_classes)
            self.dtype = np.int16 if num_classes < np.iinfo(np.int16).max else np.int32
            self.top5 = np.empty((self.n, self.k), dtype=self.dtype)
        bad = ~torch.isfinite(logits).all(dim=1)
        pred = logits.topk(self.k, dim=1).indices
        if bool(bad.any()):
            pred[bad] = -1
            self.nonfinite += int(bad.sum())
        self.top5[pos : pos + len(pred)] = pred.cpu().numpy()

    def result(self, labels: np.ndarray, ids: np.ndarray, seconds: float, device: torch.device) -> CellResult:
        top5 = self.top5
        labels_out = labels.astype(self.dtype)
        wrong1 = top5[:, 0] != labels_out
        wrong5 = ~(top5 == labels_out[:, None]).any(axis=1)
        info = {
            "n": self.n,
            "top1_errors": int(wrong1.sum()),
            "top5_errors": int(wrong5.sum()),
            "nonfinite": self.nonfinite,
            "seconds": round(seconds, 4),
            "device": str(device),
        }
        return CellResult(arrays={"top5": top5, "labels": labels_out, "ids": ids.copy()}, info=info)


def _storage_quality(spec: CellSpec) -> int | None:
    """The JPEG quality of the cell's storage step (``options`` entry ``("storage", "jpeg<Q>")``), or None."""
    storage = dict(spec.options).get("storage")
    if storage is None or spec.kind != "corruption":
        return None
    text = str(storage)
    if not text.startswith("jpeg") or not text[4:].isdigit():
        raise ValueError(
            f"cell {spec.key}: unknown storage step {storage!r}; valid: jpeg<quality>, e.g. jpeg85"
        )
    return int(text[4:])


# ====================================================================================================== context
@dataclass
class EvalContext:
    """Everything an executor needs to run a cell: models, data, and the run's execution options.

    ``datasets`` maps an input size key (see :meth:`dataset_for`) to an opened dataset; ``dataset_spec`` lets a
    remote worker re-open the data instead of receiving it. ``suites`` maps suite names to resolved suite objects.
    """

    models: dict[str, ModelEntry]
    dataset: Any
    dataset_spec: str | None = None
    clean_dataset: Any = None
    suites: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 128
    workers: int = 0
    amp: str | None = None
    channels_last: bool = False
    strict: bool = False
    pregenerated: bool = False
    _opened: dict[Any, Any] = field(default_factory=dict, repr=False)

    def dataset_for(self, entry: ModelEntry, *, clean: bool = False) -> Any:
        """The dataset to read for ``entry``: variable-size folders are opened at the model's input size."""
        base = self.clean_dataset if clean and self.pregenerated else self.dataset
        if base is None:
            raise ValueError("a clean cell of a pre-generated set needs a clean dataset (--clean-dataset)")
        if getattr(base, "image_size", True) is not None or self.dataset_spec is None or clean:
            return base
        key = entry.input_size
        if key not in self._opened:
            self._opened[key] = open_dataset(self.dataset_spec, image_size=key, strict=self.strict)
        return self._opened[key]

    def run(self, spec: CellSpec, progress: Callable[[int], None] | None = None) -> CellResult:
        """Run one cell here, dispatching on its suite kind."""
        return kind_of_cell(spec.kind).run(spec, self, progress)
