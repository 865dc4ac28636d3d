"""Suite kinds: how a family of suites (corruption, perturbation, probe, ...) is planned, run and aggregated.

The built-in kinds (:mod:`robustbench_lift.evaluation.kinds`: corruption, perturbation, probe) register when the
evaluation package is imported, by explicit imports; a third-party kind calls :func:`register_suite_kind` at
import time of its own module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from corruptions.registry import Registry, suggest

from .cells import CellResult, CellSpec
from .models import ModelEntry

if TYPE_CHECKING:
    from .runner import EvalContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanOptions:
    """What the planner of a suite kind gets besides the suite name and the models."""

    models: Sequence[ModelEntry]
    dataset: Any
    pregenerated: bool
    corruptions: Sequence[str] | None
    severities: Sequence[int] | None
    limit: int | None
    seed: int
    backend: str | None
    #: on-the-fly ``imagenet-c`` cells store every corrupted image as a quality-85 JPEG and decode it, as the
    #: published files were made (False skips it, and then no row is AlexNet-normalised)
    jpeg_storage: bool = True


@dataclass(frozen=True)
class SuiteKind:
    """A family of suites the evaluator can run.

    Args:
        name: the kind (``"corruption"``, ``"perturbation"``, ``"probe"``, ...).
        accepts: whether a ``--suite`` value belongs to this kind.
        resolve: turns the value into ``(name, suite object, JSON-able parameters for the manifest)``.
        plan: ``(suite name, suite object, PlanOptions) -> list[CellSpec]`` (clean cells are planned separately).
        run: ``(spec, EvalContext, progress) -> CellResult``.
        aggregate: ``(suite name, suite object, AggregateInput) -> list of result rows``.
        cell_kinds: the ``CellSpec.kind`` values whose cells ``run`` executes.
        needs_clean: whether the clean cell of each model is planned for this kind.
        share: optional ``(spec, EvalContext) -> hashable``: cells with equal keys differ only in the model and can
            run on the same input batches.
        run_group: optional ``(specs, EvalContext, progress) -> results`` running such a group in one pass (the
            local executor uses it: one corruption pass feeds every model with the same input pipeline).
        names: optional ``() -> names`` of the suites this kind accepts by name, listed (and the closest one
            suggested) when a suite name is unknown.
    """

    name: str
    accepts: Callable[[Any], bool]
    resolve: Callable[[Any, Any], tuple[str, Any, dict[str, Any]]]
    plan: Callable[[str, Any, PlanOptions], list[CellSpec]]
    run: Callable[[CellSpec, EvalContext, Callable[[int], None] | None], CellResult]
    aggregate: Callable[[str, Any, AggregateInput], list[dict[str, Any]]]
    cell_kinds: tuple[str, ...] = ()
    needs_clean: bool = True
    share: Callable[[CellSpec, EvalContext], Any] | None = None
    run_group: (
        Callable[[list[CellSpec], EvalContext, Callable[[int], None] | None], list[CellResult]] | None
    ) = None
    names: Callable[[], Sequence[str]] | None = None


SUITE_KINDS: Registry[SuiteKind] = Registry("suite kind")
_KIND_OF_CELL: dict[str, str] = {}


def register_suite_kind(kind: SuiteKind) -> SuiteKind:
    """Add a suite kind (the hook for perturbation suites, probes, ...); duplicates raise."""
    SUITE_KINDS.add(kind.name, kind)
    for ck in kind.cell_kinds:
        if ck in _KIND_OF_CELL:
            raise ValueError(f"cell kind {ck!r} is already run by suite kind {_KIND_OF_CELL[ck]!r}")
        _KIND_OF_CELL[ck] = kind.name
    return kind


def kind_of_cell(cell_kind: str) -> SuiteKind:
    """The suite kind that runs cells of ``CellSpec.kind == cell_kind``."""
    name = _KIND_OF_CELL.get(cell_kind)
    if name is None:
        raise ValueError(f"no suite kind runs cells of kind {cell_kind!r}; known: {', '.join(_KIND_OF_CELL)}")
    return SUITE_KINDS.get(name)


def resolve_suite_kind(suite: Any) -> SuiteKind:
    """The registered kind that accepts ``suite``; ``ValueError`` listing the known suites otherwise."""
    for name in SUITE_KINDS:
        kind = SUITE_KINDS.get(name)
        if kind.accepts(suite):
            return kind

    by_kind = {name: list(kind.names()) for name in SUITE_KINDS if (kind := SUITE_KINDS.get(name)).names}
    listed = "; ".join(f"{name} suites: {', '.join(names)}" for name, names in by_kind.items())
    every = [n for names in by_kind.values() for n in names]
    raise ValueError(
        f"unknown suite {suite!r}; {listed} (or a corruption suite .json file){suggest([suite], every)}"
    )


@dataclass
class AggregateInput:
    """What an aggregator gets from the driver.

    Args:
        cells: stored cells, ``{model: {cell key: (spec dict, arrays, info)}}``.
        models: JSON descriptions of the run's models (``pooling``, ``arch``, ...), by name.
        model_order: the models in report order.
        baseline: the model the others are normalised by and compared with (None: no baseline).
        seed: seeds the bootstrap resamples.
        n_boot: number of bootstrap resamples (0: no CIs).
        vectors: where an aggregator leaves its per-model bootstrap vectors of aggregate metrics,
            ``{(model, suite, corruption, severity, metric): ((1 + B,) vector, protocol, n)}``, for the seed-aware
            statistics (:mod:`robustbench_lift.metrics.seeds`); None: not collected.
    """

    cells: dict[str, dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]]
    models: dict[str, dict[str, Any]]
    model_order: list[str]
    baseline: str | None
    seed: int
    n_boot: int
    vectors: dict[tuple[str, str, str, int, str], tuple[np.ndarray, str, int]] | None = None
