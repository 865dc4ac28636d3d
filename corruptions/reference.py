"""Backend "reference": the published ``imagecorruptions`` 1.1.2 package, mended for today's stack and seeded.

The package is run as published, one image at a time, so that its results can serve as the yardstick of the torch
engine. On numpy 2 / scikit-image 0.26 / setuptools >= 82 it is broken in four places; this module mends them
without changing anything the caller can see:

1. ``import imagecorruptions`` needs ``pkg_resources`` (only frost uses it, to locate its texture files). A minimal
   stand-in module is placed in ``sys.modules`` for the duration of the import and removed afterwards; the package
   is imported under a private name and its modules are taken out of ``sys.modules`` again (this module keeps the
   references), so ``import imagecorruptions`` elsewhere behaves exactly as before. Frost's textures are read from
   the installed package directory.
2. ``skimage.filters.gaussian(..., multichannel=True)``: the package's own global ``gaussian`` is replaced by a
   wrapper that translates ``multichannel=True`` into ``channel_axis=-1``. scikit-image itself is untouched.
3. ``np.float_`` (fog): the package's own global ``np`` is replaced by a proxy of numpy that adds ``float_``.
   numpy itself is untouched.
4. No seed: the package draws from ``np.random`` (numpy's global ``RandomState``) and impulse noise from
   scikit-image's ``random_noise`` generator. Here the proxy's ``np.random`` is a private ``RandomState`` seeded per
   image from ``derive_seed(seed, id, name, severity)`` - the same MT19937 stream the published code would draw
   after ``np.random.seed(...)`` - and ``random_noise`` receives a per-image ``rng``. numpy's global random state is
   never read or written.

Images: float tensors in [0, 1] or uint8, shape (N, C, H, W), C in {1, 3}, H and W >= 32 (the package's minimum).
Each image is converted to uint8 HWC (rounding), corrupted by ``imagecorruptions.corrupt``, and converted back.
Grayscale images are replicated to RGB before the call (the package does the same) and brought back to one channel
by the mean over the three output channels, rounded. The package truncates its float results to uint8
(``np.uint8(x)``); that is kept, as it is part of the published behaviour.

The package hard-codes its parameters: the ImageNet-C table (scaling the size-dependent ones - fog's noise map,
frost's texture crop, elastic's displacement field - with the image size) with its own elastic transform. Two suites
name that table: ``imagecorruptions`` (exactly the package's parameters, elastic included) and ``imagenet-c`` (whose
elastic_transform is Hendrycks' variant in the torch engine; the package still runs its own here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .base import CORRUPTIONS
from .rng import derive_seed
from .suites import ALL_CORRUPTIONS

__all__ = [
    "REFERENCE_CORRUPTIONS",
    "REFERENCE_SUITE",
    "REFERENCE_SUITES",
    "corrupt_reference",
    "corrupt_reference_numpy",
    "reference_package_dir",
    "frost_texture_paths",
    "reference_function",
    "random_source",
]

log = logging.getLogger(__name__)

REFERENCE_SUITE = "imagenet-c"
#: The built-in suites whose parameters the package implements (``imagecorruptions`` is its own, elastic included).
REFERENCE_SUITES: tuple[str, ...] = ("imagenet-c", "imagecorruptions")

#: The built-in corruptions checked against imagecorruptions 1.1.2 (the 19 of the package, in the canonical order):
#: those whose registry entry names a ``reference`` function.
REFERENCE_CORRUPTIONS: tuple[str, ...] = tuple(
    n for n in ALL_CORRUPTIONS if CORRUPTIONS.meta(n)["reference"] is not None
)
# Our name -> the package's name of the function it is checked against (the registry entry's ``reference``).
_PACKAGE_NAMES: dict[str, str] = {n: CORRUPTIONS.meta(n)["reference"] for n in REFERENCE_CORRUPTIONS}

_PACKAGE = "imagecorruptions"
# Private import name: never collides with a user's own ``import imagecorruptions``.
_PRIVATE_NAME = "_robustbench_lift_imagecorruptions_ref"
_MIN_SIDE = 32


def reference_package_dir() -> str:
    """Directory of the installed ``imagecorruptions`` package, found without importing it.

    Raises:
        ModuleNotFoundError: when the package is not installed.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the reference backend needs the package imagecorruptions==1.1.2 (pip install imagecorruptions==1.1.2)"
        )
    return os.fspath(next(iter(spec.submodule_search_locations)))


def frost_texture_paths() -> list[str]:
    """Paths of the six frost textures shipped inside the installed ``imagecorruptions`` package."""
    root = os.path.join(reference_package_dir(), "frost")
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    return [os.path.join(root, n) for n in names]


