"""Pre-generated corruption and perturbation sets (CIFAR-10/100-C ``.npy``, ImageNet-C folders, CIFAR-10-P ``.npy``).

They are read cell by cell and never resized again.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from corruptions.suites import ALL_CORRUPTIONS

from .base import ArrayDataset, ImageDataset, _check_labels
from .classes import CIFAR10_CLASSES, CIFAR100_CLASSES
from .folder import ImageFolderDataset
from .readers import _load_npy, _npy_layout
from .registry import _require_dir, register_dataset
from .transforms import _parse_size

log = logging.getLogger(__name__)


class UnreadableCellError(ValueError):
    """The files of one (corruption, severity) cell of a pre-generated set cannot be read (a truncated or corrupt
    ``.npy``, a missing folder); the set's other cells can still be evaluated."""


class NpyCellDataset(ArrayDataset):
    """Rows ``[start, stop)`` of a memory-mapped ``.npy`` file; re-opens the map after pickling (for workers)."""

    def __init__(
        self,
        path: Path,
        start: int,
        stop: int,
        labels: np.ndarray,
        *,
        class_names: Sequence[str],
        name: str,
    ) -> None:
        self.path = Path(path)
        self._start, self._stop = int(start), int(stop)
        layout = _npy_layout(_load_npy(self.path), self.path, per_item_dims=0)
        super().__init__(self._map(), labels, layout=layout, class_names=class_names, name=name)

    def _map(self) -> np.ndarray:
        return _load_npy(self.path)[self._start : self._stop]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._images = self._map()


