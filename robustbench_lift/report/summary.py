"""The headline numbers of a run, in one place: their specs (:data:`HEADLINE`) and every table built from them.

* :func:`build_summary` - ``summary.csv`` of the report (one row per model, value and CI columns whose names carry
  the unit and the normalisation), read by the HTML and Markdown pages, ``check`` and the plots;
* :func:`summary_metrics` - ``{model: {check key: value}}`` from such a table (``check``, the CI gate);
* :func:`headline_table` - one row per model keyed by check key (the demo's printout and ``demo.json``);
* :func:`suite_summary` - one line per (model, suite) of formatted numbers (``RunResult.summary()``, printed by
  ``evaluate``);
* :data:`MARKDOWN_KEYS` / :data:`DEMO_KEYS` - which headline numbers the short tables show, titled by
  :func:`headline_title`.

A headline number is added by one :class:`MetricSpec` in :data:`HEADLINE` (and its key in a view to show it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..schema import CLEAN, NONFINITE
from .rows import (
    RECONSTRUCTION_SUITE,
    SHIFT_SUITE,
    adversarial_suites,
    corruption_suites,
    model_info,
    normalisation_label,
    scale_for,
    unit_for,
)

__all__ = [
    "MetricSpec",
    "HEADLINE",
    "MARKDOWN_KEYS",
    "DEMO_KEYS",
    "get_spec",
    "headline_title",
    "build_summary",
    "summary_metrics",
    "metric_direction",
    "headline_table",
    "suite_summary",
    "NONFINITE_COLUMN",
    "nonfinite_notes",
    "summary_nonfinite_notes",
]

#: Column of ``summary.csv`` counting a model's images with NaN/inf logits over all its cells (only in the summary
#: of a run where some model produced them).
NONFINITE_COLUMN = "nonfinite_logits_images"


@dataclass(frozen=True)
class MetricSpec:
    """One headline number of the summary table.

    Attributes:
        key: short stable name used by ``check`` and ``compare`` (``clean_acc``, ``mce``, ...).
        column: column-name template; ``{norm}`` is filled from the rows' protocol.
        select: picks the candidate rows from the results table.
        metric: stored metric name (for the scale; the value of ``derive`` rows is in the shown unit).
        higher_is_better: direction used to phrase deltas.
        vary: fields that, when they take more than one value, split the number into several columns.
        transform: maps a shown value to another one (e.g. accuracy = 100 - error); CIs are mapped and swapped.
        split_always: always split by every ``vary`` field, written ``key[a:b]`` (``robust_acc[pgd-linf:8/255]``).
        label: short title for tables read by people (``report.md``, the demo's printout).
    """

    key: str
    column: str
    select: Callable[[pd.DataFrame], pd.Series]
    metric: str
    higher_is_better: bool
    vary: tuple[str, ...] = ("suite", "severity")
    transform: Callable[[float], float] | None = None
    split_always: bool = False
    label: str = ""

    @property
    def normalised(self) -> bool:
        """True when the number is relative to a reference model (its column names the normalisation)."""
        return "{norm}" in self.column


def _is(suite_kind: str | None, corruption: str | None, metric: str) -> Callable[[pd.DataFrame], pd.Series]:
    def select(df: pd.DataFrame) -> pd.Series:
        mask = df["metric"] == metric
        if corruption is not None:
            mask &= df["corruption"] == corruption
        if suite_kind == "corruption":
            mask &= df["suite"].isin(corruption_suites(df))
        elif suite_kind == "perturbation":
            mask &= ~df["suite"].isin([SHIFT_SUITE, RECONSTRUCTION_SUITE]) & ~df["suite"].isin(
                corruption_suites(df)
            )
        elif suite_kind is not None:
            mask &= df["suite"] == suite_kind
        return mask

    return select


def _robust_rows(df: pd.DataFrame) -> pd.Series:
    return (
        df["suite"].isin(adversarial_suites(df))
        & df["corruption"].str.startswith("eps=")
        & (df["metric"] == "top1_error")
    )


def _clean_rows(df: pd.DataFrame) -> pd.Series:
    return (df["corruption"] == CLEAN) & (df["metric"] == "top1_error")


#: Headline numbers of ``summary.csv``, in column order.
HEADLINE: tuple[MetricSpec, ...] = (
    MetricSpec(
        "clean_error", "clean_top1_error_%", _clean_rows, "top1_error", False, vary=(), label="clean err. %"
    ),
    MetricSpec(
        "clean_acc",
        "clean_top1_accuracy_%",
        _clean_rows,
        "top1_error",
        True,
        vary=(),
        transform=lambda v: 100 - v,
        label="clean acc %",
    ),
    MetricSpec(
        "mce",
        "mCE_%_{norm}",
        _is("corruption", "benchmark", "mce"),
        "mce",
        False,
        vary=("suite",),
        label="mCE %",
    ),
    MetricSpec(
        "relative_mce",
        "relative_mCE_%_{norm}",
        _is("corruption", "benchmark", "relative_mce"),
        "relative_mce",
        False,
        vary=("suite",),
        label="rel. mCE %",
    ),
    MetricSpec(
        "mean_corruption_error",
        "mean_corruption_error_%_unnormalised",
        _is("corruption", "benchmark", "mean_corruption_error"),
        "mean_corruption_error",
        False,
        vary=("suite",),
        label="mean corr. err. %",
    ),
    MetricSpec(
        "held_out_mean_corruption_error",
        "held_out_mean_corruption_error_%_unnormalised",
        _is("corruption", "held_out", "mean_corruption_error"),
        "mean_corruption_error",
        False,
        vary=("suite",),
        label="held-out mean corr. err. %",
    ),
    MetricSpec("mfr", "mFR_%_{norm}", _is("perturbation", "all", "mfr"), "mfr", False, label="mFR %"),
    MetricSpec("mfp", "mFP_%_unnormalised", _is("perturbation", "all", "mfp"), "mfp", False, label="mFP %"),
    MetricSpec(
        "mt5d_normalised",
        "mT5D_%_{norm}",
        _is("perturbation", "all", "mt5d_normalised"),
        "mt5d_normalised",
        False,
        label="mT5D %",
    ),
    MetricSpec("mt5d", "mT5D_unnormalised", _is("perturbation", "all", "mt5d"), "mt5d", False, label="mT5D"),
    MetricSpec(
        "crop_consistency",
        "crop_consistency_%",
        _is(SHIFT_SUITE, "crop", "consistency"),
        "consistency",
        True,
        label="crop cons. %",
    ),
    MetricSpec(
        "circular_consistency",
        "circular_consistency_%",
        _is(SHIFT_SUITE, "circular", "consistency"),
        "consistency",
        True,
        label="circ. cons. %",
    ),
    MetricSpec(
        "robust_acc",
        "robust_accuracy_%",
        _robust_rows,
        "top1_error",
        True,
        vary=("suite", "corruption"),
        transform=lambda v: 100 - v,
        split_always=True,
        label="robust acc. %",
    ),
    MetricSpec(
        "reconstruction_psnr",
        "reconstruction_psnr_dB",
        _is(RECONSTRUCTION_SUITE, None, "psnr"),
        "psnr",
        True,
        vary=("corruption",),
        label="recon. PSNR dB",
    ),
)

_SPECS_BY_KEY = {s.key: s for s in HEADLINE}

#: Headline numbers shown by ``report.md``, in order (check keys).
MARKDOWN_KEYS: tuple[str, ...] = (
    "clean_error",
    "mce",
    "relative_mce",
    "mean_corruption_error",
    "mfr",
    "crop_consistency",
    "circular_consistency",
    "reconstruction_psnr",
)
#: Headline numbers printed by the demo (and stored in ``demo.json``), in order.
DEMO_KEYS: tuple[str, ...] = (
    "clean_acc",
    "mce",
    "mean_corruption_error",
    "mfr",
    "crop_consistency",
    "circular_consistency",
)


def get_spec(key: str) -> MetricSpec:
    """The :class:`MetricSpec` of check key ``key`` (a ``[suite]`` suffix is ignored); ``ValueError`` lists the keys."""
    spec = _SPECS_BY_KEY.get(key.split("[", 1)[0])
    if spec is None:
        raise ValueError(f"unknown headline number {key!r}; valid: {', '.join(_SPECS_BY_KEY)}")
    return spec


def headline_title(key: str, baseline: str | None = None) -> str:
    """Short title of a headline number; a normalised one names the reference model when given (``mCE (max=100)``)."""
    spec = get_spec(key)
    if baseline and spec.normalised:
        return f"{spec.label.removesuffix(' %')} ({baseline}=100)"
    return spec.label


def _suffix(spec: MetricSpec, group: Mapping[str, Any], ambiguous: Sequence[str]) -> str:
    if spec.split_always:
        return "[" + ":".join(str(group[f]).removeprefix("eps=") for f in ambiguous) + "]"
    parts = []
    for f in ambiguous:
        v = group[f]
        parts.append(f"d{v}" if f == "severity" else str(v))
    return f"[{','.join(parts)}]" if parts else ""


def build_summary(results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The one-row-per-model headline table.

    Returns:
        ``(summary, columns)``: the table (``model, run, arch, pooling`` then, per headline number, the value and
        ``_ci_low`` / ``_ci_high`` where a CI exists) and, per value column, ``{"key", "metric", "protocol",
        "higher_is_better"}`` where ``key`` is the ``check`` name (``mce``, or ``mce[cifar10-c]`` when a run holds
        the number for several suites).
    """
    info = model_info(results)
    summary = info.copy()
    columns: dict[str, dict[str, Any]] = {}
    if results.empty:
        return summary, columns
    for spec in HEADLINE:
        rows = results[spec.select(results)]
        if spec.key.startswith("clean"):
            # the clean cell is shared by the corruption suites; keep one row per model
            classified = corruption_suites(results) + adversarial_suites(results)
            rows = rows[rows["suite"].isin(classified) | (rows["suite"] == "")]
            rows = rows.drop_duplicates("model")
        if rows.empty:
            continue
        # a field splits the column when it takes several values; the reconstruction pair only when one model has
        # several (each model usually reports its own pooling's pair)
        ambiguous = (
            list(spec.vary)
            if spec.split_always
            else [
                f
                for f in spec.vary
                if (rows.groupby("model")[f].nunique().max() if f == "corruption" else rows[f].nunique()) > 1
            ]
        )
        groups = rows.groupby(ambiguous, sort=False) if ambiguous else [((), rows)]
        for gkey, grp in groups:
            gvals = dict(zip(ambiguous, gkey if isinstance(gkey, tuple) else (gkey,)))
            sfx = _suffix(spec, gvals, ambiguous)
            col = spec.column.format(norm=normalisation_label(grp["protocol"])) + sfx
            g = grp.drop_duplicates("model").set_index("model")
            f = scale_for(spec.metric)
            val, lo, hi = g["value"] * f, g["ci_low"] * f, g["ci_high"] * f
            if spec.transform is not None:
                val, lo, hi = val.map(spec.transform), hi.map(spec.transform), lo.map(spec.transform)
            summary[col] = summary["model"].map(val)
            if lo.notna().any() or hi.notna().any():
                summary[f"{col}_ci_low"] = summary["model"].map(lo)
                summary[f"{col}_ci_high"] = summary["model"].map(hi)
            columns[col] = {
                "key": spec.key + sfx,
                "metric": spec.metric,
                "protocol": "; ".join(dict.fromkeys(p for p in grp["protocol"] if p)),
                "higher_is_better": spec.higher_is_better,
                "unit": unit_for(spec.metric) if spec.metric != "mt5d" else "",
            }
    counts = _nonfinite_by_model(results)
    if counts:
        summary[NONFINITE_COLUMN] = summary["model"].map(lambda m: counts.get(m, {}).get("images", 0))
    return summary, columns


def _nonfinite_by_model(results: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{model: {"images", "total", "cells": [(label, images, n)]}}`` from the :data:`NONFINITE` rows."""
    rows = results[results["metric"] == NONFINITE] if "metric" in results.columns else results.iloc[:0]
    out: dict[str, dict[str, Any]] = {}
    for r in rows.itertuples(index=False):
        n = int(r.n) if pd.notna(r.n) else 0
        bad = int(round(float(r.value) * n))
        label = CLEAN if r.corruption == CLEAN else f"{r.suite}/{r.corruption}/{int(r.severity)}"
        entry = out.setdefault(str(r.model), {"images": 0, "total": 0, "cells": []})
        entry["images"] += bad
        entry["total"] += n
        entry["cells"].append((label, bad, n))
    return out


def nonfinite_notes(results: pd.DataFrame, *, shown: int = 3) -> list[str]:
    """One sentence per model of the results table that produced NaN/inf logits: how many images, in which cells."""
    notes = []
    for model, entry in _nonfinite_by_model(results).items():
        cells = entry["cells"]
        listed = ", ".join(f"{label}: {bad} of {n}" for label, bad, n in cells[:shown])
        more = f", and {len(cells) - shown} more" if len(cells) > shown else ""
        notes.append(
            f"model {model!r} produced NaN/inf logits for {entry['images']} of {entry['total']} images in "
            f"{len(cells)} cell(s) ({listed}{more}); they count as errors"
        )
    return notes


def summary_nonfinite_notes(summary: pd.DataFrame) -> list[str]:
    """The same warning from a summary table (``summary.csv``): its :data:`NONFINITE_COLUMN` counts."""
    if NONFINITE_COLUMN not in summary.columns or "model" not in summary.columns:
        return []
    counts = pd.to_numeric(summary[NONFINITE_COLUMN], errors="coerce").fillna(0)
    return [
        f"model {model!r} produced NaN/inf logits for {int(c)} images; they count as errors"
        for model, c in zip(summary["model"], counts)
        if c > 0
    ]


_KEY_OF_COLUMN = re.compile(r"^(?P<base>[^\[]+?)(?P<sfx>\[[^\]]*\])?$")


def summary_metrics(summary: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{model: {check key: value}}`` from a summary table (as built here or read back from ``summary.csv``).

    Column names are mapped back to the keys of :data:`HEADLINE` (``mCE_%_baseline-normalised`` -> ``mce``);
    CI columns and unknown columns are ignored.
    """
    if "model" not in summary.columns:
        raise ValueError("summary table has no 'model' column")
    templates: list[tuple[re.Pattern[str], str]] = []
    for spec in HEADLINE:
        pattern = re.escape(spec.column).replace(re.escape("{norm}"), r"[A-Za-z-]+")
        templates.append((re.compile(f"^{pattern}$"), spec.key))
    keys: dict[str, str] = {}
    for col in summary.columns:
        if col.endswith(("_ci_low", "_ci_high")):
            continue
        m = _KEY_OF_COLUMN.match(col)
        if not m:
            continue
        for pattern, key in templates:
            if pattern.match(m.group("base")):
                keys[col] = key + (m.group("sfx") or "")
                break
    out: dict[str, dict[str, float]] = {}
    for _, row in summary.iterrows():
        values = {}
        for col, key in keys.items():
            v = pd.to_numeric(row[col], errors="coerce")
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                values[key] = float(v)
        out[str(row["model"])] = values
    return out


def metric_direction(key: str) -> bool | None:
    """True when a higher value of check key ``key`` is better, False when lower is, None when unknown."""
    spec = _SPECS_BY_KEY.get(key.split("[", 1)[0])
    return None if spec is None else spec.higher_is_better


def headline_table(
    results: pd.DataFrame, keys: Sequence[str] = DEMO_KEYS, order: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per model: ``pooling``, ``model``, then per check key its value with ``<key>_ci_low`` /
    ``<key>_ci_high`` (NaN where the run lacks the number), in the order of ``order`` (model names) where given.
    """
    summary, columns = build_summary(results)
    by_key = {info["key"]: col for col, info in columns.items()}
    rows = []
    for _, s in summary.iterrows():
        row: dict[str, Any] = {"pooling": s.get("pooling", ""), "model": s["model"]}
        for key in keys:
            col = by_key.get(key)
            row[key] = float(s[col]) if col is not None and pd.notna(s[col]) else math.nan
            for end in ("ci_low", "ci_high"):
                c = f"{col}_{end}" if col is not None else None
                row[f"{key}_{end}"] = float(s[c]) if c in summary.columns and pd.notna(s[c]) else math.nan
        rows.append(row)
    rank = {m: i for i, m in enumerate(order)}
    table = pd.DataFrame(rows)
    if not table.empty and rank:
        table = table.sort_values("model", key=lambda s: s.map(lambda m: rank.get(m, len(rank))))
        table = table.reset_index(drop=True)
    return table


#: Numbers of :func:`suite_summary`: (check key or stored metric, column title).
_SUITE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clean_error", "clean_err"),
    ("mean_corruption_error", "mean_corr_err"),
    ("mce", "mCE"),
    ("relative_mce", "rel_mCE"),
    ("mce_diff", "mCE_vs_base"),
)
#: The difference to the baseline is a stored row, not a column of ``summary.csv``.
_MCE_DIFF = MetricSpec(
    "mce_diff",
    "mCE_diff_%",
    _is("corruption", "benchmark", "mce_diff"),
    "mce_diff",
    False,
    label="mCE - base",
)


def suite_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, suite) of a corruption evaluation: clean error, mean corruption error, mCE, relative
    mCE and the mCE difference to the baseline, as text with CIs (``12.30 [11.00, 13.60]``), and the mCE protocol.

    Errors are shown in percent. Pairs without any of these numbers (probe suites) are left out.
    """
    lines = []
    for (model, suite), group in results.groupby(["model", "suite"], sort=False):
        line: dict[str, Any] = {"model": model, "pooling": group["pooling"].iloc[0], "suite": suite}
        have = False
        for key, label in _SUITE_COLUMNS:
            spec = _MCE_DIFF if key == "mce_diff" else _SPECS_BY_KEY[key]
            hit = group[spec.select(group)]
            if hit.empty:
                line[label] = ""
                continue
            have = True
            r = hit.iloc[0]
            f = scale_for(spec.metric)
            line[label] = _text(r["value"] * f, r["ci_low"] * f, r["ci_high"] * f)
            if key == "mce":
                line["mCE_protocol"] = r["protocol"]
        if have:
            lines.append(line)
    return pd.DataFrame(lines)


def _text(value: float, lo: float, hi: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{value:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{value:.2f}"