# --------------------------------------------------------------------------------------------- per-thread state
class _CallState(threading.local):
    """The generators of the image being corrupted on this thread (None outside a call)."""

    random_state: np.random.RandomState | None = None
    skimage_rng: np.random.Generator | None = None


_STATE = _CallState()


def _current() -> _CallState:
    if _STATE.random_state is None or _STATE.skimage_rng is None:
        raise RuntimeError("the reference package drew random numbers outside corrupt_reference()")
    return _STATE


class _NumpyProxy(types.ModuleType):
    """numpy as seen by the reference package: adds ``float_`` and routes ``np.random`` to the per-image state."""

    float_ = np.float64

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str) -> Any:
        if name == "random":
            return _current().random_state
        return getattr(np, name)


class _SkimageUtilProxy(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("skimage.util")

    @staticmethod
    def random_noise(image: np.ndarray, **kwargs: Any) -> np.ndarray:
        import skimage.util

        kwargs.pop("rng", None)
        return skimage.util.random_noise(image, rng=_current().skimage_rng, **kwargs)

    def __getattr__(self, name: str) -> Any:
        import skimage.util

        return getattr(skimage.util, name)


class _SkimageProxy(types.ModuleType):
    """scikit-image as seen by the reference package: ``util.random_noise`` draws from the per-image generator."""

    def __init__(self) -> None:
        super().__init__("skimage")
        self.util = _SkimageUtilProxy()

    def __getattr__(self, name: str) -> Any:
        import skimage

        return getattr(skimage, name)


def _gaussian_compat(
    image: np.ndarray, *args: Any, multichannel: bool | None = None, **kwargs: Any
) -> np.ndarray:
    """``skimage.filters.gaussian`` accepting the removed ``multichannel`` argument."""
    from skimage.filters import gaussian

    if multichannel:
        kwargs.setdefault("channel_axis", -1)
    return gaussian(image, *args, **kwargs)


def _log_print(*args: Any, **_: Any) -> None:
    # The package prints from zoom_blur / snow on a size mismatch; library code logs instead.
    log.debug("imagecorruptions: %s", " ".join(str(a) for a in args))


# --------------------------------------------------------------------------------------------- loading
_LOCK = threading.Lock()
_LOADED: types.ModuleType | None = None


def _pkg_resources_shim(package_dir: str) -> types.ModuleType:
    shim = types.ModuleType("pkg_resources")
    shim.__doc__ = "Temporary stand-in providing resource_filename for the imagecorruptions import."

    def resource_filename(_package: str, resource: str) -> str:
        return os.path.normpath(os.path.join(package_dir, resource))

    shim.resource_filename = resource_filename  # type: ignore[attr-defined]
    return shim


def _load() -> types.ModuleType:
    """Import imagecorruptions privately (once), mend it, and return its top-level module."""
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    with _LOCK:
        if _LOADED is not None:
            return _LOADED
        package_dir = reference_package_dir()
        init = os.path.join(package_dir, "__init__.py")
        spec = importlib.util.spec_from_file_location(
            _PRIVATE_NAME, init, submodule_search_locations=[package_dir]
        )
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"cannot load imagecorruptions from {package_dir}")
        package = importlib.util.module_from_spec(spec)
        missing = object()
        saved_pkg_resources = sys.modules.get("pkg_resources", missing)
        private_names = (_PRIVATE_NAME, f"{_PRIVATE_NAME}.corruptions")
        sys.modules["pkg_resources"] = _pkg_resources_shim(package_dir)
        sys.modules[_PRIVATE_NAME] = package
        try:
            with warnings.catch_warnings():
                # scipy.ndimage.interpolation is deprecated; only the package's own import triggers it.
                warnings.simplefilter("ignore", DeprecationWarning)
                spec.loader.exec_module(package)
            impl = sys.modules[f"{_PRIVATE_NAME}.corruptions"]
        finally:
            for name in private_names:
                sys.modules.pop(name, None)
            if saved_pkg_resources is missing:
                sys.modules.pop("pkg_resources", None)
            else:
                sys.modules["pkg_resources"] = saved_pkg_resources  # type: ignore[assignment]
        shim_resource_filename = _pkg_resources_shim(package_dir).resource_filename  # type: ignore[attr-defined]
        impl.__dict__.update(
            np=_NumpyProxy(),
            sk=_SkimageProxy(),
            gaussian=_gaussian_compat,
            resource_filename=shim_resource_filename,
            print=_log_print,
        )
        names = tuple(package.corruption_dict)
        if names != tuple(_PACKAGE_NAMES.values()):
            raise RuntimeError(f"unexpected imagecorruptions version: corruptions {names}")
        _LOADED = package
        return package


