"""Seed groups: models that share architecture, pooling and training recipe and differ only in the training seed.

A checkpoint written by :func:`robustbench_lift.train.train` records its settings in ``train_config``. The
*recipe* is that record without the seed and without what training measured (history, validation accuracies): two
checkpoints with the same (arch, pooling, recipe) belong to one group, whatever their seeds. A model without a
training record (a torchvision module, a foreign checkpoint) is a group of its own, named after the model. The
statistics over a group's seeds are in :mod:`robustbench_lift.metrics.seeds`; docs/metrics.md describes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["MEASURED_KEYS", "group_id", "recipe", "training_seed"]

#: ``train_config`` entries that are not part of the recipe: the seed and what training measured or recorded
#: about its environment. Everything else (data, optimisation, epochs, validation split, last/best checkpoint)
#: must agree for two models to be in one group.
MEASURED_KEYS = frozenset(
    {
        "seed",
        "history",
        "final_val_acc",
        "best_val_acc",
        "best_epoch",
        "torch_version",
        "train_images",
        "val_images",
    }
)


def training_seed(train_config: Mapping[str, Any] | None) -> int | None:
    """The training seed a checkpoint records (None when it records none)."""
    if not train_config:
        return None
    seed = train_config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        return None
    return int(seed)


def recipe(arch: str, pooling: str, train_config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a seed group shares: arch, pooling and the training settings except the seed (None: no record)."""
    if not train_config:
        return None
    kept = {k: v for k, v in train_config.items() if k not in MEASURED_KEYS}
    return {"arch": str(arch), "pooling": str(pooling), "train": kept}


def group_id(name: str, arch: str, pooling: str, train_config: Mapping[str, Any] | None) -> str:
    """A readable, stable group id: ``<arch>-<pooling>-<8 hex digits of the recipe>``; the model's own name when
    it records no training (so it forms a group of one)."""
    rec = recipe(arch, pooling, train_config)
    if rec is None:
        return str(name)
    text = json.dumps(rec, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{arch}-{pooling}-{digest}"
