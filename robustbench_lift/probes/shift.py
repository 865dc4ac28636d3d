"""Shift-consistency probes: crop and circular consistency, and the diagonal-shift curve.

Every protocol is named in its rows (docs/perturbations_and_probes.md, "Shift probes").
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from corruptions.rng import torch_generator

from .base import PROBES, ProbeRun, _positive_int

log = logging.getLogger(__name__)


def _roll(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Per-image circular shift: ``out[i] = torch.roll(x[i], (dy[i], dx[i]), dims=(-2, -1))``."""
    n, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] - dy.to(x.device)[:, None]) % h
    cols = (torch.arange(w, device=x.device)[None, :] - dx.to(x.device)[:, None]) % w
    out = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _default_roll_shift(h: int) -> int:
    return 3 if h <= 64 else 32


#: Crop-consistency protocols (docs/perturbations_and_probes.md, "Shift probes"); each row's protocol names its own.
CROP_PROTOCOLS: tuple[str, ...] = ("zhang", "aps", "reflect")
#: Diagonal-curve protocols: Zhang's crops of real image content, or shifts of the input itself.
DIAGONAL_MODES: tuple[str, ...] = ("zhang", "circular", "reflect")
#: Zhang's ImageNet crop protocol: 224 px crops of the 256 px image (Resize 256, CenterCrop 256).
ZHANG_SIZES = (256, 224)


def _zhang_name(h: int, w: int, size: int) -> str:
    """Zhang's name only for his ImageNet sizes (256 px image, 224 px crops); other sizes are "Zhang-style"."""
    image, crop = ZHANG_SIZES
    if (h, w, size) == (image, image, crop):
        return "Zhang 2019 ImageNet protocol"
    return "Zhang-style crops of real image content"


def _pick(value: str | None, valid: tuple[str, ...], default: str, what: str) -> str:
    if value is None:
        return default
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


@PROBES.register("crop", suite="shift")
def _crop(
    run: ProbeRun,
    *,
    protocol: str | None = None,
    shift: int | None = None,
    pairs: int = 1,
    crop_size: int | None = None,
):
    """Crop consistency: per image ``pairs`` pairs of crops at seeded random offsets; top-1 agreement.

    Args:
        protocol: ``"zhang"`` (default with ``crop_size``): no padding, square crops of ``crop_size`` at offsets
            in [0, H - crop_size) per axis - Zhang's ImageNet protocol when the images are the 256 px
            Resize 256 / CenterCrop 256 images and ``crop_size=224`` (offsets in [0, 32)). ``"aps"`` (default
            otherwise): the APS random-crop protocol, zero-pad by S and take crops of the original size at offsets
            in [0, 2S) per axis (S = 3 up to 64 px, as for CIFAR-10; 32 above). ``"reflect"``: reflect-pad by S,
            offsets in [0, S) (every crop moves the same way: relative shifts up to S - 1; no published protocol).
        shift: S for ``aps`` / ``reflect``; for ``zhang`` it caps the offset range.
        pairs: crop pairs per image.
        crop_size: the model's input size, for ``zhang`` (the images are then larger than the model's input).
    """
    pairs = _positive_int(pairs, "pairs")
    protocol = _pick(protocol, CROP_PROTOCOLS, "zhang" if crop_size is not None else "aps", "crop protocol")
    if protocol == "zhang" and crop_size is None:
        raise ValueError(
            "crop protocol 'zhang' needs crop_size (the model's input size, smaller than the images)"
        )
    if protocol != "zhang" and crop_size is not None:
        raise ValueError(f"crop protocol {protocol!r} crops at the image size; crop_size is for 'zhang' only")
    agree_all, correct_all, offsets_all = [], [], []
    s_used = h = w = None
    for ids, x, y in run.batches():
        n, c, h, w = x.shape
        if protocol == "zhang":
            size = _positive_int(crop_size, "crop_size")
            if size >= min(h, w):
                raise ValueError(f"crop_size {size} must be smaller than the prepared image {(h, w)}")
            src = x
            ch = cw = size
            range_y, range_x = h - size, w - size
            if shift is not None:
                range_y = range_x = min(_positive_int(shift, "shift"), range_y, range_x)
            s = range_y
        else:
            s = _positive_int(shift, "shift") if shift is not None else _default_roll_shift(h)
            if s >= min(h, w):
                raise ValueError(f"crop shift {s} must be smaller than the image side {min(h, w)}")
            mode = "constant" if protocol == "aps" else "reflect"
            src = F.pad(x, (s, s, s, s), mode=mode)
            ch, cw = h, w
            range_y = range_x = 2 * s if protocol == "aps" else s
        s_used = s
        off = torch.stack(
            [
                torch.stack(
                    [
                        torch.randint(
                            0, range_y, (pairs, 2), generator=(g := torch_generator(run.seed, int(i), "crop"))
                        ),
                        torch.randint(0, range_x, (pairs, 2), generator=g),
                    ],
                    dim=-1,
                )
                for i in ids
            ]
        )  # (n, pairs, 2 crops, (y, x))
        crops = torch.stack(
            [
                src[b, :, off[b, p, k, 0] : off[b, p, k, 0] + ch, off[b, p, k, 1] : off[b, p, k, 1] + cw]
                for b in range(n)
                for p in range(pairs)
                for k in range(2)
            ]
        )
        pred = run.logits(crops).argmax(dim=1).reshape(n, pairs, 2)
        agree_all.append((pred[..., 0] == pred[..., 1]).cpu().numpy())
        correct_all.append((pred == y[:, None, None]).cpu().numpy())
        offsets_all.append(off.numpy())
    agree = np.concatenate(agree_all)
    correct = np.concatenate(correct_all)
    n_pairs = agree.size
    if protocol == "zhang":
        how = (
            f"{_zhang_name(h, w, crop_size)}: two {crop_size} px crops of the {h}x{w} image at offsets in "
            f"[0,{s_used}) per axis"
        )
    elif protocol == "aps":
        how = (
            f"APS random-crop protocol (Chaman & Dokmanic): zero-pad {s_used}, two {h}x{w} crops at offsets in "
            f"[0,{2 * s_used}) per axis"
        )
    else:
        how = (
            f"reflect-pad {s_used}, two {h}x{w} crops at offsets in [0,{s_used}) per axis (one-way shifts; "
            "not a published protocol)"
        )
    proto = f"crop consistency, {how}, drawn per image (seeded), {pairs} pair(s) per image"
    rows = [
        run.row(
            "shift",
            "crop",
            s_used,
            "consistency",
            agree.mean(axis=1),
            n_pairs,
            proto + "; fraction of pairs with equal top-1; CI over images",
        ),
        run.row(
            "shift",
            "crop",
            s_used,
            "accuracy",
            correct.mean(axis=(1, 2)),
            2 * n_pairs,
            proto + "; top-1 accuracy over all crops; CI over images",
        ),
    ]
    arrays = {"agree": agree, "correct": correct, "offsets": np.concatenate(offsets_all)}
    return arrays, rows


