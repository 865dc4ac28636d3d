"""Training settings and results: :class:`TrainConfig`, :class:`TrainResult`, defaults, argument checks."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

OPTIMIZERS = ("sgd", "adamw")
#: Datasets whose classes change meaning under a horizontal flip (digits): flipping is off by default for them.
NO_FLIP_DATASETS = ("mnist", "svhn")
#: Where validation images come from when no validation dataset is given (see :func:`~.loop.train`).
VAL_SPLITS = ("holdout", "test")
#: Suffixes ``train(out=...)`` accepts: checkpoints are written as safetensors (nothing else is produced).
CHECKPOINT_SUFFIXES = (".safetensors",)
#: Largest default held-out split (:func:`default_holdout`).
MAX_DEFAULT_HOLDOUT = 5_000
_DEFAULT_LR = {"sgd": 0.05, "adamw": 2e-3}
_DEFAULT_WD = {"sgd": 5e-4, "adamw": 0.05}
# Settings that change the result; a resume refuses a state saved with different ones.
_RESULT_KEYS = (
    "arch",
    "pool",
    "dataset",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "crop_padding",
    "flip",
    "seed",
    "deterministic",
    "limit_train",
    "limit_val",
    "holdout",
    "val_source",
    "val_dataset",
    "model_kwargs",
    "pool_kwargs",
)


@dataclass
class TrainConfig:
    """Resolved training settings (what the checkpoint's ``train_config`` records)."""

    arch: str
    pool: str
    dataset: str
    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.0
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    deterministic: bool = True
    limit_train: int | None = None
    limit_val: int | None = None
    holdout: int = 0
    val_source: str = "holdout"
    val_dataset: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pool_kwargs: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in _RESULT_KEYS}


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        model: the trained model (last epoch, eval mode).
        last_path, best_path: checkpoints written (toolkit format).
        history: one dict per finished epoch (all epochs, including resumed ones).
        best_val_acc, best_epoch, final_val_acc: validation accuracy (fractions), epochs counted from 1.
        epochs_trained: epochs run by this call; ``start_epoch``: epochs already done when it started.
        seconds: wall time of this call's training epochs.
        config: the resolved :class:`TrainConfig`.
    """

    model: nn.Module
    last_path: Path
    best_path: Path
    history: list[dict[str, Any]]
    best_val_acc: float
    best_epoch: int
    final_val_acc: float
    epochs_trained: int
    start_epoch: int
    seconds: float
    config: TrainConfig


def default_flip(dataset_name: str) -> bool:
    """Whether random horizontal flips suit a dataset: off for digits (:data:`NO_FLIP_DATASETS`), on otherwise."""
    name = str(dataset_name).lower().partition(":")[0]
    return name not in NO_FLIP_DATASETS


def default_holdout(n_train: int) -> int:
    """Default size of the held-out validation split: a tenth of the training set, at least 1, at most
    :data:`MAX_DEFAULT_HOLDOUT`."""
    return max(1, min(MAX_DEFAULT_HOLDOUT, int(n_train) // 10))


def seed_out_path(out: str | os.PathLike, seed: int) -> Path:
    """``dir/name.safetensors`` -> ``dir/name-seed<seed>.safetensors``: one checkpoint per training seed."""
    out = Path(out)
    return out.with_name(f"{out.stem}-seed{int(seed)}{out.suffix}")


def best_path_for(out: str | os.PathLike) -> Path:
    """``dir/name.safetensors`` -> ``dir/name.best.safetensors``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix}")


def resume_path_for(out: str | os.PathLike) -> Path:
    """``dir/name.safetensors`` -> ``dir/name.safetensors.resume.pt``."""
    out = Path(out)
    return out.with_name(f"{out.name}.resume.pt")


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_dataset(ds: Any, what: str) -> None:
    for attr in ("num_classes", "class_names", "channels", "image_size"):
        if not hasattr(ds, attr):
            raise TypeError(
                f"{what} must be a dataset with num_classes, class_names, channels, image_size; no {attr!r}"
            )
    if not hasattr(ds, "__len__") or not hasattr(ds, "__getitem__"):
        raise TypeError(f"{what} must be a map-style dataset (len and indexing), got {type(ds).__name__}")
    if ds.image_size is None:
        raise ValueError(
            f"{what} {getattr(ds, 'name', '')!r} has images of varying size; open it with an image size "
            "(e.g. --image-size 224 for imagefolder)"
        )
    if len(ds) == 0:
        raise ValueError(f"{what} {getattr(ds, 'name', '')!r} is empty")
