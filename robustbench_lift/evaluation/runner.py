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
from collections.abc import Callable
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
    device = torch.device(device)
    if spec.kind == "pregenerated":
        data = dataset.cell(spec.corruption, spec.severity)
    elif spec.kind in ("clean", "corruption"):
        data = dataset
    else:
        raise ValueError(f"run_cell handles clean, corruption and pregenerated cells, not kind {spec.kind!r}")
    corrupting = spec.kind == "corruption"
    if corrupting:
        suite = spec.suite if suite is None else suite
    jpeg_quality = _storage_quality(spec)
    model = prepare_model(model, device, channels_last=channels_last)
    normalize = preprocess.normalizer(device)

    indices = select_indices(len(data), spec.limit, spec.seed)
    n = len(indices)
    ids = np.fromiter((data.sample_id(int(i)) for i in indices), dtype=np.int64, count=n)
    id_of = dict(zip(indices.tolist(), ids.tolist()))
    k = None
    top5 = labels_out = None
    nonfinite = 0
    pos = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for idx, images, labels in iter_batches(data, indices, batch_size, workers=workers):
            x = preprocess.prepare(images.to(device, non_blocking=True))
            if corrupting:
                batch_ids = [id_of[int(i)] for i in idx]
                kwargs = {"backend": spec.backend} if spec.backend else {}
                x = corrupt(
                    x, spec.corruption, spec.severity, suite=suite, seed=spec.seed, ids=batch_ids, **kwargs
                )
                if jpeg_quality is not None:
                    x = store_as_jpeg(x, jpeg_quality)
            if normalize is not None:
                x = normalize(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(idx):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(
                    f"model {spec.model!r} must return logits (B, K); got {shape} for B={len(idx)}"
                )
            logits = logits.float()
            if top5 is None:
                num_classes = logits.shape[1]
                k = min(TOPK, num_classes)
                dtype = np.int16 if num_classes < np.iinfo(np.int16).max else np.int32
                top5 = np.empty((n, k), dtype=dtype)
                labels_out = np.empty(n, dtype=dtype)
            bad = ~torch.isfinite(logits).all(dim=1)
            pred = logits.topk(k, dim=1).indices
            if bool(bad.any()):
                pred[bad] = -1
                nonfinite += int(bad.sum())
            b = len(idx)
            top5[pos : pos + b] = pred.cpu().numpy()
            labels_out[pos : pos + b] = labels.numpy()
            pos += b
            if progress is not None:
                progress(b)
    seconds = time.perf_counter() - start
    if top5 is None:
        raise ValueError(f"cell {spec.key}: the dataset has no images")
    wrong1 = top5[:, 0] != labels_out
    wrong5 = ~(top5 == labels_out[:, None]).any(axis=1)
    info = {
        "n": n,
        "top1_errors": int(wrong1.sum()),
        "top5_errors": int(wrong5.sum()),
        "nonfinite": nonfinite,
        "seconds": round(seconds, 4),
        "device": str(device),
    }
    return CellResult(arrays={"top5": top5, "labels": labels_out, "ids": ids}, info=info)


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
