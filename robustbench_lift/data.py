"""Datasets and input preprocessing for evaluation.

``open_dataset(spec)`` turns a spec string into a dataset:

====================  ==========================================================================================
spec                  what it reads
====================  ==========================================================================================
``fashion-mnist``     IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (default root
                      ``/usr/share/datasets/fashion-mnist``, Debian package ``dataset-fashion-mnist``)
``mnist:ROOT``        the same IDX layout
``cifar10:ROOT``      torchvision's python layout ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
``cifar100:ROOT``     ``cifar-100-python/{train,test,meta}`` (fine labels)
``imagefolder:ROOT``  ``ROOT/<class>/<image>``, class names sorted, decoded with PIL to RGB
``cifar10-c:ROOT``    pre-generated ``<corruption>.npy`` uint8 (5N, H, W, C) + ``labels.npy``; a PregeneratedSet
``cifar100-c:ROOT``   the same, 100 classes
``imagenet-c:ROOT``   pre-generated ``<corruption>/<severity>/<wnid>/*.JPEG`` (224 px); a PregeneratedSet
``cifar10-p:ROOT``    pre-generated ``<perturbation>.npy`` uint8 (N, T, H, W, C); a PregeneratedSequences
====================  ==========================================================================================

``ROOT`` is ``~``-expanded. For CIFAR, ``ROOT`` may be the parent folder or the batches folder itself. IDX files are
also found under ``ROOT/FashionMNIST/raw`` / ``ROOT/MNIST/raw`` (where torchvision's download puts them). Nothing is
downloaded unless ``download=True`` (CIFAR-10/100, Fashion-MNIST, MNIST, through torchvision).

CIFAR batches are pickles. They are read with a restricted unpickler that only rebuilds plain containers and numpy
arrays; any other object in the file is refused before it is created, so a crafted file cannot run code.

Every dataset yields ``(uint8 tensor (C, H, W), int label)``. The evaluator turns batches into model input with
:func:`to_float` -> :func:`match_channels` -> :func:`resize_to` -> (corruption) -> :class:`Normalize`
(:func:`prepare_batch` does the first three).
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import os
import pickle
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from corruptions.registry import Registry
from corruptions.suites import ALL_CORRUPTIONS

__all__ = [
    "DATASETS",
    "DatasetWarning",
    "ImageDataset",
    "ArrayDataset",
    "NpyCellDataset",
    "ImageFolderDataset",
    "PregeneratedSet",
    "PregeneratedSequences",
    "SequenceArray",
    "open_dataset",
    "list_datasets",
    "register_dataset",
    "load_cifar_pickle",
    "read_idx",
    "to_float",
    "match_channels",
    "resize_to",
    "prepare_batch",
    "Normalize",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "IMAGE_EXTENSIONS",
]

log = logging.getLogger(__name__)

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_CLASSES: tuple[str, ...] = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
    caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
    forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
    mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
    porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
    squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
    wardrobe whale willow_tree wolf woman worm""".split()
)

#: File extensions (lower case) read as images by ``imagefolder`` / ``imagenet-c``.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
)


_SPLITS = ("train", "test")


class DatasetWarning(UserWarning):
    """Something in a dataset was skipped (unreadable image, empty class folder)."""


# --------------------------------------------------------------------------------------------------------------
# dataset classes


