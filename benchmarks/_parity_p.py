"""Parity of the perturbation engine with the CIFAR-10-P / ImageNet-P generators (``parity.py --perturbations``).

The generators' steps are re-implemented here, independently of the engine, from the published scripts
(``make_cifar_p.py``, ``make_imagenet_p.py``): their parameters written out again below, and the libraries they
call - PIL's affine transform behind the 2018 torchvision ``affine`` (centre ``(W/2 + 0.5, H/2 + 0.5)``), OpenCV's
``warpPerspective``, scikit-image's HSV conversion and Gaussian filter, numpy's noise and convolution. Each
sequence is made for natural photos (scikit-image's pictures; ImageNet-P: Resize(256) of the full photo, crops as
the generator places them) by both and compared:

* ``deterministic``: frame by frame PSNR(ours, generator) (100 dB = identical frames);
* ``fed``: spatter, with both fed the same normal field, then as deterministic;
* ``noisy``: independent draws; the mean PSNR(frame, clean) of ours minus the generator's, frames 1..30;
* ``not compared``: motion_blur and snow, for which the generators call ImageMagick's motion blur through Wand,
  which is not installed here (the engine uses imagecorruptions' shift-and-sum kernel for it).

The H.264 encoding ImageNet-P applied to its frames is not reproduced by either side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from corruptions.perturbations import PERTURBATIONS, _Frames, get_perturbation_suite, perturb

DETERMINISTIC_TARGET = 45.0  # dB, minimum over frames and photos
NOISY_TARGET = 0.5  # dB, |difference of mean PSNR vs clean|
NOT_COMPARED = {"motion_blur", "snow"}
NOISE = ("gaussian_noise", "shot_noise", "speckle_noise")
PHOTOMETRIC = {"gaussian_noise", "shot_noise", "speckle_noise", "motion_blur", "snow", "brightness", "gaussian_blur",
               "spatter"}  # fmt: skip

# The generators' parameters, written out from the scripts (frame index i).
GEN = {
    "cifar10-p": {
        "gaussian_noise": (0.02, 0.04, 0.06),
        "shot_noise": (700, 400, 200),
        "speckle_noise": (0.05, 0.07, 0.10),
        "brightness": lambda i: (i - 15) * 1.5 / 100.0,
        "translate": (16, lambda i: i - 7),
        "rotate": lambda i: i - 15,
        "tilt": lambda i: 0.75 * (i - 15),
        "scale": lambda i: (i * 2 + 70) / 100.0,
        "gaussian_blur": (lambda i: 0.3 + 0.015 * i, 7.0),
        "shear": lambda i: i - 15,
        "spatter": (0.6, 0.265, 1.75, 0.7, (0.2, 0.8)),
    },
    "imagenet-p": {
        "gaussian_noise": (0.03, 0.05, 0.08),
        "shot_noise": (300, 120, 60),
        "speckle_noise": (0.05, 0.10, 0.15),
        "brightness": lambda i: (i - 15) * 2 / 100.0,
        "translate": (41, lambda i: i - 20),
        "rotate": lambda i: i - 15,
        "tilt": lambda i: i - 15,
        "scale": lambda i: (i * 2.5 + 40) / 100.0,
        "gaussian_blur": (lambda i: 0.25 + 0.035 * i, 6.0),
        "shear": lambda i: i - 15,
        "spatter": (0.65, 0.27, 3.7, 0.69, (0.05, 0.1, 0.15, 0.7)),
    },
}


# --------------------------------------------------------------------------------------------- the generators
def tv_affine(
    img: np.ndarray, angle=0.0, translate=(0, 0), scale=1.0, shear=0.0, nearest=False
) -> np.ndarray:
    """torchvision 0.2-0.6 ``affine`` of a uint8 HWC image, as it built the inverse map for PIL."""
    h, w = img.shape[:2]
    center = (w * 0.5 + 0.5, h * 0.5 + 0.5)
    a, s, sc = math.radians(angle), math.radians(shear), 1.0 / scale
    d = math.cos(a + s) * math.cos(a) + math.sin(a + s) * math.sin(a)
    m = [math.cos(a + s), math.sin(a + s), 0, -math.sin(a), math.cos(a), 0]
    m = [sc / d * v for v in m]
    m[2] += m[0] * (-center[0] - translate[0]) + m[1] * (-center[1] - translate[1])
    m[5] += m[3] * (-center[0] - translate[0]) + m[4] * (-center[1] - translate[1])
    m[2] += center[0]
    m[5] += center[1]
    pil = Image.fromarray(img).transform(
        (w, h), Image.AFFINE, m, Image.NEAREST if nearest else Image.BILINEAR
    )
    return np.asarray(pil)


def tv_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img[top : top + size, left : left + size]


def tv_resize(img: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``Resize(size)`` (int: the shorter side) through PIL, bilinear."""
    h, w = img.shape[:2]
    if w < h:
        ow, oh = size, int(size * h / w)
    else:
        oh, ow = size, int(size * w / h)
    return np.asarray(Image.fromarray(img).resize((ow, oh), Image.BILINEAR))


