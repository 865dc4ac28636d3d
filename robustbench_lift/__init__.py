"""robustbench-lift: does the pooling layer make a classifier more robust?

Pooling layers (LiftDownPool/LiftUpPool, BlurPool, max, avg), models that differ only in pooling, and a
pooling-agnostic evaluator for corruptions, perturbations and shifts, with reports and a CI regression gate.
Names are imported lazily so that ``import robustbench_lift`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # pooling layers
    "create_pool": "robustbench_lift.layers.pools",
    "list_pools": "robustbench_lift.layers.pools",
    "register_pool": "robustbench_lift.layers.pools",
    "LiftDownPool2d": "robustbench_lift.layers.lift",
    "LiftUpPool2d": "robustbench_lift.layers.lift",
    "lift_down_pool2d": "robustbench_lift.layers.lift",
    "lift_up_pool2d": "robustbench_lift.layers.lift",
    "lifting_loss": "robustbench_lift.layers.lift",
    "BlurPool2d": "robustbench_lift.layers.blur",
    "MaxBlurPool2d": "robustbench_lift.layers.blur",
    "blur_pool2d": "robustbench_lift.layers.blur",
    # models
    "build_model": "robustbench_lift.models",
    "list_models": "robustbench_lift.models",
    "register_model": "robustbench_lift.models",
    "swap_pooling": "robustbench_lift.models.swap",
    # checkpoints
    "save_checkpoint": "robustbench_lift.checkpoint",
    "load_checkpoint": "robustbench_lift.checkpoint",
    "CheckpointError": "robustbench_lift.checkpoint",
    # data, evaluation
    "open_dataset": "robustbench_lift.data",
    "list_datasets": "robustbench_lift.data",
    "evaluate": "robustbench_lift.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robustbench_lift' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
