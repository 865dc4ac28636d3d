"""Run evaluation cells on a Ray cluster (optional extra: ``pip install 'robustbench-lift[ray]'``).

:class:`RayExecutor` implements the evaluator's :class:`~robustbench_lift.evaluation.executors.Executor` protocol: each cell -
or each shard of a large cell, a contiguous range of its images - becomes one Ray task with declared resources (one
GPU per task when the cluster has GPUs, CPUs otherwise). Results stream back with ``ray.wait`` as tasks finish and
are yielded to the driver, which stays the only writer of the run store: progress bar, resume and kill-safety are
those of a local run, and a run started with one executor can be finished with the other (same cells, same keys).

What travels how:

* models: each model is put in the object store once (the module itself, or TorchScript bytes), with its
  preprocessing; workers never read checkpoint files.
* data: a dataset given as a spec string (``fashion-mnist``, ``cifar10-c:ROOT``, ``imagefolder:ROOT``, ...) is
  opened on each worker from the spec, roots made absolute on the driver, so those paths must be visible to every
  worker (a shared file system); the built-in Fashion-MNIST is read from its default location on each worker. An
  opened dataset object (and the clean set of a pre-generated run) is put in the object store instead: in-memory
  arrays travel, file-backed sets carry their paths.

Failures: a task whose worker process dies (killed, out of memory, lost node) is retried by Ray up to
``max_retries`` times. A task that raises (bad input, a model that fails) is not retried; the executor keeps
yielding the other cells as they finish, so they are stored, and then raises that error.

Per-sample predictions do not depend on where a cell runs or how it is sharded: per-image randomness derives from
the run seed and the sample ids, and shards are concatenated in image order.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data import UnreadableCellError, open_dataset, select_indices
from ..cells import CellResult, CellSpec
from ..models import ModelEntry
from ..runner import EvalContext

__all__ = [
    "RayExecutor",
    "RayNotInstalledError",
    "CellFailedError",
    "INSTALL_HINT",
    "import_ray",
    "merge_shards",
    "shard_ranges",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'robustbench-lift[ray]'"
#: Cell kinds whose results are per-image arrays that shards can be concatenated into.
SHARDABLE_KINDS: tuple[str, ...] = ("clean", "corruption", "pregenerated")
#: ``info`` entries of classification cells that add up over shards.
_SUMMED_INFO: tuple[str, ...] = ("n", "top1_errors", "top5_errors", "nonfinite", "seconds")
_AUTO = "auto"


class RayNotInstalledError(ImportError):
    """Ray was asked for but is not installed."""


class CellFailedError(RuntimeError):
    """A cell could not be computed on the cluster for a reason other than an exception of its own code."""


def import_ray() -> ModuleType:
    """Import Ray, or raise :class:`RayNotInstalledError` saying how to install it."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise RayNotInstalledError(
            f"the Ray executor needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


# ====================================================================================================== shards
def shard_ranges(n: int, shard_size: int | None) -> list[tuple[int, int] | None]:
    """Split ``n`` images into contiguous ``[start, stop)`` ranges of at most ``shard_size``.

    Returns ``[None]`` (one unsharded task) when ``shard_size`` is None or the cell is not larger than it.
    """
    if shard_size is None or n <= shard_size:
        return [None]
    count = math.ceil(n / shard_size)
    # equal-sized shards rather than a full ones and a small tail
    bounds = np.linspace(0, n, count + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def merge_shards(results: Sequence[CellResult]) -> CellResult:
    """Concatenate the per-image arrays of a cell's shards (in image order) and add up their counts.

    Raises:
        ValueError: the shards do not hold the same arrays.
    """
    if not results:
        raise ValueError("merge_shards needs at least one shard")
    if len(results) == 1:
        return results[0]
    names = list(results[0].arrays)
    for r in results[1:]:
        if list(r.arrays) != names:
            raise ValueError(f"shards hold different arrays: {names} and {list(r.arrays)}")
    arrays = {name: np.concatenate([r.arrays[name] for r in results], axis=0) for name in names}
    info: dict[str, Any] = {}
    for key in results[0].info:
        values = [r.info.get(key) for r in results]
        if key in _SUMMED_INFO:
            total = sum(values)
            info[key] = round(total, 4) if isinstance(total, float) else total
        elif all(v == values[0] for v in values):
            info[key] = values[0]
        else:
            info[key] = ",".join(sorted({str(v) for v in values}))
    info["shards"] = len(results)
    return CellResult(arrays=arrays, info=info)


class _ShardView:
    """Images ``positions`` of ``base`` as a dataset of their own; sample ids stay those of ``base``."""

    def __init__(self, base: Any, positions: np.ndarray) -> None:
        self.base = base
        self.positions = np.asarray(positions, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> Any:
        return self.base[int(self.positions[int(index)])]

    def sample_id(self, index: int) -> int:
        return self.base.sample_id(int(self.positions[int(index)]))

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        picked = self.positions[np.asarray(indices, dtype=np.int64)]
        get_batch = getattr(self.base, "get_batch", None)
        if get_batch is not None:
            return get_batch(picked)
        items = [self.base[int(i)] for i in picked]
        return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])

    def __getattr__(self, name: str) -> Any:
        # name, channels, image_size, num_classes, ... of the underlying dataset
        if name in ("base", "positions"):
            raise AttributeError(name)
        return getattr(self.base, name)


