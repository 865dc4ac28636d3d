"""Corruption-suite evaluation of classifiers: plan cells, run them, store them, aggregate from the store.

A run is a list of *cells* (:class:`CellSpec`): one model on the clean images, or one model on one corruption at one
severity of a suite. :func:`run_cell` is a pure function of the spec, the model and the dataset - it never touches
the store - so an :class:`Executor` can run cells anywhere (in this process now, on Ray workers later) and hand
``(spec, CellResult)`` pairs back to the driver, which is the only writer of the run store. Aggregates (clean
error, mean corruption error, CE / mCE, relative mCE, paired differences to a baseline, with bootstrap CIs) are
always recomputed from the stored cells, never during inference, so a resumed run gives exactly the table of an
uninterrupted one.

Input pipeline for every batch (streamed; the corrupted dataset is never held in memory)::

    uint8 (B, C, H, W) -> device -> float [0, 1] -> match channels -> resize to the model's input size
      -> corrupt (per-image seeds from the sample ids) -> normalise (checkpoint mean/std) -> model -> top-5

Pre-generated sets (``cifar10-c:ROOT``, ``imagenet-c:ROOT``) are read cell by cell instead of corrupted on the fly;
pre-generated ImageNet-C images are never resized. ``--limit N`` evaluates a seeded random subset of N images
(the same images for every cell and model, so comparisons stay paired), sorted by index.

Suite kinds are pluggable (:data:`SUITE_KINDS`): a kind says which suite names it accepts, how to plan its cells,
how to run one cell and how to aggregate its stored cells into result rows. Corruption suites are built in;
perturbation suites and probes register their own kind.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, runtime_checkable
from typing import Protocol as _TypingProtocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from corruptions.registry import Registry
from corruptions.rng import numpy_generator

from .schema import ALL_SEVERITIES, CLEAN, Protocol
from .store import RunStore, resolve_run_dir, validate_key_part

__all__ = [
    "CellSpec",
    "CellResult",
    "ModelEntry",
    "Preprocess",
    "EvalContext",
    "Executor",
    "LocalExecutor",
    "SuiteKind",
    "SUITE_KINDS",
    "register_suite_kind",
    "resolve_suite_kind",
    "PlanOptions",
    "RunResult",
    "evaluate",
    "plan_cells",
    "run_cell",
    "select_indices",
    "load_models",
    "aggregate_corruption_suite",
    "summary_table",
]

log = logging.getLogger(__name__)

TOPK = 5
#: Plug-in modules that register suite kinds when imported (absent modules are skipped).
PLUGIN_MODULES: tuple[str, ...] = ("robustbench_lift.perturbation", "robustbench_lift.probes")


# ====================================================================================================== cells
@dataclass(frozen=True)
class CellSpec:
    """One unit of evaluation work; everything that determines its result except the model and the data.

    Args:
        model: the model's name in the run.
        suite: suite name (``"clean"`` for the clean cell).
        corruption: corruption / perturbation / probe name (``"clean"`` for the clean cell).
        severity: 1..5 (difficulty for perturbations, 0 for clean).
        kind: ``"clean"``, ``"corruption"`` (on the fly), ``"pregenerated"`` (read from the dataset's cell) or a
            plug-in's own kind.
        seed: run seed; per-image randomness derives from it and the sample ids.
        limit: evaluate a seeded subset of this many images (None: all).
        backend: corruption backend (None: the engine's default).
        options: extra hashable ``(key, value)`` pairs for plug-in kinds.
    """

    model: str
    suite: str
    corruption: str
    severity: int
    kind: str = "corruption"
    seed: int = 0
    limit: int | None = None
    backend: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """Stable string key, also the cell's file name in the store (``<model>/<name>``)."""
        if self.kind == "clean":
            return f"{self.model}/{CLEAN}"
        return f"{self.model}/{self.suite}__{self.corruption}__s{self.severity}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = [list(kv) for kv in self.options]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellSpec:
        d = dict(d)
        d["options"] = tuple(tuple(kv) for kv in d.get("options", ()))
        return cls(**d)


@dataclass
class CellResult:
    """What a cell returns: per-sample arrays (stored compressed) and JSON-able counts / facts.

    For classification cells ``arrays`` holds ``top5`` ((n, k) class indices, best first; -1 for samples whose
    logits were not finite), ``labels`` and ``ids`` (sample ids); ``info`` holds ``n``, ``top1_errors``,
    ``top5_errors``, ``nonfinite``, ``seconds``, ``device``.
    """

    arrays: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: channel count, input size (None: keep the data's), normalisation.

    ``resize=False`` keeps the images' size whatever ``input_size`` says (pre-generated ImageNet-C).
    """

    channels: int
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: bool = True


@dataclass
class ModelEntry:
    """A model of the run with everything the evaluator needs to know about it."""

    name: str
    model: nn.Module
    arch: str = "unknown"
    pooling: str = "unknown"
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    content_hash: str = ""
    path: str | None = None
    format: str = "module"
    class_names: tuple[str, ...] | None = None

    def preprocess(self, *, resize: bool = True, channels: int | None = None) -> Preprocess:
        return Preprocess(
            channels=int(self.in_channels or channels or 3),
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            resize=resize,
        )

    def identity(self) -> dict[str, Any]:
        """What must stay the same for a stored cell of this model name to be reused."""
        return {
            "content_hash": self.content_hash,
            "arch": self.arch,
            "pooling": self.pooling,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size) if self.input_size else None,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
        }


def select_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """The dataset indices a cell evaluates: all of them, or a seeded random subset of ``limit``, sorted.

    A random subset (rather than the first N) keeps every class represented in class-sorted folders; it depends on
    ``seed`` and ``n`` only, so every cell and model of a run sees the same images.
    """
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if limit <= 0:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    perm = numpy_generator(seed, "limit", n).permutation(n)
    return np.sort(perm[:limit]).astype(np.int64)


# ====================================================================================================== running
def _model_device(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def prepare_model(model: nn.Module, device: str | torch.device, *, channels_last: bool = False) -> nn.Module:
    """Put ``model`` in eval mode on ``device`` (moved only when needed), optionally channels_last."""
    device = torch.device(device)
    current = _model_device(model)
    if current is None or current != device:
        model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


class _BatchReader(torch.utils.data.Dataset):
    """Turns a dataset into one item per batch of indices, for a DataLoader with workers."""

    def __init__(self, dataset: Any, chunks: list[np.ndarray]) -> None:
        self.dataset = dataset
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.get_batch(self.chunks[i])


def iter_batches(
    dataset: Any, indices: np.ndarray, batch_size: int, *, workers: int = 0
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield ``(indices, uint8 images (B, C, H, W), labels (B,))`` batch by batch, in index order.

    Uses the dataset's ``get_batch`` in this process when ``workers == 0``, otherwise a DataLoader whose workers
    each read whole batches (order preserved).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    get_batch = getattr(dataset, "get_batch", None)
    if get_batch is None:

        def get_batch(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            items = [dataset[int(i)] for i in idx]
            return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])

        dataset = _Getter(dataset, get_batch)
    if workers <= 0:
        for idx in chunks:
            images, labels = dataset.get_batch(idx)
            yield idx, images, torch.as_tensor(labels)
        return
    loader = torch.utils.data.DataLoader(
        _BatchReader(dataset, chunks),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
    )
    for idx, (images, labels) in zip(chunks, loader):
        yield idx, images, torch.as_tensor(labels)


class _Getter:
    """Gives a plain ``Dataset`` a ``get_batch``."""

    def __init__(self, dataset: Any, fn: Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.dataset = dataset
        self._fn = fn

    def get_batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fn(idx)


def _autocast(device: torch.device, amp: str | None):
    if not amp:
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def run_cell(
    spec: CellSpec,
    model: nn.Module,
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    preprocess: Preprocess,
    workers: int = 0,
    amp: str | None = None,
    channels_last: bool = False,
    suite: Any = None,
    progress: Callable[[int], None] | None = None,
) -> CellResult:
    """Evaluate one classification cell (clean, corrupted on the fly, or pre-generated); no store access.

    Args:
        spec: the cell; ``spec.kind`` picks where images come from.
        model: any classifier ``nn.Module`` mapping (B, C, H, W) to logits (B, K).
        dataset: an ImageDataset (clean / on-the-fly cells) or a PregeneratedSet (``kind == "pregenerated"``).
        preprocess: channels, input size and normalisation of ``model``.
        amp: ``"bf16"`` / ``"fp16"`` autocast on CUDA, None for full precision.
        suite: the corruption suite (name or ``corruptions.suites.Suite``); default ``spec.suite``.
        progress: called with the number of images after each batch.

    Returns:
        top-5 predictions, labels and sample ids per image, and counts.
    """
    from .data import Normalize, prepare_batch

    device = torch.device(device)
    if spec.kind == "pregenerated":
        data = dataset.cell(spec.corruption, spec.severity)
    elif spec.kind in ("clean", "corruption"):
        data = dataset
    else:
        raise ValueError(f"run_cell handles clean, corruption and pregenerated cells, not kind {spec.kind!r}")
    corrupt_fn = None
    if spec.kind == "corruption":
        from corruptions.api import corrupt

        corrupt_fn = corrupt
        suite = spec.suite if suite is None else suite
    model = prepare_model(model, device, channels_last=channels_last)
    normalize = Normalize(preprocess.mean, preprocess.std).to(device) if preprocess.mean is not None else None
    size = preprocess.input_size if preprocess.resize else None

    indices = select_indices(len(data), spec.limit, spec.seed)
    n = len(indices)
    ids = np.fromiter((data.sample_id(int(i)) for i in indices), dtype=np.int64, count=n)
    id_of = dict(zip(indices.tolist(), ids.tolist()))
    k = None
    top5 = labels_out = None
    nonfinite = 0
    pos = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for idx, images, labels in iter_batches(data, indices, batch_size, workers=workers):
            x = prepare_batch(images.to(device, non_blocking=True), channels=preprocess.channels, size=size)
            if corrupt_fn is not None:
                batch_ids = [id_of[int(i)] for i in idx]
                kwargs = {"backend": spec.backend} if spec.backend else {}
                x = corrupt_fn(
                    x, spec.corruption, spec.severity, suite=suite, seed=spec.seed, ids=batch_ids, **kwargs
                )
            if normalize is not None:
                x = normalize(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(idx):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(
                    f"model {spec.model!r} must return logits (B, K); got {shape} for B={len(idx)}"
                )
            logits = logits.float()
            if top5 is None:
                num_classes = logits.shape[1]
                k = min(TOPK, num_classes)
                dtype = np.int16 if num_classes < np.iinfo(np.int16).max else np.int32
                top5 = np.empty((n, k), dtype=dtype)
                labels_out = np.empty(n, dtype=dtype)
            bad = ~torch.isfinite(logits).all(dim=1)
            pred = logits.topk(k, dim=1).indices
            if bool(bad.any()):
                pred[bad] = -1
                nonfinite += int(bad.sum())
            b = len(idx)
            top5[pos : pos + b] = pred.cpu().numpy()
            labels_out[pos : pos + b] = labels.numpy()
            pos += b
            if progress is not None:
                progress(b)
    seconds = time.perf_counter() - start
    if top5 is None:
        raise ValueError(f"cell {spec.key}: the dataset has no images")
    wrong1 = top5[:, 0] != labels_out
    wrong5 = ~(top5 == labels_out[:, None]).any(axis=1)
    info = {
        "n": n,
        "top1_errors": int(wrong1.sum()),
        "top5_errors": int(wrong5.sum()),
        "nonfinite": nonfinite,
        "seconds": round(seconds, 4),
        "device": str(device),
    }
    return CellResult(arrays={"top5": top5, "labels": labels_out, "ids": ids}, info=info)


# ====================================================================================================== context
@dataclass
class EvalContext:
    """Everything an executor needs to run a cell: models, data, and the run's execution options.

    ``datasets`` maps an input size key (see :meth:`dataset_for`) to an opened dataset; ``dataset_spec`` lets a
    remote worker re-open the data instead of receiving it. ``suites`` maps suite names to resolved suite objects.
    """

    models: dict[str, ModelEntry]
    dataset: Any
    dataset_spec: str | None = None
    clean_dataset: Any = None
    suites: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 128
    workers: int = 0
    amp: str | None = None
    channels_last: bool = False
    strict: bool = False
    pregenerated: bool = False
    _opened: dict[Any, Any] = field(default_factory=dict, repr=False)

    def dataset_for(self, entry: ModelEntry, *, clean: bool = False) -> Any:
        """The dataset to read for ``entry``: variable-size folders are opened at the model's input size."""
        base = self.clean_dataset if clean and self.pregenerated else self.dataset
        if base is None:
            raise ValueError("a clean cell of a pre-generated set needs a clean dataset (--clean-dataset)")
        if getattr(base, "image_size", True) is not None or self.dataset_spec is None or clean:
            return base
        key = entry.input_size
        if key not in self._opened:
            from .data import open_dataset

            self._opened[key] = open_dataset(self.dataset_spec, image_size=key, strict=self.strict)
        return self._opened[key]

    def run(self, spec: CellSpec, progress: Callable[[int], None] | None = None) -> CellResult:
        """Run one cell here, dispatching on its suite kind."""
        kind = _KIND_OF_CELL.get(spec.kind)
        if kind is None:
            raise ValueError(f"no suite kind runs cells of kind {spec.kind!r}")
        return SUITE_KINDS.get(kind).run(spec, self, progress)


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


# ====================================================================================================== suite kinds
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
    """

    name: str
    accepts: Callable[[Any], bool]
    resolve: Callable[[Any, Any], tuple[str, Any, dict[str, Any]]]
    plan: Callable[[str, Any, PlanOptions], list[CellSpec]]
    run: Callable[[CellSpec, EvalContext, Callable[[int], None] | None], CellResult]
    aggregate: Callable[[str, Any, AggregateInput], list[dict[str, Any]]]
    cell_kinds: tuple[str, ...] = ()
    needs_clean: bool = True


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


def _load_plugins() -> None:
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def resolve_suite_kind(suite: Any) -> SuiteKind:
    """The registered kind that accepts ``suite``; ``ValueError`` listing the known suites otherwise.

    Plug-in modules (:data:`PLUGIN_MODULES`) are imported only when no registered kind accepts the value.
    """
    for attempt in range(2):
        for name in SUITE_KINDS:
            kind = SUITE_KINDS.get(name)
            if kind.accepts(suite):
                return kind
        if attempt == 0:
            _load_plugins()
    from corruptions.suites import list_suites

    raise ValueError(
        f"unknown suite {suite!r}; corruption suites: {', '.join(list_suites())} (or a suite .json file); "
        f"suite kinds: {', '.join(SUITE_KINDS)}"
    )


# ---------------------------------------------------------------------------------------------- corruption kind
def _corruption_accepts(value: Any) -> bool:
    from corruptions.suites import Suite, list_suites

    if isinstance(value, (Suite, Mapping)):
        return True
    if isinstance(value, str):
        from .data import list_datasets

        # pre-generated -C sets (cifar100-c, ...) are their own suite even without a parameter table
        return value in list_suites() or value in list_datasets("corruptions") or value.endswith(".json")
    return False


def _corruption_resolve(value: Any, dataset: Any) -> tuple[str, Any, dict[str, Any]]:
    from corruptions.suites import BENCHMARK, HELD_OUT, Suite, list_suites, resolve_suite

    from .data import PregeneratedSet

    if isinstance(dataset, PregeneratedSet):
        name = value if isinstance(value, str) else getattr(value, "name", str(value))
        if name != dataset.name:
            raise ValueError(
                f"dataset {dataset.name!r} is pre-generated: its suite is {dataset.name!r}, not {name!r} "
                f"(pass --suite {dataset.name} or leave --suite out)"
            )
        params = {
            "pregenerated": True,
            "root": str(Path(dataset.root).resolve()),
            "corruptions": list(dataset.corruptions),
            "severities": list(dataset.severities),
        }
        suite = Suite(
            name=name,
            native_size=0,
            params={},
            benchmark=BENCHMARK,
            held_out=HELD_OUT,
            description="pre-generated",
        )
        return name, suite, params
    if isinstance(value, str) and value.endswith(".json") and value not in list_suites():
        from corruptions.suites import load_suite

        suite = load_suite(value)
    else:
        suite = resolve_suite(value)
    validate_key_part(suite.name, "suite name")
    return suite.name, suite, suite.to_dict()


def _corruption_plan(name: str, suite: Any, opts: PlanOptions) -> list[CellSpec]:
    if opts.pregenerated:
        native = getattr(opts.dataset, "image_size", None)
        if opts.dataset.name == "imagenet-c" and native is not None:
            wrong = [
                m.name
                for m in opts.models
                if m.input_size is not None and tuple(m.input_size) != tuple(native)
            ]
            if wrong:
                raise ValueError(
                    f"models {wrong} expect another input size than the {native[0]}x{native[1]} pre-generated "
                    "ImageNet-C images, which are never resized again; override with --input-size if the model "
                    "accepts them"
                )
        available = list(opts.dataset.corruptions)
        sev_available = list(opts.dataset.severities)
        cell_kind = "pregenerated"
    else:
        available = list(suite.corruptions)
        sev_available = [1, 2, 3, 4, 5]
        cell_kind = "corruption"
    # --corruptions may name entries of other suites of the run: keep this suite's (``_plan`` checks that every
    # requested name was used by some suite)
    chosen = [c for c in opts.corruptions if c in available] if opts.corruptions else available
    if not chosen:
        raise ValueError(
            f"suite {name!r} has no corruption(s) {list(opts.corruptions or [])}; valid: {', '.join(available)}"
        )
    sevs = list(opts.severities) if opts.severities else sev_available
    bad = [s for s in sevs if s not in sev_available]
    if bad:
        raise ValueError(f"severities {bad} are not available in suite {name!r}; valid: {sev_available}")
    return [
        CellSpec(
            model=m.name,
            suite=name,
            corruption=c,
            severity=int(s),
            kind=cell_kind,
            seed=opts.seed,
            limit=opts.limit,
            backend=opts.backend if cell_kind == "corruption" else None,
        )
        for m in opts.models
        for c in chosen
        for s in sevs
    ]


def _classification_run(
    spec: CellSpec, ctx: EvalContext, progress: Callable[[int], None] | None
) -> CellResult:
    entry = ctx.models[spec.model]
    data = ctx.dataset_for(entry, clean=spec.kind == "clean")
    pregen_imagenet = (
        ctx.pregenerated
        and spec.kind == "pregenerated"
        and getattr(ctx.dataset, "name", "") == ("imagenet-c")
    )
    channels = getattr(data, "channels", None)
    return run_cell(
        spec,
        entry.model,
        data,
        device=ctx.device,
        batch_size=ctx.batch_size,
        preprocess=entry.preprocess(resize=not pregen_imagenet, channels=channels),
        workers=ctx.workers,
        amp=ctx.amp,
        channels_last=ctx.channels_last,
        suite=ctx.suites.get(spec.suite),
        progress=progress,
    )


# ====================================================================================================== metrics
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
    """

    cells: dict[str, dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]]
    models: dict[str, dict[str, Any]]
    model_order: list[str]
    baseline: str | None
    seed: int
    n_boot: int


#: Rows of a model of a suite compared with the baseline (paired) as ``<metric>_diff``.
DIFF_METRICS: tuple[tuple[str, str], ...] = (
    (CLEAN, "top1_error"),
    ("benchmark", "mean_corruption_error"),
    ("benchmark", "mce"),
    ("benchmark", "relative_mce"),
    ("held_out", "mean_corruption_error"),
    ("held_out", "mce"),
)


class _Resampler:
    """Bootstrap over images with ONE set of resamples shared by every model and cell of a suite (paired CIs).

    :meth:`vectors` turns per-image arrays (R, N) into (R, 1 + B): column 0 the plain mean (the point estimate),
    columns 1..B the means under the resamples. The formula functions of :mod:`robustbench_lift.metrics` broadcast
    over that trailing axis, so one call gives a statistic's value and its bootstrap distribution.
    """

    def __init__(self, n: int, n_boot: int, seed: int, *keys: Any, block_entries: int = 4_000_000) -> None:
        self.n, self.n_boot, self.seed, self.keys = n, max(0, int(n_boot)), seed, keys
        self.block = max(1, block_entries // max(1, n))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        means = rows.mean(axis=1, keepdims=True)
        if self.n_boot == 0 or self.n == 0:
            return means
        parts = [means]
        for start in range(0, self.n_boot, self.block):
            b = min(self.block, self.n_boot - start)
            rng = numpy_generator(self.seed, "bootstrap", self.n, start, *self.keys)
            counts = rng.multinomial(self.n, np.full(self.n, 1.0 / self.n), size=b)  # (b, N)
            parts.append(rows @ counts.T / self.n)
        return np.concatenate(parts, axis=1)


def _interval(v: np.ndarray) -> tuple[float, float, float]:
    """``(value, ci_low, ci_high)`` of a (1 + B,) vector; NaN bounds when too few resamples are defined."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    point = float(v[0])
    reps = v[1:]
    finite = reps[np.isfinite(reps)]
    if reps.size == 0 or finite.size < 0.5 * reps.size or not math.isfinite(point):
        return point, math.nan, math.nan
    lo, hi = np.quantile(finite, [0.025, 0.975])
    return point, float(lo), float(hi)


def _ratio(fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
    """A metrics ratio formula over (..., 1 + B) vectors; NaN for the resamples whose denominator is zero."""
    try:
        return np.asarray(fn(*args), dtype=np.float64)
    except ValueError:
        width = max(np.shape(a)[-1] for a in args)
        out = np.full(width, math.nan)
        for j in range(width):
            try:
                out[j] = float(fn(*(np.asarray(a)[..., j if np.shape(a)[-1] > 1 else 0] for a in args)))
            except ValueError:
                pass
        return out


def _order_key(c: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(c), c) if c in order else (len(order), c)


def aggregate_corruption_suite(
    name: str, params: Mapping[str, Any], data: AggregateInput
) -> list[dict[str, Any]]:
    """Result rows of one corruption suite, recomputed from its stored cells.

    Rows (docs/DESIGN.md, "Results table"): clean and per-cell top-1 / top-5 errors; per corruption the mean error
    over severities, CE and relative CE; for the benchmark and held-out groups the unnormalised mean corruption
    error, mCE and relative mCE; and ``<metric>_diff`` rows, each model minus the baseline. CE is AlexNet-normalised
    for ``imagenet-c`` benchmark corruptions, otherwise normalised by the baseline model (= 100); severities are
    those both sides have. 95 % percentile bootstrap CIs over images, one resample set for all models, so the
    differences are paired. When only some corruptions were evaluated the protocol says over how many.
    """
    from . import metrics

    benchmark = tuple(params.get("benchmark") or metrics.BENCHMARK_CORRUPTIONS)
    held_out = tuple(params.get("held_out") or metrics.HELD_OUT_CORRUPTIONS)
    order = list(benchmark) + [c for c in held_out if c not in benchmark]

    # which stored cells belong to this suite
    found: dict[str, dict[Any, str]] = {}
    for model in data.model_order:
        mine: dict[Any, str] = {}
        for key, (spec, _, _) in data.cells.get(model, {}).items():
            if spec.get("kind") == "clean":
                mine[CLEAN] = key
            elif spec.get("suite") == name and spec.get("kind") in ("corruption", "pregenerated"):
                mine[(spec["corruption"], int(spec["severity"]))] = key
        if any(k != CLEAN for k in mine):
            found[model] = mine
    if not found:
        return []
    common: np.ndarray | None = None
    sizes = set()
    for model, mine in found.items():
        for key in mine.values():
            ids = data.cells[model][key][1]["ids"]
            sizes.add(len(ids))
            common = ids if common is None else np.intersect1d(common, ids)
    assert common is not None
    n = len(common)
    if n == 0:
        raise ValueError(f"suite {name!r}: the stored cells share no images; re-run with --new-run")
    if max(sizes) != n:
        log.warning(
            "suite %s: cells cover different images; metrics use the %d images all of them share", name, n
        )

    # one row per (model, cell, top-1 | top-5) of per-image mistakes, resampled together
    index: dict[tuple[str, Any, int], int] = {}
    rows: list[np.ndarray] = []
    for model, mine in found.items():
        for what, key in mine.items():
            arrays = data.cells[model][key][1]
            pos = _positions(arrays["ids"], common)
            top5, labels = arrays["top5"][pos], arrays["labels"][pos]
            for k, mistakes in (
                (1, metrics.top1_mistakes(top5, labels)),
                (5, metrics.topk_mistakes(top5, labels)),
            ):
                index[(model, what, k)] = len(rows)
                rows.append(mistakes)
    vec = _Resampler(n, data.n_boot, data.seed, name).vectors(np.stack(rows))

    def E(model: str, what: Any, k: int = 1) -> np.ndarray:
        return vec[index[(model, what, k)]]

    baseline = data.baseline if data.baseline in found else None
    if data.baseline is not None and baseline is None:
        log.warning(
            "suite %s: baseline model %r has no cells here; no baseline-normalised CE", name, data.baseline
        )
    out: list[dict[str, Any]] = []
    stats: dict[str, dict[tuple[str, str], tuple[np.ndarray, str]]] = {}

    def add(model: str, corruption: str, severity: int, metric: str, v: np.ndarray, protocol: str) -> None:
        value, lo, hi = _interval(v)
        entry = data.models.get(model, {})
        out.append(
            {
                "model": model,
                "pooling": entry.get("pooling", "unknown"),
                "arch": entry.get("arch", "unknown"),
                "suite": name,
                "corruption": corruption,
                "severity": int(severity),
                "metric": metric,
                "value": value,
                "ci_low": lo,
                "ci_high": hi,
                "n": n,
                "protocol": protocol,
            }
        )
        stats.setdefault(model, {})[(corruption, metric)] = (v, protocol)

    for model, mine in found.items():
        if CLEAN in mine:
            add(model, CLEAN, ALL_SEVERITIES, "top1_error", E(model, CLEAN, 1), Protocol.TOP1_ERROR)
            add(model, CLEAN, ALL_SEVERITIES, "top5_error", E(model, CLEAN, 5), Protocol.TOP5_ERROR)
        cells = sorted((k for k in mine if k != CLEAN), key=lambda cs: (_order_key(cs[0], order), cs[1]))
        for c, s in cells:
            add(model, c, s, "top1_error", E(model, (c, s), 1), Protocol.TOP1_ERROR)
            add(model, c, s, "top5_error", E(model, (c, s), 5), Protocol.TOP5_ERROR)
        corrs = list(dict.fromkeys(c for c, _ in cells))
        ce_of: dict[str, tuple[np.ndarray, str]] = {}
        rce_of: dict[str, tuple[np.ndarray, str]] = {}
        undefined: dict[str, list[str]] = {}
        for c in corrs:
            sevs = [s for cc, s in cells if cc == c]
            table = np.stack([E(model, (c, s)) for s in sevs])  # (S, 1 + B)
            add(
                model,
                c,
                ALL_SEVERITIES,
                "mean_error",
                table.mean(axis=0),
                f"mean top-1 error over severities {sevs}",
            )
            # A ratio whose point estimate is undefined (the normaliser's denominator is zero or, for relative
            # CE, the normaliser's error does not grow) gets no row, and the means below leave it out by name.
            for metric, relative, store in (("ce", False, ce_of), ("relative_ce", True, rce_of)):
                res = _corruption_ce(
                    model, c, sevs, mine, found, baseline, E, name == "imagenet-c", relative=relative
                )
                if res is None:
                    continue
                v, norm, used = res
                if not math.isfinite(float(v[0])):
                    undefined.setdefault(metric, []).append(c)
                    continue
                label = "CE" if metric == "ce" else "relative CE"
                add(model, c, ALL_SEVERITIES, metric, v, f"{label}, {norm}{_sev_note(used, sevs)}")
                store[c] = (v, norm)
        for scope, group in (("benchmark", benchmark), ("held_out", held_out)):
            members = [c for c in corrs if c in group]
            if not members:
                continue
            label = scope.replace("_", "-")
            part = (
                f" (over {len(members)} of {len(group)} {label} corruptions)"
                if len(members) < len(group)
                else ""
            )
            table = np.stack([E(model, (c, s)) for c, s in cells if c in members])
            mce_proto = (
                Protocol.MEAN_CORRUPTION_ERROR
                if scope == "benchmark" and not part and len(cells) == 5 * len(members)
                else f"mean corruption error: unnormalised mean of top-1 error over the evaluated {label} cells"
            )
            add(model, scope, ALL_SEVERITIES, "mean_corruption_error", table.mean(axis=0), mce_proto + part)
            for metric, per, source in (("mce", "ce", ce_of), ("relative_mce", "relative_ce", rce_of)):
                skipped = [c for c in members if c in undefined.get(per, ())]
                used = [c for c in members if c in source]
                if not used or len(used) + len(skipped) < len(members):
                    continue
                norms = {source[c][1] for c in used}
                v = np.stack([source[c][0] for c in used]).mean(axis=0)
                why = "is 0" if per == "ce" else "does not grow under the corruption"
                note = (
                    f" (excluding {', '.join(skipped)}: the normaliser's error {why} there)"
                    if skipped
                    else ""
                )
                add(
                    model,
                    scope,
                    ALL_SEVERITIES,
                    metric,
                    v,
                    _mce_protocol(metric, norms, baseline) + part + note,
                )
    if baseline is not None:
        for model in found:
            if model == baseline:
                continue
            for corruption, metric in DIFF_METRICS:
                mine_stat = stats.get(model, {}).get((corruption, metric))
                base_stat = stats.get(baseline, {}).get((corruption, metric))
                if mine_stat is None or base_stat is None or mine_stat[1] != base_stat[1]:
                    continue
                add(
                    model,
                    corruption,
                    ALL_SEVERITIES,
                    f"{metric}_diff",
                    mine_stat[0] - base_stat[0],
                    f"{metric} of this model minus baseline {baseline!r}, paired bootstrap over the same images "
                    f"[{mine_stat[1]}]",
                )
    return out


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    if len(ids) == len(wanted) and np.array_equal(ids, wanted):
        return np.arange(len(ids))
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)]


def _sev_note(used: list[int], sevs: list[int]) -> str:
    return "" if used == sevs else f" (severities {used} shared with the baseline)"


def _mce_protocol(metric: str, norms: set[str], baseline: str | None) -> str:
    if norms == {"AlexNet-normalised"}:
        return Protocol.MCE_ALEXNET if metric == "mce" else Protocol.REL_MCE_ALEXNET
    if len(norms) == 1 and baseline is not None and norms == {_baseline_norm(baseline)}:
        return (Protocol.mce_baseline if metric == "mce" else Protocol.rel_mce_baseline)(baseline)
    label = "mCE" if metric == "mce" else "relative mCE"
    return f"{label}, mixed normalisation: {'; '.join(sorted(norms))}"


def _baseline_norm(baseline: str) -> str:
    return f"normalised by baseline model {baseline!r} (= 100)"


def _corruption_ce(
    model: str,
    c: str,
    sevs: list[int],
    mine: Mapping[Any, str],
    found: Mapping[str, Mapping[Any, str]],
    baseline: str | None,
    E: Callable[..., np.ndarray],
    alexnet: bool,
    *,
    relative: bool = False,
) -> tuple[np.ndarray, str, list[int]] | None:
    """CE (or relative CE) of ``model`` on ``c`` as a (1 + B,) vector, its normalisation, and severities used."""
    from . import metrics

    if relative and CLEAN not in mine:
        return None
    if alexnet and c in metrics.ALEXNET_ERRORS:
        table = np.stack([E(model, (c, s)) for s in sevs])
        base = metrics.alexnet_table([c], sevs)[0][:, None]  # (S, 1) broadcasts over the resamples
        if relative:
            v = _ratio(
                metrics.relative_ce, table, E(model, CLEAN), base, np.array([metrics.ALEXNET_CLEAN_ERROR])
            )
        else:
            v = _ratio(metrics.corruption_error, table, base)
        return v, "AlexNet-normalised", sevs
    if baseline is None:
        return None
    used = [s for s in sevs if (c, s) in found[baseline]]
    if not used or (relative and CLEAN not in found[baseline]):
        return None
    table = np.stack([E(model, (c, s)) for s in used])
    base = np.stack([E(baseline, (c, s)) for s in used])
    if relative:
        v = _ratio(metrics.relative_ce, table, E(model, CLEAN), base, E(baseline, CLEAN))
    else:
        v = _ratio(metrics.corruption_error, table, base)
    return v, _baseline_norm(baseline), used


register_suite_kind(
    SuiteKind(
        name="corruption",
        accepts=_corruption_accepts,
        resolve=_corruption_resolve,
        plan=_corruption_plan,
        run=_classification_run,
        aggregate=aggregate_corruption_suite,
        cell_kinds=("clean", "corruption", "pregenerated"),
        needs_clean=True,
    )
)


# ====================================================================================================== models
def _content_hash(model: nn.Module) -> str:
    """The checkpoint format's content hash of the model's tensors (for models that come without one)."""
    from .checkpoint import content_hash

    return content_hash(model.state_dict())


def _size2(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    seq = [int(v) for v in value]
    if len(seq) == 3:  # (C, H, W) as timm writes it
        seq = seq[1:]
    if len(seq) != 2:
        raise ValueError(f"input_size must be an int, (H, W) or (C, H, W); got {value!r}")
    return (seq[0], seq[1])


def _tuple(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


def _entry_from_module(model: nn.Module, name: str | None, path: str | None = None) -> ModelEntry:
    cfg = dict(getattr(model, "default_cfg", None) or {})
    return ModelEntry(
        name=name or str(cfg.get("arch") or type(model).__name__).lower(),
        model=model,
        arch=str(cfg.get("arch") or type(model).__name__),
        pooling=str(cfg.get("pool") or cfg.get("pooling") or "unknown"),
        num_classes=cfg.get("num_classes"),
        in_channels=cfg.get("in_channels"),
        input_size=_size2(cfg.get("input_size")),
        mean=_tuple(cfg.get("mean")),
        std=_tuple(cfg.get("std")),
        content_hash=_content_hash(model),
        path=path,
        format="module",
    )


def _entry_from_checkpoint(ckpt: Any, name: str | None) -> ModelEntry:
    meta = ckpt.meta
    path = getattr(ckpt, "path", None)
    return ModelEntry(
        name=name or (Path(path).stem if path else str(meta.arch)),
        model=ckpt.model,
        arch=str(meta.arch),
        pooling=str(meta.pool or "unknown"),
        num_classes=meta.num_classes,
        in_channels=meta.in_channels,
        input_size=_size2(meta.input_size),
        mean=_tuple(meta.mean),
        std=_tuple(meta.std),
        content_hash=str(meta.content_hash or _content_hash(ckpt.model)),
        path=str(Path(path).resolve()) if path else None,
        format=str(getattr(meta, "format", "native")),
        class_names=tuple(meta.class_names) if getattr(meta, "class_names", None) else None,
    )


def _safe_name(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() and ch.isascii() or ch in "._+-" else "-" for ch in text).strip(
        "-._+"
    )
    return cleaned[:128] or "model"


def load_models(
    checkpoints: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    arch: str | None = None,
    pool: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    trust_pickle: bool = False,
) -> list[ModelEntry]:
    """Turn checkpoint paths, ``Checkpoint`` objects, ``nn.Module`` s or ``ModelEntry`` s into named entries.

    Names default to the checkpoint's file stem (the architecture for modules), made file-name safe and unique;
    explicit ``names`` must already be valid.
    """
    if not checkpoints:
        raise ValueError("evaluate needs at least one checkpoint or model")
    if names is not None and len(names) != len(checkpoints):
        raise ValueError(f"{len(names)} names given for {len(checkpoints)} models")
    entries: list[ModelEntry] = []
    for i, item in enumerate(checkpoints):
        given = names[i] if names is not None else None
        if given is not None:
            validate_key_part(given, "model name")
        if isinstance(item, ModelEntry):
            entry = item if given is None else ModelEntry(**{**item.__dict__, "name": given})
        elif isinstance(item, nn.Module):
            entry = _entry_from_module(item, given)
        elif hasattr(item, "model") and hasattr(item, "meta"):
            entry = _entry_from_checkpoint(item, given)
        elif isinstance(item, (str, os.PathLike)):
            from .checkpoint import load_checkpoint

            path = Path(item)
            if not path.exists():
                raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
            ckpt = load_checkpoint(
                path,
                arch=arch,
                pool=pool,
                num_classes=num_classes,
                in_channels=in_channels,
                trust_pickle=trust_pickle,
            )
            entry = _entry_from_checkpoint(ckpt, given)
        else:
            raise TypeError(
                f"cannot evaluate a {type(item).__name__}: pass checkpoint paths, Checkpoint objects or nn.Modules"
            )
        if given is None:
            entry.name = _safe_name(entry.name)
        if entry.in_channels is None:
            entry.in_channels = _first_conv_channels(entry.model)
        if entry.mean is None and entry.format != "module":
            log.warning(
                "model %r records no input normalisation: images go in as [0, 1] without it; pass --mean/--std "
                "if it was trained with one (torchvision's ImageNet weights: --mean 0.485,0.456,0.406 "
                "--std 0.229,0.224,0.225)",
                entry.name,
            )
        entries.append(entry)
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.name in seen and names is not None:
            raise ValueError(f"model name {entry.name!r} is given twice")
        base = entry.name
        while entry.name in seen:
            seen[base] += 1
            entry.name = f"{base}-{seen[base]}"
        seen.setdefault(entry.name, 1)
    return entries


def _first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the first convolution (for models without metadata), None when there is none."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def _infer_num_classes(entry: ModelEntry, channels: int, size: tuple[int, int] | None) -> int:
    """Number of outputs of a model without metadata: one forward pass of a single blank image."""
    h, w = entry.input_size or size or (32, 32)
    device = _model_device(entry.model) or torch.device("cpu")
    with torch.inference_mode():
        out = entry.model.eval()(torch.zeros(1, entry.in_channels or channels, h, w, device=device))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(
            f"model {entry.name!r} must return logits (B, K), got {getattr(out, 'shape', type(out))}"
        )
    return int(out.shape[1])


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
) -> list[CellSpec]:
    """All cells of a run: each model's clean cell, then every suite's cells (checks class counts first).

    Raises:
        ValueError: unknown suites / corruptions / severities, or a model whose class count differs from the
            dataset's - all before any image is evaluated.
    """
    return _plan(models, suites, dataset, corruptions, severities, limit, seed, backend, clean)[0]


def _plan(models, suites, dataset, corruptions, severities, limit, seed, backend, clean):
    from .data import PregeneratedSet

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
            raise ValueError(
                f"no suite of the run has the corruption(s) {unknown} (suites: {', '.join(resolved)})"
            )
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("two planned cells share a key; check for duplicate suites or corruptions")
    return cells, resolved


# ====================================================================================================== driver
@dataclass
class RunResult:
    """What :func:`evaluate` returns."""

    run_dir: Path
    results: pd.DataFrame
    cells_run: int
    cells_skipped: int
    baseline: str | None
    manifest: dict[str, Any]

    def summary(self) -> pd.DataFrame:
        return summary_table(self.results)


def _versions(backend: str | None) -> dict[str, str]:
    from importlib import metadata

    from . import __version__

    out = {
        "robustbench_lift": __version__,
        "corruptions": f"{__version__} (backend {backend or 'torch'})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    for dist in ("torchvision", "imagecorruptions", "scikit-image"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _dataset_identity(spec: Any, dataset: Any) -> dict[str, Any]:
    if isinstance(spec, str):
        kind, sep, root = spec.partition(":")
        text = (
            f"{kind.strip().lower()}:{Path(root).expanduser().resolve()}"
            if sep and root
            else kind.strip().lower()
        )
    else:
        text = f"<{type(spec).__name__}>"
    ident = {
        "spec": text,
        "name": getattr(dataset, "name", None),
        "num_classes": getattr(dataset, "num_classes", None),
    }
    try:
        ident["size"] = len(dataset)
    except TypeError:
        ident["size"] = None
    ident["split"] = getattr(dataset, "split", None)
    return ident


def _normalise_amp(amp: Any, device: torch.device) -> str | None:
    if amp in (False, None, "", "none", "fp32"):
        return None
    value = "bf16" if amp is True else amp
    if value not in ("bf16", "fp16"):
        raise ValueError(f"amp must be False, True, 'bf16' or 'fp16'; got {amp!r}")
    if device.type != "cuda":
        raise ValueError(f"mixed precision (amp={value}) is for CUDA devices; got device {str(device)!r}")
    return value


def _choose_baseline(
    baseline: str | None, order: list[str], models: Mapping[str, Mapping[str, Any]]
) -> str | None:
    if baseline is not None:
        if baseline not in models:
            raise ValueError(f"baseline {baseline!r} is not a model of the run; models: {', '.join(order)}")
        return baseline
    maxes = [m for m in order if models[m].get("pooling") == "max"]
    if len(maxes) == 1:
        return maxes[0]
    return order[0] if order else None


def evaluate(
    checkpoints: Sequence[Any],
    dataset: Any,
    suites: Sequence[Any] | str | None = None,
    *,
    out: str | os.PathLike[str],
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    limit: int | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    workers: int = 0,
    seed: int = 0,
    amp: bool | str = False,
    channels_last: bool = False,
    executor: Executor | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
    baseline: str | None = None,
    new_run: bool = False,
    strict: bool = False,
    backend: str = "torch",
    clean_dataset: Any = None,
    n_boot: int = 1000,
    arch: str | None = None,
    pool: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    trust_pickle: bool = False,
    input_size: int | Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Evaluate models on corruption suites (and plug-in suite kinds), resumably, into a run directory.

    Args:
        checkpoints: checkpoint paths, ``Checkpoint`` objects, ``nn.Module`` s or ``ModelEntry`` s.
        dataset: a spec for ``open_dataset`` (``"fashion-mnist"``, ``"cifar10-c:ROOT"``, ...) or an opened dataset.
        suites: suite names / ``Suite`` objects / suite JSON paths (default: a pre-generated set's own suite, else
            ``cifar10-c`` for models up to 64 px and ``imagenet-c`` above).
        out: the run directory (a bare name means ``reports/<name>``).
        corruptions, severities: subsets (default: all of the suite, severities 1..5).
        limit: evaluate a seeded random subset of this many images.
        amp: ``True``/``"bf16"``/``"fp16"`` autocast on CUDA. channels_last: NHWC memory format.
        executor: where cells run (default: :class:`LocalExecutor`).
        names: model names in the run (default: checkpoint stems). baseline: the model that scores 100 (default:
            the one model with max pooling, else the first).
        new_run: discard what the run directory holds instead of resuming.
        strict: unreadable image files are fatal instead of skipped.
        clean_dataset: clean images for a pre-generated set (spec or dataset) - gives clean error and relative mCE.
        n_boot: bootstrap resamples for the CIs (0: none).
        arch, pool, num_classes, in_channels, trust_pickle: how to load external checkpoints.
        input_size, mean, std: override every model's preprocessing (for checkpoints without metadata: by
            default such a model sees the data at its own size, without normalisation).
        command: the command line recorded in the manifest (default: ``sys.argv``).

    Returns:
        a :class:`RunResult`; ``results.csv`` is written in the run directory.
    """
    from .data import PregeneratedSet, open_dataset

    device_t = torch.device(device)
    amp_mode = _normalise_amp(amp, device_t)
    if isinstance(batch_size, bool) or int(batch_size) <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if int(workers) < 0:
        raise ValueError(f"workers must be >= 0, got {workers!r}")
    if limit is not None and int(limit) <= 0:
        raise ValueError(f"limit must be a positive number of images, got {limit!r}")
    if severities is not None:
        bad = [s for s in severities if isinstance(s, bool) or int(s) != s or not 1 <= int(s) <= 5]
        if bad:
            raise ValueError(f"severities must be integers in 1..5, got {bad}")
        severities = sorted({int(s) for s in severities})
    if corruptions is not None:
        corruptions = list(dict.fromkeys(corruptions))
    store = RunStore(resolve_run_dir(out))

    models = load_models(
        checkpoints,
        names=names,
        arch=arch,
        pool=pool,
        num_classes=num_classes,
        in_channels=in_channels,
        trust_pickle=trust_pickle,
    )
    for entry in models:
        if input_size is not None:
            entry.input_size = _size2(input_size)
        if mean is not None:
            entry.mean = _tuple(mean)
        if std is not None:
            entry.std = _tuple(std)
    dataset_spec = dataset if isinstance(dataset, str) else None
    if dataset_spec is not None:
        sizes = {m.input_size for m in models}
        kind = dataset_spec.partition(":")[0].strip().lower()
        size = next(iter(sizes)) if len(sizes) == 1 and kind == "imagefolder" else None
        dataset = open_dataset(dataset_spec, image_size=size, strict=strict)
    pregenerated = isinstance(dataset, PregeneratedSet)
    if isinstance(clean_dataset, str):
        clean_spec = clean_dataset
        clean_dataset = open_dataset(clean_dataset, strict=strict)
    else:
        clean_spec = clean_dataset
    if isinstance(suites, str):
        suites = [s.strip() for s in suites.split(",") if s.strip()]
    if not suites:
        if pregenerated:
            suites = [dataset.name]
        else:
            big = any(m.input_size and min(m.input_size) > 64 for m in models)
            suites = ["imagenet-c" if big else "cifar10-c"]
    if pregenerated and clean_dataset is None:
        log.warning(
            "%s is pre-generated and no clean dataset was given: no clean error and no relative mCE "
            "(pass clean_dataset / --clean-dataset)",
            dataset.name,
        )
    cells, resolved = _plan(
        models,
        suites,
        dataset,
        corruptions,
        severities,
        int(limit) if limit is not None else None,
        int(seed),
        backend,
        clean=not pregenerated or clean_dataset is not None,
    )
    if pregenerated and clean_dataset is not None:
        _check_classes(models, clean_dataset)

    config = {
        "seed": int(seed),
        "limit": int(limit) if limit is not None else None,
        "dataset": _dataset_identity(dataset_spec if dataset_spec is not None else dataset, dataset),
        "clean_dataset": None if clean_dataset is None else _dataset_identity(clean_spec, clean_dataset),
        "backend": backend,
        "precision": amp_mode or "fp32",
        "models": {m.name: m.identity() for m in models},
        "suites": {name: desc for name, (_, _, desc) in resolved.items()},
    }
    info = {
        "command": list(command) if command is not None else list(sys.argv),
        "cwd": os.getcwd(),
        "host": platform.node(),
        "device": str(device_t),
        "cuda": torch.cuda.get_device_name(device_t) if device_t.type == "cuda" else None,
        "batch_size": int(batch_size),
        "workers": int(workers),
        "channels_last": bool(channels_last),
        "versions": _versions(backend),
        "checkpoints": {
            m.name: {"path": m.path, "content_hash": m.content_hash, "format": m.format} for m in models
        },
        "models_order": [m.name for m in models],
    }
    skipped_files = getattr(dataset, "num_skipped", 0)
    if skipped_files:
        info["skipped_image_files"] = int(skipped_files)

    with store:
        manifest = store.open(config, overwrite=new_run, info=info)
        run_models = manifest["config"]["models"]
        order = [m.name for m in models] + sorted(set(run_models) - {m.name for m in models})
        chosen_baseline = _choose_baseline(baseline, order, run_models)
        pending = [c for c in cells if not store.has_cell(c.key, c.to_dict())]
        skipped = len(cells) - len(pending)
        if skipped:
            log.info("resuming %s: %d of %d cells already stored", store.path, skipped, len(cells))
        context = EvalContext(
            models={m.name: m for m in models},
            dataset=dataset,
            dataset_spec=dataset_spec,
            clean_dataset=clean_dataset,
            suites={name: obj for name, (_, obj, _) in resolved.items()},
            device=str(device_t),
            batch_size=int(batch_size),
            workers=int(workers),
            amp=amp_mode,
            channels_last=bool(channels_last),
            strict=strict,
            pregenerated=pregenerated,
        )
        ran = _run_pending(store, pending, context, executor, progress)
        rows = _aggregate_run(store, order, chosen_baseline, int(seed), int(n_boot))
        results = store.write_results(rows)
        store.update_session(
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            cells_planned=len(cells),
            cells_run=ran,
            cells_skipped=skipped,
            baseline=chosen_baseline,
        )
        manifest = store.manifest
    return RunResult(
        run_dir=store.path,
        results=results,
        cells_run=ran,
        cells_skipped=skipped,
        baseline=chosen_baseline,
        manifest=manifest,
    )


def _cell_images(spec: CellSpec, context: EvalContext) -> int:
    try:
        if spec.kind == "pregenerated":
            n = len(context.dataset.cell(spec.corruption, spec.severity))
        elif spec.kind == "clean" and context.pregenerated:
            n = len(context.clean_dataset)
        else:
            n = len(context.dataset)
    except (TypeError, ValueError):
        return 0
    return n if spec.limit is None else min(n, spec.limit)


def _run_pending(
    store: RunStore, pending: list[CellSpec], context: EvalContext, executor: Executor | None, progress: bool
) -> int:
    if not pending:
        return 0
    from tqdm.auto import tqdm

    total = sum(_cell_images(c, context) for c in pending)
    bar = tqdm(
        total=total or None,
        unit="img",
        desc=f"cells 0/{len(pending)}",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    executor = executor if executor is not None else LocalExecutor(progress=bar.update)
    done_images = 0
    ran = 0
    try:
        for spec, result in executor.map(pending, context):
            info = dict(result.info)
            if info.get("nonfinite"):
                log.warning(
                    "model %s produced NaN/inf logits for %d of %d images in cell %s; they count as errors",
                    spec.model,
                    info["nonfinite"],
                    info.get("n", 0),
                    spec.key,
                )
            store.save_cell(spec.key, spec.to_dict(), result.arrays, info)
            ran += 1
            done_images += int(info.get("n", 0))
            if bar.n < done_images:  # executors without per-batch progress
                bar.update(done_images - bar.n)
            bar.set_description(f"cells {ran}/{len(pending)}")
    finally:
        bar.close()
    return ran


def _aggregate_run(
    store: RunStore, order: list[str], baseline: str | None, seed: int, n_boot: int
) -> list[dict]:
    config = store.manifest.get("config", {})
    models = config.get("models", {})
    cells: dict[str, dict[str, tuple]] = {}
    for key, spec, arrays, info in store.iter_cells():
        if spec.get("model") in models:
            cells.setdefault(spec["model"], {})[key] = (spec, arrays, info)
    data = AggregateInput(
        cells=cells,
        models=models,
        model_order=[m for m in order if m in models],
        baseline=baseline,
        seed=seed,
        n_boot=n_boot,
    )
    rows: list[dict[str, Any]] = []
    for name, desc in config.get("suites", {}).items():
        if desc.get("kind", "corruption") not in SUITE_KINDS:
            _load_plugins()
        kind = SUITE_KINDS.get(desc.get("kind", "corruption"))
        rows += kind.aggregate(name, desc.get("params", {}), data)
    return rows


# ====================================================================================================== summary
def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, suite): clean error, mean corruption error, mCE and relative mCE with CIs and protocols.

    Errors are shown in percent. Columns: model, pooling, suite, then ``<metric>`` / ``<metric>_ci`` pairs, and the
    ``mce_protocol``.
    """
    wanted = [
        (CLEAN, "top1_error", "clean_err", 100.0),
        ("benchmark", "mean_corruption_error", "mean_corr_err", 100.0),
        ("benchmark", "mce", "mCE", 1.0),
        ("benchmark", "relative_mce", "rel_mCE", 1.0),
        ("benchmark", "mce_diff", "mCE_vs_base", 1.0),
    ]
    lines = []
    df = results
    for (model, suite), group in df.groupby(["model", "suite"], sort=False):
        line: dict[str, Any] = {"model": model, "pooling": group["pooling"].iloc[0], "suite": suite}
        have = False
        for corruption, metric, label, scale in wanted:
            hit = group[(group["corruption"] == corruption) & (group["metric"] == metric)]
            if hit.empty:
                line[label] = ""
                continue
            have = True
            r = hit.iloc[0]
            line[label] = _fmt(r["value"] * scale, r["ci_low"] * scale, r["ci_high"] * scale)
            if metric == "mce":
                line["mCE_protocol"] = r["protocol"]
        if have:
            lines.append(line)
    return pd.DataFrame(lines)


def _fmt(value: float, lo: float, hi: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{value:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{value:.2f}"
