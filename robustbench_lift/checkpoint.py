"""Safe model checkpoints: the toolkit's safetensors format, plus plain state_dicts and TorchScript archives.

The toolkit's format is ONE ``.safetensors`` file: the model's tensors plus a metadata header
``{"robustbench_lift": "<json>"}`` that says how to rebuild the model (arch, pool, num_classes, in_channels), how to
feed it (input_size, mean, std, class_names, dataset), how it was trained (train_config), which package wrote it
(package_version, format, format_version) and a ``content_hash`` of the tensors (sha256 over names, dtypes, shapes
and bytes), checked on load. Loading never unpickles Python objects unless ``trust_pickle=True`` is passed.

Formats understood by :func:`load_checkpoint` (recognised by content, not by file extension):

* ``native``       a ``.safetensors`` file with the metadata above; rebuilds the model from the metadata alone.
* ``state_dict``   a ``torch.save`` state_dict (``.pt``/``.pth``, loaded with ``weights_only=True``) or a plain
                   safetensors file without our metadata; needs ``arch`` (and ``pool``; ``num_classes`` and
                   ``in_channels`` are read from the weights when not given: the classifier head's outputs and the
                   first conv's inputs). Wrappers ``{"state_dict": ...}``, ``{"model": ...}`` and
                   ``module.`` / ``_orig_mod.`` / ``model.`` key prefixes are handled, and so are the checkpoints of
                   timm's training script (``state_dict``, ``state_dict_ema``, ``arch``, ``optimizer``, ``args``, ...:
                   the non-EMA ``state_dict`` is loaded, ``arch`` suggests ``timm:ARCH``) and of torchvision's
                   reference scripts (``model``, ``optimizer``, ``lr_scheduler``, ``args``: ``args.model`` suggests
                   ``torchvision:NAME``). Their ``args`` is an ``argparse.Namespace``, which is allowed in a
                   ``weights_only`` load (a plain attribute bag, rebuilt without running code); any other class
                   still makes the file a full pickle.
* ``torchscript``  a ``torch.jit.save`` archive.
* ``pickle``       a full pickle (a pickled ``nn.Module`` or objects beyond tensors): refused unless
                   ``trust_pickle=True``, since unpickling can run arbitrary code.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .fileio import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "content_hash",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

METADATA_KEY = "robustbench_lift"
FORMAT_VERSION = 1
_BUILD_KEYS = ("arch", "pool", "num_classes", "in_channels")
_CFG_KEYS = (*_BUILD_KEYS, "input_size", "mean", "std")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_PREFIXES = ("module.", "_orig_mod.", "model.")
_MAX_NAMED = 5
#: Classes a ``weights_only`` load may rebuild besides tensors and plain containers. ``argparse.Namespace`` (the
#: ``args`` of timm's and torchvision's training checkpoints) is a plain attribute bag: unpickling it creates an
#: empty Namespace and sets its attributes, whose values pass the same ``weights_only`` checks; no code of the file
#: runs. Passed to ``torch.serialization.safe_globals`` for each load only, never registered globally.
_SAFE_GLOBALS = (argparse.Namespace,)


class CheckpointError(ValueError):
    """A checkpoint cannot be read, is not what it claims, or does not fit the model it should rebuild."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its model.

    Attributes:
        arch: toolkit model name or ``torchvision:NAME``.
        pool: pooling kind the model was built with (None: the architecture's own pooling).
        num_classes, in_channels: head outputs and input channels.
        input_size, mean, std: preprocessing the model expects (as recorded by its ``default_cfg``).
        class_names, dataset, train_config: provenance.
        model_cfg: the model's full ``default_cfg`` (architecture options such as a ResNet stem, pool options).
        package_version: version of robustbench-lift that wrote the file.
        content_hash: ``sha256:<hex>`` over tensor names, dtypes, shapes and bytes.
        format: how the file was loaded: ``native``, ``state_dict``, ``torchscript`` or ``pickle``.
        extra: metadata keys this version does not know (kept, not interpreted).
    """

    arch: str | None = None
    pool: str | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    input_size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None
    train_config: dict[str, Any] | None = None
    model_cfg: dict[str, Any] | None = None
    package_version: str | None = None
    content_hash: str | None = None
    format: str = "native"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode), its metadata and where it came from."""

    model: nn.Module
    meta: CheckpointMeta
    path: Path


def _tuple(value: Any) -> tuple | None:
    return None if value is None else tuple(value)


def _meta_from_dict(data: Mapping[str, Any], fmt: str) -> CheckpointMeta:
    known = {f for f in CheckpointMeta.__dataclass_fields__ if f not in ("format", "extra")}
    extra = {k: v for k, v in data.items() if k not in known and k not in ("format", "format_version")}
    return CheckpointMeta(
        arch=data.get("arch"),
        pool=data.get("pool"),
        num_classes=data.get("num_classes"),
        in_channels=data.get("in_channels"),
        input_size=_tuple(data.get("input_size")),
        mean=_tuple(data.get("mean")),
        std=_tuple(data.get("std")),
        class_names=_tuple(data.get("class_names")),
        dataset=data.get("dataset"),
        train_config=data.get("train_config"),
        model_cfg=data.get("model_cfg"),
        package_version=data.get("package_version"),
        content_hash=data.get("content_hash"),
        format=fmt,
        extra=extra,
    )


def content_hash(tensors: Mapping[str, Tensor]) -> str:
    """``sha256:<hex>`` over the tensors' names, dtypes, shapes and bytes, in sorted name order.

    Independent of device and memory layout: tensors are hashed as contiguous CPU bytes.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        header = json.dumps([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape)])
        digest.update(len(header).to_bytes(8, "little") + header.encode())
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        digest.update(len(data).to_bytes(8, "little") + data)
    return "sha256:" + digest.hexdigest()


def _head(model: nn.Module) -> tuple[str, int] | None:
    """(weight key, outputs) of the classifier head: the last ``nn.Linear`` of the model."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (f"{name}.weight" if name else "weight", module.out_features)
    return last


def _tensors_for_saving(model: nn.Module) -> dict[str, Tensor]:
    # safetensors refuses tensors that share memory (tied weights); such aliases are stored as copies.
    tensors: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if t.numel() and key in seen:
            t = t.clone()
        seen.add(key)
        tensors[name] = t
    return tensors


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    input_size: Any = None,
    mean: Any = None,
    std: Any = None,
    class_names: Any = None,
    dataset: str | None = None,
    train_config: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """Write ``model`` to one ``.safetensors`` file with the toolkit's metadata, atomically.

    Args:
        path: destination file (parent directories are created).
        model: the model; ``model.default_cfg`` (set by the toolkit's builders) supplies arch, pool, num_classes,
            in_channels, input_size, mean and std unless given here.
        input_size, mean, std: preprocessing the model expects.
        class_names: one name per class.
        dataset: name of the training data.
        train_config: JSON-serialisable training settings (non-JSON values are stored as strings).
        **overrides: ``arch``, ``pool``, ``num_classes``, ``in_channels``.

    Returns:
        The path written.

    Raises:
        ValueError: when the architecture is unknown, num_classes disagrees with the head, or class_names has the
            wrong length. TypeError for unknown keyword arguments.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    unknown = sorted(set(overrides) - set(_BUILD_KEYS))
    if unknown:
        raise TypeError(
            f"unknown save_checkpoint arguments {unknown}; valid overrides: {', '.join(_BUILD_KEYS)}"
        )
    cfg = dict(getattr(model, "default_cfg", None) or {})
    given = {"input_size": input_size, "mean": mean, "std": std, **overrides}
    cfg.update({k: v for k, v in given.items() if v is not None})
    swap = getattr(model, "pooling_swap", None)  # set by models.swap.swap_pooling on torchvision models
    if swap is not None and getattr(swap, "kind", None):
        if cfg.get("pool") is None:
            cfg["pool"] = swap.kind
        cfg["swap"] = {"strided_convs": bool(getattr(swap, "strided_convs", None))}
    if not cfg.get("arch"):
        raise ValueError(
            "cannot record the architecture: the model has no default_cfg['arch']; pass arch=..."
        )
    head = _head(model)
    if cfg.get("num_classes") is None and head is not None:
        cfg["num_classes"] = head[1]
    if head is not None and cfg["num_classes"] != head[1]:
        raise ValueError(f"num_classes={cfg['num_classes']} but the head {head[0]!r} has {head[1]} outputs")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if cfg.get("num_classes") is not None and len(class_names) != cfg["num_classes"]:
            raise ValueError(f"{len(class_names)} class_names given for num_classes={cfg['num_classes']}")

    from safetensors.torch import save_file

    from robustbench_lift import __version__

    tensors = _tensors_for_saving(model)
    meta = {key: cfg.get(key) for key in _CFG_KEYS}
    meta.update(
        model_cfg={**cfg, **{k: cfg.get(k) for k in _CFG_KEYS}},
        class_names=class_names,
        dataset=dataset,
        train_config=dict(train_config) if train_config is not None else None,
        package_version=__version__,
        content_hash=content_hash(tensors),
        format="native",
        format_version=FORMAT_VERSION,
    )
    header = {METADATA_KEY: json.dumps(meta, default=str, sort_keys=True)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)
    logger.info("saved checkpoint %s (%s, %d tensors)", path, meta["arch"], len(tensors))
    return path


def _sniff(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(
                f"cannot read {path}: the zip archive is truncated or corrupt ({exc})"
            ) from None
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch"
    if head[:1] == b"\x80":
        return "torch"
    shown = head[:8].hex(" ") if head else "an empty file"
    raise CheckpointError(
        f"{path} is not a checkpoint: neither safetensors, a torch.save file, TorchScript nor a pickle "
        f"(starts with {shown})"
    )


def _torch_load(path: Path, trust_pickle: bool, map_location: Any) -> tuple[Any, bool]:
    """torch.load with ``weights_only=True``; a full pickle only with ``trust_pickle``. Returns (obj, was_pickle)."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(_SAFE_GLOBALS)):
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True), False
    except Exception as exc:  # torch raises several types for corrupt files
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(
                f"cannot read {path}: the file is truncated or corrupt ({_first_line(exc)})"
            ) from None
        if not trust_pickle:
            raise CheckpointError(
                f"{path} is a full pickle: loading it would run arbitrary Python code, so it was NOT loaded. "
                "Save a plain state_dict or a .safetensors file instead, or, only if you trust where the file came "
                "from, pass trust_pickle=True (CLI: --trust-pickle)."
            ) from None
    logger.warning("unpickling %s with trust_pickle=True: this runs whatever code the file contains", path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False), True
    except Exception as exc:
        raise CheckpointError(f"cannot unpickle {path}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _names(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_NAMED])
    more = f" and {len(keys) - _MAX_NAMED} more" if len(keys) > _MAX_NAMED else ""
    return f"{len(keys)} ({shown}{more})"


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    for _ in range(3):  # nested wrappers such as {"model": {"state_dict": ...}}
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
            inner = next(
                (obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), (Mapping, nn.Module))), None
            )
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} does not hold a state_dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: state_dict entries that are not tensors: {_names([str(k) for k in bad])}"
        )
    return {str(k): v for k, v in obj.items()}


