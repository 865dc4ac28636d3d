"""The report's opening answer: does a pooling beat the baseline pooling, by how much, and how sure is that?

Built from a run's seed table (``seeds.csv``, :mod:`robustbench_lift.metrics.seeds`): for every headline metric,
each seed group's difference to the baseline's group with its two-level interval (seeds, then images, paired), and a
plain sentence such as ``lift vs max: mCE -3.1 [-5.0, -1.2], lower is better, 3 seeds x 2000 images; significant``.
A difference is called significant only when its interval excludes 0. With one seed per group the sentence says the
interval covers image sampling only and makes no claim about poolings in general.

:func:`group_summary` gives one row per seed group with ``n_seeds`` (the rows of ``summary.csv``); CSV columns are
snake_case, :func:`display_titles` gives the readable titles with units for HTML and Markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..fileio import atomic_write_text
from ..metrics.seeds import IMAGES_ONLY, SEED_TABLE_COLUMNS

__all__ = [
    "ANSWER_COLUMNS",
    "ANSWER_METRICS",
    "AnswerMetric",
    "answer_lines",
    "answer_table",
    "display_titles",
    "group_summary",
    "read_seed_table",
    "report_answer",
    "ReportAnswer",
]


@dataclass(frozen=True)
class AnswerMetric:
    """A headline metric of the answer.

    Attributes:
        key: snake_case name (CSV columns ``<key>``, ``<key>_ci_low``, ``<key>_ci_high``).
        label: the metric's name in sentences; title: readable column title with its unit.
        corruption, metric: the seed-table rows it reads (any suite; the suite goes in the row).
        scale: stored value -> shown value (fractions x100); flip: shown as 100 - stored x scale (accuracy
            from error; differences change sign).
        lower_is_better: the direction of "better".
        severity: the rows' severity (0: aggregates; perturbation aggregates are per difficulty: 1; None: any,
            e.g. the shift probes' shift size).
    """

    key: str
    label: str
    title: str
    corruption: str
    metric: str
    scale: float = 1.0
    flip: bool = False
    lower_is_better: bool = True
    severity: int | None = 0


#: The headline metrics, in the answer's order (perturbation metrics appear when the seed table has them).
ANSWER_METRICS: tuple[AnswerMetric, ...] = (
    AnswerMetric("clean_accuracy_pct", "clean accuracy", "Clean accuracy (%)", "clean", "top1_error", 100.0, True,
                 lower_is_better=False),
    AnswerMetric("mce", "mCE", "mCE (baseline = 100)", "benchmark", "mce"),
    AnswerMetric("relative_mce", "relative mCE", "Relative mCE (baseline = 100)", "benchmark", "relative_mce"),
    AnswerMetric("mean_corruption_error_pct", "mean corruption error", "Mean corruption error (%, unnormalised)",
                 "benchmark", "mean_corruption_error", 100.0),
    AnswerMetric("mfr", "mFR", "mFR (baseline = 100)", "all", "mfr", severity=1),
    AnswerMetric("mt5d_normalised", "mT5D", "mT5D (baseline = 100)", "all", "mt5d_normalised", severity=1),
    AnswerMetric("crop_consistency_pct", "crop consistency", "Crop-shift consistency (%)", "crop", "consistency",
                 100.0, lower_is_better=False, severity=None),
    AnswerMetric("circular_consistency_pct", "circular consistency", "Circular-shift consistency (%)", "circular",
                 "consistency", 100.0, lower_is_better=False, severity=None),
)  # fmt: skip


def metrics_for(seeds: pd.DataFrame) -> tuple[AnswerMetric, ...]:
    """:data:`ANSWER_METRICS` plus robust accuracy at every attack radius the seed table holds (``eps=...`` rows)."""
    if seeds.empty or "corruption" not in seeds.columns:
        return ANSWER_METRICS
    labels = [str(c) for c in dict.fromkeys(seeds["corruption"]) if str(c).startswith("eps=")]
    extra = tuple(
        AnswerMetric(
            f"robust_accuracy_pct[{label[4:]}]",
            f"robust accuracy at {label}",
            f"Robust accuracy at {label} (%)",
            label,
            "top1_error",
            100.0,
            True,
            lower_is_better=False,
        )
        for label in labels
    )
    return ANSWER_METRICS + extra


#: Columns of :func:`answer_table` (snake_case, as in CSV).
ANSWER_COLUMNS: tuple[str, ...] = (
    "metric",
    "suite",
    "pooling",
    "baseline_pooling",
    "group",
    "baseline_group",
    "difference",
    "ci_low",
    "ci_high",
    "significant",
    "better",
    "lower_is_better",
    "n_seeds",
    "n_images",
    "interval",
    "sentence",
)

_TITLES = {
    "group": "Seed group",
    "pooling": "Pooling",
    "baseline_pooling": "Baseline pooling",
    "baseline_group": "Baseline seed group",
    "arch": "Architecture",
    "suite": "Suite",
    "metric": "Metric",
    "n_seeds": "Seeds",
    "seeds": "Training seeds",
    "n_images": "Images",
    "difference": "Difference to baseline",
    "ci_low": "95 % interval, low",
    "ci_high": "95 % interval, high",
    "significant": "Significant (interval excludes 0)",
    "better": "Better than baseline",
    "lower_is_better": "Lower is better",
    "interval": "Interval covers",
    "sentence": "Answer",
}


def read_seed_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A run's ``seeds.csv`` (a run folder or the file); ``ValueError`` when it is missing or not a seed table."""
    path = Path(path)
    if path.is_dir():
        path = path / "seeds.csv"
    if not path.exists():
        raise ValueError(f"{path} does not exist: re-run evaluate with this version to get the seed table")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"seeds": str, "per_seed": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read seed table {path}: {exc}") from exc
    missing = [c for c in SEED_TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a seed table: it lacks the columns {missing}")
    return _clean(df)


def _clean(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in ("group", "compared_to", "pooling", "arch", "suite", "corruption", "metric", "seeds", "per_seed",
              "interval", "protocol"):  # fmt: skip
        df[c] = df[c].astype(object).where(df[c].notna(), "").astype(str)
    for c in ("value", "ci_low", "ci_high", "n_seeds", "n"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["significant"] = df["significant"].map(lambda v: str(v).strip().lower() == "true")
    return df


def _shown(m: AnswerMetric, value: float, *, difference: bool) -> float:
    v = value * m.scale
    if m.flip:
        return -v if difference else 100.0 - v
    return v


def _rows_of(df: pd.DataFrame, m: AnswerMetric) -> pd.DataFrame:
    mask = (df["corruption"] == m.corruption) & (df["metric"] == m.metric)
    if m.severity is not None:
        mask &= df["severity"] == m.severity
    return df[mask]


def _num(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.2f}"


def _sentence(
    m: AnswerMetric,
    pooling: str,
    base: str,
    d: float,
    lo: float,
    hi: float,
    sig: bool,
    k: int,
    n: int,
    images_only: bool,
) -> str:
    direction = "lower is better" if m.lower_is_better else "higher is better"
    interval = f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and math.isfinite(hi) else " (no interval)"
    seeds = f"{k} seed{'s' if k != 1 else ''}"
    text = f"{pooling} vs {base}: {m.label} {_num(d)}{interval}, {direction}, {seeds} x {n} images"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text}; no interval, so no claim"
    elif sig:
        better = (d < 0) == m.lower_is_better
        verdict = f"significant: {pooling} is {'better' if better else 'worse'}"
    else:
        verdict = "not significant (the interval includes 0)"
    text += f"; {verdict}"
    if images_only:
        text += "; the interval covers image sampling only (one seed) and makes no claim about poolings in general"
    return text


def answer_table(seeds: pd.DataFrame, metrics: Sequence[AnswerMetric] | None = None) -> pd.DataFrame:
    """One row per (headline metric, suite, group compared with the baseline's group): :data:`ANSWER_COLUMNS`.

    Values are in the shown units (percent points for percentages; accuracy differences are accuracy, not error).
    """
    df = _clean(seeds) if not seeds.empty else seeds
    metrics = metrics_for(df) if metrics is None else metrics
    own = df[df["compared_to"] == ""] if not df.empty else df
    labels = _labels(own)
    out: list[dict[str, Any]] = []
    for m in metrics:
        if df.empty:
            break
        diffs = _rows_of(df[df["compared_to"] != ""], m)
        for r in diffs.itertuples(index=False):
            lo, hi = _shown(m, r.ci_low, difference=True), _shown(m, r.ci_high, difference=True)
            lo, hi = min(lo, hi), max(lo, hi)
            d = _shown(m, r.value, difference=True)
            base_k = own.loc[own["group"] == r.compared_to, "n_seeds"]
            k = int(min(r.n_seeds, base_k.min())) if len(base_k) else int(r.n_seeds)
            images_only = r.interval == IMAGES_ONLY or k == 1
            sig = bool(r.significant) and math.isfinite(lo) and math.isfinite(hi)
            pooling, base = labels.get(r.group, r.pooling), labels.get(r.compared_to, r.compared_to)
            out.append(
                {
                    "metric": m.key,
                    "suite": r.suite,
                    "pooling": r.pooling,
                    "baseline_pooling": _pooling_of(own, r.compared_to),
                    "group": r.group,
                    "baseline_group": r.compared_to,
                    "difference": d,
                    "ci_low": lo,
                    "ci_high": hi,
                    "significant": sig,
                    "better": sig and ((d < 0) == m.lower_is_better),
                    "lower_is_better": m.lower_is_better,
                    "n_seeds": k,
                    "n_images": int(r.n),
                    "interval": IMAGES_ONLY if images_only else r.interval,
                    "sentence": _sentence(m, pooling, base, d, lo, hi, sig, k, int(r.n), images_only),
                }
            )
    return pd.DataFrame(out, columns=list(ANSWER_COLUMNS))


def answer_lines(seeds: pd.DataFrame, metrics: Sequence[AnswerMetric] | None = None) -> list[str]:
    """The answer's sentences, headline metric by metric (suite named when a run has several)."""
    table = answer_table(seeds, metrics)
    several = table["suite"].nunique() > 1 if not table.empty else False
    return [f"[{s}] {t}" if several else t for s, t in zip(table["suite"], table["sentence"])]


def _pooling_of(own: pd.DataFrame, group: str) -> str:
    hit = own.loc[own["group"] == group, "pooling"]
    return str(hit.iloc[0]) if len(hit) else ""


def _labels(own: pd.DataFrame) -> dict[str, str]:
    """Sentence names: the pooling, or ``pooling (group)`` where several groups share a pooling."""
    if own.empty:
        return {}
    pairs = own.loc[:, ["group", "pooling"]].drop_duplicates("group")
    counts = pairs["pooling"].value_counts()
    return {g: p if counts[p] == 1 else f"{p} ({g})" for g, p in pairs.itertuples(index=False)}


def group_summary(seeds: pd.DataFrame, metrics: Sequence[AnswerMetric] | None = None) -> pd.DataFrame:
    """One row per (seed group, suite): group, pooling, arch, suite, ``n_seeds``, seeds, then per headline metric
    ``<key>`` (mean over seeds, shown units), ``<key>_ci_low`` / ``<key>_ci_high`` and ``<key>_per_seed``."""
    df = _clean(seeds) if not seeds.empty else seeds
    if df.empty:
        return pd.DataFrame(columns=["group", "pooling", "arch", "suite", "n_seeds", "seeds"])
    metrics = metrics_for(df) if metrics is None else metrics
    own = df[df["compared_to"] == ""]
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for m in metrics:
        for r in _rows_of(own, m).itertuples(index=False):
            line = lines.setdefault(
                (r.group, r.suite),
                {"group": r.group, "pooling": r.pooling, "arch": r.arch, "suite": r.suite,
                 "n_seeds": int(r.n_seeds), "seeds": r.seeds},
            )  # fmt: skip
            lo, hi = _shown(m, r.ci_low, difference=False), _shown(m, r.ci_high, difference=False)
            per = [_shown(m, float(v), difference=False) for v in r.per_seed.split(";") if v != ""]
            line[m.key] = _shown(m, r.value, difference=False)
            line[f"{m.key}_ci_low"], line[f"{m.key}_ci_high"] = min(lo, hi), max(lo, hi)
            line[f"{m.key}_per_seed"] = ";".join(f"{v:.6g}" for v in per)
    return pd.DataFrame(list(lines.values()))


def display_titles(
    columns: Sequence[str], metrics: Sequence[AnswerMetric] = ANSWER_METRICS
) -> dict[str, str]:
    """Readable titles with units for snake_case columns (unknown ones are returned as they are)."""
    titles = dict(_TITLES)
    for m in metrics:
        titles[m.key] = m.title
        titles[f"{m.key}_ci_low"] = f"{m.title}, 95 % interval low"
        titles[f"{m.key}_ci_high"] = f"{m.title}, 95 % interval high"
        titles[f"{m.key}_per_seed"] = f"{m.title}, per seed"
    return {c: titles.get(c, c) for c in columns}


@dataclass
class ReportAnswer:
    """What :func:`report_answer` found and wrote: the answer's sentences (per run folder with a seed table), the
    tables, the files, and notes for runs without a seed table."""

    lines: list[str]
    answer: pd.DataFrame
    groups: pd.DataFrame
    files: list[Path]
    notes: list[str]


def report_answer(runs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> ReportAnswer:
    """The report's answer for its run folders: ``answer.csv`` (:data:`ANSWER_COLUMNS`, plus ``run`` when there are
    several) and ``summary_groups.csv`` (:func:`group_summary`: one row per seed group with ``n_seeds``) in
    ``out_dir``, and the sentences to open the report with. Runs without ``seeds.csv`` get a note instead."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    answers, groups, lines, notes = [], [], [], []
    for run in runs:
        path = Path(run)
        folder = path if path.is_dir() else path.parent
        try:
            seeds = read_seed_table(folder)
        except ValueError as exc:
            notes.append(f"no seed-aware answer for {folder.name}: {exc}")
            continue
        a, g = answer_table(seeds), group_summary(seeds)
        prefix = f"{folder.name}: " if len(runs) > 1 else ""
        lines += [prefix + line for line in answer_lines(seeds)]
        if len(runs) > 1:
            a.insert(0, "run", folder.name)
            g.insert(0, "run", folder.name)
        answers.append(a)
        groups.append(g)
    answer = pd.concat(answers, ignore_index=True) if answers else pd.DataFrame(columns=list(ANSWER_COLUMNS))
    group_df = pd.concat(groups, ignore_index=True) if groups else pd.DataFrame()
    files = []
    for name, df in (("answer.csv", answer), ("summary_groups.csv", group_df)):
        target = out / name
        atomic_write_text(target, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
        files.append(target)
    return ReportAnswer(lines=lines, answer=answer, groups=group_df, files=files, notes=notes)