class _ShardedSet:
    """A pre-generated set whose cells are cut to the same image range of the cell's selected images."""

    def __init__(self, base: Any, spec: CellSpec, start: int, stop: int) -> None:
        self.base, self.spec, self.start, self.stop = base, spec, start, stop

    def cell(self, corruption: str, severity: int) -> _ShardView:
        data = self.base.cell(corruption, severity)
        return _ShardView(data, _shard_positions(data, self.spec, self.start, self.stop))

    def __getattr__(self, name: str) -> Any:
        if name in ("base", "spec", "start", "stop"):
            raise AttributeError(name)
        return getattr(self.base, name)


def _shard_positions(data: Any, spec: CellSpec, start: int, stop: int) -> np.ndarray:
    return select_indices(len(data), spec.limit, spec.seed)[start:stop]


def _cell_length(spec: CellSpec, context: EvalContext) -> int:
    """Number of images the cell evaluates (after ``--limit``)."""
    if spec.kind == "pregenerated":
        n = len(context.dataset.cell(spec.corruption, spec.severity))
    elif spec.kind == "clean" and context.pregenerated:
        n = len(context.clean_dataset)
    else:
        n = len(context.dataset)
    return n if spec.limit is None else min(n, int(spec.limit))


# ====================================================================================================== payloads
@dataclasses.dataclass
class _ModelPayload:
    """A model as it travels through the object store: its entry (preprocessing, names) and its weights."""

    entry: ModelEntry
    module: nn.Module | None = None
    torchscript: bytes | None = None

    def build(self) -> ModelEntry:
        if self.torchscript is not None:
            model = torch.jit.load(io.BytesIO(self.torchscript), map_location="cpu")
        else:
            model = self.module
        return dataclasses.replace(self.entry, model=model.eval())


def _pack_model(entry: ModelEntry) -> _ModelPayload:
    model = entry.model
    bare = dataclasses.replace(entry, model=None)
    if isinstance(model, torch.jit.ScriptModule):  # not picklable: ship the archive bytes
        buf = io.BytesIO()
        torch.jit.save(model, buf)
        return _ModelPayload(entry=bare, torchscript=buf.getvalue())
    devices = {t.device.type for t in (*model.parameters(), *model.buffers())}
    if devices - {"cpu"}:  # workers may have no GPU, or another one
        model = copy.deepcopy(model).to("cpu")
    return _ModelPayload(entry=bare, module=model)


@dataclasses.dataclass
class _DataPayload:
    """What a worker needs to rebuild the run's :class:`EvalContext` (models excluded).

    ``context.dataset`` is None when the worker opens ``context.dataset_spec`` itself with ``image_size``.
    """

    context: EvalContext
    image_size: tuple[int, int] | None = None


def _absolute_spec(spec: str) -> str:
    kind, sep, root = spec.partition(":")
    if not sep or not root:
        return spec
    return f"{kind}:{Path(root).expanduser().resolve()}"


