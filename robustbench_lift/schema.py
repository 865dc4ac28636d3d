"""The long-format results table every part of the toolkit reads and writes.

One row per (model, suite, corruption, severity, metric). Reports, ``compare`` and ``check`` consume only this
table (plus the run manifest), so evaluators and probes add rows here and nothing else needs to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "RESULT_COLUMNS",
    "CORE_RESULT_COLUMNS",
    "SEED_COLUMNS",
    "with_seed_columns",
    "result_row",
    "model_fields",
    "CLEAN",
    "ALL_SEVERITIES",
    "NONFINITE",
    "Protocol",
]

#: Columns of ``results.csv`` in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "model",  # the model's name in the run (checkpoint stem unless given)
    "pooling",  # max | avg | blur | lift | ... ("unknown" for external models without one)
    "arch",  # architecture name
    "suite",  # cifar10-c | imagenet-c | cifar10-p | imagenet-p | shift | reconstruction | custom name
    "corruption",  # corruption / perturbation / probe protocol name, "clean", or an aggregate scope (see below)
    "severity",  # 1..5 for corruption cells, difficulty for perturbations, 0 for clean and aggregates
    "metric",  # e.g. top1_error, mce, flip_probability, consistency, psnr
    "value",  # float; errors and rates are fractions in [0, 1] except where the metric name says "percent"
    "ci_low",  # 95 % bootstrap CI over images (empty when none)
    "ci_high",
    "n",  # number of images (or sequences / pairs) behind the value
    "protocol",  # human-readable description of how the number was produced, shown in reports
    "seed",  # the model's training seed as its checkpoint records it (empty when unknown)
    "group",  # seed group: models with the same arch, pooling and training recipe (evaluation/groups.py)
)
#: The seed columns came later: a table without them is still a results table (see :func:`with_seed_columns`).
SEED_COLUMNS: tuple[str, ...] = ("seed", "group")
#: What every results table has.
CORE_RESULT_COLUMNS: tuple[str, ...] = tuple(c for c in RESULT_COLUMNS if c not in SEED_COLUMNS)

#: ``corruption`` value of the uncorrupted cell.
CLEAN = "clean"
#: ``severity`` value of rows aggregated over severities (and of clean rows).
ALL_SEVERITIES = 0
#: ``metric`` of the rows saying which fraction of a cell's images got NaN/inf logits (there only when some did;
#: ``n`` is the cell's image count); those images count as errors in the cell's other rows.
NONFINITE = "nonfinite_logits"


class Protocol:
    """Canonical protocol strings, so the same number is labelled the same way everywhere."""

    TOP1_ERROR = "top-1 error on the cell's images"
    TOP5_ERROR = "top-5 error on the cell's images"
    MEAN_CORRUPTION_ERROR = (
        "mean corruption error: unnormalised mean of top-1 error over the 15x5 benchmark cells"
    )
    MCE_ALEXNET = "mCE, AlexNet-normalised (Hendrycks & Dietterich, ImageNet-C)"
    REL_MCE_ALEXNET = "relative mCE, AlexNet-normalised"
    NONFINITE = "fraction of the cell's images whose logits had NaN/inf (they count as errors)"

    @staticmethod
    def mce_baseline(model: str) -> str:
        return f"mCE, normalised by baseline model {model!r} (= 100)"

    @staticmethod
    def rel_mce_baseline(model: str) -> str:
        return f"relative mCE, normalised by baseline model {model!r} (= 100)"


def model_fields(model: Any) -> dict[str, str]:
    """``pooling`` and ``arch`` of a model built by the toolkit (from ``model.default_cfg``), else "unknown"."""
    cfg = getattr(model, "default_cfg", None) or {}
    return {"pooling": str(cfg.get("pool", "unknown")), "arch": str(cfg.get("arch", "unknown"))}


def result_row(
    info: Mapping[str, Any],
    suite: str,
    corruption: str,
    severity: int,
    metric: str,
    value: float,
    ci: tuple[float, float],
    n: int,
    protocol: str,
) -> dict[str, Any]:
    """One row of ``results.csv`` (the only place rows are built).

    Args:
        info: the model's ``model`` / ``pooling`` / ``arch`` (missing fields: "" / "unknown").
        ci: ``(ci_low, ci_high)``, NaN when there is no interval.
    """
    return {
        "model": info.get("model", ""),
        "pooling": info.get("pooling", "unknown"),
        "arch": info.get("arch", "unknown"),
        "suite": suite,
        "corruption": corruption,
        "severity": int(severity),
        "metric": metric,
        "value": float(value),
        "ci_low": float(ci[0]),
        "ci_high": float(ci[1]),
        "n": int(n),
        "protocol": protocol,
        "seed": _seed_cell(info.get("seed")),
        "group": str(info.get("group") or info.get("model", "")),
    }


def _seed_cell(seed: Any) -> int | str:
    if seed is None or seed == "" or isinstance(seed, bool):
        return ""
    try:
        return int(seed)
    except (TypeError, ValueError):
        return ""


def with_seed_columns(df: Any) -> Any:
    """A results DataFrame with ``seed`` / ``group`` filled in for tables written before they existed (or rows
    without them): no seed, and every model its own group. Returns a copy."""
    df = df.copy()
    if "seed" not in df.columns:
        df["seed"] = ""
    df["seed"] = [_seed_cell(v) if v == v else "" for v in df["seed"]]  # v != v: NaN
    if "group" not in df.columns:
        df["group"] = ""
    group = df["group"].where(df["group"].notna(), "").astype(str)
    df["group"] = group.where(group != "", df["model"].astype(str))
    return df
