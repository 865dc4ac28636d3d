"""Shift-consistency probes, feature-level shift equivariance, and the pool/unpool reconstruction probe.

Every probe is registered in :data:`PROBES` and run by :func:`run_probe`, a pure function of the model, the dataset
and its arguments that returns ``(arrays, rows)``: per-image arrays and rows in ``schema.RESULT_COLUMNS`` format
(suite ``shift`` for the shift probes, ``reconstruction`` for the reconstruction probe).

Shift protocols (not comparable with each other; each row's ``protocol`` names its own):

* ``crop``: reflect-pad by S, two crops of the original size at offsets drawn in [0, S) per axis, per image, from a
  seeded generator (``crop_size=224`` on 256 px input gives Zhang's ImageNet protocol: no padding, offsets in
  [0, 32)); consistency = fraction of pairs whose top-1 agree.
* ``circular``: two ``torch.roll`` shifts drawn in [-S, S) per axis (Chaman & Dokmanic; S = 3 for 32 px).
* ``diagonal``: shift by s = 0..S pixels along the diagonal (circular by default, or reflect): accuracy, mean
  probability of the true class and agreement with the unshifted prediction, per s (a curve).
* ``equivariance``: for each pooling layer, ``||f(roll(x, d)) - shift(f(x), d / stride)|| / ||f(x)||`` with a
  circular diagonal input shift d; an integer roll when d is a multiple of the layer's cumulative stride, a
  band-limited (Fourier) fractional shift otherwise.

Shifts act on images in [0, 1], after ``prepare`` and before ``normalize`` (see :func:`as_pipeline`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions.registry import Registry
from corruptions.rng import torch_generator

from .schema import RESULT_COLUMNS

__all__ = [
    "PROBES",
    "InputPipeline",
    "as_pipeline",
    "select_indices",
    "model_fields",
    "list_probes",
    "run_probe",
    "pool_layers",
    "psnr",
    "ssim",
    "RECONSTRUCTION_PAIRS",
]

log = logging.getLogger(__name__)

#: name -> probe function ``fn(run: ProbeRun, **kw) -> (arrays, rows)``; metadata ``suite`` (shift/reconstruction).
PROBES: Registry = Registry("probe")


# ====================================================================================================== input
@dataclass(frozen=True)
class InputPipeline:
    """Model input in two steps, so that shifts and perturbations can act on [0, 1] images in between.

    Args:
        prepare: uint8 (N, C, H, W) -> float (N, C', H', W') in [0, 1] at the model's channels and size.
        normalize: [0, 1] images -> model input (e.g. mean/std normalisation).
    """

    prepare: Callable[[Tensor], Tensor]
    normalize: Callable[[Tensor], Tensor]


def _to_float(x: Tensor) -> Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.is_floating_point():
        return x.float()
    raise TypeError(f"images must be uint8 or floating point, got {x.dtype}")


def _identity(x: Tensor) -> Tensor:
    return x


def as_pipeline(preprocess: Any = None) -> InputPipeline:
    """Turn the ways a caller may describe preprocessing into an :class:`InputPipeline`.

    Accepts: None (uint8 -> [0, 1], no normalisation); an object with ``prepare`` and ``normalize`` callables; a
    ``(prepare, normalize)`` pair; an object with ``channels`` / ``input_size`` / ``mean`` / ``std`` (the
    evaluator's ``Preprocess``: ``data.prepare_batch`` then ``data.Normalize``); or a single callable, taken as
    ``normalize`` on [0, 1] images.
    """
    if preprocess is None:
        return InputPipeline(_to_float, _identity)
    if isinstance(preprocess, InputPipeline):
        return preprocess
    if hasattr(preprocess, "prepare") and hasattr(preprocess, "normalize"):
        return InputPipeline(preprocess.prepare, preprocess.normalize)
    if isinstance(preprocess, tuple) and len(preprocess) == 2 and all(callable(p) for p in preprocess):
        return InputPipeline(preprocess[0], preprocess[1])
    if hasattr(preprocess, "channels") and hasattr(preprocess, "mean"):
        from .data import Normalize, prepare_batch

        channels = int(preprocess.channels)
        size = getattr(preprocess, "input_size", None) if getattr(preprocess, "resize", True) else None

        def prepare(x: Tensor) -> Tensor:
            return prepare_batch(x, channels=channels, size=size)

        if preprocess.mean is None:
            return InputPipeline(prepare, _identity)
        norm = Normalize(preprocess.mean, preprocess.std)

        def normalize(x: Tensor) -> Tensor:
            return norm.to(x.device)(x)

        return InputPipeline(prepare, normalize)
    if callable(preprocess):
        return InputPipeline(_to_float, preprocess)
    raise TypeError(
        "preprocess must be None, an InputPipeline, a (prepare, normalize) pair, an object with "
        f"prepare/normalize or channels/mean/std, or a callable; got {type(preprocess).__name__}"
    )


def select_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """The dataset indices to evaluate: the evaluator's seeded subset (the same images as its corruption cells)."""
    from .evaluate import select_indices as _select

    return _select(n, limit, seed)


def model_fields(model: nn.Module) -> dict[str, str]:
    """``pooling`` and ``arch`` of a model built by the toolkit (from ``model.default_cfg``), else "unknown"."""
    cfg = getattr(model, "default_cfg", None) or {}
    return {"pooling": str(cfg.get("pool", "unknown")), "arch": str(cfg.get("arch", "unknown"))}


# ====================================================================================================== run state
@dataclass
class ProbeRun:
    """What a probe function gets: the model on its device, the images to use, and the row settings."""

    model: nn.Module
    dataset: Any
    indices: np.ndarray
    ids: np.ndarray
    batch_size: int
    device: torch.device
    seed: int
    pipe: InputPipeline
    n_boot: int
    info: dict[str, Any]
    row_values: list[np.ndarray] = field(default_factory=list)

    def batches(self) -> Iterator[tuple[np.ndarray, Tensor, Tensor]]:
        """``(ids, images in [0, 1] prepared on the device, labels)`` batch by batch."""
        for start in range(0, len(self.indices), self.batch_size):
            idx = self.indices[start : start + self.batch_size]
            get = getattr(self.dataset, "get_batch", None)
            if get is not None:
                images, labels = get(idx)
            else:
                items = [self.dataset[int(i)] for i in idx]
                images = torch.stack([x for x, _ in items])
                labels = torch.tensor([int(y) for _, y in items])
            x = self.pipe.prepare(images.to(self.device))
            yield self.ids[start : start + len(idx)], x, torch.as_tensor(labels).to(self.device)

    @torch.no_grad()
    def logits(self, x01: Tensor) -> Tensor:
        out = self.model(self.pipe.normalize(x01))
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x01.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the model must return logits (B, K); got {shape} for B={x01.shape[0]}")
        return out.float()

    def row(
        self,
        suite: str,
        corruption: str,
        severity: int,
        metric: str,
        values: np.ndarray,
        n: int,
        protocol: str,
    ) -> dict[str, Any]:
        """A result row whose value is the mean of per-image ``values`` with a bootstrap CI over images."""
        v = np.asarray(values, dtype=np.float64)
        self.row_values.append(v)
        lo = hi = math.nan
        if self.n_boot > 0 and len(v) >= 2 and np.isfinite(v).all():
            from .metrics import bootstrap_ci

            res = bootstrap_ci(_identity_stat, v, n_boot=self.n_boot, seed=self.seed)
            lo, hi = res.low, res.high
        row = {
            "model": self.info.get("model", ""),
            "pooling": self.info.get("pooling", "unknown"),
            "arch": self.info.get("arch", "unknown"),
            "suite": suite,
            "corruption": corruption,
            "severity": int(severity),
            "metric": metric,
            "value": float(v.mean()),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "n": int(n),
            "protocol": protocol,
        }
        return {c: row[c] for c in RESULT_COLUMNS}


def _identity_stat(x: np.ndarray) -> np.ndarray:
    return x


def list_probes(suite: str | None = None) -> list[str]:
    """Registered probe names, optionally only those of one suite (``shift`` or ``reconstruction``)."""
    return PROBES.names() if suite is None else PROBES.names(suite=suite)


def run_probe(
    name: str,
    model: nn.Module,
    dataset: Any,
    *,
    limit: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    preprocess: Any = None,
    n_boot: int = 1000,
    info: Mapping[str, Any] | None = None,
    return_row_values: bool = False,
    **kw: Any,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]] | tuple[Any, ...]:
    """Run one probe; no store access.

    Args:
        name: a registered probe (``list_probes()``): crop, circular, diagonal, equivariance, reconstruction.
        model: classifier mapping (B, C, H, W) to logits (B, K).
        dataset: an ImageDataset yielding (uint8 (C, H, W), label), with ``get_batch`` / ``sample_id`` if it has them.
        limit: a seeded random subset of this many images (the evaluator's ``select_indices``).
        seed: seeds the subset and every random shift (per image: ``(seed, sample_id, probe, ...)``).
        preprocess: see :func:`as_pipeline`.
        n_boot: bootstrap resamples for the CIs (0: none).
        info: ``model`` / ``pooling`` / ``arch`` for the rows (default: from ``model.default_cfg``).
        return_row_values: also return, per row, the per-image values its mean and CI come from.
        **kw: the probe's own parameters (see each probe's docstring).

    Returns:
        per-image arrays (always with ``ids``; names use ``__`` as separator) and result rows.
    """
    fn = PROBES.get(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = torch.device(device)
    model = model.to(device).eval()
    indices = select_indices(len(dataset), limit, seed)
    if len(indices) == 0:
        raise ValueError("the dataset has no images")
    sid = getattr(dataset, "sample_id", None)
    ids = np.asarray([sid(int(i)) if sid else int(i) for i in indices], dtype=np.int64)
    run = ProbeRun(
        model=model,
        dataset=dataset,
        indices=indices,
        ids=ids,
        batch_size=batch_size,
        device=device,
        seed=int(seed),
        pipe=as_pipeline(preprocess),
        n_boot=int(n_boot),
        info={**model_fields(model), **dict(info or {})},
    )
    arrays, rows = fn(run, **kw)
    arrays["ids"] = ids
    if return_row_values:
        return arrays, rows, run.row_values
    return arrays, rows


# ====================================================================================================== shifts
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


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


# ====================================================================================================== equivariance
#: Module class names treated as pooling layers (torch's and the toolkit's pools).
POOL_TYPE_NAMES: frozenset[str] = frozenset(
    {"MaxPool2d", "AvgPool2d", "Subsample2d", "BlurPool2d", "MaxBlurPool2d", "LiftDownPool2d"}
)


def pool_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's pooling layers, outermost only (a MaxBlurPool2d counts once), in module order."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if type(module).__name__ not in POOL_TYPE_NAMES:
            continue
        if any(name.startswith(parent + ".") for parent, _ in found):
            continue
        found.append((name, module))
    return found


def _fourier_shift(f: Tensor, dy: float, dx: float) -> Tensor:
    """Band-limited circular shift of (N, C, H, W) by (dy, dx) pixels (integer shifts equal torch.roll)."""
    h, w = f.shape[-2:]
    ky = torch.fft.fftfreq(h, device=f.device, dtype=torch.float64)
    kx = torch.fft.fftfreq(w, device=f.device, dtype=torch.float64)
    phase = torch.exp(-2j * math.pi * (ky[:, None] * dy + kx[None, :] * dx))
    return torch.fft.ifft2(torch.fft.fft2(f.double()) * phase).real.to(f.dtype)


def _first_tensor(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, tuple | list):
        for o in out:
            if isinstance(o, Tensor):
                return o
    raise TypeError(f"a pooling layer returned {type(out).__name__}, expected a tensor")


@PROBES.register("equivariance", suite="shift")
def _equivariance(run: ProbeRun, *, shifts: Sequence[int] | None = None, layers: Sequence[str] | None = None):
    """Feature shift-equivariance error at each pooling layer: where in the network aliasing happens.

    For a circular diagonal input shift d and a layer of cumulative stride r (input side / feature side):
    ``err = ||f(roll(x, d)) - shift(f(x), d / r)|| / ||f(x)||`` per image (L2 over C, H, W), where ``shift`` is
    an integer roll when r divides d and a band-limited (Fourier) fractional shift otherwise.

    Args:
        shifts: input shifts d (default: 1 and the largest cumulative stride, i.e. one misaligned shift and one
            aligned with every layer).
        layers: module names to probe (default: :func:`pool_layers`).
    """
    model = run.model
    named = dict(model.named_modules())
    if layers is None:
        chosen = pool_layers(model)
    else:
        unknown = [n for n in layers if n not in named]
        if unknown:
            raise ValueError(
                f"unknown layer(s) {unknown}; pooling layers: {[n for n, _ in pool_layers(model)]}"
            )
        chosen = [(n, named[n]) for n in layers]
    if not chosen:
        raise ValueError(
            f"the model has no pooling layer ({', '.join(sorted(POOL_TYPE_NAMES))}); pass layers=[module names]"
        )
    captured: dict[str, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, _first_tensor(out)))
        for name, m in chosen
    ]
    errors: dict[tuple[int, str], list[np.ndarray]] = {}
    strides: dict[str, float] = {}
    used_shifts: list[int] = []
    try:
        for _, x, _ in run.batches():
            h, w = x.shape[-2:]
            captured.clear()
            run.logits(x)
            clean = {k: v.detach().float() for k, v in captured.items()}
            for name, _ in chosen:
                if name not in clean:
                    raise ValueError(f"layer {name!r} did not run in the forward pass")
                fh, fw = clean[name].shape[-2:]
                if h % fh or w % fw or h // fh != w // fw:
                    log.warning(
                        "layer %s: feature %sx%s does not divide input %sx%s evenly", name, fh, fw, h, w
                    )
                strides[name] = h / fh
            if not used_shifts:
                used_shifts = (
                    [int(s) for s in shifts]
                    if shifts is not None
                    else sorted({1, int(round(max(strides.values())))})
                )
                for s in used_shifts:
                    _positive_int(s, "shift")
            for d in used_shifts:
                captured.clear()
                run.logits(torch.roll(x, shifts=(d, d), dims=(-2, -1)))
                for name, _ in chosen:
                    f0, f1 = clean[name], captured[name].detach().float()
                    r = strides[name]
                    q = d / r
                    target = (
                        torch.roll(f0, shifts=(int(round(q)), int(round(q))), dims=(-2, -1))
                        if abs(q - round(q)) < 1e-9
                        else _fourier_shift(f0, q, q)
                    )
                    num = (f1 - target).flatten(1).norm(dim=1)
                    den = f0.flatten(1).norm(dim=1).clamp_min(1e-12)
                    errors.setdefault((d, name), []).append((num / den).cpu().numpy().astype(np.float64))
    finally:
        for hnd in handles:
            hnd.remove()
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for d in used_shifts:
        for name, _ in chosen:
            v = np.concatenate(errors[(d, name)])
            r = strides[name]
            aligned = abs(d / r - round(d / r)) < 1e-9
            how = "integer roll" if aligned else "Fourier (band-limited) fractional shift"
            arrays[f"err_d{d}__{name}"] = v
            rows.append(
                run.row(
                    "shift",
                    "equivariance",
                    d,
                    f"equivariance_error:{name}",
                    v,
                    len(v),
                    f"feature shift-equivariance at {name} ({type(named[name]).__name__}, cumulative stride "
                    f"{r:g}): ||f(roll(x,{d}))-shift(f(x),{d}/{r:g})||/||f(x)||, circular diagonal input shift "
                    f"{d} px, {how} at the layer; mean over images, CI over images",
                )
            )
    return arrays, rows


