"""Compare two runs metric by metric, with confidence intervals for the differences.

For every (model, suite, corruption, severity, metric) row present in both runs, ``delta = B - A`` in the unit the
report shows (percentage points for error rates). The interval of a delta is, in order of preference:

* **paired bootstrap** over images, when both runs stored the cell's per-sample predictions (``cells/*.npz`` with
  ``top5``, ``labels``, ``ids``) for the same images (same dataset in both manifests, same labels on the shared ids);
  the same resampled images are used for A and B, which removes the image-to-image variance both runs share;
* **unpaired normal approximation** from the two runs' own 95 % CIs (``ci_low`` / ``ci_high``);
* **binomial normal approximation** for error rates with an image count ``n`` but no CI;
* none (``method = "none"``) otherwise; such differences are never called significant.

A difference is significant when its interval excludes 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..fileio import atomic_write_text
from ..schema import CLEAN
from .baseline import run_baseline
from .rows import BENCHMARK, HELD_OUT
from .summary import nonfinite_notes
from .tables import Run, load_run, scale_for, unit_for

__all__ = ["Comparison", "compare_runs", "load_cell_mistakes", "headline_rows", "format_table"]

log = logging.getLogger(__name__)

_KEYS = ["model", "suite", "corruption", "severity", "metric"]
#: Metrics for which a lower value is better.
_LOWER_IS_BETTER = frozenset(
    {
        "top1_error",
        "top5_error",
        "mean_error",
        "ce",
        "relative_ce",
        "mean_corruption_error",
        "mce",
        "relative_mce",
        "flip_probability",
        "top5_distance",
        "fr",
        "t5d",
        "mfp",
        "mt5d",
        "mfr",
        "mt5d_normalised",
    }
)
_Z = 1.959963984540054
#: Metrics that are a proportion of images (a binomial standard error applies).
_PROPORTIONS = frozenset({"top1_error", "top5_error", "consistency", "accuracy", "agreement"})


@dataclass
class Comparison:
    """The result of :func:`compare_runs`: one row per shared metric, plus notes."""

    table: pd.DataFrame
    run_a: str
    run_b: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        records = []
        for rec in self.table.to_dict("records"):
            records.append(
                {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
            )
        return json.dumps(
            {"run_a": self.run_a, "run_b": self.run_b, "notes": self.notes, "rows": records},
            indent=2,
            default=_json_default,
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ------------------------------------------------------------------------------------------------------ cells
def load_cell_mistakes(run: Run) -> dict[tuple[str, str, int], dict[str, np.ndarray]]:
    """Per-sample mistakes of a run's stored cells: ``{(model, corruption, severity): {"ids", "labels", "top1",
    "top5"}}`` (``top1`` / ``top5``: boolean arrays, True where the prediction is wrong).

    The clean cell is keyed ``(model, "clean", 0)``. Unreadable cells and cells without ``labels`` and ``ids`` plus
    ``top5`` (or ``pred``) are skipped; a run without ``cells/`` gives ``{}``.
    """
    out: dict[tuple[str, str, int], dict[str, np.ndarray]] = {}
    cells_dir = run.cells_dir
    if cells_dir is None:
        return out
    for path in sorted(cells_dir.glob("*/*.npz")):
        if path.name.startswith("."):
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            spec = json.loads(str(arrays.get("__spec__", "{}")))
        except Exception as exc:  # a damaged or foreign file only loses its pairing
            log.info("skipping unreadable cell %s: %s", path, exc)
            continue
        if not isinstance(spec, dict) or "labels" not in arrays or "ids" not in arrays:
            continue
        labels = np.asarray(arrays["labels"]).reshape(-1)
        if "top5" in arrays:
            top = np.asarray(arrays["top5"])
            top = top.reshape(len(labels), -1)
            wrong1 = top[:, 0] != labels
            wrong5 = ~(top == labels[:, None]).any(axis=1)
        elif "pred" in arrays:
            wrong1 = np.asarray(arrays["pred"]).reshape(-1) != labels
            wrong5 = None
        else:
            continue
        model = run.model_names.get(spec.get("model", path.parent.name), spec.get("model", path.parent.name))
        corruption = str(spec.get("corruption", CLEAN if path.stem == CLEAN else ""))
        if not corruption:
            continue
        severity = 0 if corruption == CLEAN else int(spec.get("severity", 0) or 0)
        entry = {"ids": np.asarray(arrays["ids"]).reshape(-1), "labels": labels, "top1": wrong1}
        if wrong5 is not None:
            entry["top5"] = wrong5
        out[(str(model), corruption, severity)] = entry
    return out


def _same_dataset(a: Run, b: Run) -> bool:
    da = (a.manifest.get("config") or {}).get("dataset") if a.manifest else None
    db = (b.manifest.get("config") or {}).get("dataset") if b.manifest else None
    return da is None or db is None or da == db


def _paired(
    ca: Mapping[str, np.ndarray],
    cb: Mapping[str, np.ndarray],
    which: str,
    n_boot: int,
    seed: int,
    alpha: float,
) -> tuple[float, float, float, int] | None:
    """Paired bootstrap of mean(B) - mean(A) over the images both cells share, or None when they cannot pair."""
    from ..metrics import paired_bootstrap_diff

    if which not in ca or which not in cb:
        return None
    common, ia, ib = np.intersect1d(ca["ids"], cb["ids"], assume_unique=False, return_indices=True)
    if len(common) < 2 or not np.array_equal(ca["labels"][ia], cb["labels"][ib]):
        return None
    wa = ca[which][ia].astype(np.float64)
    wb = cb[which][ib].astype(np.float64)
    res = paired_bootstrap_diff(lambda m: m, wb, wa, n_boot=n_boot, seed=seed, alpha=alpha)
    return res.estimate, res.low, res.high, len(common), len(ca["ids"]), len(cb["ids"])


#: Suite aggregates that get a paired interval from the per-image cells of both runs.
_PAIRED_AGGREGATES = frozenset({"mean_corruption_error", "mce"})


def _group(run: Run, suite: str, scope: str) -> tuple[str, ...]:
    """The corruptions of a suite's benchmark or held-out group, as the run's manifest records them."""
    desc = ((run.manifest.get("config") or {}).get("suites") or {}).get(suite) or {}
    params = desc.get("params") or {}
    names = params.get(scope) or (BENCHMARK if scope == "benchmark" else HELD_OUT)
    return tuple(names)


def _paired_aggregate(
    a: Run,
    b: Run,
    cells_a: Mapping[tuple[str, str, int], Mapping[str, np.ndarray]],
    cells_b: Mapping[tuple[str, str, int], Mapping[str, np.ndarray]],
    rec: Mapping[str, Any],
    n_boot: int,
    seed: int,
    alpha: float,
) -> tuple[float, float, float, int, int, int] | None:
    """Paired bootstrap of B - A for a suite's mean corruption error (a fraction) or its baseline-normalised mCE
    (%), over the images every cell involved shares: the model's cells in both runs, and for mCE each run's
    baseline's cells (each run normalised by its own baseline, as the runs report it). None when they cannot pair.
    """
    from ..metrics import paired_bootstrap_diff

    model, metric = rec["model"], rec["metric"]
    bases = (run_baseline(a), run_baseline(b)) if metric == "mce" else (model, model)
    if None in bases:
        return None
    group = [
        c
        for c in _group(a, rec["suite"], rec["corruption"])
        if c in _group(b, rec["suite"], rec["corruption"])
    ]
    keys = []
    for c in group:
        sevs = [
            s
            for s in range(1, 6)
            if all((m, c, s) in cells for m, cells in ((model, cells_a), (model, cells_b), (bases[0], cells_a),
                                                        (bases[1], cells_b)))
        ]  # fmt: skip
        keys.append((c, sevs))
    keys = [(c, sevs) for c, sevs in keys if sevs]
    if not keys or len({len(sevs) for _, sevs in keys}) != 1:
        return None
    used = [(cells_a, model), (cells_b, model), (cells_a, bases[0]), (cells_b, bases[1])]
    common: np.ndarray | None = None
    for cells, m in used:
        for c, sevs in keys:
            for s in sevs:
                ids = cells[(m, c, s)]["ids"]
                common = ids if common is None else np.intersect1d(common, ids)
    if common is None or len(common) < 2:
        return None

    def stack(cells: Mapping, m: str) -> np.ndarray | None:
        out = []
        for c, sevs in keys:
            row = []
            for s in sevs:
                cell = cells[(m, c, s)]
                pos = np.searchsorted(cell["ids"], common, sorter=np.argsort(cell["ids"]))
                idx = np.argsort(cell["ids"])[pos]
                row.append(cell["top1"][idx].astype(np.float64))
            out.append(row)
        return np.asarray(out)  # (C, S, N)

    ma, mb = stack(cells_a, model), stack(cells_b, model)
    labels_a = cells_a[(model, keys[0][0], keys[0][1][0])]
    labels_b = cells_b[(model, keys[0][0], keys[0][1][0])]
    la = labels_a["labels"][np.argsort(labels_a["ids"])][np.searchsorted(np.sort(labels_a["ids"]), common)]
    lb = labels_b["labels"][np.argsort(labels_b["ids"])][np.searchsorted(np.sort(labels_b["ids"]), common)]
    if not np.array_equal(la, lb):
        return None
    sizes = (len(labels_a["ids"]), len(labels_b["ids"]))
    if metric == "mean_corruption_error":
        res = paired_bootstrap_diff(
            lambda m: m.mean(axis=(0, 1)), mb, ma, n_boot=n_boot, seed=seed, alpha=alpha
        )
    else:

        def mce(m: np.ndarray, base: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return (100.0 * m.sum(axis=1) / base.sum(axis=1)).mean(axis=0)

        res = paired_bootstrap_diff(
            mce, (mb, stack(cells_b, bases[1])), (ma, stack(cells_a, bases[0])), n_boot=n_boot, seed=seed,
            alpha=alpha,
        )  # fmt: skip
    return res.estimate, res.low, res.high, len(common), *sizes


# ------------------------------------------------------------------------------------------------------ compare
def compare_runs(
    run_a: str | os.PathLike[str] | Run,
    run_b: str | os.PathLike[str] | Run,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    paired: bool = True,
) -> Comparison:
    """Differences B - A for every metric row the two runs share (models matched by name).

    Args:
        run_a, run_b: run directories (or ``results.csv`` files, or loaded runs).
        n_boot, seed, alpha: paired bootstrap settings (``1 - alpha`` coverage).
        paired: use per-sample cells when both runs have them.

    Returns:
        a :class:`Comparison` whose table has ``model, suite, corruption, severity, metric, unit, value_a, value_b,
        delta, delta_ci_low, delta_ci_high, significant, better, method, n``.

    Raises:
        ValueError: the runs share no model, or no metric row.
    """
    a = run_a if isinstance(run_a, Run) else load_run(run_a)
    b = run_b if isinstance(run_b, Run) else load_run(run_b)
    notes: list[str] = [
        f"run {run.name!r}: {note}" for run in (a, b) for note in nonfinite_notes(run.results)
    ]
    models_a, models_b = set(a.results["model"]), set(b.results["model"])
    common = models_a & models_b
    if not common:
        raise ValueError(
            f"runs {a.name!r} and {b.name!r} share no model (A: {', '.join(sorted(models_a))}; "
            f"B: {', '.join(sorted(models_b))})"
        )
    for name, only in ((a.name, models_a - models_b), (b.name, models_b - models_a)):
        if only:
            notes.append(f"only in {name}: {', '.join(sorted(only))} (not compared)")
    ra = a.results[a.results["model"].isin(common)]
    rb = b.results[b.results["model"].isin(common)]
    merged = ra.drop_duplicates(_KEYS).merge(rb.drop_duplicates(_KEYS), on=_KEYS, suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError(f"runs {a.name!r} and {b.name!r} share models but no metric rows")
    cells_a = cells_b = {}
    if paired:
        if _same_dataset(a, b):
            cells_a, cells_b = load_cell_mistakes(a), load_cell_mistakes(b)
        else:
            notes.append("the runs used different datasets: differences are not paired")
    rows = []
    partial: set[tuple[str, int, int, int]] = set()
    z = _z(alpha)
    for rec in merged.to_dict("records"):
        metric = rec["metric"]
        f = scale_for(metric)
        va, vb = rec["value_a"] * f, rec["value_b"] * f
        delta = vb - va
        lo = hi = math.nan
        method, n = "none", math.nan
        key = (rec["model"], rec["corruption"], 0 if rec["corruption"] == CLEAN else int(rec["severity"]))
        which = {"top1_error": "top1", "top5_error": "top5"}.get(metric)
        done = False
        res = None
        if which and key in cells_a and key in cells_b:
            res = _paired(cells_a[key], cells_b[key], which, n_boot, seed, alpha)
        elif (
            metric in _PAIRED_AGGREGATES
            and rec["corruption"] in ("benchmark", "held_out")
            and cells_a
            and cells_b
        ):
            if (
                metric == "mean_corruption_error"
                or "AlexNet" not in f"{rec['protocol_a']} {rec['protocol_b']}"
            ):
                res = _paired_aggregate(a, b, cells_a, cells_b, rec, n_boot, seed, alpha)
        if res is not None:
            est, lo, hi, n = res[0] * f, res[1] * f, res[2] * f, res[3]
            delta = est
            method, done = "paired bootstrap", True
            sizes = (res[4], res[5]) if len(res) > 4 else None
            if sizes and n < max(sizes):
                partial.add((rec["model"], n, *sizes))
        if not done:
            se_a = _se_from_ci(rec["ci_low_a"], rec["ci_high_a"], f)
            se_b = _se_from_ci(rec["ci_low_b"], rec["ci_high_b"], f)
            if se_a is None and se_b is None and metric in _PROPORTIONS:
                se_a = _se_binomial(rec["value_a"], rec["n_a"], f)
                se_b = _se_binomial(rec["value_b"], rec["n_b"], f)
                kind = "binomial normal approximation (unpaired)"
            else:
                kind = "normal approximation from the runs' CIs (unpaired)"
            if se_a is not None and se_b is not None and math.isfinite(delta):
                half = z * math.hypot(se_a, se_b)
                lo, hi, method = delta - half, delta + half, kind
            n = (
                np.nanmin([rec["n_a"], rec["n_b"]])
                if not (pd.isna(rec["n_a"]) and pd.isna(rec["n_b"]))
                else n
            )
        significant = bool(lo > 0 or hi < 0) if math.isfinite(lo) and math.isfinite(hi) else None
        better = ""
        if significant:
            lower_better = metric in _LOWER_IS_BETTER
            better = "B" if (delta < 0) == lower_better else "A"
        rows.append(
            {
                "model": rec["model"],
                "suite": rec["suite"],
                "corruption": rec["corruption"],
                "severity": rec["severity"],
                "metric": metric,
                "unit": unit_for(metric),
                "value_a": va,
                "value_b": vb,
                "delta": delta,
                "delta_ci_low": lo,
                "delta_ci_high": hi,
                "significant": significant,
                "better": better,
                "method": method,
                "n": n,
            }
        )
    table = pd.DataFrame(rows)
    for model, n, size_a, size_b in sorted(partial):
        notes.append(
            f"{model}: paired differences use only the {n} images both runs evaluated (A: {size_a}, B: {size_b})"
        )
    n_paired = int((table["method"] == "paired bootstrap").sum())
    if paired and n_paired == 0 and (table["metric"].isin(["top1_error", "top5_error"])).any():
        notes.append("no per-sample cells shared by both runs: error differences use unpaired approximations")
    return Comparison(table=table, run_a=a.name, run_b=b.name, notes=notes)


def _z(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if abs(alpha - 0.05) < 1e-12:
        return _Z
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha / 2)


def _se_from_ci(lo: Any, hi: Any, f: float) -> float | None:
    if pd.isna(lo) or pd.isna(hi):
        return None
    return abs(float(hi) - float(lo)) * f / (2 * _Z)


def _se_binomial(p: Any, n: Any, f: float) -> float | None:
    if pd.isna(p) or pd.isna(n) or float(n) <= 0 or not 0.0 <= float(p) <= 1.0:
        return None
    return math.sqrt(float(p) * (1 - float(p)) / float(n)) * f


def headline_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows shown by default: clean top-1 error, suite aggregates, perturbation means, consistencies, PSNR."""
    if table.empty:
        return table
    metric, corruption = table["metric"], table["corruption"]
    mask = (corruption == CLEAN) & (metric == "top1_error")
    mask |= metric.isin(["mce", "relative_mce", "mean_corruption_error"])
    mask |= metric.isin(["mfr", "mfp", "mt5d", "mt5d_normalised"]) & (corruption == "all")
    mask |= metric.isin(["consistency", "psnr"])
    return table[mask].drop_duplicates(["model", "suite", "corruption", "severity", "metric"])