class ImageDataset(Dataset):
    """A labelled image dataset yielding ``(uint8 tensor (C, H, W), int label)``.

    Attributes:
        name: dataset name (e.g. ``"cifar10"``, ``"cifar10-c/fog/3"``).
        split: ``"train"`` or ``"test"`` (pre-generated sets are ``"test"``).
        num_classes, class_names: label space; labels are ``0 .. num_classes - 1``.
        channels: 1 or 3.
        image_size: ``(H, W)`` when every image has that size, ``None`` when sizes vary.
        fast_batch: True when :meth:`get_batch` reads a whole batch at once (in-memory or memory-mapped data).
    """

    fast_batch: bool = False

    def __init__(
        self,
        *,
        name: str,
        split: str,
        class_names: Sequence[str],
        channels: int,
        image_size: tuple[int, int] | None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"{name}: channels must be 1 or 3, got {channels}")
        self.name = name
        self.split = split
        self.class_names: tuple[str, ...] = tuple(str(c) for c in class_names)
        self.num_classes = len(self.class_names)
        self.channels = channels
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_id(self, index: int) -> int:
        """Stable id of sample ``index`` used to seed per-image randomness (the index itself)."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        return int(index)

    def labels(self) -> np.ndarray:
        """All labels as an int64 array (N,) without decoding images where the subclass allows it."""
        return np.asarray([self[i][1] for i in range(len(self))], dtype=np.int64)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        """Images and labels of ``indices`` as ``(uint8 (B, C, H, W), int64 (B,))``.

        Raises ``ValueError`` when the images differ in size (open the dataset with ``image_size``).
        """
        items = [self[int(i)] for i in np.asarray(indices).reshape(-1)]
        if not items:
            raise ValueError(f"{self.name}: get_batch needs at least one index")
        sizes = {tuple(x.shape) for x, _ in items}
        if len(sizes) > 1:
            raise ValueError(
                f"{self.name}: images in the batch differ in size ({sorted(sizes)}); "
                "open the dataset with image_size=... to resize and centre-crop them"
            )
        images = torch.stack([x for x, _ in items])
        labels = torch.tensor([y for _, y in items], dtype=torch.int64)
        return images, labels

    def __repr__(self) -> str:
        size = "variable" if self.image_size is None else f"{self.image_size[0]}x{self.image_size[1]}"
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"classes={self.num_classes}, channels={self.channels}, size={size})"
        )


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}: labels must be one-dimensional, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name}: labels span {labels.min()}..{labels.max()} but the dataset has {num_classes} classes "
            f"(class count inconsistency)"
        )
    return labels


def _to_chw_tensor(array: np.ndarray, layout: str) -> Tensor:
    """uint8 numpy images in ``layout`` (one image or a batch) -> a fresh contiguous CHW tensor."""
    if layout == "NHW":
        array = array[..., None, :, :]
    elif layout == "NHWC":
        array = np.moveaxis(array, -1, -3)
    # one copy, in CHW order: the source may be a read-only memory map
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True, order="C"))


class ArrayDataset(ImageDataset):
    """Images held in a numpy array (in memory or memory-mapped).

    Args:
        images: uint8 array ``(N, H, W)`` (grayscale), ``(N, H, W, C)`` or ``(N, C, H, W)``.
        labels: integer array ``(N,)``.
        layout: ``"NHW"``, ``"NHWC"`` or ``"NCHW"``.
        class_names: names of the classes; labels must be below their count.
    """

    fast_batch = True

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        layout: str,
        class_names: Sequence[str],
        name: str,
        split: str = "test",
    ) -> None:
        if layout not in ("NHW", "NHWC", "NCHW"):
            raise ValueError(f"layout must be one of NHW, NHWC, NCHW; got {layout!r}")
        if images.dtype != np.uint8:
            raise ValueError(f"{name}: images must be uint8, got {images.dtype}")
        if images.ndim != len(layout):
            raise ValueError(
                f"{name}: layout {layout} needs a {len(layout)}-d array, got shape {images.shape}"
            )
        channels = 1 if layout == "NHW" else images.shape[3] if layout == "NHWC" else images.shape[1]
        hw = images.shape[1:3] if layout != "NCHW" else images.shape[2:4]
        super().__init__(name=name, split=split, class_names=class_names, channels=channels, image_size=hw)
        self._labels = _check_labels(name, labels, self.num_classes)
        if len(self._labels) != len(images):
            raise ValueError(f"{name}: {len(images)} images but {len(self._labels)} labels")
        self._images = images
        self.layout = layout

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        return _to_chw_tensor(self._images[index], self.layout), int(self._labels[index])

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError(f"{self.name}: get_batch needs at least one index")
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"{self.name}: indices out of range for {len(self)} samples")
        if idx.size > 1 and np.all(np.diff(idx) == 1):
            block = self._images[idx[0] : idx[-1] + 1]  # a slice reads one contiguous block
        else:
            block = self._images[idx]
        return _to_chw_tensor(block, self.layout), torch.from_numpy(self._labels[idx].copy())


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


class ImageFolderDataset(ImageDataset):
    """Images in ``root/<class>/<file>``; classes are the sorted subfolder names.

    Files whose header PIL cannot read are skipped at opening with a :class:`DatasetWarning` (their paths are in
    ``skipped``), or raise ``ValueError`` when ``strict=True``. A file that passes that check but fails to decode
    later raises ``ValueError`` naming the file.

    Args:
        root: the folder holding one subfolder per class.
        image_size: None keeps each image's own size; an int ``s`` (or ``(s, s)``) resizes the shorter side to
            ``round(s * 256 / 224)`` (bilinear) and centre-crops ``s x s``, the ImageNet evaluation transform.
        resize: False never resizes (pre-generated ImageNet-C); ``image_size`` is then the size every image must
            have, checked at load.
        class_names: the expected class list; when given the folder must hold exactly these classes.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        image_size: int | tuple[int, int] | None = None,
        name: str = "imagefolder",
        split: str = "test",
        strict: bool = False,
        resize: bool = True,
        class_names: Sequence[str] | None = None,
        check_files: bool = True,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{name}: folder {str(root)!r} does not exist")
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise ValueError(
                f"{name}: {str(root)!r} has no class subfolders (expected ROOT/<class>/<image files>)"
            )
        if class_names is not None and list(classes) != list(class_names):
            missing = sorted(set(class_names) - set(classes))
            extra = sorted(set(classes) - set(class_names))
            raise ValueError(
                f"{name}: class folders in {str(root)!r} differ from the expected {len(class_names)} classes "
                f"(found {len(classes)}; missing {missing[:5]}, unexpected {extra[:5]})"
            )
        size = _parse_size(image_size)
        super().__init__(name=name, split=split, class_names=classes, channels=3, image_size=size)
        self.root = root
        self.resize = resize
        self.strict = strict
        self.skipped: list[tuple[str, str]] = []
        samples: list[tuple[str, int]] = []
        empty: list[str] = []
        for label, cls in enumerate(classes):
            files = sorted(
                e.path
                for e in os.scandir(root / cls)
                if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
            )
            kept = 0
            for path in files:
                if check_files:
                    problem = _header_problem(path)
                    if problem is not None:
                        if strict:
                            raise ValueError(f"{name}: unreadable image {path!r}: {problem}")
                        self.skipped.append((path, problem))
                        continue
                samples.append((path, label))
                kept += 1
            if kept == 0:
                empty.append(cls)
        if self.skipped:
            warnings.warn(
                f"{name}: skipped {len(self.skipped)} unreadable image file(s) in {str(root)!r}, "
                f"e.g. {self.skipped[0][0]!r} ({self.skipped[0][1]})",
                DatasetWarning,
                stacklevel=3,
            )
        if not samples:
            raise ValueError(
                f"{name}: no readable images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}"
            )
        if empty:
            warnings.warn(
                f"{name}: {len(empty)} class folder(s) without images: {empty[:5]}",
                DatasetWarning,
                stacklevel=3,
            )
        self.samples = samples

    @property
    def num_skipped(self) -> int:
        """Number of files skipped as unreadable."""
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> np.ndarray:
        return np.asarray([y for _, y in self.samples], dtype=np.int64)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[int(index)]
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if self.image_size is not None and self.resize:
                    img = _resize_center_crop(img, self.image_size)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{self.name}: cannot decode image {path!r}: {exc}") from exc
        if self.image_size is not None and array.shape[:2] != self.image_size:
            raise ValueError(
                f"{self.name}: image {path!r} is {array.shape[0]}x{array.shape[1]}, expected "
                f"{self.image_size[0]}x{self.image_size[1]} (pre-generated images are never resized)"
            )
        return _to_chw_tensor(array, "NHWC"), label


