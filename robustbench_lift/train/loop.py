"""The training loop: :func:`train` (see the package docstring for its choices)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions.rng import derive_seed, torch_generator
from robustbench_lift.layers.aux import auxiliary_loss
from robustbench_lift.layers.pools import list_pools
from robustbench_lift.models import build_model, list_models

from .batches import _as_float, _batches, _channel_stats, _load, _subset, augment
from .config import (
    _DEFAULT_LR,
    _DEFAULT_WD,
    CHECKPOINT_SUFFIXES,
    OPTIMIZERS,
    VAL_SPLITS,
    TrainConfig,
    TrainResult,
    _check_dataset,
    _non_negative,
    _positive_int,
    best_path_for,
    default_flip,
    default_holdout,
    resume_path_for,
)
from .optim import _make_optimizer, _make_scheduler, _seeded, _training_mode
from .state import _STATE_FORMAT, _load_state, _save_state

log = logging.getLogger(__name__)

_STATS_IMAGES = 10_000


@torch.no_grad()
def _evaluate(
    model: nn.Module, ds: Any, indices: Tensor, norm: tuple[Tensor, Tensor], cfg_channels: int, batch_size: int,
    device: torch.device,
) -> tuple[float, float]:  # fmt: skip
    model.eval()
    correct, loss_sum = 0, 0.0
    mean, std = norm
    for sl in _batches(len(indices), batch_size, drop_tiny=False):
        x, y = _load(ds, indices[sl])
        x = (_as_float(x, cfg_channels).to(device) - mean) / std
        y = y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = len(indices)
    return correct / n, loss_sum / n


def train(
    arch: str,
    pool: str,
    dataset: str | Any,
    *,
    epochs: int,
    out: str | os.PathLike,
    val_dataset: str | Any | None = None,
    batch_size: int = 128,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float | None = None,
    warmup_epochs: float = 0.5,
    label_smoothing: float = 0.0,
    crop_padding: int = 4,
    flip: bool | None = None,
    seed: int = 0,
    deterministic: bool = True,
    limit_train: int | None = None,
    limit_val: int | None = None,
    val_split: str = "holdout",
    holdout: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    pool_kwargs: Mapping[str, Any] | None = None,
    eval_batch_size: int = 512,
    num_threads: int | None = None,
    device: str | torch.device | None = None,
    download: bool = False,
    image_size: int | Sequence[int] | None = None,
    restart: bool = False,
    progress: bool | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``build_model(arch, pool=pool)`` on ``dataset`` and write checkpoints (see the module docstring).

    Args:
        arch, pool: a registered model and pooling kind.
        dataset: a dataset spec (``"fashion-mnist"``, ``"cifar10:ROOT"``, ...; its train split is used) or an opened
            dataset yielding ``(uint8 (C, H, W), label)`` with ``num_classes``, ``class_names``, ``channels``,
            ``image_size`` (and ideally ``name``).
        epochs: total number of epochs (a resumed run continues up to it).
        out: path of the last checkpoint; the best one and the resume state go next to it.
        val_dataset: validate on this dataset (spec, whose test split is used, or an opened dataset) instead of
            held-out training images (``val_source="dataset"``).
        batch_size, optimizer ("sgd" | "adamw"), lr, momentum, nesterov, weight_decay: optimisation (lr and
            weight_decay default to 0.05 / 5e-4 for SGD, 2e-3 / 0.05 for AdamW).
        warmup_epochs: linear warm-up length (fractions allowed), then cosine decay to zero.
        label_smoothing: cross-entropy label smoothing.
        crop_padding: random-crop padding in pixels (0: no cropping). flip: random horizontal flips (default:
            on unless the dataset is digits, see :data:`NO_FLIP_DATASETS`).
        seed, deterministic: randomness and deterministic algorithms (see the module docstring).
        limit_train, limit_val: train / validate on a seeded random subset of that many images.
        val_split: what validation (and so the best checkpoint) uses when ``val_dataset`` is not given:
            ``"holdout"`` (default) a seeded split of the training set, never used for training, or ``"test"``
            the spec's test split (the evaluation images: ask for it only knowingly).
        holdout: size of the held-out split (default :func:`default_holdout` of the training set's size).
        model_kwargs, pool_kwargs: options for :func:`~robustbench_lift.models.build_model` and the pools.
        eval_batch_size: batch size of validation.
        num_threads: torch CPU threads during training (default: leave torch's setting).
        device: default CUDA when available, else CPU.
        download, image_size: passed to ``open_dataset`` for specs.
        restart: ignore (and overwrite) an existing resume state.
        progress: tqdm progress bars on stderr (default: only when stderr is a terminal).
        on_epoch_end: called with each epoch's record after its checkpoints and resume state are written.

    Returns:
        A :class:`TrainResult`.
    """
    from robustbench_lift.checkpoint import save_checkpoint

    # ---- arguments
    if arch not in list_models():
        raise ValueError(f"unknown model {arch!r}; valid: {', '.join(list_models())}")
    if pool not in list_pools():
        raise ValueError(f"unknown pooling {pool!r}; valid: {', '.join(list_pools())}")
    _positive_int("epochs", epochs)
    _positive_int("batch_size", batch_size)
    _positive_int("eval_batch_size", eval_batch_size)
    _positive_int("limit_train", limit_train, allow_none=True)
    _positive_int("limit_val", limit_val, allow_none=True)
    _positive_int("num_threads", num_threads, allow_none=True)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if val_split not in VAL_SPLITS:
        raise ValueError(f"unknown val_split {val_split!r}; valid: {', '.join(VAL_SPLITS)}")
    _positive_int("holdout", holdout, allow_none=True)
    if val_dataset is not None:
        val_source = "dataset"
    elif val_split == "test":
        val_source = "test"
    else:
        val_source = "holdout"
    if holdout is not None and val_source != "holdout":
        raise ValueError(
            f"holdout={holdout} is the size of the held-out training split; it does not go with "
            + ("val_dataset" if val_dataset is not None else "val_split='test'")
        )
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
        raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not 0.0 <= _non_negative("label_smoothing", label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    lr = _DEFAULT_LR[optimizer] if lr is None else lr
    if _non_negative("lr", lr) == 0:
        raise ValueError("lr must be positive, got 0")
    weight_decay = (
        _DEFAULT_WD[optimizer] if weight_decay is None else _non_negative("weight_decay", weight_decay)
    )
    momentum = _non_negative("momentum", momentum)
    warmup_epochs = _non_negative("warmup_epochs", warmup_epochs)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"out must be a file path (e.g. {out / 'model.safetensors'}), got the folder {out}")
    if out.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ValueError(
            f"out {str(out)!r}: training writes .safetensors checkpoints (loadable without running code); "
            f"accepted suffixes: {', '.join(CHECKPOINT_SUFFIXES)} (e.g. {out.with_suffix('.safetensors').name})"
        )
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )

    # ---- data
    if isinstance(dataset, str):
        from robustbench_lift.data import open_dataset

        spec = dataset
        train_ds = open_dataset(spec, split="train", download=download, image_size=image_size)
        if val_source == "test":
            val_dataset = open_dataset(spec, split="test", download=download, image_size=image_size)
    else:
        train_ds = dataset
        spec = str(getattr(dataset, "name", type(dataset).__name__))
        if val_source == "test":
            raise ValueError(
                "val_split='test' needs a dataset spec; with an opened dataset pass its test split as "
                "val_dataset=..."
            )
    val_name = val_dataset if isinstance(val_dataset, str) else getattr(val_dataset, "name", None)
    if isinstance(val_dataset, str):
        from robustbench_lift.data import open_dataset

        val_dataset = open_dataset(val_dataset, split="test", download=download, image_size=image_size)
    _check_dataset(train_ds, "dataset")
    if val_source == "holdout":
        holdout = default_holdout(len(train_ds)) if holdout is None else holdout
        if holdout >= len(train_ds):
            raise ValueError(f"holdout={holdout} leaves no training images (the dataset has {len(train_ds)})")
        val_ds = train_ds
    else:
        val_ds = val_dataset
        _check_dataset(val_ds, "val_dataset")
        if val_ds.num_classes != train_ds.num_classes:
            raise ValueError(
                f"val_dataset has {val_ds.num_classes} classes but the training data has {train_ds.num_classes}"
            )
        if tuple(val_ds.image_size) != tuple(train_ds.image_size) or val_ds.channels != train_ds.channels:
            raise ValueError(
                f"val_dataset images are {val_ds.channels}x{tuple(val_ds.image_size)}, training images "
                f"{train_ds.channels}x{tuple(train_ds.image_size)}"
            )
    if flip is None:
        flip = default_flip(getattr(train_ds, "name", spec))
    channels = int(train_ds.channels)
    size = (int(train_ds.image_size[0]), int(train_ds.image_size[1]))

    cfg = TrainConfig(
        arch=arch,
        pool=pool,
        dataset=spec,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=float(lr),
        momentum=momentum,
        nesterov=bool(nesterov),
        weight_decay=float(weight_decay),
        warmup_epochs=warmup_epochs,
        label_smoothing=float(label_smoothing),
        crop_padding=crop_padding,
        flip=bool(flip),
        seed=seed,
        deterministic=bool(deterministic),
        limit_train=limit_train,
        limit_val=limit_val,
        holdout=holdout or 0,
        val_source=val_source,
        val_dataset=None if val_source == "holdout" else str(val_name or spec),
        model_kwargs=dict(model_kwargs or {}),
        pool_kwargs=dict(pool_kwargs or {}),
    )

    # index sets: seeded subsets for --limit-*, and the held-out split disjoint from the training images
    n_all = len(train_ds)
    if val_source == "holdout" and limit_train is not None and limit_train + holdout <= n_all:
        # room outside the training subset: hold out from the images training does not use, so the training
        # subset is the one any other validation choice gives
        train_idx = _subset(n_all, limit_train, seed, "limit-train")
        unused = torch.ones(n_all, dtype=torch.bool)
        unused[train_idx] = False
        rest = unused.nonzero().flatten()
        val_idx = (
            rest[torch.randperm(len(rest), generator=torch_generator(seed, "holdout"))[:holdout]]
            .sort()
            .values
        )
    elif val_source == "holdout":
        perm = torch.randperm(n_all, generator=torch_generator(seed, "holdout"))
        val_idx, pool_idx = perm[:holdout].sort().values, perm[holdout:].sort().values
        train_idx = pool_idx[_subset(len(pool_idx), limit_train, seed, "limit-train")]
    else:
        val_idx = torch.arange(len(val_ds))
        train_idx = _subset(n_all, limit_train, seed, "limit-train")
    val_idx = val_idx[_subset(len(val_idx), limit_val, seed, "limit-val")]
    if len(train_idx) < 2:
        raise ValueError(f"need at least 2 training images, got {len(train_idx)}")
    steps_per_epoch = len(list(_batches(len(train_idx), batch_size, drop_tiny=True)))

    best_path, state_path = best_path_for(out), resume_path_for(out)
    state = None
    if state_path.exists() and not restart:
        state = _load_state(state_path, cfg)
        if state["epoch"] > epochs:
            raise ValueError(
                f"{state_path} has already trained {state['epoch']} epochs, more than the {epochs} asked for; "
                "ask for at least that many or pass restart=True (--restart)"
            )

    with _training_mode(cfg.deterministic, num_threads, dev):
        if state is not None:
            mean, std = state["mean"], state["std"]
        else:
            stats_idx = train_idx[_subset(len(train_idx), _STATS_IMAGES, seed, "stats")]
            mean, std = _channel_stats(train_ds, stats_idx, channels, eval_batch_size)
        with _seeded(derive_seed(seed, "init"), dev):
            model = build_model(
                arch,
                pool=pool,
                num_classes=int(train_ds.num_classes),
                in_channels=channels,
                input_size=size,
                mean=mean,
                std=std,
                pool_kwargs=cfg.pool_kwargs,
                **cfg.model_kwargs,
            )
        model.to(dev)
        opt = _make_optimizer(model, cfg)
        sched = _make_scheduler(opt, cfg, steps_per_epoch)
        history: list[dict[str, Any]] = []
        start_epoch = 0
        best = {"val_acc": -1.0, "epoch": 0}
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history, start_epoch, best = list(state["history"]), int(state["epoch"]), dict(state["best"])
            if state["epochs"] != epochs:
                log.warning(
                    "resuming a run planned for %d epochs with epochs=%d: the LR schedule is stretched from "
                    "epoch %d on, so the result differs from a run planned for %d epochs",
                    state["epochs"], epochs, start_epoch, epochs,
                )  # fmt: skip
            log.info("resuming %s from epoch %d of %d", state_path, start_epoch, epochs)
        norm = (
            torch.tensor(mean, device=dev).view(1, -1, 1, 1),
            torch.tensor(std, device=dev).view(1, -1, 1, 1),
        )
        meta = {
            "input_size": list(size),
            "mean": mean,
            "std": std,
            "class_names": list(train_ds.class_names),
            "dataset": spec,
        }
        started = time.perf_counter()
        for epoch in range(start_epoch, epochs):
            record = _train_epoch(
                model, opt, sched, train_ds, train_idx, norm, cfg, epoch, steps_per_epoch, dev, progress
            )
            val_acc, val_loss = _evaluate(model, val_ds, val_idx, norm, channels, eval_batch_size, dev)
            record.update(val_acc=val_acc, val_loss=val_loss)
            history.append(record)
            is_best = val_acc > best["val_acc"]
            if is_best:
                best = {"val_acc": val_acc, "epoch": epoch + 1}
            train_config = _train_config(cfg, history, best, len(train_idx), len(val_idx))
            save_checkpoint(out, model, train_config={**train_config, "checkpoint": "last"}, **meta)
            if is_best:
                save_checkpoint(best_path, model, train_config={**train_config, "checkpoint": "best"}, **meta)
            _save_state(
                state_path,
                {
                    "format": _STATE_FORMAT,
                    "config": cfg.fingerprint(),
                    "epochs": epochs,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "history": history,
                    "best": best,
                    "mean": mean,
                    "std": std,
                    "rng": {"seed": seed, "next_epoch_seed": derive_seed(seed, "train", epoch + 1)},
                },
            )
            log.info(
                "epoch %d/%d: train loss %.4f acc %.4f, val (%s) loss %.4f acc %.4f, %.1f s",
                epoch + 1, epochs, record["train_loss"], record["train_acc"], cfg.val_source, val_loss, val_acc,
                record["seconds"],
            )  # fmt: skip
            if on_epoch_end is not None:
                on_epoch_end(dict(record))
        seconds = time.perf_counter() - started

    if start_epoch == epochs:
        log.info("%s already finished %d epochs; nothing to train", state_path, epochs)
        if not out.exists():
            train_config = _train_config(cfg, history, best, len(train_idx), len(val_idx))
            save_checkpoint(out, model, train_config={**train_config, "checkpoint": "last"}, **meta)
    model.eval()
    return TrainResult(
        model=model,
        last_path=out,
        best_path=best_path,
        history=history,
        best_val_acc=float(best["val_acc"]),
        best_epoch=int(best["epoch"]),
        final_val_acc=float(history[-1]["val_acc"]),
        epochs_trained=epochs - start_epoch,
        start_epoch=start_epoch,
        seconds=seconds,
        config=cfg,
    )


