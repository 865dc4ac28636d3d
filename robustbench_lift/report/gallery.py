"""The corruption gallery: one image, a row per corruption, the clean image then one column per severity.

One implementation for both places that draw it: the report (``gallery.png``, drawn from a run's dataset or read
from a given PNG) and ``corrupt --gallery`` (drawn from the first image of the corrupted dataset).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from corruptions import corrupt, list_corruptions

from ..fileio import atomic_write_bytes
from .plots.base import save_figure
from .rows import corruption_suites

__all__ = [
    "corrupted_rows",
    "gallery_figure",
    "gallery_png",
    "gallery_from_dataset",
    "write_gallery",
    "report_gallery",
]

log = logging.getLogger(__name__)

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _to_hwc(chw: np.ndarray) -> np.ndarray:
    return chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0))


def corrupted_rows(
    image: torch.Tensor,
    suite: str,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    sample_id: int = 0,
    backend: str = "torch",
) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The clean image and, per corruption of ``suite``, its corrupted versions at ``severities``.

    Args:
        image: uint8 (C, H, W), or float in [0, 1].
        sample_id: seeds the corruptions, as in an evaluation of the same image (see docs/DESIGN.md, "Randomness").

    Returns:
        ``(clean, rows)``: (H, W) or (H, W, C) float arrays in [0, 1].
    """
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"the gallery needs one (C, H, W) image with 1 or 3 channels, got {tuple(image.shape)}"
        )
    x = image.unsqueeze(0)
    x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32).clamp(0, 1)
    names = list(corruptions) if corruptions is not None else list_corruptions(suite)
    rows: dict[str, list[np.ndarray]] = {}
    with warnings.catch_warnings():
        # an image size other than the suite's native one only changes how it looks, not what the gallery shows
        warnings.simplefilter("ignore", UserWarning)
        for name in names:
            rows[name] = [
                _to_hwc(
                    corrupt(x, name, int(s), suite=suite, seed=seed, ids=[sample_id], backend=backend)[
                        0
                    ].numpy()
                )
                for s in severities
            ]
    return _to_hwc(x[0].numpy()), rows


def gallery_figure(
    images: Mapping[str, Sequence[np.ndarray]], clean: np.ndarray, severities: Sequence[int] = SEVERITIES
) -> Figure:
    """Grid of one image: a row per corruption, the clean image then one column per severity.

    Args:
        images: corruption name -> one (H, W, C) or (H, W) array in [0, 1] per severity.
        clean: the uncorrupted image, same layout.
        severities: the column titles' severities (as many as each row holds).
    """
    names = list(images)
    if not names:
        raise ValueError("gallery_figure needs at least one corruption")
    cols = 1 + len(severities)
    fig = Figure(figsize=(cols * 1.1 + 1.4, 1.1 * len(names) + 0.5), layout="constrained")
    axes = fig.subplots(len(names), cols, squeeze=False)
    for i, name in enumerate(names):
        row = [clean, *images[name]]
        if len(row) != cols:
            raise ValueError(f"row {name!r} holds {len(row) - 1} images for {len(severities)} severities")
        for j, img in enumerate(row):
            ax = axes[i][j]
            arr = np.clip(np.asarray(img, dtype=float), 0, 1)
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("clean" if j == 0 else f"severity {severities[j - 1]}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name.replace("_", " "), fontsize=8, rotation=0, ha="right", va="center")
    return fig


def gallery_png(image: torch.Tensor, suite: str, **kw: Any) -> bytes:
    """PNG bytes of the gallery of ``image`` (keywords as :func:`corrupted_rows`)."""
    severities = tuple(kw.get("severities", SEVERITIES))
    clean, rows = corrupted_rows(image, suite, **kw)
    png, _ = save_figure(gallery_figure(rows, clean, severities), None, "gallery")
    return png


def gallery_from_dataset(
    dataset: str, suite: str, *, seed: int = 0, index: int = 0, corruptions: Sequence[str] | None = None
) -> Figure:
    """The gallery of image ``index`` of ``dataset`` with every corruption of ``suite`` at severities 1..5.

    Raises:
        ValueError / FileNotFoundError: the dataset cannot be opened or holds no clean images.
    """
    from ..data import ImageDataset, open_dataset

    ds = open_dataset(dataset)
    if not isinstance(ds, ImageDataset) or len(ds) == 0:
        raise ValueError(f"dataset {dataset!r} holds no clean images to corrupt")
    image, _ = ds[index]
    clean, rows = corrupted_rows(
        image, suite, corruptions=corruptions, seed=seed, sample_id=ds.sample_id(index)
    )
    return gallery_figure(rows, clean)


def write_gallery(
    image: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    suite: str = "cifar10-c",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    sample_id: int = 0,
    backend: str = "torch",
) -> Path:
    """Write the gallery of ``image`` as a PNG file (atomically); returns its path."""
    png = gallery_png(
        image, suite, corruptions=corruptions, severities=severities, seed=seed, sample_id=sample_id,
        backend=backend,
    )  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, png)
    return path


def report_gallery(
    runs: Sequence[Any],
    results: Any,
    gallery: str | os.PathLike[str] | None,
    make_gallery: bool,
    notes: list[str],
) -> bytes | None:
    """PNG bytes of a report's gallery - ``gallery`` when given, else drawn from the first run whose manifest names
    a dataset of clean images - or None with a note in ``notes`` saying why there is none."""
    if gallery is not None:
        try:
            data = Path(gallery).read_bytes()
        except OSError as exc:
            raise FileNotFoundError(f"cannot read the gallery image {os.fspath(gallery)!r}: {exc}") from exc
        if not data.startswith(_PNG_MAGIC):
            raise ValueError(f"the gallery image {os.fspath(gallery)!r} is not a PNG file")
        return data
    if not make_gallery:
        return None
    suites = corruption_suites(results)
    for run in runs:
        config = run.manifest.get("config", {}) if isinstance(run.manifest, dict) else {}
        dataset = config.get("clean_dataset") or config.get("dataset")
        if isinstance(dataset, dict):  # the evaluator records {"spec": ..., "name": ..., ...}
            dataset = dataset.get("spec")
        if not isinstance(dataset, str) or not suites:
            continue
        try:
            fig = gallery_from_dataset(dataset, suites[0], seed=int(config.get("seed", 0) or 0))
        except Exception as exc:  # the gallery is an illustration: any failure only drops it, with the reason
            log.info("no corruption gallery from %s: %s", dataset, exc)
            notes.append(
                f"corruption gallery skipped: could not corrupt an image of {dataset!r} ({type(exc).__name__}: "
                f"{exc}); pass --gallery PNG (e.g. written by the 'corrupt' command)"
            )
            return None
        png, _ = save_figure(fig, None, "gallery")
        return png
    notes.append(
        "corruption gallery skipped: the runs hold no corruption suite or name no dataset of clean images; pass "
        "--gallery PNG "
        "(e.g. written by the 'corrupt' command)"
    )
    return None
