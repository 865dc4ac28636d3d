"""Geometric steps of the perturbation generators (docs/perturbations_and_probes.md, "Published parameters").

The CIFAR-10-P and ImageNet-P generators move images with three tools, reproduced here:

* torchvision's ``affine`` on PIL images (translate, rotate, scale, shear, zoom), in the version of the generators'
  time (torchvision 0.2-0.6): the inverse map is built about the point ``(W / 2 + 0.5, H / 2 + 0.5)`` of PIL's pixel
  coordinates (pixel k covers [k, k + 1)), and shear turns the y axis, ``[[1, -sin s], [0, cos s]]``. PIL then samples
  the source at ``M (x + 0.5, y + 0.5)``: bilinear with edge-clamped neighbours inside the image, black outside,
  and the result truncated to 8 bits. :func:`pil_affine` does the same in float64 torch; :func:`affine_inverse`
  builds the map.
* OpenCV's ``warpPerspective`` (tilt) with the generators' matrix ``P2 T RX RY P1`` (:func:`tilt_matrix`): the image
  plane, centred on ``(W / 2, H / 2)``, turned about its x and y axes and viewed from distance
  ``f = sqrt(W^2 + H^2)``. :func:`warp_perspective` calls OpenCV itself on the 8-bit images (bilinear, black
  border), so the frames equal the generators' bit for bit.
* torchvision's ``Resize(int)`` and ``CenterCrop`` (ImageNet-P): :func:`resize_shorter`, :func:`centre_crop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "affine_inverse",
    "pil_affine",
    "shift_black",
    "tilt_matrix",
    "warp_perspective",
    "crop_box",
    "centre_crop",
    "resize_shorter",
]


def affine_inverse(
    width: int,
    height: int,
    *,
    angle: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    shear: float = 0.0,
) -> tuple[float, float, float, float, float, float]:
    """Output -> source map ``(a, b, c, d, e, f)`` of the 2018 torchvision ``affine`` (degrees, PIL coordinates).

    The forward map is ``T C RSS C^-1`` with ``RSS = scale * [[cos a, -sin(a + s)], [sin a, cos(a + s)]]``
    (a positive angle turns the picture clockwise on screen) about ``C = (W / 2 + 0.5, H / 2 + 0.5)``.
    """
    a, s = math.radians(angle), math.radians(shear)
    cx, cy = width * 0.5 + 0.5, height * 0.5 + 0.5
    det = math.cos(a + s) * math.cos(a) + math.sin(a + s) * math.sin(a)
    k = (1.0 / scale) / det
    m = [k * math.cos(a + s), k * math.sin(a + s), 0.0, k * -math.sin(a), k * math.cos(a), 0.0]
    tx, ty = translate
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return tuple(m)  # type: ignore[return-value]


def pil_affine(x: Tensor, maps: Sequence[Sequence[float]]) -> Tensor:
    """PIL's bilinear affine transform of 8-bit images, every image by every map: (N, C, H, W) -> (N, F, C, H, W).

    ``x`` holds floats in [0, 1] (on the 8-bit levels: PIL works on uint8). Output pixel (y, x) samples the source
    at ``(a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f)``; outside ``[0, W) x [0, H)`` it is black,
    inside it interpolates the four neighbours of the point minus half a pixel, clamped to the edge, as
    ``a + (b - a) t`` along x then y in float64, and truncates to a level - PIL's arithmetic, step by step.
    """
    n, c, h, w = x.shape
    dev = x.device
    m = torch.tensor([list(map(float, mm)) for mm in maps], dtype=torch.float64, device=dev)  # (F, 6)
    gy, gx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=dev) + 0.5,
        torch.arange(w, dtype=torch.float64, device=dev) + 0.5,
        indexing="ij",
    )
    gx, gy = gx.reshape(1, -1), gy.reshape(1, -1)
    xin = m[:, 0:1] * gx + m[:, 1:2] * gy + m[:, 2:3]  # (F, HW)
    yin = m[:, 3:4] * gx + m[:, 4:5] * gy + m[:, 5:6]
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xs, ys = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xs), torch.floor(ys)
    dx, dy = xs - x0, ys - y0
    x0l, y0l = x0.long(), y0.long()
    xa, xb = x0l.clamp(0, w - 1), (x0l + 1).clamp(0, w - 1)
    ya, yb = y0l.clamp(0, h - 1), (y0l + 1).clamp(0, h - 1)
    levels = torch.round(x.detach().to(torch.float64) * 255.0).reshape(n, c, 1, h * w)
    nf = m.shape[0]

    def tap(yy: Tensor, xx: Tensor) -> Tensor:
        idx = (yy * w + xx).reshape(1, 1, nf, h * w).expand(n, c, nf, h * w)
        return levels.expand(n, c, nf, h * w).gather(3, idx)

    p00, p01, p10, p11 = tap(ya, xa), tap(ya, xb), tap(yb, xa), tap(yb, xb)
    v1 = p00 + (p01 - p00) * dx
    v2 = p10 + (p11 - p10) * dx
    v = torch.floor(v1 + (v2 - v1) * dy)
    v = torch.where(inside, v, torch.zeros_like(v))
    out = (v.to(x.dtype) / 255.0).reshape(n, c, nf, h, w)  # ToTensor's uint8 / 255
    return out.permute(0, 2, 1, 3, 4).contiguous()


def shift_black(x: Tensor, shifts: Sequence[int]) -> Tensor:
    """Whole-pixel horizontal shifts with black fill (torchvision ``affine(translate=(s, 0))``, nearest):
    ``out[..., j] = x[..., j - s]``. (N, C, H, W) -> (N, F, C, H, W)."""
    w = x.shape[-1]
    frames = []
    for s in shifts:
        s = int(s)
        f = torch.zeros_like(x)
        if abs(s) < w:
            if s >= 0:
                f[..., s:] = x[..., : w - s]
            else:
                f[..., : w + s] = x[..., -s:]
        frames.append(f)
    return torch.stack(frames, dim=1)


def tilt_matrix(width: int, height: int, degrees: float) -> np.ndarray:
    """The generators' tilt homography (source -> output), ``phi = theta = degrees``: ``P2 T RX RY P1``.

    ``P1`` lifts pixel (x, y) to ``(x - W/2, y - H/2, 1, 1)``, ``RY`` / ``RX`` turn it about the y and x axes,
    ``T`` moves it ``f = sqrt(W^2 + H^2)`` away and ``P2`` projects with focal length f back about ``(W/2, H/2)``.
    The point ``(W/2, H/2)`` moves by less than ``sin(degrees)`` px per axis (it sits one unit off the rotation centre).
    """
    w, h = float(width), float(height)
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    f = math.sqrt(w * w + h * h)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=np.float64)
    rx = np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]], dtype=np.float64)
    ry = np.array([[c, 0, -s, 0], [0, 1, 0, 0], [s, 0, c, 0], [0, 0, 0, 1]], dtype=np.float64)
    tz = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=np.float64)
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=np.float64)
    return p2 @ tz @ rx @ ry @ p1


def warp_perspective(x: Tensor, mats: Sequence[np.ndarray]) -> Tensor:
    """OpenCV ``warpPerspective`` (bilinear, black border) of the 8-bit images by every source -> output matrix.

    (N, C, H, W) floats in [0, 1] -> (N, F, C, H, W) on 8-bit levels; computed on the CPU.
    """
    n, c, h, w = x.shape
    u8 = torch.round(x.detach().to("cpu", torch.float64) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.empty((n, len(mats), h, w, c), dtype=np.uint8)
    for i in range(n):
        img = np.ascontiguousarray(u8[i])
        for j, mat in enumerate(mats):
            res = cv2.warpPerspective(img, np.asarray(mat, dtype=np.float64), (w, h))
            out[i, j] = res.reshape(h, w, c)
    t = torch.from_numpy(out).permute(0, 1, 4, 2, 3).to(device=x.device, dtype=x.dtype)
    return t / 255.0


def crop_box(height: int, width: int, size: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """torchvision ``CenterCrop``'s box ``(top, left, h, w)``: offsets ``int(round((H - h) / 2))`` (half to even)."""
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if th > height or tw > width or th < 1 or tw < 1:
        raise ValueError(f"crop {(th, tw)} must be positive and at most the image size {(height, width)}")
    return int(round((height - th) / 2.0)), int(round((width - tw) / 2.0)), th, tw


def centre_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The centre ``size`` crop of (..., H, W), placed as torchvision's ``CenterCrop``."""
    top, left, th, tw = crop_box(x.shape[-2], x.shape[-1], size)
    return x[..., top : top + th, left : left + tw]


def resize_shorter(image: Tensor, size: int) -> Tensor:
    """torchvision ``Resize(size)`` of one uint8 (C, H, W) image through PIL (bilinear): the shorter side becomes
    ``size``, the longer ``int(size * long / short)``. Returns uint8 (C, H', W')."""
    from PIL import Image

    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(
            f"resize_shorter expects one uint8 (C, H, W) image, got {image.dtype} {tuple(image.shape)}"
        )
    c, h, w = image.shape
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) == (w, h):
        return image
    arr = image.permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(arr[..., 0] if c == 1 else arr)
    out = np.asarray(pil.resize((nw, nh), Image.BILINEAR))
    out = out[..., None] if out.ndim == 2 else out
    return torch.from_numpy(out.copy()).permute(2, 0, 1)
