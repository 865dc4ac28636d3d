"""Planning a run: resolve the suites, check the models against the data, list every cell."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from corruptions.registry import suggest

from ..data import PregeneratedSet
from ..schema import CLEAN
from ..store import validate_key_part
from .cells import CellSpec
from .models import ModelEntry, _infer_num_classes
from .suite_kinds import PlanOptions, SuiteKind, resolve_suite_kind

log = logging.getLogger(__name__)


# ====================================================================================================== planning
def _resolve_suites(suites: Sequence[Any], dataset: Any) -> dict[str, tuple[SuiteKind, Any, dict[str, Any]]]:
    resolved: dict[str, tuple[SuiteKind, Any, dict[str, Any]]] = {}
    for value in suites:
        kind = resolve_suite_kind(value)
        name, obj, params = kind.resolve(value, dataset)
        validate_key_part(name, "suite name")
        if name in resolved:
            raise ValueError(f"suite {name!r} is given twice")
        resolved[name] = (kind, obj, {"kind": kind.name, "params": params})
    return resolved


def _valid_entries(
    resolved: dict[str, tuple[SuiteKind, Any, dict[str, Any]]], opts: PlanOptions
) -> list[str]:
    """Every corruption (probe, perturbation, ...) name the run's suites plan when no subset is asked for."""
    every = dataclasses.replace(opts, corruptions=None)
    names: dict[str, None] = {}
    for name, (kind, obj, _) in resolved.items():
        names.update(dict.fromkeys(c.corruption for c in kind.plan(name, obj, every)))
    return list(names)


def _check_classes(models: Sequence[ModelEntry], dataset: Any) -> None:
    want = getattr(dataset, "num_classes", None)
    if want is None:
        return
    channels = getattr(dataset, "channels", 3)
    for entry in models:
        if entry.num_classes is None:
            entry.num_classes = _infer_num_classes(entry, channels, getattr(dataset, "image_size", None))
        if int(entry.num_classes) != int(want):
            raise ValueError(
                f"model {entry.name!r} predicts {entry.num_classes} classes but dataset "
                f"{getattr(dataset, 'name', dataset)!r} has {want}; evaluate it on a dataset with the same classes "
                "(for an external state_dict, --num-classes sets the model's class count)"
            )
        names = getattr(dataset, "class_names", None)
        if entry.class_names and names and tuple(entry.class_names) != tuple(names):
            log.warning(
                "model %s was trained with classes %s but the dataset's are %s; labels are compared by index",
                entry.name,
                list(entry.class_names)[:5],
                list(names)[:5],
            )


def plan_cells(
    models: Sequence[ModelEntry],
    suites: Sequence[Any],
    dataset: Any,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    limit: int | None = None,
    seed: int = 0,
    backend: str | None = "torch",
    clean: bool = True,
    jpeg_storage: bool = True,
) -> list[CellSpec]:
    """All cells of a run: each model's clean cell, then every suite's cells (checks class counts first).

    Raises:
        ValueError: unknown suites / corruptions / severities, or a model whose class count differs from the
            dataset's - all before any image is evaluated.
    """
    return _plan(
        models,
        suites,
        dataset,
        corruptions,
        severities,
        limit,
        seed,
        backend,
        clean,
        jpeg_storage=jpeg_storage,
    )[0]


def _plan(
    models, suites, dataset, corruptions, severities, limit, seed, backend, clean, *, jpeg_storage=True
):
    pregenerated = isinstance(dataset, PregeneratedSet)
    _check_classes(models, dataset)
    resolved = _resolve_suites(suites, dataset)
    opts = PlanOptions(
        models=models,
        dataset=dataset,
        pregenerated=pregenerated,
        corruptions=corruptions,
        severities=severities,
        limit=limit,
        seed=seed,
        backend=backend,
        jpeg_storage=bool(jpeg_storage),
    )
    cells: list[CellSpec] = []
    if clean and any(kind.needs_clean for kind, _, _ in resolved.values()):
        cells += [
            CellSpec(
                model=m.name, suite=CLEAN, corruption=CLEAN, severity=0, kind="clean", seed=seed, limit=limit
            )
            for m in models
        ]
    for name, (kind, obj, _) in resolved.items():
        cells += kind.plan(name, obj, opts)
    if corruptions:
        used = {c.corruption for c in cells}
        unknown = [c for c in corruptions if c not in used]
        if unknown:
            valid = _valid_entries(resolved, opts)
            raise ValueError(
                f"no suite of the run has the corruption(s) {unknown} (suites: {', '.join(resolved)}); "
                f"valid: {', '.join(valid)}{suggest(unknown, valid)}"
            )
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("two planned cells share a key; check for duplicate suites or corruptions")
    return cells, resolved