# ====================================================================================================== reconstruction
def psnr(x: Tensor, y: Tensor, data_range: Tensor | float = 1.0) -> Tensor:
    """Per-image PSNR in dB of reconstruction ``y`` against ``x`` (N, ...), ``10 log10(range^2 / MSE)``.

    MSE is floored at 1e-30 x range^2 so an exact reconstruction gives a finite 300 dB.
    """
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(r**2 / torch.maximum(mse, 1e-30 * r**2))


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: Tensor, y: Tensor, data_range: Tensor | float = 1.0, *, win_size: int = 11, sigma: float = 1.5
) -> Tensor:
    """Per-image SSIM (Wang et al. 2004) of ``y`` against ``x``, (N, C, H, W) -> (N,).

    Gaussian window (11 taps, sigma 1.5), K1 = 0.01, K2 = 0.03, population covariances, statistics only where the
    window fits (no padding), averaged over positions and channels. Equals scikit-image's
    ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``. The window shrinks to the
    largest odd size that fits images smaller than 11 px.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim needs two (N, C, H, W) tensors of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    win = min(win_size, min(x.shape[-2:]))
    win -= 1 - win % 2
    g = _gaussian_window(win, sigma, x.device)
    c = x.shape[1]
    kh = g.view(1, 1, -1, 1).expand(c, 1, win, 1)
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, win)

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    a, b = x.double(), y.double()
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


def _lift_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    from .lift import LiftDownPool2d, LiftUpPool2d

    down = LiftDownPool2d(channels)
    g = torch_generator(seed, "reconstruction", "lift", channels)
    with torch.no_grad():
        # random, non-zero P and U, so the exact inverse is not the trivial polyphase one
        for p in down.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    down = down.to(device).eval()
    up = LiftUpPool2d(down)

    def run(x: Tensor) -> Tensor:
        _, details = down(x, return_details=True)
        return up(details.ll, details)

    return run


def _max_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        y, idx = F.max_pool2d(x, 2, 2, return_indices=True)
        return F.max_unpool2d(y, idx, 2, 2, output_size=x.shape[-2:])

    return run


def _avg_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        return F.interpolate(F.avg_pool2d(x, 2, 2), size=x.shape[-2:], mode="nearest")

    return run


def _blur_pair(channels: int, seed: int, device: torch.device) -> Callable[[Tensor], Tensor]:
    from .blur import BlurPool2d

    pool = BlurPool2d(channels).to(device)

    def run(x: Tensor) -> Tensor:
        return F.interpolate(pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)

    return run


#: name -> (builder(channels, seed, device) -> reconstruct(x), description)
RECONSTRUCTION_PAIRS: dict[
    str, tuple[Callable[[int, int, torch.device], Callable[[Tensor], Tensor]], str]
] = {
    "lift": (
        _lift_pair,
        "LiftDownPool2d (K=5, random P/U) -> LiftUpPool2d with the LL band and its detail bands",
    ),
    "max": (_max_pair, "MaxPool2d(2) with indices -> MaxUnpool2d (zeros off the argmax)"),
    "avg": (_avg_pair, "AvgPool2d(2) -> nearest 2x upsampling"),
    "blur": (_blur_pair, "BlurPool2d (binomial [1,2,1], reflect) -> bilinear 2x upsampling"),
}


def _feature_extractor(model: nn.Module, features: str, channels: int, seed: int, device: torch.device):
    if features == "model":
        first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        if first is not None:
            conv = first[1]

            def first_conv(x: Tensor) -> Tensor:
                return F.relu(conv(x))

            return f"ReLU of the model's first conv ({first[0]})", first_conv
        log.warning("the model has no nn.Conv2d; reconstruction probe uses random-conv features")
    g = torch_generator(seed, "reconstruction", "random-conv", channels)
    weight = (torch.randn(16, channels, 3, 3, generator=g) * math.sqrt(2.0 / (9 * channels))).to(device)
    return "ReLU of a seeded random 3x3 conv (16 channels, He init)", lambda x: F.relu(
        F.conv2d(x, weight, padding=1)
    )


@PROBES.register("reconstruction", suite="reconstruction")
def _reconstruction(run: ProbeRun, *, pairs: Sequence[str] | None = None, features: str | None = "model"):
    """Pool then unpool real images and feature maps; PSNR and SSIM of the reconstruction.

    Args:
        pairs: down/up pairs (default all of :data:`RECONSTRUCTION_PAIRS`: lift, max, avg, blur).
        features: ``"model"`` (ReLU of the model's first conv, on normalised input), ``"random"`` (a seeded random
            conv) or None (images only). Image metrics use data range 1; feature metrics use each map's own
            (max - min) as data range.
    """
    names = list(pairs) if pairs is not None else list(RECONSTRUCTION_PAIRS)
    unknown = [p for p in names if p not in RECONSTRUCTION_PAIRS]
    if unknown:
        raise ValueError(
            f"unknown reconstruction pair(s) {unknown}; valid: {', '.join(RECONSTRUCTION_PAIRS)}"
        )
    kinds = ("model", "random", None)
    if features not in kinds:
        raise ValueError(f"features must be one of {kinds}, got {features!r}")
    built: dict[tuple[str, int], Callable[[Tensor], Tensor]] = {}
    metrics: dict[tuple[str, str], list[np.ndarray]] = {}
    feat_desc = ""
    extractor = None
    for _, x, _ in run.batches():
        h, w = x.shape[-2:]
        x = x[..., : h - h % 2, : w - w % 2]
        inputs = [("", x, torch.ones(x.shape[0], device=x.device, dtype=torch.float64))]
        if features is not None:
            if extractor is None:
                feat_desc, extractor = _feature_extractor(
                    run.model, features, x.shape[1], run.seed, run.device
                )
            with torch.no_grad():
                f = extractor(run.pipe.normalize(x)).float()
            f = f[..., : f.shape[-2] - f.shape[-2] % 2, : f.shape[-1] - f.shape[-1] % 2]
            rng = (f.flatten(1).amax(1) - f.flatten(1).amin(1)).double().clamp_min(1e-12)
            inputs.append(("feature_", f, rng))
        for prefix, t, data_range in inputs:
            for p in names:
                key = (p, t.shape[1])
                if key not in built:
                    built[key] = RECONSTRUCTION_PAIRS[p][0](t.shape[1], run.seed, run.device)
                with torch.no_grad():
                    rec = built[key](t)
                metrics.setdefault((p, prefix + "psnr"), []).append(psnr(t, rec, data_range).cpu().numpy())
                metrics.setdefault((p, prefix + "ssim"), []).append(ssim(t, rec, data_range).cpu().numpy())
                metrics.setdefault((p, prefix + "max_abs_error"), []).append(
                    (t.double() - rec.double()).abs().flatten(1).amax(1).cpu().numpy()
                )
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for p in names:
        for prefix, what in (
            ("", "images in [0, 1] (data range 1)"),
            ("feature_", f"{feat_desc} (data range: each map's max - min)"),
        ):
            if (p, prefix + "psnr") not in metrics:
                continue
            for m in ("psnr", "ssim", "max_abs_error"):
                v = np.concatenate(metrics[(p, prefix + m)])
                arrays[f"{p}__{prefix}{m}"] = v
                if m == "max_abs_error":
                    continue
                unit = (
                    "PSNR in dB"
                    if m == "psnr"
                    else "SSIM (torch, gaussian window 11, sigma 1.5, K1 .01, K2 .03)"
                )
                rows.append(
                    run.row(
                        "reconstruction",
                        p,
                        0,
                        prefix + m,
                        v,
                        len(v),
                        f"{unit} of pool -> unpool, {RECONSTRUCTION_PAIRS[p][1]}; on {what}; mean over images",
                    )
                )
    return arrays, rows


# ====================================================================================================== evaluator
#: Probe suites the evaluator accepts (``--suite shift`` / ``--suite reconstruction``) and their probes.
PROBE_SUITES: dict[str, tuple[str, ...]] = {
    "shift": ("crop", "circular", "diagonal", "equivariance"),
    "reconstruction": ("reconstruction",),
}


def _kind_accepts(value: Any) -> bool:
    return isinstance(value, str) and value in PROBE_SUITES


def _kind_resolve(value: Any, dataset: Any) -> tuple[str, Any, dict[str, Any]]:
    return value, value, {"probes": list(PROBE_SUITES[value])}


def _kind_plan(name: str, suite: Any, opts: Any) -> list[Any]:
    from .evaluate import CellSpec

    available = PROBE_SUITES[name]
    chosen = [c for c in opts.corruptions if c in available] if opts.corruptions else list(available)
    if opts.corruptions and not chosen:
        raise ValueError(
            f"none of {list(opts.corruptions)} is a probe of suite {name!r}; valid: {', '.join(available)}"
        )
    if getattr(opts, "pregenerated", False):
        raise ValueError(f"probe suite {name!r} needs a clean image dataset, not a pre-generated set")
    return [
        CellSpec(
            model=m.name, suite=name, corruption=c, severity=0, kind="probe", seed=opts.seed, limit=opts.limit
        )
        for m in opts.models
        for c in chosen
    ]


def _kind_run(spec: Any, ctx: Any, progress: Callable[[int], None] | None) -> Any:
    from .evaluate import CellResult

    entry = ctx.models[spec.model]
    data = ctx.dataset_for(entry)
    arrays, rows, values = run_probe(
        spec.corruption,
        entry.model,
        data,
        limit=spec.limit,
        batch_size=ctx.batch_size,
        device=ctx.device,
        seed=spec.seed,
        preprocess=entry.preprocess(channels=getattr(data, "channels", None)),
        n_boot=0,
        return_row_values=True,
    )
    if progress is not None:
        progress(len(arrays["ids"]))
    stored = {f"rowvalues__{i}": v for i, v in enumerate(values)}
    stored.update({f"probe__{k}": np.asarray(v) for k, v in arrays.items()})
    keep = ("suite", "corruption", "severity", "metric", "value", "n", "protocol")
    return CellResult(
        arrays=stored, info={"n": len(arrays["ids"]), "rows": [{k: r[k] for k in keep} for r in rows]}
    )


def _kind_aggregate(name: str, params: Any, data: Any) -> list[dict[str, Any]]:
    from .metrics import bootstrap_ci

    rows: list[dict[str, Any]] = []
    for model in data.model_order:
        entry = data.models.get(model, {})
        for _, (spec, arrays, info) in sorted(data.cells.get(model, {}).items()):
            if spec.get("kind") != "probe" or spec.get("suite") != name:
                continue
            for i, r in enumerate(info.get("rows", [])):
                v = np.asarray(arrays.get(f"rowvalues__{i}", []), dtype=np.float64)
                lo = hi = math.nan
                if data.n_boot > 0 and len(v) >= 2 and np.isfinite(v).all():
                    res = bootstrap_ci(_identity_stat, v, n_boot=data.n_boot, seed=data.seed)
                    lo, hi = res.low, res.high
                row = {
                    "model": model,
                    "pooling": entry.get("pooling", "unknown"),
                    "arch": entry.get("arch", "unknown"),
                    **r,
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                }
                rows.append({c: row[c] for c in RESULT_COLUMNS})
    return rows


def _register_suite_kind() -> None:
    from .evaluate import SUITE_KINDS, SuiteKind, register_suite_kind

    if "probe" in SUITE_KINDS:
        return
    register_suite_kind(
        SuiteKind(
            name="probe",
            accepts=_kind_accepts,
            resolve=_kind_resolve,
            plan=_kind_plan,
            run=_kind_run,
            aggregate=_kind_aggregate,
            cell_kinds=("probe",),
            needs_clean=False,
        )
    )


_register_suite_kind()
