"""The probe suite kind: ``--suite shift`` (crop, circular, diagonal, equivariance) and ``--suite reconstruction``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ...metrics.bootstrap import Resampler, mean_ci
from ...probes import run_probe
from ...schema import result_row
from ..cells import CellResult, CellSpec
from ..suite_kinds import SuiteKind, register_suite_kind

log = logging.getLogger(__name__)

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
        resolve=_kind_resolve,
        plan=_kind_plan,
        run=_kind_run,
        aggregate=_kind_aggregate,
        cell_kinds=("probe",),
        needs_clean=False,
    )
)
