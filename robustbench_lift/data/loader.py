"""The one batch loader: whole batches of uint8 images and labels from any dataset, in index order.

Datasets of this package read a batch at once (``ImageDataset.get_batch``); any other map-style ``Dataset`` of
``(image, label)`` items is read item by item. Every consumer (evaluation cells, perturbation sequences, probes,
training) goes through :func:`get_batch` or :func:`iter_batches`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from corruptions.rng import numpy_generator

__all__ = ["get_batch", "iter_batches", "select_indices"]


def get_batch(dataset: Any, indices: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
    """``(uint8 images (B, C, H, W), int64 labels (B,))`` of ``dataset[indices]``."""
    reader = getattr(dataset, "get_batch", None)
    if reader is not None:
        images, labels = reader(indices)
    else:
        items = [dataset[int(i)] for i in indices]
        images = torch.stack([x for x, _ in items])
        labels = torch.tensor([int(y) for _, y in items])
    return images, torch.as_tensor(labels)


class _BatchReader(torch.utils.data.Dataset):
    """One item per batch of indices, for a DataLoader whose workers each read whole batches."""

    def __init__(self, dataset: Any, chunks: list[np.ndarray]) -> None:
        self.dataset = dataset
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return get_batch(self.dataset, self.chunks[i])


def iter_batches(
    dataset: Any, indices: np.ndarray, batch_size: int, *, workers: int = 0
) -> Iterator[tuple[np.ndarray, Tensor, Tensor]]:
    """Yield ``(indices, uint8 images (B, C, H, W), labels (B,))`` batch by batch, in index order.

    Reads in this process when ``workers == 0``, otherwise through a DataLoader whose workers each read whole
    batches (order preserved).
    """
    if isinstance(batch_size, bool) or int(batch_size) <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if workers <= 0:
        for idx in chunks:
            images, labels = get_batch(dataset, idx)
            yield idx, images, labels
        return
    loader = torch.utils.data.DataLoader(
        _BatchReader(dataset, chunks),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
    )
    for idx, (images, labels) in zip(chunks, loader):
        yield idx, images, labels


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
