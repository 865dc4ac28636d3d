"""Perturbation sequences in the style of ImageNet-P / CIFAR-10-P (Hendrycks & Dietterich, ICLR 2019).

A perturbation turns one image into a short sequence of frames whose content changes a little from frame to frame.
Sequences are generated on the fly, batched in torch, and seeded per image: image ``i``'s frames depend only on
``derive_seed(seed, ids[i], name, difficulty)``, never on the batch it is in or on which frames are asked for.

``perturb(images, name, suite=..., difficulty=..., frames=...)`` returns ``(N, T, C, H, W)`` floats in [0, 1];
``iter_perturb`` yields the same frames in chunks, so long 224 px sequences need not be held in memory at once.

Suites (``PERTURBATION_SUITES``):

* ``imagenet-p``: the ImageNet-P frame counts and per-frame parameters (native size 256: the published protocol is
  ``Resize(256) -> perturb -> CenterCrop(224)``; pass 256 px images and ``output_size=224`` for that).
* ``cifar10-p``: the CIFAR-10-P frame counts (native size 32). The published per-frame parameters of CIFAR-10-P are
  not reproduced here; the suite uses a stated rule instead (see ``_cifar10_p``): parameters that do not depend on
  the image's resolution (angles, zoom and scale factors) keep ImageNet-P's values; noise, blur, brightness and the
  weather layers take ImageNet-P's values times the ratio between the CIFAR-10-C and ImageNet-C severity-1
  parameters; translations are SPEC's -7..+8 px.

Noise perturbations (``meta["noise"]``) start with the clean image (frame 0) and add independent noise to every
later frame; flip probability compares each frame with frame 0. All other sequences are compared frame to frame.
Pixel-sized parameters (blur radii and sigmas, translations) scale with ``min(H, W) / native_size``.
Outputs are clamped to [0, 1] and quantised to 8-bit levels, as the published sets are stored as uint8.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._ops import clipped_zoom, gaussian_blur, motion_blur, rgb_to_gray
from .base import PERTURBATIONS, Context
from .rng import per_sample_seeds, torch_generator
from .weather import spatter

__all__ = [
    "PERTURBATIONS",
    "PERTURBATION_SUITES",
    "DIFFICULTIES",
    "PerturbationSuite",
    "perturb",
    "iter_perturb",
    "list_perturbations",
    "list_perturbation_suites",
    "get_perturbation_suite",
    "num_frames",
    "is_noise_perturbation",
]

#: Noise difficulty levels (1..3). For the other perturbations the difficulty only sets the comparison stride.
DIFFICULTIES: tuple[int, ...] = (1, 2, 3)


@dataclass(frozen=True)
class PerturbationSuite:
    """Frame counts and per-frame parameters of one perturbation suite.

    Args:
        name: suite name (``"imagenet-p"``, ``"cifar10-p"``).
        native_size: image side the pixel-sized parameters were written for.
        params: per perturbation, a dict with ``frames`` (T) and that perturbation's parameters.
        note: where the parameters come from.
    """

    name: str
    native_size: int
    params: dict[str, dict[str, Any]]
    note: str = ""

    def frames(self, perturbation: str) -> int:
        """Number of frames T of ``perturbation`` in this suite."""
        return int(self.entry(perturbation)["frames"])

    def entry(self, perturbation: str) -> dict[str, Any]:
        PERTURBATIONS.get(perturbation)
        return self.params[perturbation]


def _imagenet_p() -> PerturbationSuite:
    # SPEC §6. Frame i (0-based) parameter = start + step * i.
    p: dict[str, dict[str, Any]] = {
        "gaussian_noise": {"frames": 31, "sigma": {1: 0.03, 2: 0.05, 3: 0.08}},
        "shot_noise": {"frames": 31, "lam": {1: 300.0, 2: 120.0, 3: 60.0}},
        "speckle_noise": {"frames": 31, "sigma": {1: 0.05, 2: 0.10, 3: 0.15}},
        "motion_blur": {"frames": 31, "radius": 10, "sigma": 3.0, "angle": (-120.0, 4.0)},
        "zoom_blur": {"frames": 31, "zoom": (1.0, 0.004)},
        # the flake layer of ImageNet-C snow severity 1 (a project choice: SPEC gives only the angle)
        "snow": {"frames": 31, "snow": (0.1, 0.3, 3.0, 0.5, 10, 4.0, 0.8), "angle": (-150.0, 4.0)},
        "brightness": {"frames": 31, "delta": (-0.30, 0.02)},
        "translate": {"frames": 41, "shift": (-20.0, 1.0)},
        "rotate": {"frames": 31, "degrees": (-15.0, 1.0)},
        "tilt": {"frames": 31, "degrees": (-15.0, 1.0)},
        "scale": {"frames": 31, "scale": (0.40, 0.025)},
        "gaussian_blur": {"frames": 31, "sigma": (0.25, 0.035)},
        "shear": {"frames": 31, "degrees": (-15.0, 1.0)},
        # ImageNet-C spatter severity 1 (rain), its liquid layer drifting down by ``drift`` px per frame
        "spatter": {"frames": 31, "spatter": (0.65, 0.3, 4.0, 0.69, 0.6, 0), "drift": 1.0},
    }
    return PerturbationSuite("imagenet-p", 256, p, note="ImageNet-P per-frame parameters (SPEC §6)")


def _cifar10_p() -> PerturbationSuite:
    # Frame counts from SPEC §6; parameters by the rule stated in the module docstring (project choice).
    # ratios CIFAR-10-C / ImageNet-C at severity 1: gaussian .04/.08, shot 500/60, speckle .06/.15,
    # gaussian_blur .4/1, motion (6,1)/(10,3), brightness .05/.1.
    r_gauss, r_shot, r_speckle, r_blur, r_bright = 0.5, 500 / 60, 0.4, 0.4, 0.5
    p: dict[str, dict[str, Any]] = {
        "gaussian_noise": {
            "frames": 31,
            "sigma": {d: r_gauss * s for d, s in {1: 0.03, 2: 0.05, 3: 0.08}.items()},
        },
        "shot_noise": {
            "frames": 31,
            "lam": {d: r_shot * s for d, s in {1: 300.0, 2: 120.0, 3: 60.0}.items()},
        },
        "speckle_noise": {
            "frames": 31,
            "sigma": {d: r_speckle * s for d, s in {1: 0.05, 2: 0.10, 3: 0.15}.items()},
        },
        "motion_blur": {"frames": 21, "radius": 6, "sigma": 1.0, "angle": (-80.0, 4.0)},
        "zoom_blur": {"frames": 31, "zoom": (1.0, 0.004)},
        "snow": {"frames": 31, "snow": (0.1, 0.2, 1.0, 0.6, 8, 3.0, 0.95), "angle": (-150.0, 4.0)},
        "brightness": {"frames": 31, "delta": (-0.30 * r_bright, 0.02 * r_bright)},
        "translate": {"frames": 16, "shift": (-7.0, 1.0)},
        "rotate": {"frames": 31, "degrees": (-15.0, 1.0)},
        "tilt": {"frames": 31, "degrees": (-15.0, 1.0)},
        "scale": {"frames": 31, "scale": (0.40, 0.025)},
        "gaussian_blur": {"frames": 31, "sigma": (0.25 * r_blur, 0.035 * r_blur)},
        "shear": {"frames": 31, "degrees": (-15.0, 1.0)},
        "spatter": {"frames": 31, "spatter": (0.62, 0.1, 0.7, 0.7, 0.5, 0), "drift": 1.0},
    }
    return PerturbationSuite(
        "cifar10-p",
        32,
        p,
        note="CIFAR-10-P frame counts; parameters scaled from ImageNet-P by the CIFAR-10-C/ImageNet-C ratios",
    )


# ------------------------------------------------------------------------------------------------ helpers
def _linear(spec: tuple[float, float], i: int) -> float:
    start, step = spec
    return float(start) + float(step) * i


@dataclass
class _Frames:
    """What a perturbation function receives besides the images."""

    index: list[int]  # frame indices to produce
    total: int  # T, the sequence length
    param: dict[str, Any]  # the suite entry
    difficulty: int
    ctx: Context  # per-image generators (seeded by seed, id, name, difficulty)
    scale: float  # min(H, W) / native_size


def _frame_generator(image_seed: int, frame: int) -> torch.Generator:
    # a stream per (image, frame), so a frame is the same whichever other frames are generated with it
    return torch_generator(image_seed, "frame", frame)


def _per_frame_draw(fr: _Frames, shape: tuple[int, ...], draw) -> Tensor:
    """(N, F, *shape) drawn image by image and frame by frame on the CPU."""
    out = [torch.stack([draw(_frame_generator(s, k), shape) for k in fr.index]) for s in fr.ctx.seeds]
    return torch.stack(out).to(fr.ctx.device)


def _repeat(x: Tensor, count: int) -> Tensor:
    return x.unsqueeze(1).expand(x.shape[0], count, *x.shape[1:]).clone()


def _centred_grid(h: int, w: int, mats: Tensor) -> Tensor:
    """Sampling grid (F, H, W, 2) for ``grid_sample(align_corners=True)`` from output->source maps (F, 3, 3).

    The maps act on pixel coordinates centred on the image centre, so rotations stay rotations on non-square images.
    """
    ys = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)
    src = pts @ mats.transpose(-1, -2)  # (F, HW, 3)
    src = src[..., :2] / src[..., 2:]
    norm = torch.tensor([max(w - 1, 1) / 2, max(h - 1, 1) / 2], dtype=torch.float64)
    return (src / norm).reshape(-1, h, w, 2)


def _warp(x: Tensor, mats: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Warp every image by every map: (N, C, H, W), (F, 3, 3) -> (N, F, C, H, W), bilinear."""
    n, c, h, w = x.shape
    f = mats.shape[0]
    grid = _centred_grid(h, w, mats).to(device=x.device, dtype=x.dtype)
    xr = x.unsqueeze(1).expand(n, f, c, h, w).reshape(n * f, c, h, w)
    gr = grid.unsqueeze(0).expand(n, f, h, w, 2).reshape(n * f, h, w, 2)
    out = F.grid_sample(xr, gr, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    return out.reshape(n, f, c, h, w)


def _mat(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ noise
@PERTURBATIONS.register("gaussian_noise", category="noise", split="test", noise=True)
def _gaussian_noise(x: Tensor, fr: _Frames) -> Tensor:
    """Frame 0 clean; frame k > 0 adds N(0, sigma^2) noise drawn for (image, k)."""
    sigma = float(fr.param["sigma"][fr.difficulty])
    noise = _per_frame_draw(fr, tuple(x.shape[1:]), lambda g, s: torch.randn(s, generator=g))
    out = _repeat(x, len(fr.index)) + sigma * noise.to(x.dtype)
    return _keep_clean_frame(out, x, fr)


@PERTURBATIONS.register("shot_noise", category="noise", split="test", noise=True)
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


@PERTURBATIONS.register("speckle_noise", category="noise", split="validation", noise=True)
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
@PERTURBATIONS.register("motion_blur", category="blur", split="test", noise=False)
def _motion_blur_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Motion blur with a fixed radius and sigma whose angle turns by a fixed step per frame."""
    radius = max(1, int(round(fr.param["radius"] * fr.scale)))
    sigma = float(fr.param["sigma"]) * fr.scale
    n = x.shape[0]
    frames = []
    for k in fr.index:
        angles = torch.full((n,), _linear(fr.param["angle"], k), dtype=torch.float64)
        frames.append(motion_blur(x, radius, sigma, angles))
    return torch.stack(frames, dim=1)


@PERTURBATIONS.register("zoom_blur", category="blur", split="test", noise=False)
def _zoom_blur_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Frame k is the running average of the centre zooms by 1 + step * j, j = 0..k (frame 0 = the image)."""
    h, w = x.shape[-2:]
    wanted = set(fr.index)
    total = torch.zeros_like(x)
    by_frame: dict[int, Tensor] = {}
    for j in range(max(fr.index) + 1):
        z = _linear(fr.param["zoom"], j)
        total = total + (x if z == 1.0 else clipped_zoom(x, z)[..., :h, :w])
        if j in wanted:
            by_frame[j] = total / (j + 1)
    return torch.stack([by_frame[k] for k in fr.index], dim=1)


@PERTURBATIONS.register("gaussian_blur", category="blur", split="validation", noise=False)
def _gaussian_blur_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Gaussian blur whose sigma grows linearly with the frame index (edges replicated)."""
    return torch.stack([gaussian_blur(x, _linear(fr.param["sigma"], k) * fr.scale) for k in fr.index], dim=1)


# ------------------------------------------------------------------------------------------------ weather
@PERTURBATIONS.register("snow", category="weather", split="test", noise=False)
def _snow_seq(x: Tensor, fr: _Frames) -> Tensor:
    """One flake layer per image (drawn once), motion-blurred at an angle that turns with the frame index.

    The flake layer and the blend are those of the snow corruption; only the blur angle changes between frames.
    """
    loc, scale, zoom, threshold, radius, sigma, mix = (float(v) for v in fr.param["snow"])
    radius_px = max(1, int(round(radius * fr.scale)))
    sigma_px = sigma * fr.scale
    n, c, h, w = x.shape
    layer = fr.ctx.randn(1, h, w) * scale + loc
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp_(0, 1)
    gray = x if c == 1 else rgb_to_gray(x)
    base = mix * x + (1 - mix) * torch.maximum(x, gray * 1.5 + 0.5)
    frames = []
    for k in fr.index:
        angles = torch.full((n,), _linear(fr.param["angle"], k), dtype=torch.float64)
        blurred = motion_blur(layer, radius_px, sigma_px, angles)
        blurred = ((blurred * 255).round() / 255)[..., :h, :w].to(dtype=x.dtype, device=x.device)
        frames.append(base + blurred + torch.flip(blurred, dims=(-2, -1)))
    return torch.stack(frames, dim=1)


class _ReplayContext(Context):
    """A Context whose ``randn`` returns pre-drawn fields (one frame's window of a drifting noise field)."""

    def __init__(self, base: Context, field: Tensor) -> None:
        super().__init__(
            seeds=list(base.seeds), native_size=base.native_size, suite=base.suite, device=base.device
        )
        self._field = field

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        if tuple(self._field.shape[1:]) != tuple(shape):
            raise RuntimeError(f"replayed field has shape {tuple(self._field.shape[1:])}, asked for {shape}")
        return self._field.to(dtype=dtype, device=self.device)


@PERTURBATIONS.register("spatter", category="weather", split="validation", noise=False)
def _spatter_seq(x: Tensor, fr: _Frames) -> Tensor:
    """The spatter corruption whose liquid layer drifts down by ``drift`` px per frame.

    One standard-normal field of height H + drift * (T - 1) is drawn per image; frame k runs the spatter corruption
    on the H-row window that ends ``drift * k`` rows above the field's bottom.
    """
    n, c, h, w = x.shape
    drift = max(1, int(round(float(fr.param["drift"]) * fr.scale)))
    field = fr.ctx.randn(1, h + drift * (fr.total - 1), w, dtype=torch.float64).cpu()
    frames = []
    for k in fr.index:
        top = drift * (fr.total - 1 - k)
        window = field[:, :, top : top + h, :]
        frames.append(spatter(x, fr.param["spatter"], _ReplayContext(fr.ctx, window)))
    return torch.stack(frames, dim=1)


# ------------------------------------------------------------------------------------------------ digital
@PERTURBATIONS.register("brightness", category="digital", split="test", noise=False)
def _brightness_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Adds ``delta`` to the HSV value channel, keeping hue and saturation.

    With V = max(R, G, B), changing V at fixed H and S scales all channels by V' / V (black pixels, S = 0, become
    grey V'); grayscale images simply add ``delta``. Equal to an HSV round trip, without one.
    """
    v = x.amax(dim=1, keepdim=True)
    frames = []
    for k in fr.index:
        v_new = (v + _linear(fr.param["delta"], k)).clamp(0, 1)
        ratio = torch.where(v > 0, v_new / v.clamp_min(1e-12), torch.zeros_like(v))
        frames.append(torch.where(v > 0, x * ratio, v_new.expand_as(x)))
    return torch.stack(frames, dim=1)


# ------------------------------------------------------------------------------------------------ geometric
@PERTURBATIONS.register("translate", category="geometric", split="test", noise=False, padding="reflect")
def _translate_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Frame k shifts the image right by ``round((start + k) * scale)`` whole pixels, edges reflected.

    A positive shift moves content right: ``out[..., j] = x[..., j - shift]``.
    """
    h, w = x.shape[-2:]
    shifts = [int(round(_linear(fr.param["shift"], k) * fr.scale)) for k in fr.index]
    pad = max(abs(s) for s in shifts)
    if pad >= w:
        raise ValueError(f"translate: shift {pad} px needs images wider than {pad} px (got width {w})")
    padded = F.pad(x, (pad, pad, 0, 0), mode="reflect") if pad else x
    return torch.stack([padded[..., pad - s : pad - s + w] for s in shifts], dim=1)


@PERTURBATIONS.register("rotate", category="geometric", split="test", noise=False, padding="zeros")
def _rotate_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Rotation about the centre by ``start + k`` degrees (counter-clockwise on screen), black corners."""
    mats = []
    for k in fr.index:
        t = math.radians(_linear(fr.param["degrees"], k))
        # output -> source: rotate back (screen coordinates, y down)
        mats.append(_mat([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]]))
    return _warp(x, torch.stack(mats))


@PERTURBATIONS.register("shear", category="geometric", split="validation", noise=False, padding="zeros")
def _shear_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Horizontal shear by ``start + k`` degrees about the centre, black corners."""
    mats = [
        _mat([[1, -math.tan(math.radians(_linear(fr.param["degrees"], k))), 0], [0, 1, 0], [0, 0, 1]])
        for k in fr.index
    ]
    return _warp(x, torch.stack(mats))


@PERTURBATIONS.register("scale", category="geometric", split="test", noise=False, padding="zeros")
def _scale_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Scaling about the centre by ``start + step * k`` (40 % .. 115 %), black border when smaller."""
    mats = []
    for k in fr.index:
        s = _linear(fr.param["scale"], k)
        mats.append(_mat([[1 / s, 0, 0], [0, 1 / s, 0], [0, 0, 1]]))
    return _warp(x, torch.stack(mats))


@PERTURBATIONS.register("tilt", category="geometric", split="test", noise=False, padding="zeros")
def _tilt_seq(x: Tensor, fr: _Frames) -> Tensor:
    """Perspective warp: the image plane turned by ``start + k`` degrees about both the x and the y axis.

    Pinhole camera with focal length max(H, W) px looking at the image centre: homography K R K^-1 with
    R = R_x(t) R_y(t); black where the plane leaves the view.
    """
    h, w = x.shape[-2:]
    f = float(max(h, w))
    kmat = _mat([[f, 0, 0], [0, f, 0], [0, 0, 1]])
    kinv = torch.linalg.inv(kmat)
    mats = []
    for k in fr.index:
        t = math.radians(_linear(fr.param["degrees"], k))
        c, s = math.cos(t), math.sin(t)
        rx = _mat([[1, 0, 0], [0, c, -s], [0, s, c]])
        ry = _mat([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        forward = kmat @ rx @ ry @ kinv
        mats.append(torch.linalg.inv(forward))
    return _warp(x, torch.stack(mats))


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


def _centre_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = x.shape[-2:]
    if th > h or tw > w or th < 1 or tw < 1:
        raise ValueError(f"output_size {(th, tw)} must be positive and at most the image size {(h, w)}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def perturb(
    images: Tensor,
    name: str,
    *,
    suite: str | PerturbationSuite = "cifar10-p",
    difficulty: int = 1,
    seed: int = 0,
    ids: Sequence[int] | Tensor | None = None,
    frames: int | slice | Sequence[int] | None = None,
    output_size: int | tuple[int, int] | None = None,
    quantize: bool = True,
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
        output_size: centre crop applied after perturbing (ImageNet-P: 256 px input, ``output_size=224``).
        quantize: round to 8-bit levels, as the published uint8 sets are.

    Returns:
        (N, F, C, H', W') in [0, 1]; float dtype of the input (float32 for uint8 input), on the input's device.
    """
    fn = PERTURBATIONS.get(name)
    spec = get_perturbation_suite(suite)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
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
    ctx = Context(
        seeds=per_sample_seeds(seed, list(ids), name, difficulty),
        native_size=spec.native_size,
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
        if quantize:
            out = out.mul_(255).round_().div_(255)
        if output_size is not None:
            out = _centre_crop(out, output_size)
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
