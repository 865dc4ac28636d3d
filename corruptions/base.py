"""The contract between the corruption registry and each corruption function.

A corruption is one function and one registry entry that carries everything else about it: its category, whether
mCE averages it, its place in the canonical order, the shape of its parameter and its severity tables::

    @CORRUPTIONS.register(
        "gaussian_noise",
        category="noise",
        benchmark=True,
        order=1,
        imagenet_c=(0.08, 0.12, 0.18, 0.26, 0.38),
        cifar10_c=(0.04, 0.06, 0.08, 0.09, 0.10),
        reference="gaussian_noise",
    )
    def gaussian_noise(x: Tensor, param, ctx: Context) -> Tensor: ...

``x`` is float32 in [0, 1], shape (N, C, H, W), C in {1, 3}, on any device; ``param`` is the severity's entry of the
suite table (a number or a tuple); ``ctx`` carries the per-image random generators and the size information. The
function returns a tensor of the same shape and device (the API clamps to [0, 1] and restores the caller's dtype).
Every random draw goes through ``ctx`` so that image i's output depends only on its own seed.

The entry's keywords are described in ``CorruptionRegistry`` and, with a worked example, in docs/corruptions.md
("Adding a corruption"); the built-in suites (``corruptions.suites``) are built from these entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .registry import Registry
from .rng import derive_seed

__all__ = [
    "CATEGORIES",
    "TABLES",
    "CORRUPTIONS",
    "PERTURBATIONS",
    "Context",
    "CorruptionRegistry",
    "normalise_params",
]

#: The four corruption families of ImageNet-C; every corruption belongs to one.
CATEGORIES: tuple[str, ...] = ("noise", "blur", "weather", "digital")

#: The severity tables a corruption entry carries: ``register`` keyword -> the built-in suite it feeds.
#: ``imagecorruptions`` is optional: without it that suite uses the ``imagenet_c`` table.
TABLES: dict[str, str] = {
    "imagenet_c": "imagenet-c",
    "cifar10_c": "cifar10-c",
    "imagecorruptions": "imagecorruptions",
}


def normalise_params(values: object, arity: int | None, label: str) -> tuple[Any, ...]:
    """Validate one corruption's five parameters (severities 1..5) and return them as a tuple.

    Args:
        values: a sequence of five entries, each a number (``arity`` None) or a sequence of numbers.
        arity: None for a plain number, ``k > 0`` for exactly k numbers, -1 for any non-empty sequence.
        label: how errors name the table, e.g. ``"suite 'mine': gaussian_noise"``.

    Returns:
        Five numbers or five tuples of numbers (Python ints stay ints, every other number becomes a float).

    Raises:
        ValueError: not five entries, wrong entry shape, non-finite or non-numeric values.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 5:
        raise ValueError(f"{label} needs a list of 5 parameters (severities 1..5), got {values!r}")
    out: list[Any] = []
    for severity, value in enumerate(values, start=1):
        where = f"{label} severity {severity}"
        if arity is None:
            out.append(_number(value, where))
            continue
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{where}: expected a list of numbers, got {value!r}")
        if arity > 0 and len(value) != arity:
            raise ValueError(f"{where}: expected {arity} numbers, got {len(value)} ({value!r})")
        if arity < 0 and len(value) == 0:
            raise ValueError(f"{where}: expected at least one number")
        out.append(tuple(_number(v, where) for v in value))
    return tuple(out)