def format_table(table: pd.DataFrame) -> str:
    """Plain-text table of a comparison (delta with CI, significance, method)."""
    if table.empty:
        return "(no rows)"
    head = ("model", "suite", "scope", "metric", "A", "B", "delta [95% CI]", "sig.", "method")
    rows = []
    for r in table.to_dict("records"):
        scope = r["corruption"] + (f"/{r['severity']}" if int(r["severity"]) else "")
        unit = r["unit"]
        ci = ""
        if math.isfinite(r["delta_ci_low"]) and math.isfinite(r["delta_ci_high"]):
            ci = f" [{r['delta_ci_low']:+.2f}, {r['delta_ci_high']:+.2f}]"
        sig = {True: f"yes ({r['better']} better)", False: "no", None: "n/a"}[r["significant"]]
        rows.append(
            (
                r["model"],
                r["suite"],
                scope,
                r["metric"] + (f" ({unit})" if unit else ""),
                f"{r['value_a']:.2f}",
                f"{r['value_b']:.2f}",
                f"{r['delta']:+.2f}{ci}",
                sig,
                f"{r['method']} over {int(r['n'])} shared images"
                if r["method"] == "paired bootstrap" and pd.notna(r["n"])
                else r["method"],
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def write_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write the full comparison table as CSV (atomically: an earlier file is replaced only by a complete one)."""
    p = Path(path)
    atomic_write_text(p, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return p


__all__.append("write_csv")
