"""Executors run cells and hand ``(spec, result)`` pairs back to the driver, the only writer of the run store.

:class:`LocalExecutor` runs them in this process; :class:`~robustbench_lift.evaluation.executors.ray.RayExecutor`
on a Ray cluster (optional extra).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol as _TypingProtocol
from typing import runtime_checkable

from ..cells import CellResult, CellSpec
from ..runner import EvalContext

__all__ = ["Executor", "LocalExecutor"]


@runtime_checkable
class Executor(_TypingProtocol):
    """Runs cells and yields ``(spec, result)`` as each finishes (any order). The driver stores the results."""

    def map(
        self, cells: Sequence[CellSpec], context: EvalContext
    ) -> Iterator[tuple[CellSpec, CellResult]]: ...


class LocalExecutor:
    """Runs cells one after the other in this process.

    Args:
        progress: called with a number of images as batches finish (the driver's progress bar).
    """

    def __init__(self, progress: Callable[[int], None] | None = None) -> None:
        self.progress = progress

    def map(self, cells: Sequence[CellSpec], context: EvalContext) -> Iterator[tuple[CellSpec, CellResult]]:
        for spec in cells:
            yield spec, context.run(spec, self.progress)
