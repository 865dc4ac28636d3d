"""The probe registry and runner: a probe is a function of a :class:`ProbeRun` (the model, the images, the row
settings) that returns per-image arrays and result rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from corruptions.registry import Registry

from ..data import as_pipeline, iter_batches, select_indices
from ..metrics.bootstrap import mean_ci
from ..schema import model_fields, result_row

log = logging.getLogger(__name__)

#: name -> probe function ``fn(run: ProbeRun, **kw) -> (arrays, rows)``; metadata ``suite`` (shift/reconstruction).
PROBES: Registry = Registry("probe")


# ====================================================================================================== run state
@dataclass
class ProbeRun:
    """What a probe function gets: the model on its device, the images to use, and the row settings."""

    model: nn.Module
    dataset: Any
    indices: np.ndarray
    ids: np.ndarray
    batch_size: int
    device: torch.device
    seed: int
    pipe: Any  # a Preprocess or InputPipeline (prepare / normalize)
    n_boot: int
    info: dict[str, Any]
    row_values: list[np.ndarray] = field(default_factory=list)

    def batches(self) -> Iterator[tuple[np.ndarray, Tensor, Tensor]]:
        """``(ids, images in [0, 1] prepared on the device, labels)`` batch by batch."""
        start = 0
        for idx, images, labels in iter_batches(self.dataset, self.indices, self.batch_size):
            x = self.pipe.prepare(images.to(self.device))
            yield self.ids[start : start + len(idx)], x, labels.to(self.device)
            start += len(idx)

    @torch.no_grad()
    def logits(self, x01: Tensor) -> Tensor:
        out = self.model(self.pipe.normalize(x01))
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x01.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the model must return logits (B, K); got {shape} for B={x01.shape[0]}")
        return out.float()

    def row(
        self,
        suite: str,
        corruption: str,
        severity: int,
        metric: str,
        values: np.ndarray,
        n: int,
        protocol: str,
    ) -> dict[str, Any]:
        """A result row whose value is the mean of per-image ``values`` with a bootstrap CI over images."""
        v = np.asarray(values, dtype=np.float64)
        self.row_values.append(v)
        ci = mean_ci(v, n_boot=self.n_boot, seed=self.seed)
        return result_row(self.info, suite, corruption, severity, metric, float(v.mean()), ci, n, protocol)


def list_probes(suite: str | None = None) -> list[str]:
    """Registered probe names, optionally only those of one suite (``shift`` or ``reconstruction``)."""
    return PROBES.names() if suite is None else PROBES.names(suite=suite)


def run_probe(
    name: str,
    model: nn.Module,
    dataset: Any,
    *,
    limit: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    preprocess: Any = None,
    n_boot: int = 1000,
    info: Mapping[str, Any] | None = None,
    return_row_values: bool = False,
    **kw: Any,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]] | tuple[Any, ...]:
    """Run one probe; no store access.

    Args:
        name: a registered probe (``list_probes()``): crop, circular, diagonal, equivariance, reconstruction.
        model: classifier mapping (B, C, H, W) to logits (B, K).
        dataset: an ImageDataset yielding (uint8 (C, H, W), label), with ``get_batch`` / ``sample_id`` if it has them.
        limit: a seeded random subset of this many images (the evaluator's ``select_indices``).
        seed: seeds the subset and every random shift (per image: ``(seed, sample_id, probe, ...)``).
        preprocess: see :func:`as_pipeline`.
        n_boot: bootstrap resamples for the CIs (0: none).
        info: ``model`` / ``pooling`` / ``arch`` for the rows (default: from ``model.default_cfg``).
        return_row_values: also return, per row, the per-image values its mean and CI come from.
        **kw: the probe's own parameters (see each probe's docstring).

    Returns:
        per-image arrays (always with ``ids``; names use ``__`` as separator) and result rows.
    """
    fn = PROBES.get(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device)
    model = model.to(device).eval()
    indices = select_indices(len(dataset), limit, seed)
    if len(indices) == 0:
        raise ValueError("the dataset has no images")
    sid = getattr(dataset, "sample_id", None)
    ids = np.asarray([sid(int(i)) if sid else int(i) for i in indices], dtype=np.int64)
    run = ProbeRun(
        model=model,
        dataset=dataset,
        indices=indices,
        ids=ids,
        batch_size=batch_size,
        device=device,
        seed=int(seed),
        pipe=as_pipeline(preprocess),
        n_boot=int(n_boot),
        info={**model_fields(model), **dict(info or {})},
    )
    arrays, rows = fn(run, **kw)
    arrays["ids"] = ids
    if return_row_values:
        return arrays, rows, run.row_values
    return arrays, rows


# ====================================================================================================== shifts
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
