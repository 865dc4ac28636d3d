"""The probe suite kind: ``--suite shift`` (crop, circular, diagonal, equivariance) and ``--suite reconstruction``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from corruptions.registry import suggest, unknown_name

from ...data import ImageFolderDataset
from ...metrics.bootstrap import Resampler, mean_ci
from ...probes import PROBES, run_probe
from ...schema import result_row
from ..cells import CellResult, CellSpec
from ..suite_kinds import SuiteKind, register_suite_kind

log = logging.getLogger(__name__)


def probe_suites() -> dict[str, tuple[str, ...]]:
    """Probe suites the evaluator accepts (``--suite shift`` / ``--suite reconstruction``) and their probes, in
    registration order: read from the ``suite`` metadata of the probe registry, so a new probe needs no edit here."""
    out: dict[str, list[str]] = {}
    for name in PROBES.names():
        suite = PROBES.meta(name).get("suite")
        if suite:
            out.setdefault(str(suite), []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def check_probes(probes: Sequence[str]) -> list[str]:
    """``probes`` when each names a probe suite (``--probe shift,reconstruction``); else ``ValueError`` naming the
    unknown one, the valid probes and the closest of them."""
    valid = list(probe_suites())
    for probe in probes:
        if probe not in valid:
            raise ValueError(unknown_name("probe", probe, valid))
    return list(probes)


#: Version of each suite's protocols, stored in the suite parameters and in every cell's options, so cells made
#: under an older protocol are never silently reused (2: Zhang's 256 px crops on image folders, the APS zero-pad
#: crop protocol for fixed-size images, and diagonal curves named by how they shift).
PROTOCOL_VERSIONS: dict[str, int] = {"shift": 2}
#: Probes that read a larger image than the model's input and crop the input out of it (Zhang's protocols).
LARGER_IMAGE_PROBES: tuple[str, ...] = ("crop", "diagonal")


def _kind_accepts(value: Any) -> bool:
    return isinstance(value, str) and value in probe_suites()


def _kind_resolve(value: Any, dataset: Any) -> tuple[str, Any, dict[str, Any]]:
    params: dict[str, Any] = {"probes": list(probe_suites()[value])}
    if value in PROTOCOL_VERSIONS:
        params["protocol_version"] = PROTOCOL_VERSIONS[value]
    return value, value, params


def _options(suite: str) -> tuple[tuple[str, Any], ...]:
    return (("protocol_version", PROTOCOL_VERSIONS[suite]),) if suite in PROTOCOL_VERSIONS else ()


def _kind_plan(name: str, suite: Any, opts: Any) -> list[Any]:
    available = probe_suites()[name]
    chosen = [c for c in opts.corruptions if c in available] if opts.corruptions else list(available)
    if opts.corruptions and not chosen:
        raise ValueError(
            f"none of {list(opts.corruptions)} is a probe of suite {name!r}; valid: {', '.join(available)}"
            + suggest(opts.corruptions, available)
        )
    if getattr(opts, "pregenerated", False):
        raise ValueError(f"probe suite {name!r} needs a clean image dataset, not a pre-generated set")
    return [
        CellSpec(
            model=m.name,
            suite=name,
            corruption=c,
            severity=0,
            kind="probe",
            seed=opts.seed,
            limit=opts.limit,
            options=_options(name),
        )
        for m in opts.models
        for c in chosen
    ]


def larger_image(data: Any, input_size: Any) -> tuple[Any, int] | None:
    """``(dataset, crop size)`` for Zhang's protocols, or None when the data gives no larger image.

    An image folder read at the model's input size s (shorter side to round(s * 256 / 224), centre crop s) is read
    again with a centre crop of that shorter side instead: Resize 256 -> CenterCrop 256 for a 224 px model, the
    image Zhang's crop consistency and diagonal curve take their 224 px crops from. Fixed-size data (CIFAR,
    Fashion-MNIST, ...) has no larger image: the probes then use the APS crop protocol and shift the input.
    """
    if not isinstance(data, ImageFolderDataset) or not data.resize or data.image_size is None:
        return None
    if input_size is None or tuple(input_size) != tuple(data.image_size) or input_size[0] != input_size[1]:
        return None
    s = int(input_size[0])
    big = round(s * 256 / 224)
    if big <= s:
        return None
    return data.at_size(big, short_side=big), s


def _kind_run(spec: Any, ctx: Any, progress: Callable[[int], None] | None) -> Any:
    entry = ctx.models[spec.model]
    data = ctx.dataset_for(entry)
    kw: dict[str, Any] = {}
    resize = True
    if spec.corruption in LARGER_IMAGE_PROBES:
        found = larger_image(data, entry.input_size)
        if found is not None:
            data, kw["crop_size"] = found
            resize = False  # the probe crops the model's input out of the larger image itself
    arrays, rows, values = run_probe(
        spec.corruption,
        entry.model,
        data,
        limit=spec.limit,
        batch_size=ctx.batch_size,
        device=ctx.device,
        seed=spec.seed,
        preprocess=entry.preprocess(resize=resize, channels=getattr(data, "channels", None)),
        n_boot=0,
        return_row_values=True,
        **kw,
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
    rows: list[dict[str, Any]] = []
    for model in data.model_order:
        info = {"model": model, **data.models.get(model, {})}
        for _, (spec, arrays, cell_info) in sorted(data.cells.get(model, {}).items()):
            if spec.get("kind") != "probe" or spec.get("suite") != name:
                continue
            for i, r in enumerate(cell_info.get("rows", [])):
                v = arrays.get(f"rowvalues__{i}", [])
                ci = mean_ci(v, n_boot=data.n_boot, seed=data.seed)
                values = np.asarray(v, dtype=np.float64)
                if data.vectors is not None and values.size and np.isfinite(values).all():
                    # the same resamples as mean_ci's (Resampler(n, n_boot, seed)): paired across models
                    vec = Resampler(values.size, data.n_boot, data.seed).vectors(values[None])[0]
                    key = (model, r["suite"], r["corruption"], int(r["severity"]), r["metric"])
                    data.vectors[key] = (vec, r["protocol"], int(r["n"]))
                rows.append(
                    result_row(
                        info,
                        r["suite"],
                        r["corruption"],
                        r["severity"],
                        r["metric"],
                        r["value"],
                        ci,
                        r["n"],
                        r["protocol"],
                    )
                )
    return rows


register_suite_kind(
    SuiteKind(
        name="probe",
        accepts=_kind_accepts,
        names=lambda: list(probe_suites()),
        resolve=_kind_resolve,
        plan=_kind_plan,
        run=_kind_run,
        aggregate=_kind_aggregate,
        cell_kinds=("probe",),
        needs_clean=False,
    )
)