def _pack_context(context: EvalContext) -> _DataPayload:
    if context.dataset_spec is None:
        shipped = dataclasses.replace(context, models={}, _opened={})
        return _DataPayload(shipped)
    spec = _absolute_spec(context.dataset_spec)
    # imagefolder is the only built-in kind opened at a size (one shared by all models of the run)
    kind = spec.partition(":")[0].strip().lower()
    size = getattr(context.dataset, "image_size", None) if kind == "imagefolder" else None
    shipped = dataclasses.replace(context, models={}, dataset=None, dataset_spec=spec, _opened={})
    return _DataPayload(shipped, image_size=size)


# ====================================================================================================== worker side
# Per worker process: deserialised models and opened datasets, reused by the tasks of a run.
_WORKER_MODELS: OrderedDict[str, ModelEntry] = OrderedDict()
_WORKER_CONTEXTS: OrderedDict[str, EvalContext] = OrderedDict()
_WORKER_CACHE_SIZE = 2


def _cached(cache: OrderedDict[str, Any], key: str, make: Any) -> Any:
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = make()
    cache[key] = value
    while len(cache) > _WORKER_CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _open_context(payload: _DataPayload) -> EvalContext:
    ctx = payload.context
    if ctx.dataset is None:
        log.info("opening dataset %s on worker", ctx.dataset_spec)
        dataset = open_dataset(ctx.dataset_spec, image_size=payload.image_size, strict=ctx.strict)
        ctx = dataclasses.replace(ctx, dataset=dataset)
    return ctx


def _run_task(
    spec: CellSpec,
    model_box: list[Any],
    context_box: list[Any],
    shard: tuple[int, int] | None,
    device: str,
    threads: int,
) -> CellResult:
    """Body of one Ray task: one cell, or the image range ``shard`` of it. Runs on a worker.

    The model and the context arrive as object refs inside lists, so that Ray does not fetch them for every task;
    each worker fetches them once and keeps them.
    """
    ray = import_ray()
    torch.set_num_threads(threads)
    model_ref, context_ref = model_box[0], context_box[0]
    entry = _cached(_WORKER_MODELS, model_ref.hex(), lambda: ray.get(model_ref).build())
    ctx = _cached(_WORKER_CONTEXTS, context_ref.hex(), lambda: _open_context(ray.get(context_ref)))
    ctx = dataclasses.replace(ctx, models={entry.name: entry}, device=device)
    if shard is None:
        return ctx.run(spec)
    start, stop = shard
    base = ctx.dataset_for(entry, clean=spec.kind == "clean")
    if spec.kind == "pregenerated":
        view: Any = _ShardedSet(base, spec, start, stop)
    else:
        view = _ShardView(base, _shard_positions(base, spec, start, stop))
    # the view already holds the selected images, in order: the shard runs them all
    shard_ctx = dataclasses.replace(ctx, dataset=view, clean_dataset=view, dataset_spec=None, _opened={})
    return shard_ctx.run(dataclasses.replace(spec, limit=None))


# ====================================================================================================== executor
@dataclasses.dataclass
class _Pending:
    spec: CellSpec
    parts: list[CellResult | None]
    failed: BaseException | None = None

    @property
    def done(self) -> bool:
        return all(p is not None for p in self.parts)


