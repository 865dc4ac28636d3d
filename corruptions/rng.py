"""Explicit, order-independent randomness.

Every random draw of the project comes from a generator derived from ``(seed, *keys)`` - typically
``(seed, sample_id, corruption, severity)`` - through a stable hash. A result therefore depends on the seed and the
sample's identity only, never on batch size, batch order, worker count or device. Draws happen on the CPU and are
moved to the target device, because CPU and CUDA generators produce different streams for the same seed.
Global RNG state (``torch``, ``numpy``, ``random``) is never read or written.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import torch

__all__ = ["derive_seed", "torch_generator", "numpy_generator", "per_sample_seeds"]

_MASK63 = (1 << 63) - 1


def _encode(key: object) -> bytes:
    if isinstance(key, bool):
        return b"b" + (b"1" if key else b"0")
    if isinstance(key, int):
        return b"i" + str(key).encode()
    if isinstance(key, float):
        return b"f" + struct.pack("<d", key)
    if isinstance(key, str):
        return b"s" + key.encode("utf-8")
    raise TypeError(f"seed keys must be int, float, str or bool, got {type(key).__name__}")


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that is a stable function of ``seed`` and ``keys`` (same on every platform and run)."""
    h = hashlib.blake2b(digest_size=8, person=b"rbl-rng-v1")
    h.update(_encode(int(seed)))
    for k in keys:
        h.update(b"\x1f")
        h.update(_encode(k))
    return int.from_bytes(h.digest(), "little") & _MASK63


def per_sample_seeds(seed: int, ids: list[int] | torch.Tensor, *keys: object) -> list[int]:
    """One derived seed per sample id: ``derive_seed(seed, id, *keys)``."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return [derive_seed(seed, int(i), *keys) for i in ids]


def torch_generator(seed: int, *keys: object) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with ``derive_seed(seed, *keys)``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, *keys))
    return g


def numpy_generator(seed: int, *keys: object) -> np.random.Generator:
    """A fresh ``numpy.random.Generator`` (PCG64) seeded with ``derive_seed(seed, *keys)``."""
    return np.random.Generator(np.random.PCG64(derive_seed(seed, *keys)))
