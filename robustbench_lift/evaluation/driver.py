"""``evaluate()``: plan the cells, run the pending ones through an executor, store them, aggregate from the store.

A run is a list of cells; :func:`~robustbench_lift.evaluation.runner.run_cell` is a pure function of the spec, the
model and the dataset - it never touches the store - so an executor can run cells anywhere and hand
``(spec, CellResult)`` pairs back to the driver, the only writer of the run store. Pre-generated sets
(``cifar10-c:ROOT``, ``imagenet-c:ROOT``) are read cell by cell instead of corrupted on the fly; pre-generated
ImageNet-C images are never resized. ``--limit N`` evaluates a seeded random subset of N images (the same images
for every cell and model, so comparisons stay paired), sorted by index.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data import PregeneratedSet, open_dataset
from ..metrics.seeds import SEED_TABLE_COLUMNS, seed_table
from ..report.summary import nonfinite_notes, suite_summary
from ..schema import NONFINITE, Protocol, result_row
from ..store import RunStore, resolve_run_dir
from .cells import CellSpec
from .executors import Executor, LocalExecutor
from .models import _size2, _tuple, load_models
from .planning import _check_classes, _plan
from .runner import EvalContext
from .suite_kinds import SUITE_KINDS, AggregateInput

log = logging.getLogger(__name__)


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
    #: seed-aware statistics per seed group (``seeds.csv``; :data:`~robustbench_lift.metrics.seeds.SEED_TABLE_COLUMNS`)
    seeds: pd.DataFrame | None = None
    #: cells that could not be run (unreadable input data), ``{cell key: why}``; they are not in ``results`` and
    #: the next evaluate of the run tries them again
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One line per (model, suite): see :func:`robustbench_lift.report.summary.suite_summary`."""
        return suite_summary(self.results)


#: Kept under its earlier name: the one builder lives in ``report.summary``.
summary_table = suite_summary


def _versions(backend: str | None) -> dict[str, str]:
    from importlib import metadata

    from .. import __version__

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
    jpeg_storage: bool = True,
    clean_dataset: Any = None,
    n_boot: int = 1000,
    arch: str | Sequence[str | None] | None = None,
    pool: str | Sequence[str | None] | None = None,
    num_classes: int | Sequence[int | None] | None = None,
    in_channels: int | Sequence[int | None] | None = None,
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
        jpeg_storage: on-the-fly ``imagenet-c`` cells store each corrupted image as a quality-85 JPEG and decode
            it, the published generator's last step (False skips it; no row is then AlexNet-normalised).
        clean_dataset: clean images for a pre-generated set (spec or dataset) - gives clean error and relative mCE.
        n_boot: bootstrap resamples for the CIs (0: none).
        arch, pool, num_classes, in_channels, trust_pickle: how to load checkpoint files. Each of the first four is
            one value (with several checkpoints: for every external one; native files keep what they record) or a
            list with one value per checkpoint (None: not given for that one; a native file checks it against its
            metadata, and rebuilds with a given pool); see ``evaluation.models.per_checkpoint``.
        input_size, mean, std: override every model's preprocessing (for checkpoints without metadata: by
            default such a model sees the data at its own size, without normalisation).
        command: the command line recorded in the manifest (default: ``sys.argv``).

    Returns:
        a :class:`RunResult`; ``results.csv`` is written in the run directory.
    """
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
        jpeg_storage=jpeg_storage,
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

    if baseline is not None:
        # refuse an unknown baseline before the manifest is written
        stored = {} if new_run else (store.read_manifest() or {}).get("config", {}).get("models", {})
        _choose_baseline(
            baseline, order=[m.name for m in models] + sorted(stored), models={**stored, **config["models"]}
        )
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
        failed: dict[str, str] = {}
        ran = _run_pending(store, pending, context, executor, progress, failed)
        vectors: dict[Any, Any] = {}
        rows = _aggregate_run(store, order, chosen_baseline, int(seed), int(n_boot), vectors)
        results = store.write_results(rows)
        for note in nonfinite_notes(results):
            log.warning("%s", note)
        seed_rows = _seed_rows(store, vectors, chosen_baseline, int(seed))
        seeds_table = store.write_seed_table(seed_rows, SEED_TABLE_COLUMNS)
        store.update_session(
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            cells_planned=len(cells),
            cells_run=ran,
            cells_skipped=skipped,
            cells_failed=failed,
            baseline=chosen_baseline,
            # a report over several runs re-aggregates their cells with the same resamples
            n_boot=int(n_boot),
        )
        manifest = store.manifest
    return RunResult(
        run_dir=store.path,
        results=results,
        cells_run=ran,
        cells_skipped=skipped,
        baseline=chosen_baseline,
        manifest=manifest,
        seeds=seeds_table,
        failed=failed,
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
    store: RunStore,
    pending: list[CellSpec],
    context: EvalContext,
    executor: Executor | None,
    progress: bool,
    failed: dict[str, str],
) -> int:
    """Run the pending cells and store each result; cells that fail on unreadable data go to ``failed``."""
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
            if result.error is not None:
                failed[spec.key] = result.error
                log.error("cell %s failed: %s", spec.key, result.error)
                continue
            info = dict(result.info)
            if info.get("nonfinite"):
                log.info(
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


def _seed_rows(store: RunStore, vectors: dict[Any, Any], baseline: str | None, seed: int) -> list[dict]:
    """The seed table: each seed group's metrics over its seeds, and each group minus the baseline's group."""
    models = store.manifest.get("config", {}).get("models", {})
    base_group = str(models[baseline].get("group") or baseline) if baseline in models else None
    return seed_table(vectors, models, baseline_group=base_group, seed=seed)


def _aggregate_run(
    store: RunStore,
    order: list[str],
    baseline: str | None,
    seed: int,
    n_boot: int,
    vectors: dict[Any, Any] | None = None,
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
        vectors=vectors,
    )
    rows: list[dict[str, Any]] = []
    for name, desc in config.get("suites", {}).items():
        kind = SUITE_KINDS.get(desc.get("kind", "corruption"))
        rows += kind.aggregate(name, desc.get("params", {}), data)
    return rows + _nonfinite_rows(cells, models, data.model_order)


def _nonfinite_rows(
    cells: Mapping[str, Mapping[str, tuple]], models: Mapping[str, Mapping[str, Any]], order: list[str]
) -> list[dict[str, Any]]:
    """One :data:`~robustbench_lift.schema.NONFINITE` row per stored cell whose model gave NaN/inf logits, so every
    later summary of the run (a resumed evaluate, ``report``, ``check``) can say so."""
    rows = []
    for model in order:
        for spec, _, info in cells.get(model, {}).values():
            bad, n = int(info.get("nonfinite") or 0), int(info.get("n") or 0)
            if bad and n:
                rows.append(
                    result_row(
                        {"model": model, **models.get(model, {})},
                        spec["suite"],
                        spec["corruption"],
                        int(spec["severity"]),
                        NONFINITE,
                        bad / n,
                        (math.nan, math.nan),
                        n,
                        Protocol.NONFINITE,
                    )
                )
    return rows
