"""The dataset registry: ``open_dataset(spec)`` and the openers of the image datasets (the pre-generated ones
register in :mod:`.pregenerated`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corruptions.registry import Registry

from .base import ArrayDataset
from .classes import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    MNIST_CLASSES,
)
from .folder import ImageFolderDataset
from .readers import _cifar_images, _cifar_names, load_cifar_pickle, read_idx

_SPLITS = ("train", "test")


Opener = Callable[..., Any]

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
) -> Any:
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