def _train_config(
    cfg: TrainConfig, history: list[dict[str, Any]], best: dict[str, Any], n_train: int, n_val: int
) -> dict[str, Any]:
    return {
        **asdict(cfg),
        "epochs_done": len(history),
        "final_val_acc": history[-1]["val_acc"],
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "train_images": n_train,
        "val_images": n_val,
        "history": history,
        "torch_version": torch.__version__,
    }


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LambdaLR,
    ds: Any,
    train_idx: Tensor,
    norm: tuple[Tensor, Tensor],
    cfg: TrainConfig,
    epoch: int,
    steps: int,
    device: torch.device,
    progress: bool | None,
) -> dict[str, Any]:
    from tqdm import tqdm

    gen = torch_generator(cfg.seed, "train", epoch)
    order = train_idx[torch.randperm(len(train_idx), generator=gen)]
    mean, std = norm
    channels = mean.shape[1]
    model.train()
    loss_sum, aux_sum, correct, seen = 0.0, 0.0, 0, 0
    started = time.perf_counter()
    bar = tqdm(
        total=steps,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="batch",
        file=sys.stderr,
        disable=None if progress is None else not progress,
        leave=False,
    )
    with bar, _seeded(derive_seed(cfg.seed, "dropout", epoch), device):
        for sl in _batches(len(order), cfg.batch_size, drop_tiny=True):
            x, y = _load(ds, order[sl])
            x = augment(_as_float(x, channels), cfg.crop_padding, cfg.flip, gen)
            x = (x.to(device) - mean) / std
            y = y.to(device)
            logits = model(x)
            task = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            aux = auxiliary_loss(model)
            loss = task + aux
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n = y.shape[0]
            loss_sum += float(task.detach()) * n
            aux_sum += float(aux.detach()) * n
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += n
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_aux_loss": aux_sum / seen,
        "train_acc": correct / seen,
        "lr": float(sched.get_last_lr()[0]),
        "seconds": time.perf_counter() - started,
    }
