"""The adversarial suite kind: ``--suite pgd-linf`` / ``pgd-l2`` / ``autoattack-linf`` / ``autoattack-l2``.

Each eps is one cell per model (``CellSpec.corruption`` = a file-safe token of the eps as given, the text itself in
``CellSpec.options``), so a run resumes per eps and new eps values add cells. A cell stores, per image, whether the
model is wrong on the clean image or on the attacked one (``wrong``; robust error is the mean), the attacked
image's top-1, the labels and sample ids, and the norm of the loss gradient w.r.t. the clean input (the gradient
check). Attacks run through the model's whole input pipeline - channel conversion outside, then resize and
normalisation inside the differentiated function - with the model in eval mode, in float32.

Rows: suite = the attack, corruption = ``eps=<value as given>``, severity 0, metric ``top1_error`` (with a bootstrap
CI over images), and ``top1_error_diff`` against the run's baseline model (paired bootstrap).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from corruptions.rng import derive_seed, torch_generator

from ...attacks import (
    ADVERSARIAL_SUITES,
    AdversarialSuite,
    adversarial_suite,
    eps_token,
    parse_eps,
    pgd_attack,
    suite_from_params,
)
from ...attacks.pgd import loss_and_grad
from ...data.loader import iter_batches, select_indices
from ...data.transforms import match_channels, resize_to, to_float
from ...metrics.bootstrap import Resampler, mean_ci, paired_bootstrap_diff
from ...schema import CLEAN, Protocol, result_row
from ..cells import CellResult, CellSpec
from ..models import prepare_model
from ..suite_kinds import AggregateInput, PlanOptions, SuiteKind, register_suite_kind

log = logging.getLogger(__name__)

#: Fraction of images with a zero (or non-finite) input gradient above which a model is flagged.
MASKED_GRADIENT_FRACTION = 0.5


def _accepts(value: Any) -> bool:
    return isinstance(value, AdversarialSuite) or (isinstance(value, str) and value in ADVERSARIAL_SUITES)


def _resolve(value: Any, dataset: Any) -> tuple[str, Any, dict[str, Any]]:
    suite = value if isinstance(value, AdversarialSuite) else adversarial_suite(value)
    return suite.name, suite, suite.params()


def _plan(name: str, suite: AdversarialSuite, opts: PlanOptions) -> list[CellSpec]:
    if opts.pregenerated:
        raise ValueError(f"adversarial suite {name!r} needs a clean image dataset, not a pre-generated set")
    return [
        CellSpec(
            model=m.name,
            suite=name,
            corruption=eps_token(text),
            severity=0,
            kind="adversarial",
            seed=opts.seed,
            limit=opts.limit,
            options=(("eps", text),),
        )
        for m in opts.models
        for text in suite.eps
    ]


def _pipeline(entry: Any, model: torch.nn.Module, device: torch.device):
    pre = entry.preprocess(channels=None)
    size = tuple(pre.input_size) if pre.input_size is not None else None
    normalize = pre.normalizer(device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if size is not None and tuple(x.shape[-2:]) != size:
            x = resize_to(x, size)
        if normalize is not None:
            x = normalize(x)
        return model(x)

    return pre, forward


def _run(spec: CellSpec, ctx: Any, progress: Callable[[int], None] | None) -> CellResult:
    entry = ctx.models[spec.model]
    data = ctx.dataset_for(entry)
    suite: AdversarialSuite = ctx.suites[spec.suite]
    eps_text = dict(spec.options)["eps"]
    eps = parse_eps(eps_text)
    device = torch.device(ctx.device)
    model = prepare_model(entry.model, device)
    indices = select_indices(len(data), spec.limit, spec.seed)
    n = len(indices)
    ids = np.fromiter((data.sample_id(int(i)) for i in indices), dtype=np.int64, count=n)
    id_of = dict(zip(indices.tolist(), ids.tolist()))
    wrong = np.zeros(n, dtype=bool)
    pred = np.zeros(n, dtype=np.int32)
    labels_out = np.zeros(n, dtype=np.int32)
    grad_norm = np.zeros(n, dtype=np.float32)
    batch = ctx.batch_size
    if suite.method == "autoattack":
        from ...attacks.autoattack import CHUNK

        batch = CHUNK
    start = time.perf_counter()
    pos = 0
    forward = None
    channels = None
    for idx, images, labels in iter_batches(data, indices, batch, workers=ctx.workers):
        if forward is None:
            pre, forward = _pipeline(entry, model, device)
            channels = pre.channels
        x = match_channels(to_float(images.to(device)), channels)
        y = labels.to(device=device, dtype=torch.long)
        batch_ids = [id_of[int(i)] for i in idx]
        if suite.method == "pgd":
            gens = [
                [torch_generator(spec.seed, sid, spec.suite, eps_text, r) for sid in batch_ids]
                for r in range(suite.restarts)
            ]
            res = pgd_attack(
                forward,
                x,
                y,
                eps=eps,
                norm=suite.norm,
                steps=suite.steps,
                step_size=suite.step_size,
                restarts=suite.restarts,
                generators=gens,
            )
            adv, broken, gnorm = res.adv, res.broken, res.grad_norm
        else:
            from ...attacks.autoattack import run_autoattack

            logits0, grad0 = loss_and_grad(forward, x, y)
            gnorm = grad0.flatten(1).norm(dim=1)
            adv = run_autoattack(
                forward,
                model,
                x,
                y,
                eps=eps,
                norm=suite.norm,
                num_classes=int(entry.num_classes or logits0.shape[1]),
                seed=derive_seed(spec.seed, "autoattack", spec.suite, eps_text, batch_ids[0]),
                version=suite.version,
            )
            broken = logits0.argmax(1) != y
        with torch.no_grad():
            adv_pred = forward(adv).argmax(1)
        b = len(idx)
        wrong[pos : pos + b] = (broken | (adv_pred != y)).cpu().numpy()
        pred[pos : pos + b] = adv_pred.cpu().numpy()
        labels_out[pos : pos + b] = labels.numpy()
        grad_norm[pos : pos + b] = gnorm.float().cpu().numpy()
        pos += b
        if progress is not None:
            progress(b)
    if pos == 0:
        raise ValueError(f"cell {spec.key}: the dataset has no images")
    vanished = ~np.isfinite(grad_norm) | (grad_norm == 0)
    info = {
        "n": n,
        "top1_errors": int(wrong.sum()),
        "eps": eps_text,
        "zero_gradients": int(vanished.sum()),
        "seconds": round(time.perf_counter() - start, 4),
        "device": str(device),
    }
    if n and vanished.mean() >= MASKED_GRADIENT_FRACTION:
        log.warning(
            "model %r: the loss gradient w.r.t. the input is zero or not finite for %d of %d images (%s, eps=%s): "
            "gradients may be masked, so its robust accuracy is likely overestimated",
            spec.model,
            int(vanished.sum()),
            n,
            spec.suite,
            eps_text,
        )
    arrays = {"wrong": wrong, "pred": pred, "labels": labels_out, "ids": ids, "grad_norm": grad_norm}
    return CellResult(arrays=arrays, info=info)


def gradient_note(info: dict[str, Any]) -> str:
    """The protocol suffix of a cell whose gradient check failed ("" when it passed)."""
    n, zero = int(info.get("n", 0)), int(info.get("zero_gradients", 0))
    if n and zero / n >= MASKED_GRADIENT_FRACTION:
        return (
            f"; WARNING: zero input gradient for {zero}/{n} images (masked gradients?): robust accuracy likely "
            "overestimated"
        )
    return ""


def _aggregate(name: str, params: dict[str, Any], data: AggregateInput) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    suite = suite_from_params(name, params)
    per_model: dict[str, dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]] = {}
    clean: dict[str, dict[str, np.ndarray]] = {}
    for model in data.model_order:
        for _, (spec, arrays, info) in data.cells.get(model, {}).items():
            if spec.get("kind") == "adversarial" and spec.get("suite") == name:
                per_model.setdefault(model, {})[spec["corruption"]] = (spec, arrays, info)
            elif spec.get("kind") == "clean":
                clean[model] = arrays

    def eps_key(token: str, cell: tuple[dict[str, Any], Any, Any]) -> tuple[float, int, str]:
        text = dict(map(tuple, cell[0].get("options", []))).get("eps", "0")
        return (parse_eps(text), 0, token)

    base_cells = per_model.get(data.baseline or "", {})
    for model in data.model_order:
        cells = per_model.get(model, {})
        info_m = {"model": model, **data.models.get(model, {})}
        if model in clean and cells:
            arr = clean[model]
            w0 = (np.asarray(arr["top5"])[:, 0] != np.asarray(arr["labels"])).astype(np.float64)
            ci = mean_ci(w0, n_boot=data.n_boot, seed=data.seed)
            rows.append(
                result_row(
                    info_m, name, CLEAN, 0, "top1_error", float(w0.mean()), ci, len(w0), Protocol.TOP1_ERROR
                )
            )
        for token, cell in sorted(cells.items(), key=lambda kv: eps_key(*kv)):
            spec, arrays, info = cell
            text = dict(map(tuple, spec.get("options", []))).get("eps", "0")
            w = np.asarray(arrays["wrong"], dtype=np.float64)
            protocol = suite.protocol(text, params) + gradient_note(info)
            label = f"eps={text}"
            ci = mean_ci(w, n_boot=data.n_boot, seed=data.seed)
            rows.append(
                result_row(info_m, name, label, 0, "top1_error", float(w.mean()), ci, len(w), protocol)
            )
            if data.vectors is not None and data.n_boot > 0 and len(w):
                # the same resamples as mean_ci's, paired across models: the seed-aware statistics use them
                vec = Resampler(len(w), data.n_boot, data.seed).vectors(w[None])[0]
                data.vectors[(model, name, label, 0, "top1_error")] = (vec, protocol, len(w))
            base = base_cells.get(token)
            if model == data.baseline or base is None or data.n_boot <= 0:
                continue
            ids_a, ids_b = np.asarray(arrays["ids"]), np.asarray(base[1]["ids"])
            if ids_a.shape != ids_b.shape or not np.array_equal(ids_a, ids_b):
                continue
            wb = np.asarray(base[1]["wrong"], dtype=np.float64)
            res = paired_bootstrap_diff(_identity, w, wb, n_boot=data.n_boot, seed=data.seed)
            rows.append(
                result_row(
                    info_m,
                    name,
                    label,
                    0,
                    "top1_error_diff",
                    res.estimate,
                    (res.low, res.high),
                    len(w),
                    f"paired difference to baseline {data.baseline!r} (same images, same attack draws); "
                    + protocol,
                )
            )
    return rows


register_suite_kind(
    SuiteKind(
        name="adversarial",
        accepts=_accepts,
        names=lambda: list(ADVERSARIAL_SUITES),
        resolve=_resolve,
        plan=_plan,
        run=_run,
        aggregate=_aggregate,
        cell_kinds=("adversarial",),
        needs_clean=True,
    )
)


def _identity(x: np.ndarray) -> np.ndarray:
    return x
