"""File formats: IDX (MNIST family), CIFAR python batches (restricted unpickler), ``.npy`` arrays.

CIFAR batches are pickles. They are read with a restricted unpickler that only rebuilds plain containers and numpy
arrays; any other object in the file is refused before it is created, so a crafted file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np


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