@PROBES.register("circular", suite="shift")
def _circular(run: ProbeRun, *, shift: int | None = None, pairs: int = 1):
    """Circular consistency (Chaman & Dokmanic): two rolls drawn in [-S, S) per axis; top-1 agreement.

    Args:
        shift: S (default 3 for images up to 64 px, 32 above).
        pairs: roll pairs per image.
    """
    pairs = _positive_int(pairs, "pairs")
    agree_all, correct_all, shifts_all = [], [], []
    s_used = None
    for ids, x, y in run.batches():
        n, c, h, w = x.shape
        s = _positive_int(shift, "shift") if shift is not None else _default_roll_shift(h)
        s_used = s
        sh = torch.stack(
            [
                torch.randint(-s, s, (pairs, 2, 2), generator=torch_generator(run.seed, int(i), "circular"))
                for i in ids
            ]
        )  # (n, pairs, 2 rolls, (dy, dx))
        xr = x[:, None, None].expand(n, pairs, 2, c, h, w).reshape(-1, c, h, w)
        flat = sh.reshape(-1, 2)
        pred = run.logits(_roll(xr, flat[:, 0], flat[:, 1])).argmax(dim=1).reshape(n, pairs, 2)
        agree_all.append((pred[..., 0] == pred[..., 1]).cpu().numpy())
        correct_all.append((pred == y[:, None, None]).cpu().numpy())
        shifts_all.append(sh.numpy())
    agree = np.concatenate(agree_all)
    correct = np.concatenate(correct_all)
    proto = (
        f"circular consistency, two rolls in [-{s_used},{s_used}) per axis (Chaman & Dokmanic), drawn per image "
        f"(seeded), {pairs} pair(s) per image"
    )
    rows = [
        run.row(
            "shift",
            "circular",
            s_used,
            "consistency",
            agree.mean(axis=1),
            agree.size,
            proto + "; fraction of pairs with equal top-1; CI over images",
        ),
        run.row(
            "shift",
            "circular",
            s_used,
            "accuracy",
            correct.mean(axis=(1, 2)),
            2 * agree.size,
            proto + "; top-1 accuracy over all rolled images; CI over images",
        ),
    ]
    return {"agree": agree, "correct": correct, "shifts": np.concatenate(shifts_all)}, rows


