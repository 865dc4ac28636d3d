"""The models of a run: checkpoints, modules and state_dicts turned into named :class:`ModelEntry` s."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Preprocess
from ..store import validate_key_part
from .groups import group_id, training_seed

log = logging.getLogger(__name__)


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
    #: training seed recorded by the checkpoint (None: none recorded) and seed group (see :mod:`.groups`;
    #: "" until :func:`load_models` names it: then the model's own name when it records no training).
    seed: int | None = None
    group: str = ""

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
            "seed": self.seed,
            "group": self.group or self.name,
        }


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


def _content_hash(model: nn.Module) -> str:
    """The checkpoint format's content hash of the model's tensors (for models that come without one)."""
    from ..checkpoint import content_hash

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
        seed=training_seed(meta.train_config),
        group=group_id("", str(meta.arch), str(meta.pool or "unknown"), meta.train_config)
        if meta.train_config
        else "",
    )


def _safe_name(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() and ch.isascii() or ch in "._+-" else "-" for ch in text).strip(
        "-._+"
    )
    return cleaned[:128] or "model"


#: The build options a checkpoint path can be given (once, or once per checkpoint).
BUILD_OPTIONS = ("arch", "pool", "num_classes", "in_channels")


def per_checkpoint(options: dict[str, Any], count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Split build options into ``(explicit, defaults)`` for each of ``count`` checkpoints.

    A value is either one value or a list/tuple of ``count`` values (None in it: not given for that checkpoint).
    A list is per checkpoint, and so is a single value when there is one checkpoint: explicit, so a native
    checkpoint checks arch/num_classes/in_channels against its metadata (a conflict is an error) and is rebuilt
    with the given pool. A single value for several checkpoints is a default: every external checkpoint (state_dict,
    TorchScript, pickle) uses it, native ones keep what they record.
    """
    out: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {}) for _ in range(count)]
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            if len(value) == 1 and count != 1:
                value = value[0]
            elif len(value) != count:
                raise ValueError(
                    f"{key} given {len(value)} times for {count} checkpoints: give it once (for every external "
                    "checkpoint) or once per checkpoint"
                )
            else:
                for i, v in enumerate(value):
                    if v is not None:
                        out[i][0][key] = v
                continue
        for explicit, defaults in out:
            (explicit if count == 1 else defaults)[key] = value
    return out


def load_models(
    checkpoints: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    arch: str | Sequence[str | None] | None = None,
    pool: str | Sequence[str | None] | None = None,
    num_classes: int | Sequence[int | None] | None = None,
    in_channels: int | Sequence[int | None] | None = None,
    trust_pickle: bool = False,
) -> list[ModelEntry]:
    """Turn checkpoint paths, ``Checkpoint`` objects, ``nn.Module`` s or ``ModelEntry`` s into named entries.

    Names default to the checkpoint's file stem (the architecture for modules), made file-name safe and unique;
    explicit ``names`` must already be valid. ``arch``, ``pool``, ``num_classes`` and ``in_channels`` say how to
    build checkpoint paths: one value, or one per checkpoint (see :func:`per_checkpoint` for which applies where).
    """
    if not checkpoints:
        raise ValueError("evaluate needs at least one checkpoint or model")
    if names is not None and len(names) != len(checkpoints):
        raise ValueError(f"{len(names)} names given for {len(checkpoints)} models")
    build = per_checkpoint(
        {"arch": arch, "pool": pool, "num_classes": num_classes, "in_channels": in_channels}, len(checkpoints)
    )
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
            from ..checkpoint import load_checkpoint

            path = Path(item)
            if not path.exists():
                raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
            explicit, defaults = build[i]
            ckpt = load_checkpoint(path, **explicit, defaults=defaults, trust_pickle=trust_pickle)
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
    for entry in entries:
        entry.group = entry.group or entry.name
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