# --------------------------------------------------------------------------------------------- public API
def _seed_words(seed: int) -> np.ndarray:
    return np.array([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], dtype=np.uint32)


def _check_name_severity(name: str, severity: int) -> None:
    if name not in REFERENCE_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(REFERENCE_CORRUPTIONS)}")
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not 1 <= int(severity) <= 5
    ):
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")


def reference_function(name: str) -> Callable[..., Any]:
    """The package's own function for ``name``: ``f(PIL.Image, severity) -> array or PIL.Image``.

    Calls must happen inside ``random_source(...)`` for the stochastic corruptions.
    """
    _check_name_severity(name, 1)
    return _load().corruption_dict[_PACKAGE_NAMES[name]]


@contextlib.contextmanager
def random_source(random_state: Any, skimage_rng: np.random.Generator | None = None) -> Iterator[None]:
    """Make the package draw from ``random_state`` (anything with the ``np.random`` functions it calls) on this thread.

    Lets a caller feed the published code chosen random numbers, e.g. to compare an implementation with it on
    identical draws.
    """
    _load()
    state = _STATE
    previous = (state.random_state, state.skimage_rng)
    state.random_state = random_state
    state.skimage_rng = skimage_rng if skimage_rng is not None else np.random.default_rng(0)
    try:
        yield
    finally:
        state.random_state, state.skimage_rng = previous


def corrupt_reference_numpy(image: np.ndarray, name: str, severity: int, *, seed: int) -> np.ndarray:
    """Corrupt one uint8 RGB image (H, W, 3) with the published package, drawing from generators seeded by ``seed``.

    Returns:
        uint8 (H, W, 3).
    """
    _check_name_severity(name, severity)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    package = _load()
    with random_source(
        np.random.RandomState(_seed_words(seed)), np.random.default_rng(derive_seed(seed, "skimage"))
    ):
        out = package.corrupt(image, corruption_name=_PACKAGE_NAMES[name], severity=int(severity))
    return np.asarray(out, dtype=np.uint8)


def corrupt_reference(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    ids: Sequence[int] | torch.Tensor | None = None,
    suite: str = REFERENCE_SUITE,
) -> torch.Tensor:
    """Corrupt a batch with imagecorruptions 1.1.2, image by image, seeded per image.

    Args:
        images: float in [0, 1] or uint8, shape (N, C, H, W), C in {1, 3}, H and W >= 32, any device.
        name: one of the 19 corruptions (``REFERENCE_CORRUPTIONS``).
        severity: 1..5.
        seed: global seed; image i uses ``derive_seed(seed, ids[i], name, severity)``.
        ids: one integer per image (default: the index in the batch).
        suite: ``"imagenet-c"`` or ``"imagecorruptions"`` (``REFERENCE_SUITES``); both run the package's own
            parameters (its table is the ImageNet-C one with its own elastic transform).

    Returns:
        The corrupted batch, same shape, dtype and device as ``images`` (floats quantised to 8-bit levels).
    """
    if suite not in REFERENCE_SUITES:
        raise ValueError(
            f"the reference backend only implements suites {', '.join(map(repr, REFERENCE_SUITES))} "
            f"(imagecorruptions hard-codes its parameters), got {suite!r}; use backend='torch' for other suites"
        )
    _check_name_severity(name, severity)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    if min(h, w) < _MIN_SIDE:
        raise ValueError(
            f"the reference backend needs images of at least {_MIN_SIDE}x{_MIN_SIDE} px, got {h}x{w}"
        )
    if images.dtype == torch.uint8:
        u8 = images.detach().cpu()
    elif images.is_floating_point():
        x = images.detach().cpu().float()
        if n and (bool(torch.isnan(x).any()) or float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError("float images must lie in [0, 1]")
        u8 = (x * 255.0).round().to(torch.uint8)
    else:
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    if ids is None:
        id_list = list(range(n))
    else:
        id_list = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        if len(id_list) != n:
            raise ValueError(f"ids must have one entry per image ({n}), got {len(id_list)}")

    hwc = u8.permute(0, 2, 3, 1).numpy()
    out = np.empty((n, h, w, c), dtype=np.uint8)
    for i in range(n):
        img = hwc[i] if c == 3 else np.repeat(hwc[i], 3, axis=2)
        img = np.ascontiguousarray(img)
        res = corrupt_reference_numpy(
            img, name, severity, seed=derive_seed(seed, id_list[i], name, int(severity))
        )
        if c == 1:
            res = np.rint(res.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
        out[i] = res
    result = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    if images.dtype != torch.uint8:
        result = (result.to(torch.float32) / 255.0).to(images.dtype)
    return result.to(images.device)
