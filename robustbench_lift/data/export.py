"""Write a corrupted copy of a dataset in the standard pre-generated layouts (what ``corrupt`` runs).

Layouts (what ``open_dataset("cifar10-c:ROOT")`` / ``open_dataset("imagenet-c:ROOT")`` and other tools read):

* ``npy`` (CIFAR-10-C): ``<corruption>.npy`` uint8 (5 * N, H, W, C), severities 1..5 stacked (severity s = rows
  ``[(s - 1) * N : s * N]``), and ``labels.npy`` int64 (5 * N,);
* ``jpeg-folders`` (ImageNet-C): ``<corruption>/<severity>/<class>/<sample id>.JPEG``, JPEG quality 85. Every class
  of the dataset gets a folder (empty ones included) so that labels read back in sorted-folder order are the
  dataset's labels; class names are used as folder names when they are valid names already in sorted order,
  otherwise they are prefixed with their label index (``0003_Dress``).

Every file is written under a temporary name and renamed when complete, and a corruption counts as done only when
its ``.npy`` file / folder is in place: an interrupted run leaves no half-written file, and re-running the same
call resumes with the corruptions still missing. ``corrupt_meta.json`` records how the set was made; a re-run
with different settings is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..fileio import atomic_dir, atomic_path, atomic_write_bytes
from .loader import select_indices

__all__ = ["FORMATS", "JPEG_QUALITY", "META_FILE", "write_corrupted", "class_folder_names", "sample_ids"]

FORMATS = ("npy", "jpeg-folders")
JPEG_QUALITY = 85
META_FILE = "corrupt_meta.json"


class _Dataset(Protocol):
    class_names: Sequence[str]
    channels: int

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


# --------------------------------------------------------------------------------------------- helpers


_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def class_folder_names(class_names: Sequence[str]) -> list[str]:
    """Folder names for the classes whose sorted order is the label order (see the module docstring)."""
    plain = [_SAFE.sub("_", str(c)).strip("._") or "class" for c in class_names]
    if len(set(plain)) == len(plain) and plain == sorted(plain) and plain == [str(c) for c in class_names]:
        return plain
    width = max(4, len(str(len(plain) - 1)))
    return [f"{i:0{width}d}_{p}" for i, p in enumerate(plain)]


def sample_ids(dataset: _Dataset, positions: int | Sequence[int]) -> list[int]:
    """The sample ids (what seeds each image's corruption) of the images at ``positions`` (an int n: the first n)."""
    fn = getattr(dataset, "sample_id", None)
    indices = range(positions) if isinstance(positions, int) else positions
    return [int(fn(i)) if fn is not None else int(i) for i in indices]


def _batch(dataset: _Dataset, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    get_batch = getattr(dataset, "get_batch", None)
    if get_batch is not None:
        images, labels = get_batch(list(indices))
    else:
        items = [dataset[i] for i in indices]
        sizes = {tuple(x.shape) for x, _ in items}
        if len(sizes) > 1:
            raise ValueError(
                f"images differ in size ({sorted(sizes)}); open the dataset with a fixed image size"
            )
        images = torch.stack([x for x, _ in items])
        labels = torch.tensor([int(y) for _, y in items], dtype=torch.int64)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"the dataset must yield uint8 (C, H, W) images, got {images.dtype} {tuple(images.shape[1:])}"
        )
    return images, labels.to(torch.int64)


def _jpeg_bytes(image_hwc: np.ndarray) -> bytes:
    from PIL import (
        Image,  # Pillow comes with torchvision; imported here so that reading sets does not need it
    )

    img = Image.fromarray(image_hwc[..., 0] if image_hwc.shape[-1] == 1 else image_hwc)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _clean_stale(out: Path) -> None:
    """Remove temporaries left by an interrupted run."""
    for p in out.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or ".tmp-" in p.name):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- writer