class RayExecutor:
    """Runs cells as Ray tasks on a local or remote Ray cluster.

    Args:
        address: the cluster to connect to (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None means the
            one ``RAY_ADDRESS`` names, else the latest one ``ray start`` started on this machine, else a new local
            Ray instance for the duration of the run. Ignored when Ray is already initialised in this process.
        num_cpus: CPUs of the local instance started when ``address`` is None (default: all).
        num_gpus_per_task: GPUs per task: ``"auto"`` is 1 when the cluster has GPUs, else 0 (CPU tasks); a
            fraction packs several tasks on one GPU. Give it explicitly on autoscaling clusters that start without
            GPU nodes.
        cpus_per_task: CPUs reserved per task; also the task's torch thread count (so CPU tasks do not
            oversubscribe the cores).
        max_retries: how often a task whose worker died is retried before the run fails.
        shard_size: split cells with more images than this into shards of at most this many images (None: one
            task per cell).
        runtime_env: Ray runtime environment for the workers when this executor connects (e.g. ``pip`` packages).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus_per_task: float | str = _AUTO,
        cpus_per_task: int = 1,
        max_retries: int = 3,
        shard_size: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        import_ray()  # fail at configuration time, not after the run is planned
        if num_cpus is not None and (isinstance(num_cpus, bool) or int(num_cpus) <= 0):
            raise ValueError(f"num_cpus must be a positive integer, got {num_cpus!r}")
        if num_cpus is not None and address is not None:
            raise ValueError("num_cpus sizes a local Ray instance; it cannot be given with an address")
        if num_gpus_per_task != _AUTO:
            if isinstance(num_gpus_per_task, (bool, str)) or not float(num_gpus_per_task) >= 0:
                raise ValueError(
                    f"num_gpus_per_task must be 'auto' or a number >= 0, got {num_gpus_per_task!r}"
                )
        if isinstance(cpus_per_task, bool) or int(cpus_per_task) < 1:
            raise ValueError(f"cpus_per_task must be an integer >= 1, got {cpus_per_task!r}")
        if isinstance(max_retries, bool) or int(max_retries) < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if shard_size is not None and (isinstance(shard_size, bool) or int(shard_size) <= 0):
            raise ValueError(f"shard_size must be a positive number of images, got {shard_size!r}")
        self.address = address
        self.num_cpus = None if num_cpus is None else int(num_cpus)
        self.num_gpus_per_task = num_gpus_per_task
        self.cpus_per_task = int(cpus_per_task)
        self.max_retries = int(max_retries)
        self.shard_size = None if shard_size is None else int(shard_size)
        self.runtime_env = runtime_env

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, num_gpus_per_task={self.num_gpus_per_task!r}, "
            f"cpus_per_task={self.cpus_per_task}, max_retries={self.max_retries}, shard_size={self.shard_size})"
        )

    # ------------------------------------------------------------------ cluster
    def _connect(self, ray: ModuleType) -> bool:
        """Initialise Ray unless it already is; True when this call did it (and must shut it down)."""
        if ray.is_initialized():
            log.info("using the Ray connection this process already has")
            return False
        kwargs: dict[str, Any] = {"address": self.address, "runtime_env": self.runtime_env}
        if self.address is None:
            kwargs.update(num_cpus=self.num_cpus, include_dashboard=False)
        ray.init(**kwargs)
        log.info(
            "connected to Ray cluster (address %s): %s", self.address or "local", ray.cluster_resources()
        )
        return True

    def _task_resources(
        self, ray: ModuleType, context: EvalContext, *, local: bool
    ) -> tuple[int, float, str]:
        """CPUs and GPUs per task, and the device string the tasks use.

        A task reserves ``cpus_per_task`` CPUs for its torch threads plus one per data-loading process
        (``context.workers``). A request no node can hold is an error on a local instance this executor started;
        on a cluster it only warns, since an autoscaler may still add such nodes.
        """
        resources = ray.cluster_resources()
        if self.num_gpus_per_task == _AUTO:
            gpus = 1.0 if resources.get("GPU", 0) > 0 else 0.0
        else:
            gpus = float(self.num_gpus_per_task)
        cpus = self.cpus_per_task + int(context.workers)
        if gpus == 0 and torch.device(context.device).type == "cuda":
            raise ValueError(
                f"device {context.device!r} was asked for but the Ray tasks get no GPU (cluster resources: "
                f"{resources}); start GPU workers or set num_gpus_per_task"
            )
        if gpus == 0 and context.amp:
            raise ValueError("mixed precision needs GPU tasks; the Ray cluster offers none")
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            message = (
                f"each task asks for {cpus} CPU(s) ({self.cpus_per_task} for torch threads + {context.workers} "
                f"data-loading worker(s)) and {gpus:g} GPU(s), more than any node has: "
                f"{[{k: v for k, v in n.items() if k in ('CPU', 'GPU')} for n in nodes]}"
            )
            if local:
                raise ValueError(
                    message + "; lower --workers or cpus_per_task, or give the instance more CPUs"
                )
            log.warning("%s; tasks wait until the cluster grows", message)
        return cpus, gpus, ("cuda" if gpus > 0 else "cpu")

    # ------------------------------------------------------------------ Executor protocol
    def map(self, cells: Sequence[CellSpec], context: EvalContext) -> Iterator[tuple[CellSpec, CellResult]]:
        """Run ``cells`` on the cluster; yield ``(spec, result)`` as each cell's tasks finish (any order).

        Raises (after every other cell has been yielded): the exception a cell's code raised, or
        :class:`CellFailedError` when its worker kept dying or Ray could not run it. A cell whose input data cannot
        be read (:class:`~robustbench_lift.data.UnreadableCellError`) is yielded as ``CellResult.failed``.
        """
        if not cells:
            return
        ray = import_ray()
        started = self._connect(ray)
        try:
            local = started and self.address is None and not os.environ.get("RAY_ADDRESS")
            yield from self._map(ray, list(cells), context, local=local)
        finally:
            if started:
                ray.shutdown()

    def _map(
        self, ray: ModuleType, cells: list[CellSpec], context: EvalContext, *, local: bool
    ) -> Iterator[tuple[CellSpec, CellResult]]:
        cpus, gpus, device = self._task_resources(ray, context, local=local)
        remote = ray.remote(_run_task).options(
            num_cpus=cpus,
            num_gpus=gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        context_ref = ray.put(_pack_context(context))
        model_refs = {
            name: ray.put(_pack_model(context.models[name])) for name in dict.fromkeys(c.model for c in cells)
        }
        pending: dict[Any, tuple[int, int]] = {}
        cells_state: list[_Pending] = []
        unreadable: list[tuple[CellSpec, str]] = []
        for spec in cells:
            ranges: list[tuple[int, int] | None] = [None]
            if self.shard_size is not None and spec.kind in SHARDABLE_KINDS:
                try:
                    ranges = shard_ranges(_cell_length(spec, context), self.shard_size)
                except UnreadableCellError as exc:
                    unreadable.append((spec, str(exc)))  # its data cannot be read: nothing to submit
                    continue
            i = len(cells_state)
            cells_state.append(_Pending(spec, [None] * len(ranges)))
            for j, shard in enumerate(ranges):
                ref = remote.remote(
                    spec, [model_refs[spec.model]], [context_ref], shard, device, self.cpus_per_task
                )
                pending[ref] = (i, j)
        log.info(
            "submitted %d tasks for %d cells (%g GPU and %d CPU each, device %s)",
            len(pending),
            len(cells),
            gpus,
            cpus,
            device,
        )
        failures: list[tuple[CellSpec, BaseException]] = []
        try:
            for spec, why in unreadable:
                yield spec, CellResult.failed(why)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i, j = pending.pop(ref)
                    state = cells_state[i]
                    try:
                        part = ray.get(ref)
                    except ray.exceptions.TaskCancelledError:
                        continue  # a sibling shard failed and this one was cancelled
                    except ray.exceptions.RayError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, UnreadableCellError):
                            # unreadable input data fails this cell only, as with the local executor
                            if state.failed is None:
                                state.failed = exc
                                self._cancel(ray, [r for r, (ii, _) in pending.items() if ii == i])
                                yield state.spec, CellResult.failed(str(cause))
                            continue
                        if state.failed is None:
                            state.failed = exc
                            failures.append((state.spec, exc))
                            self._cancel(ray, [r for r, (ii, _) in pending.items() if ii == i])
                        continue
                    if state.failed is not None:
                        continue
                    state.parts[j] = part
                    if state.done:
                        yield state.spec, merge_shards([p for p in state.parts if p is not None])
        finally:
            if pending:  # the driver stopped early (interrupted, or the store raised)
                self._cancel(ray, list(pending))
        if failures:
            raise self._failure(failures)

    @staticmethod
    def _cancel(ray: ModuleType, refs: list[Any]) -> None:
        for ref in refs:
            try:
                ray.cancel(ref)
            except Exception as exc:  # cancelling is best effort; the task may have just finished
                log.debug("could not cancel task %s: %s", ref, exc)

    @staticmethod
    def _failure(failures: list[tuple[CellSpec, BaseException]]) -> BaseException:
        """Log every failed cell and return the exception to raise for the first one."""
        ray = import_ray()
        for spec, exc in failures:
            log.error("cell %s failed on the Ray cluster: %s", spec.key, exc)
        spec, exc = failures[0]
        others = f"; {len(failures) - 1} more cell(s) failed, see the log" if len(failures) > 1 else ""
        cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
        if isinstance(cause, Exception):
            cause.__cause__ = exc
            if hasattr(cause, "add_note"):
                cause.add_note(f"raised by cell {spec.key} on a Ray worker{others}")
            return cause
        error = CellFailedError(f"cell {spec.key} could not be computed on the Ray cluster: {exc}{others}")
        error.__cause__ = exc
        return error