def gen_tilt(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape[:2]
    phi = theta = np.deg2rad(deg)
    f = np.sqrt(w**2 + h**2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(theta), -np.sin(theta), 0], [0, np.sin(theta), np.cos(theta), 0],
                   [0, 0, 0, 1]])  # fmt: skip
    ry = np.array(
        [[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0], [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]]
    )
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return cv2.warpPerspective(img, p2 @ t @ rx @ ry @ p1, (w, h))


def gen_spatter(x_u8: np.ndarray, normals: np.ndarray, params) -> list[np.ndarray]:
    from skimage.filters import gaussian

    loc, scale, sigma, threshold, kernel = params
    x = np.array(x_u8, dtype=np.float32) / 255.0
    liquid = normals.astype(np.float64) * scale + loc
    liquid = gaussian(liquid, sigma=sigma)
    liquid[liquid < threshold] = 0
    out = []
    for _ in range(31):
        li = (liquid * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(li, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = li * dist
        if np.max(m) > 0:
            m = m / np.max(m) * 0.6
            colour = np.array([175, 238, 238], dtype=np.float32) / 255.0
            out.append(np.uint8(np.clip(x + m[..., None] * colour, 0, 1) * 255))
        else:  # no drop left: the generator divides 0 by 0 here and stores an undefined frame
            out.append(None)
        liquid = np.apply_along_axis(lambda col: np.convolve(col, np.array(kernel), mode="same"), 0, liquid)
    return out


def generator_frames(suite: str, name: str, img: np.ndarray, difficulty: int, rng: np.random.Generator,
                     normals: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
    """The generator's sequence for one uint8 HWC image (ImageNet-P: the Resize(256) image; crops placed inside)."""
    g = GEN[suite][name] if name in GEN[suite] else None
    crop = (lambda a: tv_center_crop(a, 224)) if suite == "imagenet-p" else (lambda a: a)
    x = crop(img) if name in PHOTOMETRIC else img
    if name in NOISE:
        z = x.astype(np.float64) / 255.0
        p = g[difficulty - 1]
        frames = [x]
        for _ in range(30):
            if name == "gaussian_noise":
                y = np.clip(z + p * rng.standard_normal(z.shape), 0, 1)
            elif name == "shot_noise":
                y = np.clip(rng.poisson(z * p) / p, 0, 1)
            else:
                y = np.clip(z + z * rng.normal(size=z.shape, scale=p), 0, 1)
            frames.append(np.uint8(y * 255))
        return frames
    if name == "zoom_blur":
        avg = torch.from_numpy(crop(img).copy()).permute(2, 0, 1).float() / 255
        frames = [crop(img)]
        for i in range(1, 31):
            z = crop(tv_affine(img, scale=1 + 0.004 * i))
            avg += torch.from_numpy(z.copy()).permute(2, 0, 1).float() / 255
            frames.append((avg / (i + 1)).mul(255).byte().permute(1, 2, 0).numpy())
        return frames
    if name == "brightness":
        import skimage.color as skc

        frames = []
        for i in range(31):
            hsv = skc.rgb2hsv(x.astype(np.float64) / 255.0)
            hsv[..., 2] = np.clip(hsv[..., 2] + g(i), 0, 1)
            frames.append(np.uint8(skc.hsv2rgb(hsv) * 255))
        return frames
    if name == "gaussian_blur":
        from skimage.filters import gaussian

        sig, trunc = g
        return [
            np.uint8(255 * gaussian(x / 255.0, sigma=sig(i), channel_axis=-1, truncate=trunc))
            for i in range(31)
        ]
    if name == "translate":
        t, shift = g
        return [crop(tv_affine(img, translate=(shift(i), 0), nearest=True)) for i in range(t)]
    if name in ("rotate", "scale", "shear"):
        key = {"rotate": "angle", "scale": "scale", "shear": "shear"}[name]
        return [crop(tv_affine(img, **{key: g(i)})) for i in range(31)]
    if name == "tilt":
        return [crop(gen_tilt(img, g(i))) for i in range(31)]
    if name == "spatter":
        return gen_spatter(x, normals, g)
    raise ValueError(f"no generator re-implementation for {name!r}")


# --------------------------------------------------------------------------------------------- ours
class _FedNormals:
    """A Context stand-in whose ``randn`` returns fixed per-image normal fields."""

    def __init__(self, fields: list[np.ndarray], native_size: int) -> None:
        self.fields, self.native_size = fields, native_size
        self.seeds = [0] * len(fields)
        self.device = torch.device("cpu")

    def scale(self, height: int, width: int) -> float:
        return min(height, width) / float(self.native_size)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.stack([torch.from_numpy(f).to(dtype).reshape(shape) for f in self.fields])


def our_frames(suite: str, name: str, img: np.ndarray, difficulty: int, seed: int,
               normals: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None]
    crop = 224 if suite == "imagenet-p" else None
    if normals is None:
        out = perturb(x, name, suite=suite, difficulty=difficulty, seed=seed, crop_to=crop)
    else:
        spec = get_perturbation_suite(suite)
        xf = x.float() / 255
        if crop is not None:
            from corruptions.geometry import centre_crop

            xf = centre_crop(xf, crop)
        ctx = _FedNormals([normals], spec.native(name))
        fr = _Frames(list(range(spec.frames(name))), spec.frames(name), spec.entry(name), difficulty, ctx,
                     ctx.scale(*xf.shape[-2:]))  # fmt: skip
        out = (PERTURBATIONS.get(name)(xf, fr).clamp(0, 1) * 255).floor() / 255
    u8 = (out[0] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return list(u8)


# --------------------------------------------------------------------------------------------- comparison
@dataclass
class PRow:
    suite: str
    perturbation: str
    difficulty: int
    kind: str  # deterministic | fed | noisy | not compared
    frames: int
    photos: int
    psnr_mean: float  # ours vs generator, frame by frame (deterministic / fed)
    psnr_min: float
    identical: float  # share of identical frames
    clean_ours: float  # noisy: mean PSNR(frame, clean), frames 1..
    clean_gen: float
    target: str
    passed: bool


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))


def perturbation_photos(suite: str, names: Sequence[str]) -> list[np.ndarray]:
    """uint8 HWC inputs: CIFAR-10-P 32 px photos; ImageNet-P Resize(256) of the full photos."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    out = []
    for name in names:
        with Image.open(root / name) as im:
            img = np.asarray(im.convert("RGB"))
        if suite == "imagenet-p":
            out.append(tv_resize(img, 256))
        else:
            h, w = img.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            sq = Image.fromarray(img[top : top + side, left : left + side])
            out.append(np.asarray(sq.resize((32, 32), Image.LANCZOS)))
    return out


def compare(suite: str, name: str, difficulty: int, photos: list[np.ndarray], seed: int = 0) -> PRow:
    nan = float("nan")
    t = get_perturbation_suite(suite).frames(name)
    if name in NOT_COMPARED:
        return PRow(suite, name, difficulty, "not compared", t, len(photos), nan, nan, nan, nan, nan,
                    "ImageMagick Wand not installed here", True)  # fmt: skip
    if name in NOISE:
        po, pg = [], []
        for k, img in enumerate(photos):
            ours = our_frames(suite, name, img, difficulty, seed + k)
            gen = generator_frames(suite, name, img, difficulty, np.random.default_rng(seed + 1000 + k))
            po += [_psnr(f, ours[0]) for f in ours[1:]]
            pg += [_psnr(f, gen[0]) for f in gen[1:]]
        co, cg = float(np.mean(po)), float(np.mean(pg))
        return PRow(suite, name, difficulty, "noisy", t, len(photos), nan, nan, nan, co, cg,
                    f"|diff| <= {NOISY_TARGET:g} dB", abs(co - cg) <= NOISY_TARGET)  # fmt: skip
    vals = []
    undefined = 0
    kind = "fed" if name == "spatter" else "deterministic"
    for k, img in enumerate(photos):
        normals = None
        if kind == "fed":
            side = 224 if suite == "imagenet-p" else img.shape[0]
            normals = np.random.default_rng(seed + k).standard_normal((side, side)).astype(np.float32)
        ours = our_frames(suite, name, img, difficulty, seed, normals)
        gen = generator_frames(suite, name, img, difficulty, np.random.default_rng(0), normals)
        if len(ours) != len(gen):
            raise RuntimeError(f"{suite} {name}: {len(ours)} frames here, {len(gen)} in the generator")
        vals += [_psnr(a, b) for a, b in zip(ours, gen) if b is not None]
        undefined += sum(b is None for b in gen)
    v = np.asarray(vals if vals else [float("nan")])
    target = f"min >= {DETERMINISTIC_TARGET:g} dB"
    if undefined:
        target += f" ({undefined} frames without drops, undefined in the generator, left out)"
    return PRow(suite, name, difficulty, kind, t, len(photos), float(v.mean()), float(v.min()),
                float((v >= 100).mean()), nan, nan, target, bool(v.min() >= DETERMINISTIC_TARGET))  # fmt: skip


def run_perturbation_parity(suites: Sequence[str], names: Sequence[str], photo_names: Sequence[str],
                            seed: int = 0, progress: Callable[[PRow], None] | None = None) -> list[PRow]:  # fmt: skip
    rows = []
    for suite in suites:
        photos = perturbation_photos(suite, photo_names)
        for name in names:
            for d in (1, 2, 3) if name in NOISE else (1,):
                row = compare(suite, name, d, photos, seed)
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def format_perturbation_table(rows: Sequence[PRow]) -> str:
    head = ["suite", "perturbation", "compared as", "frames", "PSNR(ours, generator) mean / min",
            "identical frames", "PSNR vs clean ours / generator (diff)", "target", "result"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = r.perturbation + (f" (difficulty {r.difficulty})" if r.perturbation in NOISE else "")
        det = f"{r.psnr_mean:.1f} / {r.psnr_min:.1f} dB" if r.kind in ("deterministic", "fed") else "-"
        same = f"{100 * r.identical:.0f} %" if r.kind in ("deterministic", "fed") else "-"
        noisy = (f"{r.clean_ours:.2f} / {r.clean_gen:.2f} ({r.clean_ours - r.clean_gen:+.2f})"
                 if r.kind == "noisy" else "-")  # fmt: skip
        result = "n/a" if r.kind == "not compared" else ("pass" if r.passed else "FAIL")
        lines.append("| " + " | ".join([r.suite, name, r.kind, str(r.frames), det, same, noisy, r.target, result])
                     + " |")  # fmt: skip
    return "\n".join(lines)
