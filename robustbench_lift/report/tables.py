"""Load runs and turn the long-format ``results.csv`` into the report's tables.

Everything here reads only ``results.csv`` and ``manifest.json`` (see docs/DESIGN.md, "Results table"). Tables are
pandas DataFrames whose column names carry the unit and the normalisation (``mCE_%_baseline-normalised``,
``mean_corruption_error_%_unnormalised``), so a CSV read without the report still says what each number is.
Kinds of rows a run lacks (no perturbations, no shift probes, ...) give empty tables, never errors.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from corruptions.suites import BENCHMARK, HELD_OUT

from ..schema import CLEAN, CORE_RESULT_COLUMNS, RESULT_COLUMNS, with_seed_columns

__all__ = [
    "Run",
    "MetricSpec",
    "HEADLINE",
    "BENCHMARK",
    "HELD_OUT",
    "SHIFT_SUITE",
    "RECONSTRUCTION_SUITE",
    "PERTURBATION_SUITES",
    "load_run",
    "merge_runs",
    "read_results_table",
    "scale_for",
    "unit_for",
    "corruption_suites",
    "corruption_order",
    "build_summary",
    "summary_metrics",
    "build_per_corruption",
    "build_per_severity",
    "build_perturbations",
    "build_shifts",
    "build_reconstruction",
    "build_tables",
]

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------------------------ loading
@dataclass
class Run:
    """One run directory (or a bare results table) as the report sees it.

    Attributes:
        name: display name of the run (the directory name).
        path: the run directory, or the CSV file when only a table was given.
        results: the long-format table, with a ``run`` column added.
        manifest: ``manifest.json`` as a dict (empty when absent).
        model_names: original model name -> name used in merged tables (differs only on collisions).
    """

    name: str
    path: Path
    results: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    model_names: dict[str, str] = field(default_factory=dict)

    @property
    def cells_dir(self) -> Path | None:
        d = self.path / "cells" if self.path.is_dir() else None
        return d if d is not None and d.is_dir() else None


def read_results_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``results.csv`` and check its columns; ``ValueError`` names what is missing."""
    path = Path(path)
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read results table {path}: {exc}") from exc
    missing = [c for c in CORE_RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path} is not a results table: it lacks the columns {missing} "
            f"(expected {', '.join(RESULT_COLUMNS)})"
        )
    df = with_seed_columns(df).loc[:, list(RESULT_COLUMNS)].copy()
    for c in ("model", "pooling", "arch", "suite", "corruption", "metric", "protocol"):
        df[c] = df[c].fillna("").astype(str)
    df.loc[df["pooling"] == "", "pooling"] = "unknown"
    for c in ("value", "ci_low", "ci_high", "n"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["severity"] = pd.to_numeric(df["severity"], errors="coerce").fillna(0).astype(int)
    return df


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run directory (``results.csv`` + ``manifest.json``) or a bare ``results.csv``.

    Raises:
        FileNotFoundError: the path or its ``results.csv`` does not exist.
        ValueError: the table lacks the schema's columns or the manifest is not JSON.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"run {os.fspath(path)!r} does not exist")
    if p.is_dir():
        results_path = p / "results.csv"
        if not results_path.exists():
            raise FileNotFoundError(f"{p} has no results.csv; is it a run directory written by 'evaluate'?")
        manifest_path = p / "manifest.json"
        name = p.resolve().name
    else:
        results_path = p
        manifest_path = p.parent / "manifest.json"
        name = p.resolve().parent.name if p.name == "results.csv" else p.stem
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {manifest_path}: {exc}") from exc
        if not isinstance(manifest, dict):
            raise ValueError(f"{manifest_path} does not hold a JSON object")
    df = read_results_table(results_path)
    df.insert(0, "run", name)
    models = list(dict.fromkeys(df["model"]))
    return Run(name=name, path=p, results=df, manifest=manifest, model_names={m: m for m in models})


def merge_runs(runs: Sequence[Run]) -> pd.DataFrame:
    """Concatenate the runs' tables; a model name used by more than one run becomes ``name@run``.

    Run names that repeat get a ``-2``, ``-3`` suffix first. Updates each run's ``model_names`` mapping.
    """
    if not runs:
        raise ValueError("no runs given")
    seen_runs: dict[str, int] = {}
    for run in runs:
        count = seen_runs.get(run.name, 0) + 1
        seen_runs[run.name] = count
        if count > 1:
            run.name = f"{run.name}-{count}"
            run.results["run"] = run.name
    owners: dict[str, int] = {}
    for run in runs:
        for m in run.model_names:
            owners[m] = owners.get(m, 0) + 1
    frames = []
    for run in runs:
        mapping = {m: (f"{m}@{run.name}" if owners[m] > 1 else m) for m in run.model_names}
        run.model_names = mapping
        df = run.results.copy()
        df["model"] = df["model"].map(mapping)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------------ helpers
def _model_info(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model (first appearance order): run, model, arch, pooling."""
    cols = [c for c in ("run", "model", "arch", "pooling") if c in results.columns]
    return results.loc[:, cols].drop_duplicates("model").reset_index(drop=True)


def corruption_suites(results: pd.DataFrame) -> list[str]:
    """Suites holding corruption cells (neither perturbation, shift nor reconstruction suites)."""
    other = {SHIFT_SUITE, RECONSTRUCTION_SUITE, *PERTURBATION_SUITES}
    mask = (results["severity"] > 0) & results["metric"].isin(["top1_error", "top5_error"])
    mask |= results["metric"].isin(["mce", "mean_corruption_error", "mean_error", "ce"])
    mask |= results["corruption"] == CLEAN
    return [s for s in dict.fromkeys(results.loc[mask, "suite"]) if s not in other]


def corruption_order(names: Iterable[str]) -> list[str]:
    """Sort corruption names: the 15 benchmark ones in canonical order, the 4 held-out ones, then the rest."""
    canon = list(BENCHMARK) + list(HELD_OUT)
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda c: (canon.index(c), c) if c in canon else (len(canon), c))


def _normalisation(protocols: Iterable[str]) -> str:
    text = " ".join(protocols)
    if "AlexNet" in text:
        return "AlexNet-normalised"
    if "baseline" in text:
        return "baseline-normalised"
    return "normalised"


def _scaled(df: pd.DataFrame, metric_col: str = "metric") -> pd.DataFrame:
    out = df.copy()
    factor = out[metric_col].map(scale_for).astype(float)
    for c in ("value", "ci_low", "ci_high"):
        out[c] = out[c] * factor
    return out


# ------------------------------------------------------------------------------------------------------ summary
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
    """

    key: str
    column: str
    select: Callable[[pd.DataFrame], pd.Series]
    metric: str
    higher_is_better: bool
    vary: tuple[str, ...] = ("suite", "severity")
    transform: Callable[[float], float] | None = None


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


def _clean_rows(df: pd.DataFrame) -> pd.Series:
    return (df["corruption"] == CLEAN) & (df["metric"] == "top1_error")


#: Headline numbers of ``summary.csv``, in column order.
HEADLINE: tuple[MetricSpec, ...] = (
    MetricSpec("clean_error", "clean_top1_error_%", _clean_rows, "top1_error", False, vary=()),
    MetricSpec(
        "clean_acc",
        "clean_top1_accuracy_%",
        _clean_rows,
        "top1_error",
        True,
        vary=(),
        transform=lambda v: 100 - v,
    ),
    MetricSpec("mce", "mCE_%_{norm}", _is("corruption", "benchmark", "mce"), "mce", False, vary=("suite",)),
    MetricSpec(
        "relative_mce",
        "relative_mCE_%_{norm}",
        _is("corruption", "benchmark", "relative_mce"),
        "relative_mce",
        False,
        vary=("suite",),
    ),
    MetricSpec(
        "mean_corruption_error",
        "mean_corruption_error_%_unnormalised",
        _is("corruption", "benchmark", "mean_corruption_error"),
        "mean_corruption_error",
        False,
        vary=("suite",),
    ),
    MetricSpec(
        "held_out_mean_corruption_error",
        "held_out_mean_corruption_error_%_unnormalised",
        _is("corruption", "held_out", "mean_corruption_error"),
        "mean_corruption_error",
        False,
        vary=("suite",),
    ),
    MetricSpec("mfr", "mFR_%_{norm}", _is("perturbation", "all", "mfr"), "mfr", False),
    MetricSpec("mfp", "mFP_%_unnormalised", _is("perturbation", "all", "mfp"), "mfp", False),
    MetricSpec(
        "mt5d_normalised",
        "mT5D_%_{norm}",
        _is("perturbation", "all", "mt5d_normalised"),
        "mt5d_normalised",
        False,
    ),
    MetricSpec("mt5d", "mT5D_unnormalised", _is("perturbation", "all", "mt5d"), "mt5d", False),
    MetricSpec(
        "crop_consistency", "crop_consistency_%", _is(SHIFT_SUITE, "crop", "consistency"), "consistency", True
    ),
    MetricSpec(
        "circular_consistency",
        "circular_consistency_%",
        _is(SHIFT_SUITE, "circular", "consistency"),
        "consistency",
        True,
    ),
    MetricSpec(
        "reconstruction_psnr",
        "reconstruction_psnr_dB",
        _is(RECONSTRUCTION_SUITE, None, "psnr"),
        "psnr",
        True,
        vary=("corruption",),
    ),
)

_SPECS_BY_KEY = {s.key: s for s in HEADLINE}


def _suffix(spec: MetricSpec, group: Mapping[str, Any], ambiguous: Sequence[str]) -> str:
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
    info = _model_info(results)
    summary = info.copy()
    columns: dict[str, dict[str, Any]] = {}
    if results.empty:
        return summary, columns
    for spec in HEADLINE:
        rows = results[spec.select(results)]
        if spec.key.startswith("clean"):
            # the clean cell is shared by the corruption suites; keep one row per model
            rows = rows[rows["suite"].isin(corruption_suites(results)) | (rows["suite"] == "")]
            rows = rows.drop_duplicates("model")
        if rows.empty:
            continue
        # a field splits the column when it takes several values; the reconstruction pair only when one model has
        # several (each model usually reports its own pooling's pair)
        ambiguous = [
            f
            for f in spec.vary
            if (rows.groupby("model")[f].nunique().max() if f == "corruption" else rows[f].nunique()) > 1
        ]
        groups = rows.groupby(ambiguous, sort=False) if ambiguous else [((), rows)]
        for gkey, grp in groups:
            gvals = dict(zip(ambiguous, gkey if isinstance(gkey, tuple) else (gkey,)))
            sfx = _suffix(spec, gvals, ambiguous)
            col = spec.column.format(norm=_normalisation(grp["protocol"])) + sfx
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
    return summary, columns


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


__all__.append("metric_direction")


# ------------------------------------------------------------------------------------------------------ detail tables
def _wide(
    rows: pd.DataFrame, index: list[str], metrics: Sequence[str], names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Pivot metrics to columns ``<name>`` / ``<name>_ci_low`` / ``<name>_ci_high`` (scaled to the shown unit)."""
    rows = _scaled(rows[rows["metric"].isin(metrics)])
    if rows.empty:
        return pd.DataFrame(columns=index)
    out = rows.loc[:, index].drop_duplicates().reset_index(drop=True)
    for metric in metrics:
        sub = rows[rows["metric"] == metric].drop_duplicates(index)
        if sub.empty:
            continue
        name = (names or {}).get(metric, metric)
        part = sub.loc[:, [*index, "value", "ci_low", "ci_high"]].rename(
            columns={"value": name, "ci_low": f"{name}_ci_low", "ci_high": f"{name}_ci_high"}
        )
        if part[f"{name}_ci_low"].isna().all() and part[f"{name}_ci_high"].isna().all():
            part = part.drop(columns=[f"{name}_ci_low", f"{name}_ci_high"])
        out = out.merge(part, on=index, how="left")
    return out


def _with_info(df: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    info = _model_info(results)
    drop = [c for c in ("run", "arch", "pooling") if c in df.columns]
    return info.merge(df.drop(columns=drop), on="model", how="inner")


def build_per_corruption(results: pd.DataFrame) -> pd.DataFrame:
    """Model x corruption: mean top-1 error over severities, CE and relative CE (with CIs where stored).

    When a run stores corruption cells but no ``mean_error`` rows, the mean over the stored severities is
    computed here (without a CI).
    """
    suites = corruption_suites(results)
    cor = results[results["suite"].isin(suites) & ~results["corruption"].isin([CLEAN, *AGGREGATE_SCOPES])]
    if cor.empty:
        return pd.DataFrame()
    agg = cor[(cor["severity"] == 0) & cor["metric"].isin(["mean_error", "ce", "relative_ce"])]
    cells = cor[(cor["severity"] > 0) & (cor["metric"] == "top1_error")]
    have = set(
        zip(
            agg.loc[agg["metric"] == "mean_error", "model"],
            agg.loc[agg["metric"] == "mean_error", "corruption"],
        )
    )
    if not cells.empty:
        fallback = (
            cells.groupby(["run", "model", "arch", "pooling", "suite", "corruption"], sort=False)["value"]
            .mean()
            .reset_index()
        )
        fallback = fallback[[(m, c) not in have for m, c in zip(fallback["model"], fallback["corruption"])]]
        if not fallback.empty:
            fallback = fallback.assign(
                severity=0, metric="mean_error", ci_low=np.nan, ci_high=np.nan, n=np.nan, protocol=""
            )
            agg = pd.concat([agg, fallback], ignore_index=True)
    names = {"mean_error": "mean_top1_error_%", "ce": "CE_%", "relative_ce": "relative_CE_%"}
    out = _wide(agg, ["model", "suite", "corruption"], ["mean_error", "ce", "relative_ce"], names)
    if out.empty:
        return out
    out.insert(3, "group", np.where(out["corruption"].isin(HELD_OUT), "held_out", "benchmark"))
    order = {c: i for i, c in enumerate(corruption_order(out["corruption"]))}
    models = {m: i for i, m in enumerate(dict.fromkeys(results["model"]))}
    out = out.sort_values(
        ["suite", "model", "corruption"],
        key=lambda s: s.map(order) if s.name == "corruption" else (s.map(models) if s.name == "model" else s),
    )
    return _with_info(out, results).reset_index(drop=True)


def build_per_severity(results: pd.DataFrame) -> pd.DataFrame:
    """Corruption x severity x model: top-1 / top-5 error of every cell, clean rows as severity 0."""
    suites = corruption_suites(results)
    rows = results[
        results["suite"].isin(suites)
        & results["metric"].isin(["top1_error", "top5_error"])
        & ((results["severity"] > 0) | (results["corruption"] == CLEAN))
    ]
    if rows.empty:
        return pd.DataFrame()
    names = {"top1_error": "top1_error_%", "top5_error": "top5_error_%"}
    out = _wide(rows, ["suite", "corruption", "severity", "model"], ["top1_error", "top5_error"], names)
    n = rows[rows["metric"] == "top1_error"].drop_duplicates(["suite", "corruption", "severity", "model"])
    out = out.merge(n.loc[:, ["suite", "corruption", "severity", "model", "n"]], how="left")
    order = {
        c: i for i, c in enumerate([CLEAN, *corruption_order(c for c in out["corruption"] if c != CLEAN)])
    }
    models = {m: i for i, m in enumerate(dict.fromkeys(results["model"]))}
    out = out.sort_values(
        ["suite", "corruption", "severity", "model"],
        key=lambda s: s.map(order) if s.name == "corruption" else (s.map(models) if s.name == "model" else s),
    )
    info = _model_info(results).drop(columns=["run"], errors="ignore")
    return out.merge(info, on="model", how="left").reset_index(drop=True)


def build_perturbations(results: pd.DataFrame) -> pd.DataFrame:
    """Model x perturbation x difficulty: flip probability, top-5 distance, FR, T5D (and the ``all`` aggregates)."""
    other = {SHIFT_SUITE, RECONSTRUCTION_SUITE, *corruption_suites(results)}
    metrics = ["flip_probability", "top5_distance", "fr", "t5d", "mfp", "mt5d", "mfr", "mt5d_normalised"]
    rows = results[~results["suite"].isin(other) & results["metric"].isin(metrics)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.rename(columns={"corruption": "perturbation", "severity": "difficulty"})
    names = {
        "flip_probability": "flip_probability_%",
        "top5_distance": "top5_distance",
        "fr": "FR_%_baseline-normalised",
        "t5d": "T5D_%_baseline-normalised",
        "mfp": "mFP_%_unnormalised",
        "mt5d": "mT5D_unnormalised",
        "mfr": "mFR_%_baseline-normalised",
        "mt5d_normalised": "mT5D_%_baseline-normalised",
    }
    out = _wide(rows, ["model", "suite", "perturbation", "difficulty"], metrics, names)
    return _with_info(out, results)


def build_shifts(results: pd.DataFrame) -> pd.DataFrame:
    """Shift probes, long format: model, probe, shift, metric, value (in ``unit``), CI, n, protocol."""
    rows = results[results["suite"] == SHIFT_SUITE]
    if rows.empty:
        return pd.DataFrame()
    rows = _scaled(rows).rename(columns={"corruption": "probe", "severity": "shift"})
    rows["unit"] = rows["metric"].map(unit_for)
    cols = [
        "run",
        "model",
        "arch",
        "pooling",
        "probe",
        "shift",
        "metric",
        "value",
        "unit",
        "ci_low",
        "ci_high",
    ]
    cols += ["n", "protocol"]
    return rows.loc[:, cols].reset_index(drop=True)


def build_reconstruction(results: pd.DataFrame) -> pd.DataFrame:
    """Model x down/up pair: PSNR (dB) and SSIM of the reconstruction probe."""
    rows = results[results["suite"] == RECONSTRUCTION_SUITE].rename(columns={"corruption": "pair"})
    if rows.empty:
        return pd.DataFrame()
    out = _wide(rows, ["model", "pair"], ["psnr", "ssim"], {"psnr": "psnr_dB", "ssim": "ssim"})
    return _with_info(out, results)


def build_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of the report, keyed by file stem (``summary``, ``per_corruption``, ...)."""
    summary, _ = build_summary(results)
    return {
        "summary": summary,
        "per_corruption": build_per_corruption(results),
        "per_severity": build_per_severity(results),
        "perturbations": build_perturbations(results),
        "shifts": build_shifts(results),
        "reconstruction": build_reconstruction(results),
    }
