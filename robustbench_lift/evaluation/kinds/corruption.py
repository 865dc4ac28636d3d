"""The corruption suite kind: ImageNet-C / CIFAR-10-C style suites, corrupted on the fly or read pre-generated.

Aggregates (clean error, mean corruption error, CE / mCE, relative mCE, paired differences to a baseline, with
bootstrap CIs) are always recomputed from the stored cells, never during inference, so a resumed run gives exactly
the table of an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corruptions.registry import suggest
from corruptions.suites import BENCHMARK, HELD_OUT, Suite, list_suites, load_suite, resolve_suite

from ...data import PregeneratedSet, Preprocess, list_datasets
from ...metrics import corruption as metrics
from ...metrics.bootstrap import Resampler, dropped_note, interval, ratio_or_nan
from ...schema import ALL_SEVERITIES, CLEAN, Protocol, result_row
from ...store import validate_key_part
from ..cells import CellResult, CellSpec
from ..runner import EvalContext, run_cells, share_key
from ..suite_kinds import AggregateInput, PlanOptions, SuiteKind, register_suite_kind

log = logging.getLogger(__name__)

#: The suite whose parameters and whose on-the-fly pipeline are those of the published ImageNet-C generator.
IMAGENET_C = "imagenet-c"
#: Quality of the JPEG files the published ImageNet-C images were stored as (docs/metrics.md, "Normalisers").
STORAGE_JPEG_QUALITY = 85
#: ``CellSpec.options`` entry of an on-the-fly cell whose corrupted images go through that JPEG storage step.
JPEG_STORAGE_OPTION = ("storage", f"jpeg{STORAGE_JPEG_QUALITY}")
#: Input size of the published pipeline (Resize 256 -> CenterCrop 224).
IMAGENET_INPUT = (224, 224)
_WNID = re.compile(r"^n\d{8}$")


def _imagenet_reason(dataset: Any) -> str | None:
    """Why ``dataset`` is not 1000-class ImageNet data (None when it is: 1000 WordNet-id class folders)."""
    n = getattr(dataset, "num_classes", None)
    if n != 1000:
        return f"the data has {n} classes, not ImageNet's 1000"
    names = [str(c) for c in getattr(dataset, "class_names", None) or ()]
    if len(names) != 1000 or not all(_WNID.match(c) for c in names):
        return "the 1000 class folders are not ImageNet's WordNet ids (n########)"
    return None


def _reference_params(dataset: Any) -> dict[str, Any]:
    """Parameters of an ``imagenet-c`` suite saying whether its data can be divided by the published AlexNet
    errors (the pipeline and the model's input size are checked per cell when aggregating)."""
    if isinstance(dataset, PregeneratedSet) or getattr(dataset, "name", None) == "imagefolder":
        reason = _imagenet_reason(dataset)
    else:
        reason = (
            f"the data is {getattr(dataset, 'name', type(dataset).__name__)}, not an ImageNet image folder"
        )
    return {"alexnet": reason is None, "why": reason or ""}


def _corruption_accepts(value: Any) -> bool:
    if isinstance(value, (Suite, Mapping)):
        return True
    if isinstance(value, str):
        # pre-generated -C sets (cifar100-c, ...) are their own suite even without a parameter table
        return value in list_suites() or value in list_datasets("corruptions") or value.endswith(".json")
    return False


def _corruption_resolve(value: Any, dataset: Any) -> tuple[str, Any, dict[str, Any]]:
    if isinstance(dataset, PregeneratedSet):
        name = value if isinstance(value, str) else getattr(value, "name", str(value))
        if name != dataset.name:
            raise ValueError(
                f"dataset {dataset.name!r} is pre-generated: its suite is {dataset.name!r}, not {name!r} "
                f"(pass --suite {dataset.name} or leave --suite out)"
            )
        params = {
            "pregenerated": True,
            "root": str(Path(dataset.root).resolve()),
            "corruptions": list(dataset.corruptions),
            "severities": list(dataset.severities),
        }
        if name == IMAGENET_C:
            params["reference"] = _reference_params(dataset)
        suite = Suite(
            name=name,
            native_size=0,
            params={},
            benchmark=BENCHMARK,
            held_out=HELD_OUT,
            description="pre-generated",
        )
        return name, suite, params
    if isinstance(value, str) and value.endswith(".json") and value not in list_suites():
        suite = load_suite(value)
    else:
        suite = resolve_suite(value)
    validate_key_part(suite.name, "suite name")
    params = suite.to_dict()
    if suite.name == IMAGENET_C:
        params["reference"] = _reference_params(dataset)
    return suite.name, suite, params


def _corruption_plan(name: str, suite: Any, opts: PlanOptions) -> list[CellSpec]:
    if opts.pregenerated:
        native = getattr(opts.dataset, "image_size", None)
        if opts.dataset.name == "imagenet-c" and native is not None:
            wrong = [
                m.name
                for m in opts.models
                if m.input_size is not None and tuple(m.input_size) != tuple(native)
            ]
            if wrong:
                raise ValueError(
                    f"models {wrong} expect another input size than the {native[0]}x{native[1]} pre-generated "
                    "ImageNet-C images, which are never resized again; override with --input-size if the model "
                    "accepts them"
                )
        available = list(opts.dataset.corruptions)
        sev_available = list(opts.dataset.severities)
        cell_kind = "pregenerated"
    else:
        available = list(suite.corruptions)
        sev_available = [1, 2, 3, 4, 5]
        cell_kind = "corruption"
    # the published ImageNet-C images went through a JPEG file: on-the-fly imagenet-c cells do too (unless turned off)
    storage = (
        (JPEG_STORAGE_OPTION,)
        if cell_kind == "corruption" and name == IMAGENET_C and opts.jpeg_storage
        else ()
    )
    # --corruptions may name entries of other suites of the run: keep this suite's (``_plan`` checks that every
    # requested name was used by some suite)
    chosen = [c for c in opts.corruptions if c in available] if opts.corruptions else available
    if not chosen:
        raise ValueError(
            f"suite {name!r} has no corruption(s) {list(opts.corruptions or [])}; valid: {', '.join(available)}"
            + suggest(opts.corruptions or [], available)
        )
    sevs = list(opts.severities) if opts.severities else sev_available
    bad = [s for s in sevs if s not in sev_available]
    if bad:
        raise ValueError(f"severities {bad} are not available in suite {name!r}; valid: {sev_available}")
    return [
        CellSpec(
            model=m.name,
            suite=name,
            corruption=c,
            severity=int(s),
            kind=cell_kind,
            seed=opts.seed,
            limit=opts.limit,
            backend=opts.backend if cell_kind == "corruption" else None,
            options=storage,
        )
        for m in opts.models
        for c in chosen
        for s in sevs
    ]


def _classification_inputs(spec: CellSpec, ctx: EvalContext) -> tuple[Any, Preprocess]:
    """The data a classification cell reads and the model's preprocessing for it."""
    entry = ctx.models[spec.model]
    data = ctx.dataset_for(entry, clean=spec.kind == "clean")
    pregen_imagenet = (
        ctx.pregenerated
        and spec.kind == "pregenerated"
        and getattr(ctx.dataset, "name", "") == ("imagenet-c")
    )
    channels = getattr(data, "channels", None)
    return data, entry.preprocess(resize=not pregen_imagenet, channels=channels)


def _classification_run(
    spec: CellSpec, ctx: EvalContext, progress: Callable[[int], None] | None
) -> CellResult:
    (result,) = _classification_run_group([spec], ctx, progress)
    return result


def _classification_share(spec: CellSpec, ctx: EvalContext) -> tuple[Any, ...]:
    data, pre = _classification_inputs(spec, ctx)
    return (id(data), *share_key(spec, pre))


def _classification_run_group(
    specs: list[CellSpec], ctx: EvalContext, progress: Callable[[int], None] | None
) -> list[CellResult]:
    """Cells that differ only in the model, on one stream of (corrupted) batches."""
    inputs = [_classification_inputs(spec, ctx) for spec in specs]
    return run_cells(
        [(spec, ctx.models[spec.model].model, pre) for spec, (_, pre) in zip(specs, inputs)],
        inputs[0][0],
        device=ctx.device,
        batch_size=ctx.batch_size,
        workers=ctx.workers,
        amp=ctx.amp,
        channels_last=ctx.channels_last,
        suite=ctx.suites.get(specs[0].suite),
        progress=progress,
    )


#: Rows of a model of a suite compared with the baseline (paired) as ``<metric>_diff``.
DIFF_METRICS: tuple[tuple[str, str], ...] = (
    (CLEAN, "top1_error"),
    ("benchmark", "mean_corruption_error"),
    ("benchmark", "mce"),
    ("benchmark", "relative_mce"),
    ("held_out", "mean_corruption_error"),
    ("held_out", "mce"),
)


def _order_key(c: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(c), c) if c in order else (len(order), c)


def aggregate_corruption_suite(
    name: str, params: Mapping[str, Any], data: AggregateInput
) -> list[dict[str, Any]]:
    """Result rows of one corruption suite, recomputed from its stored cells.

    Rows (docs/DESIGN.md, "Results table"): clean and per-cell top-1 / top-5 errors; per corruption the mean error
    over severities, CE and relative CE; for the benchmark and held-out groups the unnormalised mean corruption
    error, mCE and relative mCE; and ``<metric>_diff`` rows, each model minus the baseline. CE is AlexNet-normalised
    for the benchmark corruptions of ``imagenet-c`` cells made under the published pipeline (:func:`_alexnet_reason`),
    otherwise normalised by the baseline model (= 100) and the benchmark mCE's protocol says why; severities are
    those both sides have. 95 % percentile bootstrap CIs over images, one resample set for all models, so the
    differences are paired. When only some corruptions were evaluated the protocol says over how many.
    """
    benchmark = tuple(params.get("benchmark") or metrics.BENCHMARK_CORRUPTIONS)
    held_out = tuple(params.get("held_out") or metrics.HELD_OUT_CORRUPTIONS)
    order = list(benchmark) + [c for c in held_out if c not in benchmark]

    # which stored cells belong to this suite
    found: dict[str, dict[Any, str]] = {}
    for model in data.model_order:
        mine: dict[Any, str] = {}
        for key, (spec, _, _) in data.cells.get(model, {}).items():
            if spec.get("kind") == "clean":
                mine[CLEAN] = key
            elif spec.get("suite") == name and spec.get("kind") in ("corruption", "pregenerated"):
                mine[(spec["corruption"], int(spec["severity"]))] = key
        if any(k != CLEAN for k in mine):
            found[model] = mine
    if not found:
        return []
    common: np.ndarray | None = None
    sizes = set()
    for model, mine in found.items():
        for key in mine.values():
            ids = data.cells[model][key][1]["ids"]
            sizes.add(len(ids))
            common = ids if common is None else np.intersect1d(common, ids)
    assert common is not None
    n = len(common)
    if n == 0:
        raise ValueError(f"suite {name!r}: the stored cells share no images; re-run with --new-run")
    if max(sizes) != n:
        log.warning(
            "suite %s: cells cover different images; metrics use the %d images all of them share", name, n
        )

    # one row per (model, cell, top-1 | top-5) of per-image mistakes, resampled together
    index: dict[tuple[str, Any, int], int] = {}
    rows: list[np.ndarray] = []
    for model, mine in found.items():
        for what, key in mine.items():
            arrays = data.cells[model][key][1]
            pos = _positions(arrays["ids"], common)
            top5, labels = arrays["top5"][pos], arrays["labels"][pos]
            for k, mistakes in (
                (1, metrics.top1_mistakes(top5, labels)),
                (5, metrics.topk_mistakes(top5, labels)),
            ):
                index[(model, what, k)] = len(rows)
                rows.append(mistakes)
    vec = Resampler(n, data.n_boot, data.seed, name).vectors(np.stack(rows))

    def E(model: str, what: Any, k: int = 1) -> np.ndarray:
        return vec[index[(model, what, k)]]

    baseline = data.baseline if data.baseline in found else None
    if data.baseline is not None and baseline is None:
        log.warning(
            "suite %s: baseline model %r has no cells here; no baseline-normalised CE", name, data.baseline
        )
    out: list[dict[str, Any]] = []
    stats: dict[str, dict[tuple[str, str], tuple[np.ndarray, str]]] = {}

    def add(model: str, corruption: str, severity: int, metric: str, v: np.ndarray, protocol: str) -> None:
        value, lo, hi = interval(v)
        info = {"model": model, **data.models.get(model, {})}
        row_protocol = protocol + dropped_note(v)
        out.append(result_row(info, name, corruption, severity, metric, value, (lo, hi), n, row_protocol))
        stats.setdefault(model, {})[(corruption, metric)] = (v, protocol)
        if data.vectors is not None and severity == ALL_SEVERITIES and not metric.endswith("_diff"):
            data.vectors[(model, name, corruption, severity, metric)] = (v, protocol, n)

    for model, mine in found.items():
        no_alexnet = _alexnet_reason(name, params, model, mine, data)
        if CLEAN in mine:
            add(model, CLEAN, ALL_SEVERITIES, "top1_error", E(model, CLEAN, 1), Protocol.TOP1_ERROR)
            add(model, CLEAN, ALL_SEVERITIES, "top5_error", E(model, CLEAN, 5), Protocol.TOP5_ERROR)
        cells = sorted((k for k in mine if k != CLEAN), key=lambda cs: (_order_key(cs[0], order), cs[1]))
        for c, s in cells:
            add(model, c, s, "top1_error", E(model, (c, s), 1), Protocol.TOP1_ERROR)
            add(model, c, s, "top5_error", E(model, (c, s), 5), Protocol.TOP5_ERROR)
        corrs = list(dict.fromkeys(c for c, _ in cells))
        ce_of: dict[str, tuple[np.ndarray, str]] = {}
        rce_of: dict[str, tuple[np.ndarray, str]] = {}
        undefined: dict[str, list[str]] = {}
        for c in corrs:
            sevs = [s for cc, s in cells if cc == c]
            table = np.stack([E(model, (c, s)) for s in sevs])  # (S, 1 + B)
            add(
                model,
                c,
                ALL_SEVERITIES,
                "mean_error",
                table.mean(axis=0),
                f"mean top-1 error over severities {sevs}",
            )
            # A ratio whose point estimate is undefined (the normaliser's denominator is zero or, for relative
            # CE, the normaliser's error does not grow) gets no row, and the means below leave it out by name.
            for metric, relative, store in (("ce", False, ce_of), ("relative_ce", True, rce_of)):
                res = _corruption_ce(
                    model, c, sevs, mine, found, baseline, E, no_alexnet is None, relative=relative
                )
                if res is None:
                    continue
                v, norm, used = res
                if not math.isfinite(float(v[0])):
                    undefined.setdefault(metric, []).append(c)
                    continue
                label = "CE" if metric == "ce" else "relative CE"
                add(model, c, ALL_SEVERITIES, metric, v, f"{label}, {norm}{_sev_note(used, sevs)}")
                store[c] = (v, norm)
        for scope, group in (("benchmark", benchmark), ("held_out", held_out)):
            members = [c for c in corrs if c in group]
            if not members:
                continue
            label = scope.replace("_", "-")
            part = (
                f" (over {len(members)} of {len(group)} {label} corruptions)"
                if len(members) < len(group)
                else ""
            )
            table = np.stack([E(model, (c, s)) for c, s in cells if c in members])
            mce_proto = (
                Protocol.MEAN_CORRUPTION_ERROR
                if scope == "benchmark" and not part and len(cells) == 5 * len(members)
                else f"mean corruption error: unnormalised mean of top-1 error over the evaluated {label} cells"
            )
            # without an mCE row, the unnormalised mean carries the reason there is no AlexNet-normalised one
            why_not = (
                _no_alexnet_note(no_alexnet)
                if scope == "benchmark" and baseline is None and no_alexnet is not None
                else ""
            )
            add(
                model,
                scope,
                ALL_SEVERITIES,
                "mean_corruption_error",
                table.mean(axis=0),
                mce_proto + part + why_not,
            )
            for metric, per, source in (("mce", "ce", ce_of), ("relative_mce", "relative_ce", rce_of)):
                skipped = [c for c in members if c in undefined.get(per, ())]
                used = [c for c in members if c in source]
                if not used or len(used) + len(skipped) < len(members):
                    continue
                norms = {source[c][1] for c in used}
                v = np.stack([source[c][0] for c in used]).mean(axis=0)
                why = "is 0" if per == "ce" else "does not grow under the corruption"
                note = (
                    f" (excluding {', '.join(skipped)}: the normaliser's error {why} there)"
                    if skipped
                    else ""
                )
                if scope == "benchmark" and no_alexnet is not None:
                    note += _no_alexnet_note(no_alexnet)
                add(
                    model,
                    scope,
                    ALL_SEVERITIES,
                    metric,
                    v,
                    _mce_protocol(metric, norms, baseline) + part + note,
                )
    if baseline is not None:
        for model in found:
            if model == baseline:
                continue
            for corruption, metric in DIFF_METRICS:
                mine_stat = stats.get(model, {}).get((corruption, metric))
                base_stat = stats.get(baseline, {}).get((corruption, metric))
                if mine_stat is None or base_stat is None or mine_stat[1] != base_stat[1]:
                    continue
                add(
                    model,
                    corruption,
                    ALL_SEVERITIES,
                    f"{metric}_diff",
                    mine_stat[0] - base_stat[0],
                    f"{metric} of this model minus baseline {baseline!r}, paired bootstrap over the same images "
                    f"[{mine_stat[1]}]",
                )
    return out


def _alexnet_reason(
    name: str, params: Mapping[str, Any], model: str, mine: Mapping[Any, str], data: AggregateInput
) -> str | None:
    """Why ``model``'s cells of this suite cannot be divided by the published AlexNet errors (None: they can).

    They can only for 1000-class ImageNet data under the published pipeline: the pre-generated ImageNet-C files,
    or ImageNet images at 224 px (Resize 256, CenterCrop 224) corrupted on the fly with the ``imagenet-c``
    parameters and stored as quality-85 JPEG files. The reasons avoid the word "AlexNet" on purpose: reports take
    a protocol naming it for an AlexNet-normalised number.
    """
    if name != IMAGENET_C:
        return f"the published reference errors exist for ImageNet-C only, not for suite {name!r}"
    ref = params.get("reference")
    if not isinstance(ref, Mapping):
        return (
            "the run was made before the toolkit checked the data against the published ImageNet-C pipeline"
        )
    if not ref.get("alexnet"):
        return str(ref.get("why") or "the data is not ImageNet")
    for what, key in mine.items():
        if what == CLEAN:
            continue
        spec = data.cells[model][key][0]
        if spec.get("kind") != "corruption":
            continue
        options = {str(k): v for k, v in (spec.get("options") or ())}
        if options.get(JPEG_STORAGE_OPTION[0]) != JPEG_STORAGE_OPTION[1]:
            return (
                "the corrupted images skipped the quality-85 JPEG storage step of the published files "
                "(--no-jpeg-storage)"
            )
        size = (data.models.get(model) or {}).get("input_size")
        if size is None or tuple(size) != IMAGENET_INPUT:
            shown = "its own size" if size is None else f"{size[0]}x{size[1]}"
            return f"the model's input is {shown}, not the published 224x224 (Resize 256, CenterCrop 224)"
    return None


def _no_alexnet_note(reason: str) -> str:
    return f"; no row normalised by the published ImageNet-C reference errors: {reason}"


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    if len(ids) == len(wanted) and np.array_equal(ids, wanted):
        return np.arange(len(ids))
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)]