class PregeneratedSet:
    """A pre-generated corruption set: one :class:`ImageDataset` per (corruption, severity) cell.

    Attributes:
        name, root, corruptions (canonical order, then others sorted), severities, num_classes, class_names,
        channels, image_size, unreadable (corruption -> why its file cannot be read; it stays in
        ``corruptions`` so that a run plans its cells, and only those cells fail).
    """

    def __init__(
        self,
        *,
        name: str,
        root: Path,
        corruptions: Sequence[str],
        severities: Sequence[int],
        class_names: Sequence[str],
        channels: int,
        image_size: tuple[int, int] | None,
        make_cell: Callable[[str, int], ImageDataset],
        unreadable: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.corruptions: tuple[str, ...] = tuple(corruptions)
        self.severities: tuple[int, ...] = tuple(severities)
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.channels = channels
        self.image_size = image_size
        self._make_cell = make_cell
        self._cells: dict[tuple[str, int], ImageDataset] = {}
        #: corruptions whose files cannot be read, with why: their cells raise UnreadableCellError
        self.unreadable: dict[str, str] = dict(unreadable or {})

    def cell(self, corruption: str, severity: int) -> ImageDataset:
        """The images of one corruption at one severity (sample ids are shared by all cells); opened once.

        Raises:
            UnreadableCellError: the corruption's file cannot be read (the message names the file).
        """
        if corruption not in self.corruptions:
            raise ValueError(
                f"{self.name}: unknown corruption {corruption!r}; available: {', '.join(self.corruptions)}"
            )
        if severity not in self.severities:
            raise ValueError(
                f"{self.name}: severity {severity!r} not available; available: "
                f"{', '.join(map(str, self.severities))}"
            )
        if corruption in self.unreadable:
            raise UnreadableCellError(
                f"{self.name}: cell {corruption}/{severity}: {self.unreadable[corruption]}"
            )
        key = (corruption, int(severity))
        if key not in self._cells:
            ds = self._make_cell(*key)
            if ds.class_names != self.class_names:
                raise ValueError(f"{self.name}: cell {corruption}/{severity} has a different class list")
            self._cells[key] = ds
        return self._cells[key]

    def __repr__(self) -> str:
        return (
            f"PregeneratedSet(name={self.name!r}, root={str(self.root)!r}, corruptions={len(self.corruptions)}, "
            f"severities={self.severities}, classes={self.num_classes})"
        )


class SequenceArray:
    """Lazy view of a ``(N, T, H, W, C)`` uint8 ``.npy`` file as ``(N, T, C, H, W)``.

    Indexing the first axis returns a uint8 tensor, reading only the rows asked for.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        array = _load_npy(self.path)
        if array.dtype != np.uint8 or array.ndim not in (4, 5):
            raise ValueError(
                f"{self.path}: expected uint8 (N, T, H, W, C) or (N, T, H, W), "
                f"got {array.dtype} {tuple(array.shape)}"
            )
        if array.ndim == 5 and array.shape[-1] not in (1, 3):
            raise ValueError(
                f"{self.path}: last axis must hold 1 or 3 channels, got shape {tuple(array.shape)}"
            )
        self._array = array
        n, t, h, w = array.shape[:4]
        c = array.shape[4] if array.ndim == 5 else 1
        self.shape: tuple[int, int, int, int, int] = (n, t, c, h, w)
        self.dtype = torch.uint8

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_frames(self) -> int:
        return self.shape[1]

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Tensor:
        block = self._array[index]
        t = torch.from_numpy(np.array(block, dtype=np.uint8, copy=True))
        if self._array.ndim == 4:
            return t.unsqueeze(-3)
        return t.movedim(-1, -3).contiguous()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class PregeneratedSequences:
    """A pre-generated perturbation set (CIFAR-10-P layout).

    Files: ``ROOT/<perturbation>.npy`` uint8 ``(N, T, H, W, C)`` (frames of one image per row). Labels are
    optional: ``ROOT/labels.npy`` holding ``(N,)`` integer labels, shared by every perturbation (the published
    CIFAR-10-P rows follow the CIFAR-10 test set order); ``labels`` is None without that file. Flip probability and
    top-5 distance need no labels.
    """

    def __init__(self, *, name: str, root: Path, class_names: Sequence[str]) -> None:
        self.name = name
        self.root = root
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.num_classes = len(self.class_names)
        files = {p.stem: p for p in root.glob("*.npy") if p.stem != "labels"}
        if not files:
            raise ValueError(f"{name}: no <perturbation>.npy files in {str(root)!r}")
        self.perturbations: tuple[str, ...] = tuple(sorted(files))
        self._files = files
        self._seqs: dict[str, SequenceArray] = {}
        first = self.sequences(self.perturbations[0])
        self.channels = first.shape[2]
        self.image_size: tuple[int, int] | None = (first.shape[3], first.shape[4])
        labels_path = root / "labels.npy"
        self.labels: np.ndarray | None = None
        if labels_path.exists():
            self.labels = _check_labels(
                f"{labels_path}", np.asarray(_load_npy(labels_path)), self.num_classes
            )
            if len(self.labels) != len(first):
                raise ValueError(
                    f"{name}: labels.npy has {len(self.labels)} entries but {self.perturbations[0]}.npy has "
                    f"{len(first)} sequences"
                )

    def sequences(self, name: str) -> SequenceArray:
        """The sequences of one perturbation, array-like ``(N, T, C, H, W)`` uint8."""
        if name not in self._files:
            raise ValueError(
                f"{self.name}: unknown perturbation {name!r}; available: {', '.join(self.perturbations)}"
            )
        if name not in self._seqs:
            self._seqs[name] = SequenceArray(self._files[name])
        return self._seqs[name]

    def __repr__(self) -> str:
        return f"PregeneratedSequences(name={self.name!r}, root={str(self.root)!r}, perturbations={self.perturbations})"


def _sort_corruptions(names: Sequence[str]) -> list[str]:
    order = {n: i for i, n in enumerate(ALL_CORRUPTIONS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


# --------------------------------------------------------------------------------------------------------------
# file formats


def _npy_cell(
    name: str,
    files: dict[str, Path],
    n: int,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    corruption: str,
    severity: int,
) -> ImageDataset:
    """Severity ``s`` of a CIFAR-C file is rows ``[(s - 1) N, s N)``."""
    lo, hi = (severity - 1) * n, severity * n
    cell_labels = labels[lo:hi] if len(labels) == 5 * n else labels
    return NpyCellDataset(
        files[corruption],
        lo,
        hi,
        cell_labels,
        class_names=class_names,
        name=f"{name}/{corruption}/{severity}",
    )


def _imagenet_c_cell(
    name: str,
    root: Path,
    size: tuple[int, int],
    strict: bool,
    class_names: tuple[str, ...],
    corruption: str,
    severity: int,
) -> ImageDataset:
    return ImageFolderDataset(
        root / corruption / str(severity),
        image_size=size,
        resize=False,
        name=f"{name}/{corruption}/{severity}",
        strict=strict,
        class_names=class_names,
    )


def _npy_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete ``.npy`` file (unreadable header, fewer bytes than its header promises), or
    None. Reads only the header."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError) as exc:
        return f"cannot read {str(path)!r} as a .npy array: {exc}"
    need = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        return (
            f"{str(path)!r} is truncated: {size} bytes, its header ({shape} {dtype}) needs {need}; "
            "re-download or re-write it"
        )
    return None


def _open_npy_corruptions(name: str, root: Path, split: str, class_names: Sequence[str]) -> PregeneratedSet:
    _require_dir(name, root)
    if split != "test":
        raise ValueError(f"{name}: pre-generated sets only have the 'test' split")
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise ValueError(f"{name}: expected {str(labels_path)!r} next to the <corruption>.npy files")
    labels = _check_labels(str(labels_path), np.asarray(_load_npy(labels_path)), len(class_names))
    files = {p.stem: p for p in root.glob("*.npy") if p.stem != "labels"}
    if not files:
        raise ValueError(f"{name}: no <corruption>.npy files in {str(root)!r}")
    shapes = {}
    unreadable: dict[str, str] = {}
    for cname, path in files.items():
        problem = _npy_problem(path)
        if problem is not None:
            unreadable[cname] = problem
            log.warning("%s: %s; the cells of %s fail, the others are evaluated", name, problem, cname)
            continue
        arr = _load_npy(path)
        _npy_layout(arr, path, per_item_dims=0)
        if len(arr) % 5:
            raise ValueError(f"{str(path)!r}: {len(arr)} rows is not 5 severities x N images")
        if len(labels) not in (len(arr), len(arr) // 5):
            raise ValueError(
                f"{name}: labels.npy has {len(labels)} entries, {str(path)!r} has {len(arr)} rows "
                f"(expected {len(arr)} or {len(arr) // 5})"
            )
        shapes[cname] = arr.shape
    if not shapes:
        raise ValueError(
            f"{name}: no readable <corruption>.npy file in {str(root)!r}: " + "; ".join(unreadable.values())
        )
    if len({s for s in shapes.values()}) > 1:
        raise ValueError(f"{name}: the .npy files differ in shape: {shapes}")
    shape = next(iter(shapes.values()))
    n = shape[0] // 5
    channels = shape[3] if len(shape) == 4 else 1

    return PregeneratedSet(
        name=name,
        root=root,
        corruptions=_sort_corruptions(list(files)),
        severities=range(1, 6),
        class_names=class_names,
        channels=channels,
        image_size=(shape[1], shape[2]),
        make_cell=functools.partial(_npy_cell, name, files, n, labels, tuple(class_names)),
        unreadable=unreadable,
    )


@register_dataset("cifar10-c", kind="corruptions")
def _open_cifar10_c(root: Path, *, split: str, **_: Any) -> PregeneratedSet:
    return _open_npy_corruptions("cifar10-c", root, split, CIFAR10_CLASSES)


@register_dataset("cifar100-c", kind="corruptions")
def _open_cifar100_c(root: Path, *, split: str, **_: Any) -> PregeneratedSet:
    return _open_npy_corruptions("cifar100-c", root, split, CIFAR100_CLASSES)


@register_dataset("imagenet-c", kind="corruptions")
def _open_imagenet_c(
    root: Path, *, split: str, image_size: int | tuple[int, int] | None, strict: bool, **_: Any
) -> PregeneratedSet:
    name = "imagenet-c"
    _require_dir(name, root)
    if split != "test":
        raise ValueError(f"{name}: pre-generated sets only have the 'test' split")
    cells: dict[str, list[int]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        sev = sorted(
            int(s.name) for s in os.scandir(entry.path) if s.is_dir() and s.name in {"1", "2", "3", "4", "5"}
        )
        if sev:
            cells[entry.name] = sev
    if not cells:
        raise ValueError(
            f"{name}: no <corruption>/<severity>/<wnid>/*.JPEG folders under {str(root)!r} (severities 1..5)"
        )
    severities = sorted({s for sev in cells.values() for s in sev})
    incomplete = {c: s for c, s in cells.items() if s != severities}
    if incomplete:
        raise ValueError(
            f"{name}: corruptions with missing severity folders (expected {severities}): {incomplete}"
        )
    corruptions = _sort_corruptions(list(cells))
    first = root / corruptions[0] / str(severities[0])
    probe = ImageFolderDataset(
        first, name=f"{name}/{corruptions[0]}/{severities[0]}", strict=strict, resize=False
    )
    native = tuple(probe[0][0].shape[1:])
    requested = _parse_size(image_size)
    if requested is not None and requested != native:
        raise ValueError(
            f"{name}: images are {native[0]}x{native[1]} and pre-generated images are never resized again; "
            f"got image_size={image_size!r} (use a model with that input size)"
        )
    class_names = probe.class_names

    probe.image_size = (int(native[0]), int(native[1]))
    pre = PregeneratedSet(
        name=name,
        root=root,
        corruptions=corruptions,
        severities=severities,
        class_names=class_names,
        channels=3,
        image_size=probe.image_size,
        make_cell=functools.partial(_imagenet_c_cell, name, root, probe.image_size, strict, class_names),
    )
    pre._cells[(corruptions[0], severities[0])] = probe
    return pre


@register_dataset("cifar10-p", kind="sequences")
def _open_cifar10_p(root: Path, *, split: str, **_: Any) -> PregeneratedSequences:
    _require_dir("cifar10-p", root)
    if split != "test":
        raise ValueError("cifar10-p: pre-generated sets only have the 'test' split")
    return PregeneratedSequences(name="cifar10-p", root=root, class_names=CIFAR10_CLASSES)
