"""``ROOT/<class>/<image>`` folders decoded with PIL (ImageNet-style validation sets, pre-generated ImageNet-C cells)."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .base import DatasetWarning, ImageDataset, _to_chw_tensor
from .classes import IMAGE_EXTENSIONS
from .transforms import _parse_size


class ImageFolderDataset(ImageDataset):
    """Images in ``root/<class>/<file>``; classes are the sorted subfolder names.

    Files whose header PIL cannot read are skipped at opening with a :class:`DatasetWarning` (their paths are in
    ``skipped``), or raise ``ValueError`` when ``strict=True``. A file that passes that check but fails to decode
    later raises ``ValueError`` naming the file.

    Args:
        root: the folder holding one subfolder per class.
        image_size: None keeps each image's own size; an int ``s`` (or ``(s, s)``) resizes the shorter side to
            ``short_side`` (bilinear) and centre-crops ``s x s``, the ImageNet evaluation transform.
        short_side: the shorter side before the crop (default ``round(max(image_size) * 256 / 224)``: Resize 256,
            CenterCrop 224 for 224 px). ``short_side=256`` with ``image_size=256`` gives the 256 px image of
            Zhang's crop-consistency protocol.
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
        short_side: int | None = None,
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
        self.short_side = _check_short_side(name, size, short_side)
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

    def at_size(self, image_size: int | tuple[int, int], short_side: int | None = None) -> ImageFolderDataset:
        """The same files (same samples and sample ids) read at another size: shorter side to ``short_side``,
        then a centre crop of ``image_size``."""
        if not self.resize:
            raise ValueError(f"{self.name}: images that are never resized cannot be read at another size")
        other = copy.copy(self)
        other.image_size = _parse_size(image_size)
        other.short_side = _check_short_side(self.name, other.image_size, short_side)
        return other

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
                    img = _resize_center_crop(img, self.image_size, self.short_side)
                array = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{self.name}: cannot decode image {path!r}: {exc}") from exc
        if self.image_size is not None and array.shape[:2] != self.image_size:
            raise ValueError(
                f"{self.name}: image {path!r} is {array.shape[0]}x{array.shape[1]}, expected "
                f"{self.image_size[0]}x{self.image_size[1]} (pre-generated images are never resized)"
            )
        return _to_chw_tensor(array, "NHWC"), label


def _check_short_side(name: str, size: tuple[int, int] | None, short_side: Any) -> int | None:
    if short_side is None:
        return None
    if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 1:
        raise ValueError(f"{name}: short_side must be a positive int, got {short_side!r}")
    if size is not None and short_side < max(size):
        raise ValueError(f"{name}: short_side {short_side} is smaller than the {size[0]}x{size[1]} crop")
    return int(short_side)


def _header_problem(path: str) -> str | None:
    """Why PIL cannot read ``path``'s header, or None when it can."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _resize_center_crop(img: Any, size: tuple[int, int], short_side: int | None = None) -> Any:
    """Shorter side to ``short_side`` (default ``round(max(size) * 256 / 224)``; bilinear), then a centre crop of
    ``size``."""
    from PIL import Image

    th, tw = size
    short = round(max(th, tw) * 256 / 224) if short_side is None else int(short_side)

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
