"""Shift-consistency probes: crop and circular consistency, and the diagonal-shift curve (docs/perturbations_and_probes.md)."""

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


def _default_crop_shift(h: int) -> int:
    return max(1, h // 8)


def _default_roll_shift(h: int) -> int:
    return 3 if h <= 64 else 32


@PROBES.register("crop", suite="shift")
def _crop(run: ProbeRun, *, shift: int | None = None, pairs: int = 1, crop_size: int | None = None):
    """Crop consistency: per image ``pairs`` pairs of crops at seeded random offsets; top-1 agreement.

    Args:
        shift: S. Without ``crop_size``: reflect-pad by S, crops of the original size at offsets in [0, S) per axis
            (default S = H // 8: 4 px for 32 px images). With ``crop_size``: no padding, square crops of that size
            at offsets in [0, H - crop_size) (Zhang's ImageNet protocol: 256 px input, ``crop_size=224``).
        pairs: crop pairs per image.
    """
    pairs = _positive_int(pairs, "pairs")
    agree_all, correct_all, offsets_all = [], [], []
    s_used = None
    for ids, x, y in run.batches():
        n, c, h, w = x.shape
        if crop_size is None:
            s = _positive_int(shift, "shift") if shift is not None else _default_crop_shift(h)
            if s >= min(h, w):
                raise ValueError(f"crop shift {s} must be smaller than the image side {min(h, w)}")
            src = F.pad(x, (s, s, s, s), mode="reflect")
            ch, cw, range_y, range_x = h, w, s, s
        else:
            size = _positive_int(crop_size, "crop_size")
            if size >= min(h, w):
                raise ValueError(f"crop_size {size} must be smaller than the prepared image {(h, w)}")
            src = x
            ch = cw = size
            range_y, range_x = h - size, w - size
            if shift is not None:
                range_y = range_x = min(_positive_int(shift, "shift"), range_y, range_x)
            s = range_y
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
    if crop_size is None:
        how = f"reflect-pad {s_used}, two {h}x{w} crops at offsets in [0,{s_used}) per axis"
    else:
        how = f"two {crop_size} px crops of the {h}x{w} input at offsets in [0,{s_used}) per axis (Zhang)"
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


def _diagonal_shift(x: Tensor, s: int, mode: str) -> Tensor:
    """Move content down-right by s pixels: circular roll, or reflect-padding the top-left border."""
    if s == 0:
        return x
    if mode == "circular":
        return torch.roll(x, shifts=(s, s), dims=(-2, -1))
    h, w = x.shape[-2:]
    return F.pad(x, (s, 0, s, 0), mode="reflect")[..., :h, :w]


@PROBES.register("diagonal", suite="shift")
def _diagonal(run: ProbeRun, *, shift: int | None = None, mode: str = "circular"):
    """Diagonal shift curve (Zhang): for s = 0..S, accuracy, P(true class) and agreement with s = 0.

    Args:
        shift: S, the largest shift (default H // 4: 8 px for 32 px images).
        mode: ``"circular"`` (roll) or ``"reflect"`` (the uncovered border is reflected).
    """
    modes = ("circular", "reflect")
    if mode not in modes:
        raise ValueError(f"unknown diagonal shift mode {mode!r}; valid: {', '.join(modes)}")
    preds, probs, labels = [], [], []
    s_max = None
    for _, x, y in run.batches():
        h = x.shape[-2]
        s_max = _positive_int(shift, "shift") if shift is not None else max(1, h // 4)
        if mode == "reflect" and s_max >= min(x.shape[-2:]):
            raise ValueError(f"reflect shift {s_max} must be smaller than the image side {min(x.shape[-2:])}")
        p_batch, q_batch = [], []
        for s in range(s_max + 1):
            logits = run.logits(_diagonal_shift(x, s, mode))
            p_batch.append(logits.argmax(dim=1))
            q_batch.append(logits.softmax(dim=1).gather(1, y[:, None].clamp_min(0))[:, 0])
        preds.append(torch.stack(p_batch, dim=1).cpu().numpy())
        probs.append(torch.stack(q_batch, dim=1).cpu().numpy())
        labels.append(y.cpu().numpy())
    pred = np.concatenate(preds)
    prob = np.concatenate(probs).astype(np.float64)
    lab = np.concatenate(labels)
    n = len(lab)
    base = f"diagonal shift by s px ({mode}{' roll' if mode == 'circular' else ' padding'}), s = 0..{s_max} (Zhang)"
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
