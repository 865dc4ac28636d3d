"""Evaluation of classifiers on corruption suites, perturbation suites and probes: plan cells, run them, store
them, aggregate from the store.

Modules, in the order a run uses them: :mod:`.models` (checkpoints to named entries), :mod:`.cells` (the unit of
work), :mod:`.suite_kinds` (the kind registry), :mod:`.kinds` (the built-in kinds), :mod:`.planning`,
:mod:`.runner` (one classification cell; the context executors run cells in), :mod:`.executors` (local, Ray),
:mod:`.driver` (``evaluate()``).
"""

from __future__ import annotations

from ..data import Preprocess, iter_batches, select_indices
from . import kinds  # noqa: F401  (registers the built-in suite kinds)
from .cells import TOPK, CellResult, CellSpec
from .driver import RunResult, evaluate, summary_table
from .executors import Executor, LocalExecutor
from .kinds.corruption import aggregate_corruption_suite
from .kinds.probe import check_probes
from .models import ModelEntry, load_models, prepare_model
from .planning import plan_cells
from .runner import EvalContext, run_cell
from .suite_kinds import (
    SUITE_KINDS,
    AggregateInput,
    PlanOptions,
    SuiteKind,
    kind_of_cell,
    register_suite_kind,
    resolve_suite_kind,
)

__all__ = [
    "TOPK",
    "CellSpec",
    "CellResult",
    "ModelEntry",
    "Preprocess",
    "EvalContext",
    "Executor",
    "LocalExecutor",
    "SuiteKind",
    "SUITE_KINDS",
    "AggregateInput",
    "register_suite_kind",
    "resolve_suite_kind",
    "kind_of_cell",
    "PlanOptions",
    "RunResult",
    "evaluate",
    "plan_cells",
    "run_cell",
    "iter_batches",
    "select_indices",
    "load_models",
    "prepare_model",
    "aggregate_corruption_suite",
    "check_probes",
    "summary_table",
]
