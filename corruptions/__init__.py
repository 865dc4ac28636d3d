"""Corruption and perturbation engine (ImageNet-C / CIFAR-10-C, ImageNet-P / CIFAR-10-P).

Batched torch implementations seeded per image, suites as data, and a reference backend that runs the published
``imagecorruptions`` package. Independent of ``robustbench_lift``: this package never imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "corrupt": "corruptions.api",
    "list_corruptions": "corruptions.api",
    "list_suites": "corruptions.suites",
    "get_suite": "corruptions.suites",
    "load_suite": "corruptions.suites",
    "Suite": "corruptions.suites",
    "perturb": "corruptions.perturbations",
    "list_perturbations": "corruptions.perturbations",
    "Registry": "corruptions.registry",
    "derive_seed": "corruptions.rng",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'corruptions' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