def _match_prefixes(state: dict[str, Tensor], expected: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Strip wrapper prefixes (DataParallel, torch.compile, Lightning) only when that matches the model better.
    best, best_hits = state, len(state.keys() & expected.keys())
    current = state
    for _ in range(len(_PREFIXES)):
        prefix = next((p for p in _PREFIXES if current and all(k.startswith(p) for k in current)), None)
        if prefix is None:
            break
        current = {k[len(prefix) :]: v for k, v in current.items()}
        hits = len(current.keys() & expected.keys())
        if hits > best_hits:
            best, best_hits = current, hits
    return best


def _load_into(model: nn.Module, state: Mapping[str, Tensor], path: Path, num_classes: int | None) -> None:
    expected = model.state_dict()
    head = _head(model)
    if head is not None and head[0] in state and state[head[0]].shape != expected[head[0]].shape:
        found = state[head[0]].shape[0]
        raise CheckpointError(
            f"{path}: num_classes={num_classes if num_classes is not None else head[1]} but the checkpoint's head "
            f"{head[0]!r} has {found} outputs (shape {tuple(state[head[0]].shape)} vs the model's "
            f"{tuple(expected[head[0]].shape)}); pass num_classes={found}"
        )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k!r}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_names(unexpected)}")
    if mismatched:
        more = f" and {len(mismatched) - _MAX_NAMED} more" if len(mismatched) > _MAX_NAMED else ""
        problems.append(f"shape mismatches {len(mismatched)} ({'; '.join(mismatched[:_MAX_NAMED])}{more})")
    if problems:
        raise CheckpointError(f"{path} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _build(
    arch: str,
    pool: str | None,
    num_classes: int | None,
    in_channels: int | None,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Rebuild a model; ``options`` are further ``build_model`` arguments recorded in ``model_cfg``."""
    if arch.startswith("torchvision:"):
        import torchvision

        name = arch.split(":", 1)[1]
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = f"did you mean {', '.join('torchvision:' + c for c in close)}?" if close else ""
            raise CheckpointError(
                f"cannot build {arch!r}: {name!r} is not a torchvision classification model; {hint} "
                "(torchvision.models.list_models() lists them all)".replace("; (", " (")
            )
        try:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        except ValueError as exc:
            raise CheckpointError(f"cannot build {arch!r}: {exc}") from None
        if in_channels is not None:
            _set_input_channels(model, in_channels, arch)
        if pool is not None:
            from robustbench_lift.models.swap import swap_pooling

            strided = bool((options or {}).get("swap", {}).get("strided_convs", False))
            swapped = swap_pooling(model, pool, strided_convs=strided)
            model = swapped if isinstance(swapped, nn.Module) else model
        return model
    from robustbench_lift.models import build_model

    kwargs = {
        k: v
        for k, v in (("pool", pool), ("num_classes", num_classes), ("in_channels", in_channels))
        if v is not None
    }
    if arch.startswith("timm:"):
        kwargs["pool"] = pool  # None: timm's own pooling (build_model's default would swap in "max")
    kwargs.update({k: v for k, v in (options or {}).items() if k != "swap"})
    try:
        return build_model(arch, **kwargs)
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(f"cannot build {arch!r}: {exc}") from None


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """(weight key, module) of the model's first ``nn.Conv2d`` in module order: the one the images go into."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return (f"{name}.weight" if name else "weight", module)
    return None


def _set_input_channels(model: nn.Module, in_channels: int, arch: str) -> None:
    """Replace the first conv of a model built for another input channel count (torchvision builds RGB only)."""
    first = _first_conv(model)
    if first is None:
        raise CheckpointError(f"cannot build {arch!r} with in_channels={in_channels}: it has no nn.Conv2d")
    key, conv = first
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise CheckpointError(
            f"cannot build {arch!r} with in_channels={in_channels}: its first conv is grouped"
        )
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    parent_name, _, attr = key.removesuffix(".weight").rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _inferred(
    model: nn.Module, state: Mapping[str, Tensor], num_classes: int | None, in_channels: int | None
) -> dict[str, int]:
    """num_classes / in_channels the weights imply where they were not given and differ from ``model``'s."""
    found: dict[str, int] = {}
    head = _head(model)
    if num_classes is None and head is not None and head[0] in state and state[head[0]].dim() == 2:
        if state[head[0]].shape[0] != head[1]:
            found["num_classes"] = int(state[head[0]].shape[0])
    first = _first_conv(model)
    if in_channels is not None or first is None:
        return found
    key, conv = first
    weight = state.get(key)
    if weight is not None and weight.dim() == 4 and conv.groups == 1 and weight.shape[1] != conv.in_channels:
        found["in_channels"] = int(weight.shape[1])
    return found


def _arch_hint(obj: Any) -> str | None:
    """The architecture a training script's checkpoint names: ``timm:ARCH`` or ``torchvision:NAME`` (else None).

    timm's ``train.py`` saves ``{"arch": NAME, "state_dict": ..., ...}``; torchvision's reference scripts save
    ``{"model": ..., "args": Namespace(model=NAME, ...), ...}``.
    """
    if not isinstance(obj, Mapping):
        return None
    arch = obj.get("arch")
    if isinstance(arch, str) and arch and isinstance(obj.get("state_dict"), Mapping):
        return arch if arch.startswith(("timm:", "torchvision:")) else f"timm:{arch}"
    args = obj.get("args")
    name = getattr(args, "model", None) if isinstance(args, argparse.Namespace) else None
    if isinstance(name, str) and name and isinstance(obj.get("model"), Mapping):
        return f"torchvision:{name}"
    return None


def _device(map_location: Any) -> torch.device | None:
    if isinstance(map_location, (str, torch.device)):
        return torch.device(map_location)
    return None


def _check_same(name: str, given: Any, recorded: Any, path: Path) -> None:
    if given is not None and recorded is not None and given != recorded:
        raise CheckpointError(f"{name}={given!r} given, but {path} was saved with {name}={recorded!r}")


def load_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    pool: str | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    defaults: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    map_location: Any = "cpu",
) -> Checkpoint:
    """Load a checkpoint and rebuild its model (see the module docstring for the formats).

    Args:
        path: the file.
        arch: toolkit model name or ``torchvision:NAME``; required for state_dicts, checked against native metadata.
        pool: pooling kind to build with; for native files it overrides the recorded one (weights must still fit).
        num_classes, in_channels: required to match native metadata; for state_dicts they default to the sizes
            in the weights (the head's outputs, the first conv's input channels).
        defaults: ``arch`` / ``pool`` / ``num_classes`` / ``in_channels`` for a file that does not record its own
            (state_dicts, TorchScript, pickles); unlike the arguments above, a native file ignores them. Used for
            options given once for several checkpoints. For ``arch``, the architecture a training script's
            checkpoint names (``arch`` of timm's, ``args.model`` of torchvision's) comes before the default.
        trust_pickle: allow unpickling arbitrary Python objects (can run code from the file).
        map_location: device for the model (``torch.load`` semantics for torch files).

    Returns:
        :class:`Checkpoint` with the model in eval mode.

    Raises:
        CheckpointError: missing, truncated or foreign files; refused pickles; tampered content; missing or
            unexpected keys; shape mismatches; num_classes that does not fit the head.
    """
    path = Path(path)
    fallback = dict(defaults or {})
    unknown = sorted(set(fallback) - set(_BUILD_KEYS))
    if unknown:
        raise TypeError(f"unknown defaults {unknown}; valid: {', '.join(_BUILD_KEYS)}")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    kind = _sniff(path)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated upstream; archives users already have still load.
                warnings.filterwarnings(
                    "ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning
                )
                model = torch.jit.load(str(path), map_location=map_location)
        except Exception as exc:
            raise CheckpointError(f"cannot read TorchScript archive {path}: {_first_line(exc)}") from None
        meta = CheckpointMeta(
            arch=arch or fallback.get("arch"),
            pool=pool or fallback.get("pool"),
            num_classes=num_classes or fallback.get("num_classes"),
            in_channels=in_channels or fallback.get("in_channels"),
            content_hash=content_hash(model.state_dict()),
            format="torchscript",
        )
        return Checkpoint(model.eval(), meta, path)

    recorded: dict[str, Any] | None = None
    hint = None
    if kind == "safetensors":
        state, recorded = _read_safetensors(path)
        fmt = "native" if recorded is not None else "state_dict"
    else:
        obj, was_pickle = _torch_load(path, trust_pickle, map_location)
        fmt = "pickle" if was_pickle else "state_dict"
        if isinstance(obj, nn.Module) and not isinstance(obj, torch.jit.ScriptModule):
            meta = CheckpointMeta(
                arch=arch or fallback.get("arch") or type(obj).__name__,
                pool=pool or fallback.get("pool"),
                num_classes=num_classes or fallback.get("num_classes"),
                in_channels=in_channels or fallback.get("in_channels"),
                content_hash=content_hash(obj.state_dict()),
                format=fmt,
            )
            return Checkpoint(obj.eval(), meta, path)
        hint = _arch_hint(obj)
        state = _unwrap_state_dict(obj, path)

    if recorded is None:
        if arch is None and hint is not None:
            logger.info("%s: architecture %r read from the checkpoint", path, hint)
        arch = arch or hint or fallback.get("arch")
        pool = pool if pool is not None else fallback.get("pool")
        num_classes = num_classes if num_classes is not None else fallback.get("num_classes")
        in_channels = in_channels if in_channels is not None else fallback.get("in_channels")
    if recorded is not None:
        for name, value in (("arch", arch), ("num_classes", num_classes), ("in_channels", in_channels)):
            _check_same(name, value, recorded.get(name), path)
        if pool is not None and pool != recorded.get("pool"):
            logger.info("building %s with pool=%r instead of the saved %r", path, pool, recorded.get("pool"))
        build = {k: recorded.get(k) for k in _BUILD_KEYS}
        options = {k: v for k, v in (recorded.get("model_cfg") or {}).items() if k not in _BUILD_KEYS}
        if pool is not None and pool != build["pool"]:
            build["pool"] = pool
            options.pop("pool_kwargs", None)  # options of the saved pool kind do not apply to another
        if not build["arch"]:
            raise CheckpointError(f"{path}: metadata has no 'arch'")
    else:
        if not arch:
            raise CheckpointError(
                f"{path} is a plain state_dict without metadata: pass arch=... (and pool=...; CLI: --arch, --pool): a toolkit model, torchvision:NAME or timm:NAME"
            )
        build = {"arch": arch, "pool": pool, "num_classes": num_classes, "in_channels": in_channels}
        options: dict[str, Any] = {}

    model = _build(build["arch"], build["pool"], build["num_classes"], build["in_channels"], options)
    if recorded is None:
        state = _match_prefixes(state, model.state_dict())
        found = _inferred(model, state, num_classes, in_channels)
        if found:
            logger.info("%s: %s read from the weights", path, ", ".join(f"{k}={v}" for k, v in found.items()))
            build.update(found)
            model = _build(build["arch"], build["pool"], build["num_classes"], build["in_channels"])
    _load_into(model, state, path, build["num_classes"])

    device = _device(map_location)
    if device is not None:
        model = model.to(device)
    model.eval()
    if recorded is not None:
        meta = _meta_from_dict({**recorded, "pool": build["pool"]}, "native")
    else:
        cfg = dict(getattr(model, "default_cfg", None) or {})
        head = _head(model)
        meta = _meta_from_dict(
            {
                **{k: cfg.get(k) for k in ("input_size", "mean", "std")},
                **build,
                "num_classes": build["num_classes"]
                if build["num_classes"] is not None
                else (head and head[1]),
                "in_channels": build["in_channels"]
                if build["in_channels"] is not None
                else cfg.get("in_channels"),
                "content_hash": content_hash(state),
                "model_cfg": cfg or None,
            },
            fmt,
        )
    return Checkpoint(model, meta, path)


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Tensors and our metadata (None when the file has none); verifies the content hash."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path}: truncated or corrupt safetensors file ({_first_line(exc)})"
        ) from None
    raw = header.get(METADATA_KEY)
    if raw is None:
        return tensors, None
    try:
        recorded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the {METADATA_KEY!r} metadata is not valid JSON ({exc})") from None
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{path}: the {METADATA_KEY!r} metadata is not a JSON object")
    version = recorded.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version!r}; this robustbench-lift reads up to {FORMAT_VERSION} (upgrade it)"
        )
    expected = recorded.get("content_hash")
    actual = content_hash(tensors)
    if expected != actual:
        raise CheckpointError(
            f"{path}: content hash mismatch, the tensors were changed after saving (recorded {expected}, "
            f"found {actual})"
        )
    return tensors, recorded