def _diagonal_shift(x: Tensor, s: int, mode: str, size: int | None = None) -> Tensor:
    """Content moved down-right by s pixels: circular roll, reflect-padding the top-left border, or (``zhang``) the
    ``size`` px crop at offset (s, s) of a larger image, which moves the content up-left over real pixels."""
    if mode == "zhang":
        return x[..., s : s + size, s : s + size]
    if s == 0:
        return x
    if mode == "circular":
        return torch.roll(x, shifts=(s, s), dims=(-2, -1))
    h, w = x.shape[-2:]
    return F.pad(x, (s, 0, s, 0), mode="reflect")[..., :h, :w]


@PROBES.register("diagonal", suite="shift")
def _diagonal(
    run: ProbeRun, *, shift: int | None = None, mode: str | None = None, crop_size: int | None = None
):
    """Diagonal shift curve: for s = 0..S, accuracy, P(true class) and agreement with s = 0.

    Args:
        mode: ``"zhang"`` (default with ``crop_size``): Zhang's curve, ``crop_size`` px crops at (s, s) of the
            larger image, s = 0..H - crop_size (0..32 for the 256 px image and 224 px crops), so every shifted view
            holds real image content. ``"circular"`` (default otherwise): the input rolled by (s, s), wrapping
            around; ``"reflect"``: the uncovered border reflected. Neither of the last two is Zhang's curve.
        shift: S, the largest shift (default H // 4 for circular / reflect; for ``zhang`` it caps H - crop_size).
        crop_size: the model's input size, for ``zhang``.
    """
    mode = _pick(
        mode, DIAGONAL_MODES, "zhang" if crop_size is not None else "circular", "diagonal shift mode"
    )
    if mode == "zhang" and crop_size is None:
        raise ValueError(
            "diagonal mode 'zhang' needs crop_size (the model's input size, smaller than the images)"
        )
    if mode != "zhang" and crop_size is not None:
        raise ValueError(f"diagonal mode {mode!r} shifts the model's input; crop_size is for 'zhang' only")
    preds, probs, labels = [], [], []
    s_max = h = w = None
    for _, x, y in run.batches():
        h, w = x.shape[-2:]
        if mode == "zhang":
            size = _positive_int(crop_size, "crop_size")
            if size >= min(h, w):
                raise ValueError(f"crop_size {size} must be smaller than the prepared image {(h, w)}")
            s_max = min(h, w) - size
            if shift is not None:
                s_max = min(_positive_int(shift, "shift"), s_max)
        else:
            s_max = _positive_int(shift, "shift") if shift is not None else max(1, h // 4)
            if mode == "reflect" and s_max >= min(h, w):
                raise ValueError(f"reflect shift {s_max} must be smaller than the image side {min(h, w)}")
        p_batch, q_batch = [], []
        for s in range(s_max + 1):
            logits = run.logits(_diagonal_shift(x, s, mode, crop_size))
            p_batch.append(logits.argmax(dim=1))
            q_batch.append(logits.softmax(dim=1).gather(1, y[:, None].clamp_min(0))[:, 0])
        preds.append(torch.stack(p_batch, dim=1).cpu().numpy())
        probs.append(torch.stack(q_batch, dim=1).cpu().numpy())
        labels.append(y.cpu().numpy())
    pred = np.concatenate(preds)
    prob = np.concatenate(probs).astype(np.float64)
    lab = np.concatenate(labels)
    n = len(lab)
    if mode == "zhang":
        name = (
            "Zhang 2019" if (h, w, crop_size) == (ZHANG_SIZES[0],) * 2 + (ZHANG_SIZES[1],) else "Zhang-style"
        )
        base = f"diagonal shift curve ({name}): {crop_size} px crops at (s, s) of the {h}x{w} image, s = 0..{s_max}"
    elif mode == "circular":
        base = (
            f"diagonal shift curve, circular roll by (s, s) (wraps around; not Zhang's crops), s = 0..{s_max}"
        )
    else:
        base = (
            f"diagonal shift curve, shift by (s, s) with reflect padding (not Zhang's crops), s = 0..{s_max}"
        )
    rows = []
    for s in range(s_max + 1):
        rows.append(
            run.row(
                "shift",
                "diagonal",
                s,
                "accuracy",
                pred[:, s] == lab,
                n,
                f"{base}; top-1 accuracy at s = {s}; CI over images",
            )
        )
        rows.append(
            run.row(
                "shift",
                "diagonal",
                s,
                "p_correct",
                prob[:, s],
                n,
                f"{base}; mean softmax probability of the true class at s = {s}; CI over images",
            )
        )
        rows.append(
            run.row(
                "shift",
                "diagonal",
                s,
                "agreement",
                pred[:, s] == pred[:, 0],
                n,
                f"{base}; fraction of images whose top-1 equals the unshifted one at s = {s}",
            )
        )
    return {"pred": pred, "p_correct": prob, "labels": lab}, rows
