"""Dataset types: every dataset yields ``(uint8 tensor (C, H, W), int label)`` and reads whole batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


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
