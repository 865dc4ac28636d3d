"""Cells, the units of evaluation work: :class:`CellSpec` says what to compute, :class:`CellResult` holds what a
cell returns, :func:`select_indices` picks the images, and :func:`result_row` builds every row of ``results.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..schema import CLEAN

log = logging.getLogger(__name__)

TOPK = 5


@dataclass(frozen=True)
class CellSpec:
    """One unit of evaluation work; everything that determines its result except the model and the data.

    Args:
        model: the model's name in the run.
        suite: suite name (``"clean"`` for the clean cell).
        corruption: corruption / perturbation / probe name (``"clean"`` for the clean cell).
        severity: 1..5 (difficulty for perturbations, 0 for clean).
        kind: ``"clean"``, ``"corruption"`` (on the fly), ``"pregenerated"`` (read from the dataset's cell) or a
            plug-in's own kind.
        seed: run seed; per-image randomness derives from it and the sample ids.
        limit: evaluate a seeded subset of this many images (None: all).
        backend: corruption backend (None: the engine's default).
        options: extra hashable ``(key, value)`` pairs for plug-in kinds.
    """

    model: str
    suite: str
    corruption: str
    severity: int
    kind: str = "corruption"
    seed: int = 0
    limit: int | None = None
    backend: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """Stable string key, also the cell's file name in the store (``<model>/<name>``)."""
        if self.kind == "clean":
            return f"{self.model}/{CLEAN}"
        return f"{self.model}/{self.suite}__{self.corruption}__s{self.severity}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = [list(kv) for kv in self.options]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellSpec:
        d = dict(d)
        d["options"] = tuple(tuple(kv) for kv in d.get("options", ()))
        return cls(**d)


@dataclass
class CellResult:
    """What a cell returns: per-sample arrays (stored compressed) and JSON-able counts / facts.

    For classification cells ``arrays`` holds ``top5`` ((n, k) class indices, best first; -1 for samples whose
    logits were not finite), ``labels`` and ``ids`` (sample ids); ``info`` holds ``n``, ``top1_errors``,
    ``top5_errors``, ``nonfinite``, ``seconds``, ``device``.

    ``error`` is set (and nothing else) for a cell whose input data cannot be read: the driver stores nothing for
    it, reports it at the end of the run, and runs it again on the next evaluate.
    """

    arrays: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> CellResult:
        """The result of a cell that could not be run, with why."""
        return cls(arrays={}, info={}, error=str(error))
