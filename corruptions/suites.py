"""Corruption suites as data: which corruptions, which parameter per severity, written for which image size.

Three suites are built in, two with the severity tables of Hendrycks & Dietterich (ICLR 2019). They are built from
the corruption registry: each corruption's entry (``corruptions.base.CorruptionRegistry``, next to its function)
carries its rows of the tables, its benchmark / held-out group and its place in the canonical order.

* ``imagenet-c``: the ImageNet-C table, written for 224 px images;
* ``cifar10-c``: the CIFAR-10-C table, written for 32 px images;
* ``imagecorruptions``: the parameters of the imagecorruptions 1.1.2 package, for parity and for users who want that
  package's behaviour: the ImageNet-C table except ``elastic_transform``, which follows the package's own variant
  (``elastic_variant="imagecorruptions"``, see below).

Users define their own suite from a dict or a JSON file (``load_suite``), optionally starting from a built-in one
(``"base": "imagenet-c"``) and overriding some parameters or selecting corruptions.

Parameters are stored in the units the reference code uses. How they behave at another image size:

* size-free parameters (noise levels, zoom factors, pixelate and contrast factors, JPEG quality, HSV shifts,
  fog / frost / snow / spatter mixing weights) mean the same thing at every size;
* pixel-unit parameters (blur sigmas and radii, glass-blur offsets, motion-blur radius, snow's blur radius and
  spatter's blur sigmas) are applied in pixels as written, at every size - this is what
  ``imagecorruptions`` does when it applies the ImageNet-C table to images of any size;
* ``elastic_transform``'s three numbers are multiples of the image size (Hendrycks wrote them as ``244 * (...)``
  for ImageNet and ``32 * (...)`` for CIFAR); they are stored as the pixel values at the native size and scaled by
  ``min(H, W) / native_size``. That is the ``"hendrycks"`` elastic variant (the default); with
  ``elastic_variant="imagecorruptions"`` the three numbers are the package's ``(alpha, sigma, max_shift)``: alpha
  is a plain multiplier, sigma and the uniform field's bound are fractions of the image side (``0.01`` and ``0.005``
  in the package), so they need no native size.

Far from the native size the table no longer describes the corruption it was tuned for, so ``check_size`` warns
(``SuiteSizeWarning``) when ``min(H, W)`` is more than ``SIZE_WARN_RATIO`` times larger or smaller than the native
size.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import blur as _blur
from . import digital as _digital
from . import noise as _noise
from . import weather as _weather
from .base import CORRUPTIONS, normalise_params
from .registry import unknown_name

__all__ = [
    "BENCHMARK",
    "HELD_OUT",
    "ALL_CORRUPTIONS",
    "SIZE_WARN_RATIO",
    "ELASTIC_VARIANTS",
    "Suite",
    "SuiteSizeWarning",
    "SUITES",
    "list_suites",
    "get_suite",
    "load_suite",
    "resolve_suite",
]

# The package's own corruptions: the modules below register them, each entry with its severity tables
# (corruptions.base.CorruptionRegistry). Only these make up the built-in suites; a corruption registered anywhere
# else is available to user suites but never changes a built-in one.
_BUILTIN_MODULES: tuple[str, ...] = tuple(m.__name__ for m in (_noise, _blur, _weather, _digital))


def _builtin_group(benchmark: bool) -> tuple[str, ...]:
    names = [
        n for n in CORRUPTIONS.names(benchmark=benchmark) if CORRUPTIONS.get(n).__module__ in _BUILTIN_MODULES
    ]
    unordered = [n for n in names if CORRUPTIONS.meta(n)["order"] is None]
    if unordered:
        raise RuntimeError(
            f"built-in corruptions without an order in their registry entry: {', '.join(unordered)}"
        )
    ordered = sorted(names, key=lambda n: CORRUPTIONS.meta(n)["order"])
    orders = [CORRUPTIONS.meta(n)["order"] for n in ordered]
    if orders != list(range(1, len(ordered) + 1)):
        raise RuntimeError(
            f"built-in corruptions' orders must be 1..{len(ordered)}, got {orders} for {ordered}"
        )
    return tuple(ordered)


#: The benchmark corruptions in the canonical order (mCE averages these only): the 15 of ImageNet-C.
BENCHMARK: tuple[str, ...] = _builtin_group(True)
#: The held-out corruptions (reported separately, never part of mCE): the 4 of ImageNet-C.
HELD_OUT: tuple[str, ...] = _builtin_group(False)
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK + HELD_OUT

#: The two elastic transforms: Hendrycks' ImageNet-C / CIFAR-10-C one (affine step + displacement field, the
#: published tables) and imagecorruptions 1.1.2's own (displacement field only, sizes as fractions of the image).
ELASTIC_VARIANTS: tuple[str, ...] = ("hendrycks", "imagecorruptions")

#: ``check_size`` warns when min(H, W) / native_size is above this ratio or below its inverse.
SIZE_WARN_RATIO = 2.0


class SuiteSizeWarning(UserWarning):
    """The images are far from the size a suite's parameters were written for."""