def _sev_note(used: list[int], sevs: list[int]) -> str:
    return "" if used == sevs else f" (severities {used} shared with the baseline)"


def _mce_protocol(metric: str, norms: set[str], baseline: str | None) -> str:
    if norms == {"AlexNet-normalised"}:
        return Protocol.MCE_ALEXNET if metric == "mce" else Protocol.REL_MCE_ALEXNET
    if len(norms) == 1 and baseline is not None and norms == {_baseline_norm(baseline)}:
        return (Protocol.mce_baseline if metric == "mce" else Protocol.rel_mce_baseline)(baseline)
    label = "mCE" if metric == "mce" else "relative mCE"
    return f"{label}, mixed normalisation: {'; '.join(sorted(norms))}"


def _baseline_norm(baseline: str) -> str:
    return f"normalised by baseline model {baseline!r} (= 100)"


def _corruption_ce(
    model: str,
    c: str,
    sevs: list[int],
    mine: Mapping[Any, str],
    found: Mapping[str, Mapping[Any, str]],
    baseline: str | None,
    E: Callable[..., np.ndarray],
    alexnet: bool,
    *,
    relative: bool = False,
) -> tuple[np.ndarray, str, list[int]] | None:
    """CE (or relative CE) of ``model`` on ``c`` as a (1 + B,) vector, its normalisation, and severities used."""
    if relative and CLEAN not in mine:
        return None
    if alexnet and c in metrics.ALEXNET_ERRORS:
        table = np.stack([E(model, (c, s)) for s in sevs])
        base = metrics.alexnet_table([c], sevs)[0][:, None]  # (S, 1) broadcasts over the resamples
        if relative:
            v = ratio_or_nan(
                metrics.relative_ce, table, E(model, CLEAN), base, np.array([metrics.ALEXNET_CLEAN_ERROR])
            )
        else:
            v = ratio_or_nan(metrics.corruption_error, table, base)
        return v, "AlexNet-normalised", sevs
    if baseline is None:
        return None
    used = [s for s in sevs if (c, s) in found[baseline]]
    if not used or (relative and CLEAN not in found[baseline]):
        return None
    table = np.stack([E(model, (c, s)) for s in used])
    base = np.stack([E(baseline, (c, s)) for s in used])
    if relative:
        v = ratio_or_nan(metrics.relative_ce, table, E(model, CLEAN), base, E(baseline, CLEAN))
    else:
        v = ratio_or_nan(metrics.corruption_error, table, base)
    return v, _baseline_norm(baseline), used


register_suite_kind(
    SuiteKind(
        name="corruption",
        accepts=_corruption_accepts,
        names=lambda: list(dict.fromkeys([*list_suites(), *list_datasets("corruptions")])),
        resolve=_corruption_resolve,
        plan=_corruption_plan,
        run=_classification_run,
        aggregate=aggregate_corruption_suite,
        share=_classification_share,
        run_group=_classification_run_group,
        cell_kinds=("clean", "corruption", "pregenerated"),
        needs_clean=True,
    )
)