def _number(value: object, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


class CorruptionRegistry(Registry):
    """The corruption registry: every entry carries the corruption's metadata and its severity tables.

    ``register(name, **entry)`` / ``add(name, fn, **entry)`` take these keywords:

    * ``category`` (required): one of ``CATEGORIES``;
    * ``benchmark`` (required): True when mCE averages it, False for a held-out corruption;
    * ``imagenet_c``, ``cifar10_c`` (required): five parameters each, one per severity 1..5, for 224 px and
      32 px images (the units are the corruption's own; docs/corruptions.md);
    * ``imagecorruptions``: the imagecorruptions 1.1.2 package's five parameters where they differ from
      ``imagenet_c``;
    * ``arity``: the shape of one parameter, None (default) for a plain number, k for a tuple of k numbers, -1 for
      a tuple of any non-empty length;
    * ``order``: the corruption's position among the benchmark (or held-out) corruptions of the built-in suites,
      counted from 1; required for the package's own corruptions, ignored for others;
    * ``reference``: the name of the imagecorruptions 1.1.2 function the corruption is checked against.

    The tables are validated against ``arity`` when the entry is added, so a malformed entry fails at import.
    """

    _REQUIRED: tuple[str, ...] = ("category", "benchmark", "imagenet_c", "cifar10_c")
    _OPTIONAL: dict[str, Any] = {"arity": None, "imagecorruptions": None, "order": None, "reference": None}

    def __init__(self) -> None:
        super().__init__("corruption")

    def add(self, name: str, obj: Any, **meta: Any) -> None:
        super().add(name, obj, **self._entry(name, meta))

    def _entry(self, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        where = f"corruption {name!r}"
        valid = (*self._REQUIRED, *self._OPTIONAL)
        unknown = sorted(set(meta) - set(valid))
        if unknown:
            raise ValueError(f"{where}: unknown entry keys {', '.join(unknown)}; valid: {', '.join(valid)}")
        missing = [k for k in self._REQUIRED if k not in meta]
        if missing:
            raise ValueError(f"{where}: the entry needs {', '.join(missing)}")
        entry = {**self._OPTIONAL, **meta}
        if entry["category"] not in CATEGORIES:
            raise ValueError(
                f"{where}: unknown category {entry['category']!r}; valid: {', '.join(CATEGORIES)}"
            )
        if not isinstance(entry["benchmark"], bool):
            raise ValueError(f"{where}: benchmark must be True or False, got {entry['benchmark']!r}")
        arity = entry["arity"]
        if arity is not None and (
            isinstance(arity, bool) or not isinstance(arity, int) or arity == 0 or arity < -1
        ):
            raise ValueError(f"{where}: arity must be None, a positive integer or -1, got {arity!r}")
        order = entry["order"]
        if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 1):
            raise ValueError(f"{where}: order must be a positive integer, got {order!r}")
        if entry["reference"] is not None and not isinstance(entry["reference"], str):
            raise ValueError(f"{where}: reference must be a function name, got {entry['reference']!r}")
        for key in TABLES:
            if key in self._REQUIRED or entry[key] is not None:
                entry[key] = normalise_params(entry[key], arity, f"{where} table {key}")
        return entry

    def table(self, name: str, suite: str) -> tuple[Any, ...]:
        """Corruption ``name``'s five parameters for the built-in suite ``suite`` (a value of ``TABLES``)."""
        keys = {v: k for k, v in TABLES.items()}
        if suite not in keys:
            raise ValueError(f"no severity table for suite {suite!r}; valid: {', '.join(keys)}")
        meta = self.meta(name)
        values = meta[keys[suite]]
        return meta["imagenet_c"] if values is None else values


CORRUPTIONS: CorruptionRegistry = CorruptionRegistry()
PERTURBATIONS: Registry = Registry("perturbation")


@dataclass
class Context:
    """Per-call state handed to a corruption function.

    Args:
        seeds: one derived seed per image (already a function of seed, sample id, corruption and severity).
        native_size: the image side the suite's parameters were written for (224 for imagenet-c, 32 for cifar10-c).
        suite: the suite's name.
        device: where ``x`` lives; random tensors are drawn on the CPU and moved here.
        elastic_variant: the suite's elastic transform (``"hendrycks"`` or ``"imagecorruptions"``, see
            ``corruptions.suites.ELASTIC_VARIANTS``).
    """

    seeds: list[int]
    native_size: int
    suite: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    elastic_variant: str = "hendrycks"
    _torch_gens: list[torch.Generator] | None = field(default=None, repr=False)
    _numpy_gens: list[np.random.Generator] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def generators(self) -> list[torch.Generator]:
        """One CPU ``torch.Generator`` per image; successive draws continue each image's stream."""
        if self._torch_gens is None:
            gens = []
            for s in self.seeds:
                g = torch.Generator(device="cpu")
                g.manual_seed(s)
                gens.append(g)
            self._torch_gens = gens
        return self._torch_gens

    def numpy(self, i: int) -> np.random.Generator:
        """Image ``i``'s numpy generator (a stream separate from its torch one)."""
        if self._numpy_gens is None:
            self._numpy_gens = [
                np.random.Generator(np.random.PCG64(derive_seed(s, "numpy"))) for s in self.seeds
            ]
        return self._numpy_gens[i]

    def _stack(self, draw) -> torch.Tensor:
        return torch.stack([draw(g) for g in self.generators]).to(self.device)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) of shape (N, *shape), image i drawn from its own generator."""
        return self._stack(lambda g: torch.rand(shape, generator=g, dtype=dtype))

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal of shape (N, *shape), image i drawn from its own generator."""
        return self._stack(lambda g: torch.randn(shape, generator=g, dtype=dtype))

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers in [low, high) of shape (N, *shape), image i drawn from its own generator."""
        return self._stack(lambda g: torch.randint(low, high, shape, generator=g))

    def scale(self, height: int, width: int) -> float:
        """How far the image is from the suite's native size: min(H, W) / native_size."""
        return min(height, width) / float(self.native_size)