def _parse_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
        h, w = (int(v) for v in image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return (h, w)


def _header_problem(path: str) -> str | None:
    """Why PIL cannot read ``path``'s header, or None when it can."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _resize_center_crop(img: Any, size: tuple[int, int]) -> Any:
    """Shorter side to ``round(max(size) * 256 / 224)`` (bilinear), then a centre crop of ``size``."""
    from PIL import Image

    th, tw = size
    short = round(max(th, tw) * 256 / 224)
    w, h = img.size
    if w <= h:
        nw, nh = short, int(short * h / w)
    else:
        nw, nh = int(short * w / h), short
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    top = int(round((nh - th) / 2.0))
    left = int(round((nw - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


# --------------------------------------------------------------------------------------------------------------
# pre-generated sets


class PregeneratedSet:
    """A pre-generated corruption set: one :class:`ImageDataset` per (corruption, severity) cell.

    Attributes:
        name, root, corruptions (canonical order, then others sorted), severities, num_classes, class_names,
        channels, image_size.
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

    def cell(self, corruption: str, severity: int) -> ImageDataset:
        """The images of one corruption at one severity (sample ids are shared by all cells); opened once."""
        if corruption not in self.corruptions:
            raise ValueError(
                f"{self.name}: unknown corruption {corruption!r}; available: {', '.join(self.corruptions)}"
            )
        if severity not in self.severities:
            raise ValueError(
                f"{self.name}: severity {severity!r} not available; available: "
                f"{', '.join(map(str, self.severities))}"
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


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as a .npy array: {exc}") from exc


def _npy_layout(array: np.ndarray, path: Path, per_item_dims: int) -> str:
    nd = array.ndim - per_item_dims
    if array.dtype != np.uint8:
        raise ValueError(f"{str(path)!r}: expected uint8 images, got {array.dtype}")
    if nd == 3:
        return "NHW"
    if nd == 4 and array.shape[-1] in (1, 3):
        return "NHWC"
    raise ValueError(
        f"{str(path)!r}: expected (N, H, W, C) or (N, H, W) uint8 images, got shape {array.shape}"
    )


def _sort_corruptions(names: Sequence[str]) -> list[str]:
    order = {n: i for i, n in enumerate(ALL_CORRUPTIONS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


# --------------------------------------------------------------------------------------------------------------
# file formats


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes into a numpy array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {str(path)!r}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(
            f"{str(path)!r}: only unsigned-byte IDX data (type 0x08) is supported, got {raw[2]:#04x}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{str(path)!r}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) if shape else 1
    if len(raw) - header != expected:
        raise ValueError(
            f"{str(path)!r}: IDX header announces shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw) - header} data bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may reference: numpy array/dtype/scalar reconstruction."""
    reconstruct = np.empty(0).__reduce__()[0]
    frombuffer = np.empty(0).__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]

    def latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
        # Protocol-2 pickles of bytes call _codecs.encode(str, "latin1"); nothing else is allowed.
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
        return text.encode("latin1")

    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
        allowed[(mod, "scalar")] = scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = frombuffer
    allowed[("_codecs", "encode")] = latin1_encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: io.BufferedIOBase) -> None:
        super().__init__(fh, encoding="latin1")
        self._allowed = _safe_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays and plain Python containers are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a dataset pickle")


def load_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Load one CIFAR python batch without running code; keys are returned as ``str``.

    Raises ``ValueError`` when the file is missing, not a pickle, not a dict, or references anything other than
    numpy array reconstruction.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh).load()
    except FileNotFoundError:
        raise ValueError(f"expected CIFAR batch file {str(path)!r}, not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"cannot load {str(path)!r} safely as a CIFAR batch: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r}: expected a dict in the CIFAR batch, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_images(batch: dict[str, Any], path: Path) -> np.ndarray:
    if "data" not in batch:
        raise ValueError(f"{str(path)!r}: CIFAR batch has no 'data' entry (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{str(path)!r}: expected uint8 data of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    return data.reshape(-1, 3, 32, 32)


def _cifar_names(value: Any) -> list[str]:
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in value]


# --------------------------------------------------------------------------------------------------------------
# openers

Opener = Callable[..., "ImageDataset | PregeneratedSet | PregeneratedSequences"]

#: Dataset openers by spec prefix. Each is called as ``opener(root, split=, download=, image_size=, strict=)``
#: with ``root`` a Path or None. Metadata: ``kind`` (images | corruptions | sequences), ``needs_root``.
DATASETS: Registry[Opener] = Registry("dataset")


def register_dataset(name: str, *, kind: str, needs_root: bool = True) -> Callable[[Opener], Opener]:
    """Decorator registering a dataset opener under the spec prefix ``name``."""
    if kind not in ("images", "corruptions", "sequences"):
        raise ValueError(f"kind must be images, corruptions or sequences; got {kind!r}")
    return DATASETS.register(name, kind=kind, needs_root=needs_root)


def list_datasets(kind: str | None = None) -> list[str]:
    """Registered spec prefixes, optionally only those of one ``kind``."""
    return DATASETS.names() if kind is None else DATASETS.names(kind=kind)


def open_dataset(
    spec: str,
    *,
    split: str = "test",
    download: bool = False,
    image_size: int | tuple[int, int] | None = None,
    strict: bool = False,
) -> ImageDataset | PregeneratedSet | PregeneratedSequences:
    """Open the dataset described by ``spec`` (``name`` or ``name:ROOT``; see the module docstring).

    Args:
        split: ``"train"`` or ``"test"``; pre-generated sets only have ``"test"``. ``imagefolder`` records it only.
        download: fetch CIFAR-10/100, (Fashion-)MNIST through torchvision when the files are missing.
        image_size: for ``imagefolder``: resize + centre-crop to this size (see :class:`ImageFolderDataset`).
            Fixed-size datasets keep their native size (use :func:`resize_to`); ``imagenet-c`` refuses any size
            other than its own, since its images are never resized again.
        strict: ``imagefolder`` / ``imagenet-c``: unreadable image files raise instead of being skipped.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}")
    name, sep, root_text = spec.partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} in spec {spec!r}; valid: {', '.join(DATASETS.names())}")
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(_SPLITS)}")
    root = Path(root_text).expanduser() if sep and root_text else None
    if root is None and DATASETS.meta(name)["needs_root"]:
        raise ValueError(f"dataset {name!r} needs a location: use '{name}:ROOT'")
    return DATASETS.get(name)(root, split=split, download=download, image_size=image_size, strict=strict)


def _require_dir(name: str, root: Path, hint: str = "") -> None:
    if not root.exists():
        extra = f"; {hint}" if hint else ""
        raise ValueError(f"{name}: path {str(root)!r} does not exist{extra}")
    if not root.is_dir():
        raise ValueError(f"{name}: {str(root)!r} is not a folder")


def _idx_dataset(
    name: str,
    root: Path,
    split: str,
    download: bool,
    class_names: Sequence[str],
    tv_folder: str,
    hint: str,
) -> ArrayDataset:
    prefix = "train" if split == "train" else "t10k"
    wanted = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")

    def find(stem: str) -> Path | None:
        for folder in (root, root / tv_folder / "raw", root / "raw"):
            for candidate in (folder / f"{stem}.gz", folder / stem):
                if candidate.is_file():
                    return candidate
        return None

    paths = [find(s) for s in wanted]
    if None in paths and download:
        import torchvision

        cls = getattr(torchvision.datasets, tv_folder)
        try:
            cls(str(root), train=split == "train", download=True)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{name}: download into {str(root)!r} failed: {exc}") from exc
        paths = [find(s) for s in wanted]
    if None in paths:
        missing = [f"{s}.gz" for s, p in zip(wanted, paths) if p is None]
        raise ValueError(
            f"{name}: expected {', '.join(missing)} in {str(root)!r} (or its {tv_folder}/raw); {hint}"
            + ("" if download else " or pass download=True (--download)")
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3:
        raise ValueError(f"{name}: {paths[0]} holds shape {images.shape}, expected (N, H, W)")
    return ArrayDataset(images, labels, layout="NHW", class_names=class_names, name=name, split=split)


def _default_download_root(name: str) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "robustbench_lift" / name


@register_dataset("fashion-mnist", kind="images", needs_root=False)
def _open_fashion_mnist(root: Path | None, *, split: str, download: bool, **_: Any) -> ArrayDataset:
    if root is None:
        root = Path(FASHION_MNIST_ROOT)
        if download and not (root / "t10k-images-idx3-ubyte.gz").exists():
            root = _default_download_root("fashion-mnist")
    hint = "install it with `apt-get install dataset-fashion-mnist` or give fashion-mnist:ROOT"
    if download:
        root.mkdir(parents=True, exist_ok=True)
    _require_dir("fashion-mnist", root, hint=hint)
    return _idx_dataset("fashion-mnist", root, split, download, FASHION_MNIST_CLASSES, "FashionMNIST", hint)


@register_dataset("mnist", kind="images")
def _open_mnist(root: Path, *, split: str, download: bool, **_: Any) -> ArrayDataset:
    if download:
        root.mkdir(parents=True, exist_ok=True)
    _require_dir("mnist", root)
    return _idx_dataset("mnist", root, split, download, MNIST_CLASSES, "MNIST", "give mnist:ROOT")


def _open_cifar(
    name: str,
    root: Path,
    split: str,
    download: bool,
    *,
    folder: str,
    files: dict[str, list[str]],
    meta_file: str,
    meta_key: str,
    label_key: str,
    default_classes: Sequence[str],
    tv_class: str,
) -> ArrayDataset:
    def locate() -> Path | None:
        for candidate in (root / folder, root):
            if (candidate / files[split][0]).is_file():
                return candidate
        return None

    if download:
        root.mkdir(parents=True, exist_ok=True)
    _require_dir(name, root)
    base = locate()
    if base is None and download:
        import torchvision
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(torchvision.datasets, tv_class)
        try:  # download only: the batches are then read by the restricted unpickler below
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"{name}: download into {str(root)!r} failed: {exc}") from exc
        base = locate()
    if base is None:
        raise ValueError(
            f"{name}: expected {folder}/{files[split][0]} under {str(root)!r} (torchvision's python layout: "
            f"{folder}/{{{', '.join(files['train'] + files['test'] + [meta_file])}}})"
            + ("" if download else "; pass download=True (--download) to fetch it")
        )
    class_names = list(default_classes)
    if (base / meta_file).is_file():
        meta = load_cifar_pickle(base / meta_file)
        if meta_key in meta:
            class_names = _cifar_names(meta[meta_key])
            if len(class_names) != len(default_classes):
                raise ValueError(
                    f"{name}: {base / meta_file} lists {len(class_names)} classes, expected {len(default_classes)}"
                )
    images, labels = [], []
    for fname in files[split]:
        path = base / fname
        batch = load_cifar_pickle(path)
        imgs = _cifar_images(batch, path)
        if label_key not in batch:
            raise ValueError(f"{str(path)!r}: CIFAR batch has no {label_key!r} entry (keys: {sorted(batch)})")
        lab = np.asarray(batch[label_key])
        if len(lab) != len(imgs):
            raise ValueError(f"{str(path)!r}: {len(imgs)} images but {len(lab)} labels")
        images.append(imgs)
        labels.append(lab)
    return ArrayDataset(
        np.concatenate(images),
        np.concatenate(labels),
        layout="NCHW",
        class_names=class_names,
        name=name,
        split=split,
    )


@register_dataset("cifar10", kind="images")
def _open_cifar10(root: Path, *, split: str, download: bool, **_: Any) -> ArrayDataset:
    return _open_cifar(
        "cifar10",
        root,
        split,
        download,
        folder="cifar-10-batches-py",
        files={"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        meta_file="batches.meta",
        meta_key="label_names",
        label_key="labels",
        default_classes=CIFAR10_CLASSES,
        tv_class="CIFAR10",
    )


@register_dataset("cifar100", kind="images")
def _open_cifar100(root: Path, *, split: str, download: bool, **_: Any) -> ArrayDataset:
    return _open_cifar(
        "cifar100",
        root,
        split,
        download,
        folder="cifar-100-python",
        files={"train": ["train"], "test": ["test"]},
        meta_file="meta",
        meta_key="fine_label_names",
        label_key="fine_labels",
        default_classes=CIFAR100_CLASSES,
        tv_class="CIFAR100",
    )


@register_dataset("imagefolder", kind="images")
def _open_imagefolder(
    root: Path, *, split: str, image_size: int | tuple[int, int] | None, strict: bool, **_: Any
) -> ImageFolderDataset:
    return ImageFolderDataset(root, image_size=image_size, split=split, strict=strict, name="imagefolder")


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
    for cname, path in files.items():
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


# --------------------------------------------------------------------------------------------------------------
# preprocessing

#: ITU-R BT.601 luma weights used for RGB -> grayscale.
LUMA_601: tuple[float, float, float] = (0.299, 0.587, 0.114)


def to_float(batch: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 images -> floating point in [0, 1] (``/ 255``). Floating input is returned unchanged (cast to dtype)."""
    if batch.dtype == torch.uint8:
        return batch.to(dtype).div_(255.0)
    if batch.is_floating_point():
        return batch.to(dtype)
    raise TypeError(f"to_float expects uint8 or floating images, got {batch.dtype}")


def match_channels(x: Tensor, channels: int) -> Tensor:
    """Convert ``(..., C, H, W)`` images to ``channels`` channels.

    Grayscale -> RGB replicates the single channel; RGB -> grayscale takes the ITU-R BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B`` (rounded back for uint8 input). Equal channel counts return ``x`` itself.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if x.dim() < 3:
        raise ValueError(f"expected images (..., C, H, W), got shape {tuple(x.shape)}")
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor(LUMA_601, dtype=torch.float32 if not x.is_floating_point() else x.dtype)
        weights = weights.to(x.device).view(3, 1, 1)
        gray = (x.to(weights.dtype) * weights).sum(dim=-3, keepdim=True)
        if x.dtype == torch.uint8:
            return gray.round_().clamp_(0, 255).to(torch.uint8)
        return gray
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels (supported: 1 <-> 3)")


def resize_to(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``size`` (bilinear, antialiased); same size returns ``x`` itself.

    For fixed-size datasets whose native size differs from the model's input size. Never applied to pre-generated
    ImageNet-C images, which are already at the evaluation size. uint8 input is resized in float and rounded back.
    """
    target = _parse_size(size)
    if x.dim() != 4:
        raise ValueError(f"resize_to expects (N, C, H, W), got shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == target:
        return x
    if x.dtype == torch.uint8:
        y = F.interpolate(x.float(), size=target, mode="bilinear", align_corners=False, antialias=True)
        return y.round_().clamp_(0, 255).to(torch.uint8)
    if not x.is_floating_point():
        raise TypeError(f"resize_to expects uint8 or floating images, got {x.dtype}")
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)


def prepare_batch(batch: Tensor, *, channels: int, size: int | tuple[int, int] | None = None) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1] with the model's channel count and input size.

    Corruptions then apply to this, and :class:`Normalize` comes last.
    """
    x = match_channels(to_float(batch), channels)
    return x if size is None else resize_to(x, size)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for ``(N, C, H, W)`` input in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape or mean_t.numel() == 0:
            raise ValueError(f"mean and std need the same non-zero length, got {list(mean)} and {list(std)}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"Normalize expects (N, {self.mean.shape[1]}, H, W) input, got shape {tuple(x.shape)}"
            )
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        std = self.std.to(device=x.device, dtype=x.dtype)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
