"""What a row of ``results.csv`` is, as the report sees it: suite classes, units, scopes, normalisation labels.

The other report modules (summary, tables, plots, compare) build on these; see docs/DESIGN.md, "Results table".
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from corruptions.suites import BENCHMARK, HELD_OUT

from ..schema import CLEAN, NONFINITE

__all__ = [
    "BENCHMARK",
    "HELD_OUT",
    "SHIFT_SUITE",
    "RECONSTRUCTION_SUITE",
    "PERTURBATION_SUITES",
    "AGGREGATE_SCOPES",
    "scale_for",
    "unit_for",
    "adversarial_suites",
    "corruption_suites",
    "corruption_order",
    "model_info",
    "normalisation_label",
    "scaled",
]

SHIFT_SUITE = "shift"
RECONSTRUCTION_SUITE = "reconstruction"
PERTURBATION_SUITES: tuple[str, ...] = ("cifar10-p", "imagenet-p")
#: ``corruption`` values of suite-level aggregate rows.
AGGREGATE_SCOPES: tuple[str, ...] = ("benchmark", "held_out", "all")

#: Metrics stored as fractions in [0, 1]; the report shows them x100 with a ``%`` in the column name.
_FRACTION_METRICS = frozenset(
    {
        "top1_error",
        "top5_error",
        "mean_error",
        "mean_corruption_error",
        "flip_probability",
        "mfp",
        "consistency",
        "accuracy",
        "agreement",
    }
)
#: Metrics already stored as percentages.
_PERCENT_METRICS = frozenset(
    {"mce", "relative_mce", "ce", "relative_ce", "fr", "mfr", "t5d", "mt5d_normalised"}
)


def scale_for(metric: str) -> float:
    """Factor that turns a stored value of ``metric`` into the unit the report shows."""
    return 100.0 if metric in _FRACTION_METRICS else 1.0


def unit_for(metric: str) -> str:
    """Unit of ``metric`` as shown in reports ('%', 'dB' or '')."""
    if metric in _FRACTION_METRICS or metric in _PERCENT_METRICS:
        return "%"
    if metric == "psnr":
        return "dB"
    return ""


# ------------------------------------------------------------------------------------------------------ helpers
def model_info(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model (first appearance order): run, model, arch, pooling."""
    cols = [c for c in ("run", "model", "arch", "pooling") if c in results.columns]
    return results.loc[:, cols].drop_duplicates("model").reset_index(drop=True)


def adversarial_suites(results: pd.DataFrame) -> list[str]:
    """Suites of adversarial attacks: their rows are labelled ``eps=<radius>``."""
    mask = results["corruption"].astype(str).str.startswith("eps=")
    return list(dict.fromkeys(results.loc[mask, "suite"]))


def corruption_suites(results: pd.DataFrame) -> list[str]:
    """Suites holding corruption cells (neither perturbation, shift, reconstruction nor adversarial suites)."""
    other = {SHIFT_SUITE, RECONSTRUCTION_SUITE, *PERTURBATION_SUITES, *adversarial_suites(results)}
    mask = (results["severity"] > 0) & results["metric"].isin(["top1_error", "top5_error"])
    mask |= results["metric"].isin(["mce", "mean_corruption_error", "mean_error", "ce"])
    mask |= (results["corruption"] == CLEAN) & (results["metric"] != NONFINITE)
    return [s for s in dict.fromkeys(results.loc[mask, "suite"]) if s not in other]


def corruption_order(names: Iterable[str]) -> list[str]:
    """Sort corruption names: the 15 benchmark ones in canonical order, the 4 held-out ones, then the rest."""
    canon = list(BENCHMARK) + list(HELD_OUT)
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda c: (canon.index(c), c) if c in canon else (len(canon), c))


def normalisation_label(protocols: Iterable[str]) -> str:
    text = " ".join(protocols)
    if "each run normalised by its own baseline" in text:  # report.baseline.PER_RUN: runs not on one baseline
        return "run-baseline-normalised"
    if "AlexNet" in text:
        return "AlexNet-normalised"
    if "baseline" in text:
        return "baseline-normalised"
    return "normalised"


def scaled(df: pd.DataFrame, metric_col: str = "metric") -> pd.DataFrame:
    out = df.copy()
    factor = out[metric_col].map(scale_for).astype(float)
    for c in ("value", "ci_low", "ci_high"):
        out[c] = out[c] * factor
    return out
