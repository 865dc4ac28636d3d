"""``robustbench-lift corrupt``: write a corrupted copy of a dataset in the standard pre-generated layouts.

Examples::

    robustbench-lift corrupt --dataset cifar10:~/data --suite cifar10-c --out ~/data/CIFAR-10-C-rbl
    robustbench-lift corrupt --dataset imagefolder:~/data/val --image-size 224 --suite imagenet-c \\
        --out ~/data/ImageNet-C-rbl --corruptions fog,snow --severities 1-5 --gallery docs/gallery.png

Layouts (what ``open_dataset("cifar10-c:ROOT")`` / ``open_dataset("imagenet-c:ROOT")`` and other tools read):

* ``npy`` (CIFAR-10-C): ``<corruption>.npy`` uint8 (5 * N, H, W, C), severities 1..5 stacked (severity s = rows
  ``[(s - 1) * N : s * N]``), and ``labels.npy`` int64 (5 * N,);
* ``jpeg-folders`` (ImageNet-C): ``<corruption>/<severity>/<class>/<sample id>.JPEG``, JPEG quality 85. Every class
  of the dataset gets a folder (empty ones included) so that labels read back in sorted-folder order are the
  dataset's labels; class names are used as folder names when they are valid names already in sorted order,
  otherwise they are prefixed with their label index (``0003_Dress``).

Every file is written under a temporary name and renamed when complete, and a corruption counts as done only when
its ``.npy`` file / folder is in place: an interrupted run leaves no half-written file, and re-running the same
command resumes with the corruptions still missing. ``corrupt_meta.json`` records how the set was made; a re-run
with different settings is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from robustbench_lift.commands._args import parse_ints, parse_list, positive_int
from robustbench_lift.fileio import atomic_dir, atomic_path, atomic_write_bytes

__all__ = [
    "FORMATS",
    "register",
    "run",
    "write_corrupted",
    "write_gallery",
    "class_folder_names",
]

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


def _sample_ids(dataset: _Dataset, n: int) -> list[int]:
    fn = getattr(dataset, "sample_id", None)
    return [int(fn(i)) if fn is not None else i for i in range(n)]


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
    import io

    from PIL import Image

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
        limit: only the first ``limit`` images.
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

    suite_obj = get_suite(suite)
    valid = list_corruptions(suite)
    names = list(corruptions) if corruptions is not None else list(valid)
    bad = [c for c in names if c not in valid]
    if bad:
        raise ValueError(
            f"unknown corruptions {', '.join(bad)} for suite {suite!r}; valid: {', '.join(valid)}"
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
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
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

    ids = _sample_ids(dataset, n)
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
                dataset, final, name, sevs, n, ids, seed, suite, batch_size, backend, corrupt
            )
        else:
            labels_all = _write_folders(
                dataset, final, name, sevs, n, ids, seed, suite, batch_size, backend, folders, corrupt
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
                [
                    _batch(dataset, range(i, min(i + batch_size, n)))[1].numpy()
                    for i in range(0, n, batch_size)
                ]
            )
        if labels_all is not None:
            _save_npy_atomic(labels_path, np.tile(labels_all.astype(np.int64), 5))
    atomic_write_bytes(meta_path, json.dumps({**meta, "corruptions": sorted(done_before)}, indent=1).encode())
    return {**meta, "corruptions": sorted(done_before), "written": written, "skipped": skipped}


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _write_npy(
    dataset, final: Path, name, sevs, n, ids, seed, suite, batch_size, backend, corrupt
) -> np.ndarray:
    first, _ = _batch(dataset, [0])
    c, h, w = first.shape[1:]
    labels = np.empty(n, dtype=np.int64)
    with atomic_path(final) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(5 * n, h, w, c))
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            images, lab = _batch(dataset, range(start, stop))
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
    dataset, final: Path, name, sevs, n, ids, seed, suite, batch_size, backend, folders, corrupt
) -> np.ndarray:
    labels = np.empty(n, dtype=np.int64)
    width = max(8, len(str(max(ids))))
    with atomic_dir(final) as tmp:
        for s in sevs:
            for folder in folders:
                (tmp / str(s) / folder).mkdir(parents=True, exist_ok=True)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            images, lab = _batch(dataset, range(start, stop))
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


# --------------------------------------------------------------------------------------------- gallery
def write_gallery(
    image: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    suite: str = "cifar10-c",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    sample_id: int = 0,
    backend: str = "torch",
    cell: int | None = None,
) -> Path:
    """A PNG grid: one row per corruption, the clean image then one column per severity, labelled.

    Args:
        image: uint8 (C, H, W) or float in [0, 1].
        cell: side of one tile in pixels (default: the image enlarged by an integer factor to at least 96 px).
    """
    from PIL import Image, ImageDraw

    from corruptions import corrupt, list_corruptions

    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"the gallery needs one (C, H, W) image, got {tuple(image.shape)}")
    names = list(corruptions) if corruptions is not None else list_corruptions(suite)
    x = image[None]
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    h, w = x.shape[-2:]
    if cell is None:
        factor = max(1, math.ceil(96 / max(h, w)))
        th, tw = h * factor, w * factor
    else:
        th = tw = int(cell)
    label_w, head_h, pad = 130, 18, 2
    cols = 1 + len(severities)
    canvas = Image.new("RGB", (label_w + cols * (tw + pad), head_h + len(names) * (th + pad)), "white")
    draw = ImageDraw.Draw(canvas)

    def tile(t: torch.Tensor) -> Image.Image:
        arr = t.permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).convert("RGB")
        return img.resize((tw, th), Image.NEAREST)

    for j, title in enumerate(["clean"] + [f"severity {s}" for s in severities]):
        draw.text((label_w + j * (tw + pad) + 2, 3), title, fill="black")
    clean = tile(x[0])
    for i, name in enumerate(names):
        top = head_h + i * (th + pad)
        draw.text((4, top + th // 2 - 6), name, fill="black")
        canvas.paste(clean, (label_w, top))
        for j, s in enumerate(severities, start=1):
            y = corrupt(x, name, int(s), suite=suite, seed=seed, ids=[sample_id], backend=backend)
            canvas.paste(tile(y[0]), (label_w + j * (tw + pad), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------------------------- CLI
def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "corrupt",
        help="write a corrupted copy of a dataset (CIFAR-10-C .npy or ImageNet-C JPEG folders)",
        description=__doc__.split("\n\n")[0],
        epilog="See the module documentation for the layouts.",
    )
    p.add_argument(
        "--dataset", required=True, help="dataset spec, e.g. cifar10:ROOT, fashion-mnist, imagefolder:ROOT"
    )
    p.add_argument("--suite", default="cifar10-c", help="corruption suite: cifar10-c (default) or imagenet-c")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--corruptions", type=parse_list, default=None, help="comma-separated (default: the whole suite)"
    )
    p.add_argument(
        "--severities", type=parse_ints, default=[1, 2, 3, 4, 5], help="e.g. 1,3,5 or 1-5 (default)"
    )
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="default: npy for cifar10-c, jpeg-folders otherwise"
    )
    p.add_argument(
        "--image-size", type=positive_int, default=None, help="resize + centre-crop imagefolder images"
    )
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--backend", choices=["torch", "reference"], default="torch")
    p.add_argument("--gallery", default=None, metavar="PNG", help="also write a gallery of the first image")
    p.add_argument("--overwrite", action="store_true", help="replace existing output")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import open_dataset

    dataset = open_dataset(args.dataset, split=args.split, image_size=args.image_size)
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "class_names"):
        raise ValueError(
            f"--dataset {args.dataset!r} is not an image dataset (a pre-generated set cannot be corrupted)"
        )
    fmt = args.format or ("npy" if args.suite.startswith("cifar") else "jpeg-folders")

    def log(msg: str) -> None:
        print(f"corrupt: {msg}", file=sys.stderr)

    info = write_corrupted(
        dataset,
        args.out,
        suite=args.suite,
        corruptions=args.corruptions,
        severities=args.severities,
        limit=args.limit,
        seed=args.seed,
        fmt=fmt,
        batch_size=args.batch_size,
        backend=args.backend,
        overwrite=args.overwrite,
        source=args.dataset,
        progress=log,
    )
    if args.gallery:
        image, _ = dataset[0]
        path = write_gallery(
            image, args.gallery, suite=args.suite, corruptions=args.corruptions, severities=args.severities,
            seed=args.seed, sample_id=_sample_ids(dataset, 1)[0], backend=args.backend,
        )  # fmt: skip
        log(f"gallery: {path}")
    print(
        f"{args.out}: {info['layout']} layout, {info['num_images']} images, "
        f"{len(info['written'])} corruptions written, {len(info['skipped'])} already present"
    )
    return 0