def write_corrupted(
    dataset: _Dataset,
    out: str | os.PathLike[str],
    *,
    suite: str = "cifar10-c",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    limit: int | None = None,
    seed: int = 0,
    fmt: str = "npy",
    batch_size: int = 256,
    backend: str = "torch",
    overwrite: bool = False,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Corrupt ``dataset`` and write it to ``out`` in a standard pre-generated layout.

    Args:
        dataset: yields ``(uint8 (C, H, W), label)``, all images the same size; ``class_names`` and ``channels``
            attributes, optional ``sample_id(i)`` (seeds image i; default the index) and ``get_batch``.
        out: output folder (created).
        suite: corruption suite name (``corruptions.list_suites()``).
        corruptions: names (default: all of the suite, benchmark then held-out).
        severities: 1..5; the ``npy`` layout needs all five.
        limit: a seeded random subset of ``limit`` images, the same images ``evaluate --limit`` picks for the same
            ``seed`` (:func:`robustbench_lift.data.loader.select_indices`); written in dataset order.
        seed: global seed; image i at (corruption c, severity s) depends only on (seed, sample_id(i), c, s).
        fmt: ``"npy"`` (CIFAR-10-C) or ``"jpeg-folders"`` (ImageNet-C).
        backend: ``"torch"`` or ``"reference"`` (imagecorruptions, ``imagenet-c`` only).
        overwrite: replace existing output and ignore a different ``corrupt_meta.json``.
        source: a description of the dataset for the metadata file.
        progress: called with one line per finished corruption.

    Returns:
        The metadata written to ``corrupt_meta.json`` plus ``written`` / ``skipped`` corruption lists.
    """
    from corruptions import corrupt, get_suite, list_corruptions
    from corruptions.registry import suggest

    suite_obj = get_suite(suite)
    valid = list_corruptions(suite)
    names = list(corruptions) if corruptions is not None else list(valid)
    bad = [c for c in names if c not in valid]
    if bad:
        raise ValueError(
            f"unknown corruptions {', '.join(bad)} for suite {suite!r}; valid: {', '.join(valid)}"
            + suggest(bad, valid)
        )
    if len(set(names)) != len(names):
        raise ValueError(f"a corruption is listed twice: {', '.join(names)}")
    sevs = [int(s) for s in severities]
    if not sevs or any(s < 1 or s > 5 for s in sevs) or len(set(sevs)) != len(sevs):
        raise ValueError(f"severities must be distinct integers in 1..5, got {list(severities)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "npy" and sorted(sevs) != [1, 2, 3, 4, 5]:
        raise ValueError(
            "the npy (CIFAR-10-C) layout stacks all five severities: use --severities 1-5 or jpeg-folders"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    positions = [int(i) for i in select_indices(len(dataset), limit, int(seed))]
    n = len(positions)
    if n == 0:
        raise ValueError("the dataset is empty")
    sevs = sorted(sevs)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    meta = {
        "format": fmt,
        "layout": "CIFAR-10-C" if fmt == "npy" else "ImageNet-C",
        "suite": suite_obj.name,
        "suite_native_size": suite_obj.native_size,
        "backend": backend,
        "seed": int(seed),
        "num_images": n,
        "severities": sevs,
        "source": source,
        "class_names": [str(c) for c in dataset.class_names],
        "jpeg_quality": JPEG_QUALITY if fmt == "jpeg-folders" else None,
    }
    if n < len(dataset):  # which images: a set written from the first N (older versions) is not resumed
        meta["subset"] = "seeded random (select_indices)"
    meta_path = out / META_FILE
    if meta_path.is_file() and not overwrite:
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        old_core = {k: v for k, v in (old or {}).items() if k != "corruptions"}
        if old_core != meta:
            raise ValueError(
                f"{out} holds a set made with other settings ({META_FILE} differs); "
                "use --overwrite or another --out"
            )
    done_before = set(
        (json.loads(meta_path.read_text()).get("corruptions", [])) if meta_path.is_file() else []
    )

    ids = sample_ids(dataset, positions)
    folders = class_folder_names(dataset.class_names) if fmt == "jpeg-folders" else []
    written, skipped = [], []
    labels_all: np.ndarray | None = None

    for name in names:
        final = out / (f"{name}.npy" if fmt == "npy" else name)
        if final.exists() and not overwrite:
            skipped.append(name)
            if progress:
                progress(f"{name}: already written, skipped")
            continue
        t0 = time.perf_counter()
        if fmt == "npy":
            labels_all = _write_npy(
                dataset, final, name, sevs, positions, ids, seed, suite, batch_size, backend, corrupt
            )
        else:
            labels_all = _write_folders(
                dataset, final, name, sevs, positions, ids, seed, suite, batch_size, backend, folders, corrupt
            )
        written.append(name)
        done_before.add(name)
        atomic_write_bytes(
            meta_path, json.dumps({**meta, "corruptions": sorted(done_before)}, indent=1).encode()
        )
        if progress:
            progress(f"{name}: {n} images x {len(sevs)} severities in {time.perf_counter() - t0:.1f} s")

    if fmt == "npy":
        labels_path = out / "labels.npy"
        if labels_all is None and not labels_path.is_file():
            labels_all = np.concatenate(
                [_batch(dataset, positions[i : i + batch_size])[1].numpy() for i in range(0, n, batch_size)]
            )
        if labels_all is not None:
            _save_npy_atomic(labels_path, np.tile(labels_all.astype(np.int64), 5))
    atomic_write_bytes(meta_path, json.dumps({**meta, "corruptions": sorted(done_before)}, indent=1).encode())
    return {**meta, "corruptions": sorted(done_before), "written": written, "skipped": skipped}


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _write_npy(
    dataset, final: Path, name, sevs, positions, ids, seed, suite, batch_size, backend, corrupt
) -> np.ndarray:
    n = len(positions)
    first, _ = _batch(dataset, positions[:1])
    c, h, w = first.shape[1:]
    labels = np.empty(n, dtype=np.int64)
    with atomic_path(final) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(5 * n, h, w, c))
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            images, lab = _batch(dataset, positions[start:stop])
            if tuple(images.shape[1:]) != (c, h, w):
                raise ValueError(f"image {start} has shape {tuple(images.shape[1:])}, expected {(c, h, w)}")
            labels[start:stop] = lab.numpy()
            for s in sevs:
                y = corrupt(images, name, s, suite=suite, seed=seed, ids=ids[start:stop], backend=backend)
                arr[(s - 1) * n + start : (s - 1) * n + stop] = y.permute(0, 2, 3, 1).numpy()
        arr.flush()
        del arr
    return labels


def _write_folders(
    dataset, final: Path, name, sevs, positions, ids, seed, suite, batch_size, backend, folders, corrupt
) -> np.ndarray:
    n = len(positions)
    labels = np.empty(n, dtype=np.int64)
    width = max(8, len(str(max(ids))))
    with atomic_dir(final) as tmp:
        for s in sevs:
            for folder in folders:
                (tmp / str(s) / folder).mkdir(parents=True, exist_ok=True)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            images, lab = _batch(dataset, positions[start:stop])
            labels[start:stop] = lab.numpy()
            for s in sevs:
                y = corrupt(images, name, s, suite=suite, seed=seed, ids=ids[start:stop], backend=backend)
                hwc = y.permute(0, 2, 3, 1).numpy()
                for k in range(stop - start):
                    label = int(lab[k])
                    if not 0 <= label < len(folders):
                        raise ValueError(
                            f"label {label} of image {start + k} is outside 0..{len(folders) - 1}"
                        )
                    path = tmp / str(s) / folders[label] / f"{ids[start + k]:0{width}d}.JPEG"
                    path.write_bytes(_jpeg_bytes(hwc[k]))
    return labels