@dataclass(frozen=True)
class Suite:
    """A corruption suite: parameters per corruption and severity, and the image size they were written for.

    Args:
        name: the suite's name (``"imagenet-c"``, ``"cifar10-c"`` or a user's).
        native_size: the image side (px) the parameters were written for.
        params: corruption name -> five parameters, one per severity 1..5 (a number or a tuple each).
        benchmark: the corruptions averaged in mCE, in report order.
        held_out: corruptions reported separately.
        description: one line for listings.
        elastic_variant: which elastic transform ``elastic_transform``'s parameters describe (``ELASTIC_VARIANTS``):
            ``"hendrycks"`` (alpha, sigma, affine) in pixels at ``native_size``, or ``"imagecorruptions"`` (alpha,
            sigma, max_shift) with sigma and max_shift as fractions of the image side.
    """

    name: str
    native_size: int
    params: Mapping[str, tuple[Any, ...]]
    benchmark: tuple[str, ...] = BENCHMARK
    held_out: tuple[str, ...] = HELD_OUT
    description: str = ""
    elastic_variant: str = "hendrycks"

    @property
    def corruptions(self) -> tuple[str, ...]:
        """Benchmark then held-out corruptions."""
        return tuple(self.benchmark) + tuple(self.held_out)

    def param(self, corruption: str, severity: int) -> Any:
        """The parameter of ``corruption`` at ``severity`` (1..5)."""
        if corruption not in self.params:
            raise ValueError(
                f"corruption {corruption!r} is not in suite {self.name!r}; valid: {', '.join(self.corruptions)}"
            )
        _check_severity(severity)
        return self.params[corruption][int(severity) - 1]

    def check_size(self, height: int, width: int, *, stacklevel: int = 3) -> None:
        """Warn (``SuiteSizeWarning``) when ``min(height, width)`` is far from the native size."""
        ratio = min(height, width) / float(self.native_size)
        if ratio > SIZE_WARN_RATIO or ratio < 1.0 / SIZE_WARN_RATIO:
            warnings.warn(
                f"suite {self.name!r} was written for {self.native_size} px images, got {height}x{width}; "
                "pixel-unit parameters (blur radii, glass offsets, ...) are applied as written, so the corruption "
                "is not the one the table was tuned for",
                SuiteSizeWarning,
                stacklevel=stacklevel,
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (``load_suite`` accepts it back)."""
        return {
            "name": self.name,
            "native_size": self.native_size,
            "description": self.description,
            "elastic_variant": self.elastic_variant,
            "benchmark": list(self.benchmark),
            "held_out": list(self.held_out),
            "params": {
                k: [list(p) if isinstance(p, tuple) else p for p in v] for k, v in self.params.items()
            },
        }


def _check_severity(severity: object) -> None:
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not 1 <= int(severity) <= 5
    ):
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")


def _normalise_params(name: str, corruption: str, values: object) -> tuple[Any, ...]:
    """Validate one corruption's five parameters against its registry entry and return them as a tuple."""
    if corruption not in CORRUPTIONS:
        valid = list(ALL_CORRUPTIONS) + sorted(n for n in CORRUPTIONS if n not in ALL_CORRUPTIONS)
        raise ValueError(f"suite {name!r}: " + unknown_name("corruption", corruption, valid))
    return normalise_params(values, CORRUPTIONS.meta(corruption)["arity"], f"suite {name!r}: {corruption}")


def _make_suite(
    name: str,
    native_size: object,
    params: Mapping[str, object],
    benchmark: Sequence[str],
    held_out: Sequence[str],
    description: str,
    elastic_variant: object = "hendrycks",
) -> Suite:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a suite needs a non-empty string name, got {name!r}")
    if (
        isinstance(native_size, bool)
        or not isinstance(native_size, (int, np.integer))
        or int(native_size) < 1
    ):
        raise ValueError(f"suite {name!r}: native_size must be a positive integer, got {native_size!r}")
    if not isinstance(elastic_variant, str) or elastic_variant not in ELASTIC_VARIANTS:
        raise ValueError(
            f"suite {name!r}: unknown elastic_variant {elastic_variant!r}; valid: {', '.join(ELASTIC_VARIANTS)}"
        )
    norm = {c: _normalise_params(name, c, v) for c, v in params.items()}
    for label, names in (("benchmark", benchmark), ("held_out", held_out)):
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
            raise ValueError(f"suite {name!r}: {label} must be a list of corruption names, got {names!r}")
        missing = [c for c in names if c not in norm]
        if missing:
            raise ValueError(
                f"suite {name!r}: {label} lists corruptions without parameters: {', '.join(map(str, missing))}"
            )
    overlap = set(benchmark) & set(held_out)
    if overlap:
        raise ValueError(
            f"suite {name!r}: corruptions both in benchmark and held_out: {', '.join(sorted(overlap))}"
        )
    if len(set(benchmark)) != len(benchmark) or len(set(held_out)) != len(held_out):
        raise ValueError(f"suite {name!r}: a corruption is listed twice")
    if not benchmark and not held_out:
        raise ValueError(f"suite {name!r} selects no corruption")
    selected = tuple(benchmark) + tuple(held_out)
    return Suite(
        name=name,
        native_size=int(native_size),
        params={c: norm[c] for c in selected},
        benchmark=tuple(benchmark),
        held_out=tuple(held_out),
        description=str(description),
        elastic_variant=elastic_variant,
    )


def _builtin_suite(
    name: str, native_size: int, description: str, elastic_variant: str = "hendrycks"
) -> Suite:
    """A built-in suite: every built-in corruption with its registry table for ``name`` (a value of ``TABLES``)."""
    params = {c: CORRUPTIONS.table(c, name) for c in ALL_CORRUPTIONS}
    return _make_suite(name, native_size, params, BENCHMARK, HELD_OUT, description, elastic_variant)


SUITES: dict[str, Suite] = {
    "imagenet-c": _builtin_suite(
        "imagenet-c",
        224,
        "ImageNet-C (Hendrycks & Dietterich 2019): the ImageNet-C severity table, for 224 px images",
    ),
    "cifar10-c": _builtin_suite(
        "cifar10-c",
        32,
        "CIFAR-10-C (Hendrycks & Dietterich 2019): the CIFAR-10-C severity table, for 32 px images",
    ),
    "imagecorruptions": _builtin_suite(
        "imagecorruptions",
        224,
        "the parameters of the imagecorruptions 1.1.2 package, for parity and for users who want that package's "
        "behaviour: the ImageNet-C table, elastic_transform in the package's own variant",
        "imagecorruptions",
    ),
}


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    return list(SUITES)


def get_suite(name: str) -> Suite:
    """A built-in suite by name; an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        return SUITES[name]
    except (KeyError, TypeError):
        raise ValueError(unknown_name("suite", name, SUITES)) from None


_KEYS = {
    "name",
    "base",
    "native_size",
    "params",
    "corruptions",
    "benchmark",
    "held_out",
    "description",
    "elastic_variant",
}


def load_suite(spec: str | os.PathLike[str] | Mapping[str, Any]) -> Suite:
    """Build a user suite from a dict or a JSON file.

    Keys (all optional except where said):

    * ``name`` (required): the suite's name;
    * ``base``: a built-in suite to start from (its parameters, size and lists are inherited);
    * ``native_size``: required without ``base``;
    * ``params``: corruption -> list of 5 parameters; overrides / adds to the base's;
    * ``corruptions``: keep only these (benchmark / held-out membership as in the base; a corruption the base
      lacks follows its registry entry's ``benchmark`` flag, an unregistered name goes to benchmark); or give
      ``benchmark`` and ``held_out`` explicitly. With a ``base``, a registered corruption the base lacks and
      ``params`` does not give takes its registry table for that base (how a corruption registered outside the
      package joins a suite).
    * ``description``;
    * ``elastic_variant``: ``"hendrycks"`` or ``"imagecorruptions"`` (``ELASTIC_VARIANTS``); default: the base's,
      else ``"hendrycks"``.

    Raises:
        ValueError: unknown keys or corruptions, malformed parameters, lists naming corruptions without
            parameters.
    """
    if isinstance(spec, Mapping):
        data = dict(spec)
        origin = "suite dict"
    elif isinstance(spec, (str, os.PathLike)):
        origin = os.fspath(spec)
        try:
            with open(origin, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise ValueError(f"cannot read suite file {origin}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"suite file {origin} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"suite file {origin} must hold a JSON object, got {type(data).__name__}")
    else:
        raise TypeError(f"load_suite expects a dict or a path to a JSON file, got {type(spec).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"{origin}: unknown keys {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS))}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{origin}: a suite needs a non-empty string 'name'")
    base: Suite | None = get_suite(data["base"]) if "base" in data else None
    params: dict[str, object] = dict(base.params) if base else {}
    user_params = data.get("params", {})
    if not isinstance(user_params, Mapping):
        raise ValueError(f"{origin}: 'params' must map corruption names to lists of 5 parameters")
    params.update(user_params)
    native_size = data.get("native_size", base.native_size if base else None)
    if native_size is None:
        raise ValueError(f"{origin}: 'native_size' is required when no 'base' suite is given")
    if "corruptions" in data:
        if "benchmark" in data or "held_out" in data:
            raise ValueError(f"{origin}: give either 'corruptions' or 'benchmark'/'held_out', not both")
        chosen = data["corruptions"]
        if isinstance(chosen, (str, bytes)) or not isinstance(chosen, Sequence):
            raise ValueError(f"{origin}: 'corruptions' must be a list of names")
        ref_bench, ref_held = (base.benchmark, base.held_out) if base else (BENCHMARK, HELD_OUT)
        held = [c in ref_held or (c not in ref_bench and _registered_held_out(c)) for c in chosen]
        benchmark = [c for c, h in zip(chosen, held) if not h]
        held_out = [c for c, h in zip(chosen, held) if h]
    else:
        default_bench = base.benchmark if base else [c for c in BENCHMARK if c in params]
        default_held = base.held_out if base else [c for c in HELD_OUT if c in params]
        benchmark = data.get("benchmark", default_bench)
        held_out = data.get("held_out", default_held)
        if base is None and "benchmark" not in data and "held_out" not in data:
            extra = [c for c in params if c not in BENCHMARK and c not in HELD_OUT]
            benchmark = list(benchmark) + [c for c in extra if not _registered_held_out(c)]
            held_out = list(held_out) + [c for c in extra if _registered_held_out(c)]
    if base is not None:
        for c in _names(benchmark) + _names(held_out):
            if isinstance(c, str) and c not in params and c in CORRUPTIONS:
                params[c] = CORRUPTIONS.table(c, base.name)
    description = data.get("description", f"user suite based on {base.name}" if base else "user suite")
    variant = data.get("elastic_variant", base.elastic_variant if base else "hendrycks")
    return _make_suite(name, native_size, params, benchmark, held_out, description, variant)


def _registered_held_out(corruption: object) -> bool:
    """True for a registered corruption whose entry says it is held out (not averaged in mCE)."""
    return (
        isinstance(corruption, str)
        and corruption in CORRUPTIONS
        and not CORRUPTIONS.meta(corruption)["benchmark"]
    )


def _names(names: object) -> list[Any]:
    # a malformed list is reported by _make_suite; here it only contributes no names
    return list(names) if isinstance(names, Sequence) and not isinstance(names, (str, bytes)) else []


def resolve_suite(suite: str | Suite | Mapping[str, Any]) -> Suite:
    """A ``Suite`` from a built-in name, a ``Suite``, or a user dict (``load_suite``)."""
    if isinstance(suite, Suite):
        return suite
    if isinstance(suite, Mapping):
        return load_suite(suite)
    if isinstance(suite, str):
        return get_suite(suite)
    raise ValueError(
        f"suite must be a name ({', '.join(SUITES)}), a Suite or a dict, got {type(suite).__name__}"
    )
