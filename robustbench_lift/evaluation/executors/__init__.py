"""Executors run cells and hand ``(spec, result)`` pairs back to the driver, the only writer of the run store.

:class:`LocalExecutor` runs them in this process; :class:`~robustbench_lift.evaluation.executors.ray.RayExecutor`
on a Ray cluster (optional extra).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, runtime_checkable
from typing import Protocol as _TypingProtocol

from ...data import UnreadableCellError
from ..cells import CellResult, CellSpec
from ..runner import EvalContext
from ..suite_kinds import kind_of_cell

__all__ = ["Executor", "LocalExecutor"]


@runtime_checkable
class Executor(_TypingProtocol):
    """Runs cells and yields ``(spec, result)`` as each finishes (any order). The driver stores the results.

    A cell whose input data cannot be read (:class:`~robustbench_lift.data.UnreadableCellError`) is yielded as
    ``CellResult.failed(message)`` so the other cells still run.
    """

    def map(
        self, cells: Sequence[CellSpec], context: EvalContext
    ) -> Iterator[tuple[CellSpec, CellResult]]: ...


class LocalExecutor:
    """Runs cells in this process.

    Cells that differ only in the model (their suite kind's ``share`` key is equal) run as one group on the same
    input batches, so the images are read and corrupted once for all models with the same input pipeline; each
    model's result is the one it would get alone.

    Args:
        progress: called with a number of images as batches finish (the driver's progress bar).
        share_batches: group cells as above (False: one cell at a time).
    """

    def __init__(self, progress: Callable[[int], None] | None = None, *, share_batches: bool = True) -> None:
        self.progress = progress
        self.share_batches = share_batches

    def map(self, cells: Sequence[CellSpec], context: EvalContext) -> Iterator[tuple[CellSpec, CellResult]]:
        groups: dict[Any, list[CellSpec]] = {}
        for i, spec in enumerate(cells):
            kind = kind_of_cell(spec.kind)
            key = None
            if self.share_batches and kind.share is not None and kind.run_group is not None:
                key = kind.share(spec, context)
            groups.setdefault((i,) if key is None else (kind.name, key), []).append(spec)
        for group in groups.values():
            try:
                if len(group) == 1:
                    results = [context.run(group[0], self.progress)]
                else:
                    results = kind_of_cell(group[0].kind).run_group(group, context, self.progress)
            except UnreadableCellError as exc:
                # the group's cells share their input data: none of them can run, the other groups can
                results = [CellResult.failed(str(exc)) for _ in group]
            yield from zip(group, results)
