"""Perturbation sequences of ImageNet-P / CIFAR-10-P (Hendrycks & Dietterich, ICLR 2019), as their generators
make them.

A perturbation turns one image into a short sequence of frames whose content changes a little from frame to frame.
Sequences are generated on the fly and seeded per image: image ``i``'s frames depend only on
``derive_seed(seed, ids[i], name, difficulty)``, never on the batch it is in or on which frames are asked for.

``perturb(images, name, suite=..., difficulty=..., frames=...)`` returns ``(N, T, C, H, W)`` floats in [0, 1];
``iter_perturb`` yields the same frames in chunks, so long 224 px sequences need not be held in memory at once.

Suites (``PERTURBATION_SUITES``), both with the parameters, frame counts, fills and interpolation of the published
generators (``make_cifar_p.py``, ``make_imagenet_p.py``; the table is in docs/perturbations_and_probes.md):

* ``cifar10-p``: 32 px images in, 32 px frames out.
* ``imagenet-p``: Resize(256) of the original image in, 224 px frames out with ``crop_to=224``: the photometric
  perturbations (``meta["crop"] == "before"``: noise, blurs, snow, brightness, spatter) take the centre 224 crop
  first and perturb it, the geometric ones (``"after"``: zoom, translate, rotate, tilt, scale, shear) perturb the
  256 px image and crop after, as the generator does per perturbation. The generator then encoded every sequence
  as H.264 video; that step is not reproduced (``IMAGENET_P_NOT_REPRODUCED``).

Noise perturbations (``meta["noise"]``) start with the clean image (frame 0) and add independent noise to every
later frame; flip probability compares each frame with frame 0. All other sequences are compared frame to frame.
Pixel-sized parameters (blur radii and sigmas, translations) are written for the suite's size (an entry's
``native``, else the suite's ``native_size``) and scale with ``min(H, W) / native`` on other sizes.
Frames are clamped to [0, 1] and truncated to 8-bit levels (``quantize="trunc"``), as the generators store them
(``np.uint8``); ``quantize="round"`` rounds instead, ``quantize=False`` keeps floats.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._ops import clipped_zoom, gaussian_blur, motion_blur, rgb_to_gray
from .base import PERTURBATIONS, Context
from .digital import brightness as _brightness_op
from .geometry import affine_inverse, centre_crop, pil_affine, shift_black, tilt_matrix, warp_perspective
from .rng import per_sample_seeds, torch_generator
from .weather import _LUMA_REF, _luma, _rain_shape

__all__ = [
    "PERTURBATIONS",
    "PERTURBATION_SUITES",
    "DIFFICULTIES",
    "IMAGENET_P_NOT_REPRODUCED",
    "PerturbationSuite",
    "perturb",
    "iter_perturb",
    "list_perturbations",
    "list_perturbation_suites",
    "get_perturbation_suite",
    "num_frames",
    "is_noise_perturbation",
    "crop_stage",
    "frame_value",
]

#: Noise difficulty levels (1..3). For the other perturbations the difficulty only sets the comparison stride.
DIFFICULTIES: tuple[int, ...] = (1, 2, 3)

#: The one step of the ImageNet-P generator this engine does not run.
IMAGENET_P_NOT_REPRODUCED = "the published frames' H.264 video encoding (libx264) is not reproduced"


@dataclass(frozen=True)
class PerturbationSuite:
    """Frame counts and per-frame parameters of one perturbation suite.

    Args:
        name: suite name (``"imagenet-p"``, ``"cifar10-p"``).
        native_size: image side the pixel-sized parameters were written for (an entry's ``native`` overrides it).
        params: per perturbation, a dict with ``frames`` (T) and that perturbation's parameters.
        note: where the parameters come from, and what is not reproduced.
        crop: the published frame size (ImageNet-P: 224), None when frames keep the input size.
    """

    name: str
    native_size: int
    params: dict[str, dict[str, Any]]
    note: str = ""
    crop: int | None = None

    def frames(self, perturbation: str) -> int:
        """Number of frames T of ``perturbation`` in this suite."""
        return int(self.entry(perturbation)["frames"])

    def entry(self, perturbation: str) -> dict[str, Any]:
        PERTURBATIONS.get(perturbation)
        return self.params[perturbation]

    def native(self, perturbation: str) -> int:
        """The image side ``perturbation``'s pixel-sized parameters were written for."""
        return int(self.entry(perturbation).get("native", self.native_size))


def _imagenet_p() -> PerturbationSuite:
    # make_imagenet_p.py. Linear parameters are (value at frame 0, step per frame). Photometric sequences run on
    # the 224 px centre crop ("native": 224), geometric ones on the 256 px image.
    crop = {"native": 224}
    p: dict[str, dict[str, Any]] = {
        "gaussian_noise": {"frames": 31, "sigma": {1: 0.03, 2: 0.05, 3: 0.08}, **crop},
        "shot_noise": {"frames": 31, "lam": {1: 300.0, 2: 120.0, 3: 60.0}, **crop},
        "speckle_noise": {"frames": 31, "sigma": {1: 0.05, 2: 0.10, 3: 0.15}, **crop},
        "motion_blur": {"frames": 31, "radius": 10, "sigma": 3.0, "angle": (-120.0, 4.0), **crop},
        "zoom_blur": {"frames": 31, "zoom": (1.0, 0.004)},
        "snow": {
            "frames": 31,
            "layer": (0.05, 0.3, 3.0, 0.5),
            "radius": 14,
            "sigma": 4.0,
            "angle": (-150.0, 4.0),
            "mix": 0.85,
            **crop,
        },
        "brightness": {"frames": 31, "delta": (-30.0, 2.0, 100.0), **crop},  # (i - 15) * 2 / 100
        "translate": {"frames": 41, "shift": (-20.0, 1.0)},
        "rotate": {"frames": 31, "degrees": (-15.0, 1.0)},
        "tilt": {"frames": 31, "degrees": (-15.0, 1.0)},
        "scale": {"frames": 31, "scale": (40.0, 2.5, 100.0)},  # (2.5 i + 40) / 100
        "gaussian_blur": {"frames": 31, "sigma": (0.25, 0.035), "truncate": 6.0, **crop},
        "shear": {"frames": 31, "degrees": (-15.0, 1.0)},
        "spatter": {
            "frames": 31,
            "liquid": (0.65, 0.27, 3.7, 0.69),
            "smear": (0.05, 0.1, 0.15, 0.7),
            "intensity": 0.6,
            **crop,
        },
    }
    return PerturbationSuite(
        "imagenet-p",
        256,
        p,
        note=f"ImageNet-P generator's parameters (make_imagenet_p.py); {IMAGENET_P_NOT_REPRODUCED}",
        crop=224,
    )


def _cifar10_p() -> PerturbationSuite:
    # make_cifar_p.py (32 px in and out)
    p: dict[str, dict[str, Any]] = {
        "gaussian_noise": {"frames": 31, "sigma": {1: 0.02, 2: 0.04, 3: 0.06}},
        "shot_noise": {"frames": 31, "lam": {1: 700.0, 2: 400.0, 3: 200.0}},
        "speckle_noise": {"frames": 31, "sigma": {1: 0.05, 2: 0.07, 3: 0.10}},
        "motion_blur": {"frames": 21, "radius": 6, "sigma": 1.8, "angle": (-180.0, 9.0)},
        "zoom_blur": {"frames": 31, "zoom": (1.0, 0.004)},
        "snow": {
            "frames": 31,
            "layer": (0.05, 0.3, 2.0, 0.5),
            "radius": 10,
            "sigma": 2.0,
            "angle": (-150.0, 4.0),
            "mix": 0.85,
        },
        "brightness": {"frames": 31, "delta": (-22.5, 1.5, 100.0)},  # (i - 15) * 1.5 / 100
        "translate": {"frames": 16, "shift": (-7.0, 1.0)},
        "rotate": {"frames": 31, "degrees": (-15.0, 1.0)},
        "tilt": {"frames": 31, "degrees": (-11.25, 0.75)},
        "scale": {"frames": 31, "scale": (70.0, 2.0, 100.0)},  # (2 i + 70) / 100
        "gaussian_blur": {"frames": 31, "sigma": (0.3, 0.015), "truncate": 7.0},
        "shear": {"frames": 31, "degrees": (-15.0, 1.0)},
        "spatter": {
            "frames": 31,
            "liquid": (0.6, 0.265, 1.75, 0.7),
            "smear": (0.2, 0.8),
            "intensity": 0.6,
        },
    }
    return PerturbationSuite("cifar10-p", 32, p, note="CIFAR-10-P generator's parameters (make_cifar_p.py)")


# ------------------------------------------------------------------------------------------------ helpers
def _linear(spec: tuple[float, ...], i: int) -> float:
    """Frame i's value of a linear parameter: ``start + step * i``, or ``(start + step * i) / div`` for a
    3-tuple - written as the generators compute it, so that the float values are theirs bit for bit."""
    if len(spec) == 3:
        start, step, div = spec
        return (float(start) + float(step) * i) / float(div)
    start, step = spec
    return float(start) + float(step) * i


def frame_value(spec: tuple[float, ...], i: int) -> float:
    """Frame ``i``'s value of a suite entry's linear parameter (``(start, step)`` or ``(start, step, div)``)."""
    return _linear(spec, i)


@dataclass
class _Frames:
    """What a perturbation function receives besides the images."""

    index: list[int]  # frame indices to produce
    total: int  # T, the sequence length
    param: dict[str, Any]  # the suite entry
    difficulty: int
    ctx: Context  # per-image generators (seeded by seed, id, name, difficulty)
    scale: float  # min(H, W) / the entry's native size


def _frame_generator(image_seed: int, frame: int) -> torch.Generator:
    # a stream per (image, frame), so a frame is the same whichever other frames are generated with it
    return torch_generator(image_seed, "frame", frame)


def _per_frame_draw(fr: _Frames, shape: tuple[int, ...], draw) -> Tensor:
    """(N, F, *shape) drawn image by image and frame by frame on the CPU."""
    out = [torch.stack([draw(_frame_generator(s, k), shape) for k in fr.index]) for s in fr.ctx.seeds]
    return torch.stack(out).to(fr.ctx.device)


def _repeat(x: Tensor, count: int) -> Tensor:
    return x.unsqueeze(1).expand(x.shape[0], count, *x.shape[1:]).clone()


# ------------------------------------------------------------------------------------------------ noise
@PERTURBATIONS.register("gaussian_noise", category="noise", split="test", noise=True, crop="before")
def _gaussian_noise(x: Tensor, fr: _Frames) -> Tensor:
    """Frame 0 clean; frame k > 0 adds N(0, sigma^2) noise drawn for (image, k)."""
    sigma = float(fr.param["sigma"][fr.difficulty])
    noise = _per_frame_draw(fr, tuple(x.shape[1:]), lambda g, s: torch.randn(s, generator=g))
    out = _repeat(x, len(fr.index)) + sigma * noise.to(x.dtype)
    return _keep_clean_frame(out, x, fr)


@PERTURBATIONS.register("shot_noise", category="noise", split="test", noise=True, crop="before")
def _shot_noise(x: Tensor, fr: _Frames) -> Tensor:
    """Frame 0 clean; frame k > 0 is Poisson(x * lam) / lam drawn for (image, k)."""
    lam = float(fr.param["lam"][fr.difficulty])
    base = x.detach().to("cpu", torch.float64).clamp(0, 1) * lam
    out = torch.stack(
        [
            torch.stack([torch.poisson(base[i], generator=_frame_generator(s, k)) for k in fr.index])
            for i, s in enumerate(fr.ctx.seeds)
        ]
    )
    out = (out / lam).to(device=x.device, dtype=x.dtype)
    return _keep_clean_frame(out, x, fr)


@PERTURBATIONS.register("speckle_noise", category="noise", split="validation", noise=True, crop="before")
def _speckle_noise(x: Tensor, fr: _Frames) -> Tensor:
    """Frame 0 clean; frame k > 0 is x + x * N(0, sigma^2) drawn for (image, k)."""
    sigma = float(fr.param["sigma"][fr.difficulty])
    noise = _per_frame_draw(fr, tuple(x.shape[1:]), lambda g, s: torch.randn(s, generator=g))
    rep = _repeat(x, len(fr.index))
    out = rep + rep * sigma * noise.to(x.dtype)
    return _keep_clean_frame(out, x, fr)


def _keep_clean_frame(out: Tensor, x: Tensor, fr: _Frames) -> Tensor:
    for j, k in enumerate(fr.index):
        if k == 0:
            out[:, j] = x
    return out


# ------------------------------------------------------------------------------------------------ blur
@PERTURBATIONS.register("motion_blur", category="blur", split="test", noise=False, crop="before")
def _motion_blur_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Motion blur with a fixed radius and sigma whose angle turns by a fixed step per frame.

    The generators call ImageMagick's motion blur; the kernel here is imagecorruptions' stand-in for it (the one
    the motion_blur corruption uses).
    """
    radius = max(1, int(round(fr.param["radius"] * fr.scale)))
    sigma = float(fr.param["sigma"]) * fr.scale
    n = x.shape[0]
    frames = []
    for k in fr.index:
        angles = torch.full((n,), _linear(fr.param["angle"], k), dtype=torch.float64)
        frames.append(motion_blur(x, radius, sigma, angles))
    return torch.stack(frames, dim=1)


@PERTURBATIONS.register("zoom_blur", category="blur", split="test", noise=False, crop="after")
def _zoom_blur_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Frame k is the running average of the image and its zooms by ``1 + step * j``, j = 1..k.

    Each zoom is torchvision's affine ``scale`` (bilinear, 8-bit, :func:`corruptions.geometry.pil_affine`); the
    average is summed in float32 in the generator's order and truncated when stored.
    """
    h, w = x.shape[-2:]
    wanted = set(fr.index)
    total = x.clone()
    by_frame: dict[int, Tensor] = {0: x} if 0 in wanted else {}
    for j in range(1, max(fr.index) + 1):
        z = _linear(fr.param["zoom"], j)
        total = total + pil_affine(x, [affine_inverse(w, h, scale=z)])[:, 0]
        if j in wanted:
            by_frame[j] = total / (j + 1)
    return torch.stack([by_frame[k] for k in fr.index], dim=1)


@PERTURBATIONS.register("gaussian_blur", category="blur", split="validation", noise=False, crop="before")
def _gaussian_blur_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Gaussian blur (edges replicated, the entry's ``truncate``) whose sigma grows linearly with the frame."""
    trunc = float(fr.param.get("truncate", 4.0))
    return torch.stack(
        [gaussian_blur(x, _linear(fr.param["sigma"], k) * fr.scale, truncate=trunc) for k in fr.index], dim=1
    )


# ------------------------------------------------------------------------------------------------ weather
@PERTURBATIONS.register("snow", category="weather", split="test", noise=False, crop="before")
def _snow_seq(x: Tensor, fr: _Frames) -> Tensor:
    """One flake layer per image (drawn once, stored as 8 bits), motion-blurred at an angle that turns per frame.

    Layer: N(loc, scale^2), zoomed into the centre, zero below the threshold, truncated to 8 bits. Frame: the
    image pulled towards ``max(x, 1.5 gray + 0.5)`` by ``1 - mix``, plus the blurred layer and its 180-degree
    turn. (The generators blur with ImageMagick; the kernel is imagecorruptions' stand-in, as for motion_blur.)
    """
    loc, scale, zoom, threshold = (float(v) for v in fr.param["layer"])
    radius_px = max(1, int(round(float(fr.param["radius"]) * fr.scale)))
    sigma_px = float(fr.param["sigma"]) * fr.scale
    mix = float(fr.param["mix"])
    n, c, h, w = x.shape
    layer = fr.ctx.randn(1, h, w) * scale + loc
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp_(0, 1)
    layer = torch.floor(layer * 255) / 255
    gray = x if c == 1 else rgb_to_gray(x)
    base = mix * x + (1 - mix) * torch.maximum(x, gray * 1.5 + 0.5)
    frames = []
    for k in fr.index:
        angles = torch.full((n,), _linear(fr.param["angle"], k), dtype=torch.float64)
        blurred = motion_blur(layer, radius_px, sigma_px, angles)
        blurred = ((blurred * 255).round() / 255)[..., :h, :w].to(dtype=x.dtype, device=x.device)
        frames.append(base + blurred + torch.flip(blurred, dims=(-2, -1)))
    return torch.stack(frames, dim=1)


def _smear(liquid: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """Each column convolved with ``kernel`` (numpy ``convolve(mode="same")``, zeros beyond the edges)."""
    k = np.asarray(kernel, dtype=np.float64)
    off = (len(k) - 1) // 2
    h = liquid.shape[-2]
    out = np.zeros_like(liquid)
    for t, kt in enumerate(k):
        shift = t - off  # out[j] += k[t] * liquid[j - shift]
        if shift >= 0:
            out[..., shift:, :] += kt * liquid[..., : h - shift, :]
        else:
            out[..., : h + shift, :] += kt * liquid[..., -shift:, :]
    return out


@PERTURBATIONS.register("spatter", category="weather", split="validation", noise=False, crop="before")
def _spatter_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Rain drops whose liquid layer is smeared down the image a little more every frame.

    The layer is drawn once per image: N(loc, scale^2), Gaussian-blurred, zero below the threshold. Frame k shapes
    the drops from the layer as the spatter corruption's rain does (edge distance, emboss), scales them to
    ``intensity`` at their peak, adds them in pale turquoise, and then convolves every column of the layer with
    the ``smear`` kernel for frame k + 1.
    """
    loc, scale, sigma, threshold = (float(v) for v in fr.param["liquid"])
    intensity = float(fr.param["intensity"])
    n, c, h, w = x.shape
    liquid = fr.ctx.randn(1, h, w).cpu() * scale + loc
    liquid = gaussian_blur(liquid, sigma * fr.scale)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)[:, 0].numpy()
    colour = torch.tensor([175.0, 238.0, 238.0], dtype=torch.float64).view(1, 3, 1, 1) / 255.0
    wanted = set(fr.index)
    by_frame: dict[int, Tensor] = {}
    for k in range(max(fr.index) + 1):
        if k in wanted:
            m = torch.from_numpy(np.stack([_rain_shape(liquid[i]) for i in range(n)])).double()[:, None]
            peak = m.amax(dim=(2, 3), keepdim=True)
            m = torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m)) * intensity
            layer = m * colour
            if c == 1:
                layer = _luma(layer.clamp(0, 1), _LUMA_REF)
            by_frame[k] = x + layer.to(dtype=x.dtype, device=x.device)
        liquid = _smear(liquid, fr.param["smear"])
    return torch.stack([by_frame[k] for k in fr.index], dim=1)


# ------------------------------------------------------------------------------------------------ digital
@PERTURBATIONS.register("brightness", category="digital", split="test", noise=False, crop="before")
def _brightness_seq(x: Tensor, fr: _Frames) -> Tensor:
    """The brightness corruption (``delta`` added to the HSV value, clipped) with ``delta`` linear in the frame."""
    return torch.stack([_brightness_op(x, _linear(fr.param["delta"], k), fr.ctx) for k in fr.index], dim=1)


# ------------------------------------------------------------------------------------------------ geometric
@PERTURBATIONS.register(
    "translate", category="geometric", split="test", noise=False, padding="zeros", crop="after"
)
def _translate_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Frame k shifts the image right by ``round((start + k) * scale)`` whole pixels, black where it leaves.

    A positive shift moves content right: ``out[..., j] = x[..., j - shift]`` (torchvision ``affine``'s
    ``translate``, nearest).
    """
    shifts = [int(round(_linear(fr.param["shift"], k) * fr.scale)) for k in fr.index]
    return shift_black(x, shifts)


def _affine_frames(x: Tensor, fr: _Frames, key: str, what: str) -> Tensor:
    h, w = x.shape[-2:]
    maps = [affine_inverse(w, h, **{what: _linear(fr.param[key], k)}) for k in fr.index]
    return pil_affine(x, maps)


@PERTURBATIONS.register(
    "rotate", category="geometric", split="test", noise=False, padding="zeros", crop="after"
)
def _rotate_seq(x: Tensor, fr: _Frames) -> Tensor:
    """torchvision's ``affine(angle=start + k)`` (bilinear, black corners; positive turns clockwise)."""
    return _affine_frames(x, fr, "degrees", "angle")


@PERTURBATIONS.register(
    "shear", category="geometric", split="validation", noise=False, padding="zeros", crop="after"
)
def _shear_seq(x: Tensor, fr: _Frames) -> Tensor:
    """torchvision's ``affine(shear=start + k)`` (bilinear, black corners)."""
    return _affine_frames(x, fr, "degrees", "shear")


@PERTURBATIONS.register(
    "scale", category="geometric", split="test", noise=False, padding="zeros", crop="after"
)
def _scale_seq(x: Tensor, fr: _Frames) -> Tensor:
    """torchvision's ``affine(scale=start + step * k)`` about the centre (bilinear, black border when smaller)."""
    return _affine_frames(x, fr, "scale", "scale")


@PERTURBATIONS.register(
    "tilt", category="geometric", split="test", noise=False, padding="zeros", crop="after"
)
def _tilt_seq(x: Tensor, fr: _Frames) -> Tensor:
    """The image plane turned by ``start + step * k`` degrees about its own x and y axes through its centre.

    The generators' homography ``P2 T RX RY P1`` with ``f = sqrt(W^2 + H^2)`` (:func:`corruptions.geometry.
    tilt_matrix`), warped by OpenCV (bilinear, black border); the centre stays put (within ``sin(angle)`` px).
    """
    h, w = x.shape[-2:]
    return warp_perspective(x, [tilt_matrix(w, h, _linear(fr.param["degrees"], k)) for k in fr.index])


# ------------------------------------------------------------------------------------------------ suites
PERTURBATION_SUITES: dict[str, PerturbationSuite] = {s.name: s for s in (_imagenet_p(), _cifar10_p())}


def list_perturbation_suites() -> list[str]:
    """Names of the built-in perturbation suites."""
    return list(PERTURBATION_SUITES)


def get_perturbation_suite(suite: str | PerturbationSuite) -> PerturbationSuite:
    """The suite object for a name (a ``PerturbationSuite`` is returned as is)."""
    if isinstance(suite, PerturbationSuite):
        return suite
    try:
        return PERTURBATION_SUITES[suite]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown perturbation suite {suite!r}; valid: {', '.join(PERTURBATION_SUITES)}"
        ) from None


def list_perturbations(suite: str | None = None, split: str | None = None) -> list[str]:
    """Registered perturbation names, test ones first, optionally only one split ("test" or "validation").

    ``suite`` only validates the suite name: every suite defines every perturbation.
    """
    if suite is not None:
        get_perturbation_suite(suite)
    splits = ("test", "validation")
    if split is not None and split not in splits:
        raise ValueError(f"unknown perturbation split {split!r}; valid: {', '.join(splits)}")
    return [n for s in splits if split in (None, s) for n in PERTURBATIONS.names(split=s)]


def is_noise_perturbation(name: str) -> bool:
    """True for noise perturbations (frame 0 clean, every frame compared with it)."""
    return bool(PERTURBATIONS.meta(name)["noise"])


def num_frames(name: str, suite: str | PerturbationSuite = "cifar10-p") -> int:
    """Sequence length T of ``name`` in ``suite``."""
    return get_perturbation_suite(suite).frames(name)


def _frame_list(frames: int | slice | Sequence[int] | None, total: int, name: str) -> list[int]:
    if frames is None:
        return list(range(total))
    if isinstance(frames, slice):
        idx = list(range(total))[frames]
    elif isinstance(frames, int) and not isinstance(frames, bool):
        idx = [int(frames)]
    elif isinstance(frames, Sequence | range | Tensor):
        idx = [int(k) for k in frames]
    else:
        raise TypeError(
            f"frames must be None, an int, a slice or a sequence of ints, got {type(frames).__name__}"
        )
    bad = [k for k in idx if not 0 <= k < total]
    if bad:
        raise ValueError(f"{name}: frame indices {bad} out of range for a sequence of {total} frames")
    if not idx:
        raise ValueError(f"{name}: no frames selected by {frames!r}")
    return idx


def _check_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, C, H, W) with C in {{1, 3}}, got {tuple(images.shape)}")
    if images.shape[-1] < 2 or images.shape[-2] < 2:
        raise ValueError(f"images must be at least 2x2 pixels, got {tuple(images.shape[-2:])}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    return images.to(torch.float32)


def crop_stage(name: str) -> str:
    """When ``perturb(..., crop_to=...)`` crops for ``name``: ``"before"`` (photometric: crop, then perturb the
    crop) or ``"after"`` (geometric: perturb the whole image, then crop), as the ImageNet-P generator does."""
    return str(PERTURBATIONS.meta(name).get("crop", "after"))


def _check_size(size: Any, what: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"{what} must be an int or (H, W), got {size!r}")


def _quantize_mode(quantize: Any) -> str | None:
    if quantize is False or quantize is None:
        return None
    if quantize is True:
        return "trunc"
    if quantize in ("trunc", "round"):
        return str(quantize)
    raise ValueError(f"unknown quantize mode {quantize!r}; valid: trunc, round, False")


def perturb(
    images: Tensor,
    name: str,
    *,
    suite: str | PerturbationSuite = "cifar10-p",
    difficulty: int = 1,
    seed: int = 0,
    ids: Sequence[int] | Tensor | None = None,
    frames: int | slice | Sequence[int] | None = None,
    crop_to: int | tuple[int, int] | None = None,
    output_size: int | tuple[int, int] | None = None,
    quantize: str | bool = "trunc",
) -> Tensor:
    """Perturbation sequences of a batch of images.

    Args:
        images: uint8 or float in [0, 1], (N, C, H, W), C in {1, 3}.
        name: a registered perturbation (``list_perturbations()``).
        suite: ``"cifar10-p"``, ``"imagenet-p"`` or a ``PerturbationSuite``.
        difficulty: 1..3; selects the noise level of noise perturbations (the others ignore it here; it sets the
            comparison stride of the metrics).
        seed: run seed; image i's randomness comes from ``derive_seed(seed, ids[i], name, difficulty)``.
        ids: stable sample ids (default 0..N-1).
        frames: which frames to produce (None = all, an int, a slice or a list of indices).
        crop_to: the published protocol's centre crop, placed per perturbation (``crop_stage``): ImageNet-P is
            ``perturb(resize_shorter(image, 256), name, suite="imagenet-p", crop_to=224)``.
        output_size: a centre crop after perturbing, whatever the perturbation (not a published protocol).
        quantize: ``"trunc"`` (default, the generators' ``np.uint8``), ``"round"``, or False for floats.

    Returns:
        (N, F, C, H', W') in [0, 1]; float dtype of the input (float32 for uint8 input), on the input's device.
    """
    fn = PERTURBATIONS.get(name)
    spec = get_perturbation_suite(suite)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    mode = _quantize_mode(quantize)
    if crop_to is not None and output_size is not None:
        raise ValueError(
            "pass crop_to (the published crop, placed per perturbation) or output_size, not both"
        )
    out_dtype = images.dtype if isinstance(images, Tensor) and images.is_floating_point() else torch.float32
    x = _check_images(images)
    n = x.shape[0]
    if ids is None:
        ids = list(range(n))
    elif isinstance(ids, Tensor):
        ids = ids.tolist()
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries for {n} images")
    total = spec.frames(name)
    index = _frame_list(frames, total, name)
    crop = _check_size(crop_to, "crop_to") if crop_to is not None else None
    after = _check_size(output_size, "output_size") if output_size is not None else None
    if crop is not None:
        centre_crop(x, crop)  # validates the size before any work
        if crop_stage(name) == "before":
            x = centre_crop(x, crop)
        else:
            after = crop
    if after is not None:
        centre_crop(x, after)
    ctx = Context(
        seeds=per_sample_seeds(seed, list(ids), name, difficulty),
        native_size=spec.native(name),
        suite=spec.name,
        device=x.device,
    )
    fr = _Frames(
        index=index,
        total=total,
        param=spec.entry(name),
        difficulty=difficulty,
        ctx=ctx,
        scale=ctx.scale(*x.shape[-2:]),
    )
    with torch.no_grad():
        out = fn(x, fr).clamp_(0, 1) if n else x.new_zeros((0, len(index), *x.shape[1:]))
        if mode is not None:
            out = out.mul_(255)
            out = (out.floor_() if mode == "trunc" else out.round_()).div_(255)
        if after is not None:
            out = centre_crop(out, after)
    return out.to(out_dtype)


def iter_perturb(
    images: Tensor,
    name: str,
    *,
    chunk: int = 8,
    frames: int | slice | Sequence[int] | None = None,
    suite: str | PerturbationSuite = "cifar10-p",
    **kwargs: Any,
) -> Iterator[tuple[list[int], Tensor]]:
    """Yield ``(frame_indices, perturb(..., frames=frame_indices))`` in chunks of at most ``chunk`` frames.

    Equal, chunk by chunk, to one ``perturb`` call over all the frames (every frame has its own random stream).
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    total = get_perturbation_suite(suite).frames(name)
    index = _frame_list(frames, total, name)
    for start in range(0, len(index), chunk):
        part = index[start : start + chunk]
        yield part, perturb(images, name, suite=suite, frames=part, **kwargs)
