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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..schema import CLEAN, CORE_RESULT_COLUMNS, RESULT_COLUMNS, with_seed_columns
from ..store import run_problems, table_problems
from .rows import (
    AGGREGATE_SCOPES,
    BENCHMARK,
    HELD_OUT,
    PERTURBATION_SUITES,
    RECONSTRUCTION_SUITE,
    SHIFT_SUITE,
    adversarial_suites,
    corruption_order,
    corruption_suites,
    model_info,
    scale_for,
    scaled,
    unit_for,
)
from .summary import HEADLINE, MetricSpec, build_summary, metric_direction, summary_metrics

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
    "adversarial_suites",
    "corruption_suites",
    "corruption_order",
    "build_summary",
    "summary_metrics",
    "build_per_corruption",
    "build_per_severity",
    "build_perturbations",
    "build_shifts",
    "build_reconstruction",
    "build_adversarial",
    "build_tables",
    "metric_direction",
]

log = logging.getLogger(__name__)


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


class IncompleteRunError(ValueError):
    """A run whose results.csv is missing, stale (a killed evaluate) or truncated; the message says how to finish it."""


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run directory (``results.csv`` + ``manifest.json``) or a bare ``results.csv``.

    Raises:
        FileNotFoundError: the path or its ``results.csv`` does not exist.
        ValueError: the table lacks the schema's columns or the manifest is not JSON.
        IncompleteRunError: the run's last evaluate did not finish, or results.csv is not the table it wrote.
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
    if manifest_path.exists() or p.is_dir():
        problems = run_problems(manifest_path.parent)
    else:
        problems = table_problems(results_path)
    if problems:
        raise IncompleteRunError("; ".join(problems))
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
    """Concatenate the runs' tables; a model name used by more than one run for different weights becomes
    ``name@run`` (the same checkpoint in several runs keeps its name).

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
    # a name in several runs is one model when every run records the same weights for it (the same checkpoints
    # evaluated on other suites, as the demo's probe run); otherwise each run's model gets its own name
    owners: dict[str, set[Any]] = {}
    suites_of: dict[str, list[set[str]]] = {}
    for run in runs:
        models = (run.manifest.get("config") or {}).get("models") or {}
        for m in run.model_names:
            ident = (models.get(m) or {}).get("content_hash") or ("run", run.name)
            owners.setdefault(m, set()).add(ident)
            suites_of.setdefault(m, []).append(set(run.results.loc[run.results["model"] == m, "suite"]))
    for m, sets in suites_of.items():
        if sum(len(x) for x in sets) != len(set().union(*sets)):  # the same suite twice: keep them apart
            owners[m].add(("overlap", m))
    frames = []
    for run in runs:
        mapping = {m: (f"{m}@{run.name}" if len(owners[m]) > 1 else m) for m in run.model_names}
        run.model_names = mapping
        df = run.results.copy()
        df["model"] = df["model"].map(mapping)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------------ detail tables
def _wide(
    rows: pd.DataFrame, index: list[str], metrics: Sequence[str], names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Pivot metrics to columns ``<name>`` / ``<name>_ci_low`` / ``<name>_ci_high`` (scaled to the shown unit)."""
    rows = scaled(rows[rows["metric"].isin(metrics)])
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
    info = model_info(results)
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
    info = model_info(results).drop(columns=["run"], errors="ignore")
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
    rows = scaled(rows).rename(columns={"corruption": "probe", "severity": "shift"})
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


def build_adversarial(results: pd.DataFrame) -> pd.DataFrame:
    """Model x attack x eps: robust accuracy (%, with CI) and its paired difference to the baseline model."""
    suites = adversarial_suites(results)
    rows = results[results["suite"].isin(suites) & results["corruption"].astype(str).str.startswith("eps=")]
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (model, suite, label), grp in rows.groupby(["model", "suite", "corruption"], sort=False):
        err = grp[grp["metric"] == "top1_error"]
        if err.empty:
            continue
        e = err.iloc[0]
        diff = grp[grp["metric"] == "top1_error_diff"]
        eps = str(label)[len("eps=") :]
        rec = {
            "model": model,
            "attack": suite,
            "eps": eps,
            "eps_value": float(Fraction(eps)),
            "robust_accuracy_%": 100 * (1 - e["value"]),
            "robust_accuracy_%_ci_low": 100 * (1 - e["ci_high"]),
            "robust_accuracy_%_ci_high": 100 * (1 - e["ci_low"]),
            "robust_accuracy_vs_baseline_pts": -100 * diff["value"].iloc[0] if len(diff) else math.nan,
            "robust_accuracy_vs_baseline_ci_low": -100 * diff["ci_high"].iloc[0] if len(diff) else math.nan,
            "robust_accuracy_vs_baseline_ci_high": -100 * diff["ci_low"].iloc[0] if len(diff) else math.nan,
            "n": int(e["n"]),
            "protocol": e["protocol"],
        }
        out.append(rec)
    df = pd.DataFrame(out).sort_values(["attack", "eps_value"], kind="stable").reset_index(drop=True)
    return _with_info(df, results)


#: Every table :func:`build_tables` can write (file stems), in report order.
REPORT_TABLES: tuple[str, ...] = (
    "summary",
    "per_corruption",
    "per_severity",
    "perturbations",
    "shifts",
    "reconstruction",
    "adversarial",
)


def build_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of the report, keyed by file stem (``summary``, ``per_corruption``, ...); ``adversarial`` only
    when the run holds attack rows."""
    summary, _ = build_summary(results)
    extra = {}
    adversarial = build_adversarial(results)
    if not adversarial.empty:
        extra["adversarial"] = adversarial
    return {
        "summary": summary,
        "per_corruption": build_per_corruption(results),
        "per_severity": build_per_severity(results),
        "perturbations": build_perturbations(results),
        "shifts": build_shifts(results),
        "reconstruction": build_reconstruction(results),
        **extra,
    }
