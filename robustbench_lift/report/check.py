"""The regression gate: compare a run's headline numbers with a committed baseline, metric by metric.

A *baseline* holds per-model values of the summary's check keys (``clean_acc``, ``clean_error``, ``mce``,
``relative_mce``, ``mean_corruption_error``, ``mfr``, ``crop_consistency``, ...; see
:data:`robustbench_lift.report.summary.HEADLINE`) and optionally tolerances. Two file formats:

CSV, one row per (model, metric)::

    model,metric,value,max_drop,max_increase
    lift,clean_acc,91.2,1.0,
    lift,mce,84.0,,2%

JSON::

    {"format": "robustbench-lift-baseline/1",
     "models": {"lift": {"clean_acc": 91.2, "mce": 84.0}},
     "thresholds": {"max_drop": {"clean_acc": 1.0}, "max_increase": {"mce": "2%"}}}

A threshold is absolute (in the metric's unit: percentage points for ``%`` metrics) or, with a ``%`` suffix,
relative to the baseline value. ``max_drop`` fails when ``current < baseline - tol``; ``max_increase`` when
``current > baseline + tol``. Thresholds from the command line override those of a config file, which override the
baseline file's. Metrics without any threshold are listed but not checked.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..fileio import atomic_write_text
from ..schema import CORE_RESULT_COLUMNS, RESULT_COLUMNS
from ..store import MANIFEST as MANIFEST_FILE
from ..store import RESULTS as RESULTS_FILE
from ..store import run_problems, table_problems
from .summary import HEADLINE, build_summary, nonfinite_notes, summary_metrics, summary_nonfinite_notes
from .tables import read_results_table

__all__ = [
    "BASELINE_FORMAT",
    "DIRECTIONS",
    "CheckInputError",
    "Threshold",
    "Baseline",
    "CheckResult",
    "parse_threshold",
    "parse_threshold_args",
    "load_config",
    "load_baseline",
    "current_metrics",
    "current_notes",
    "run_checks",
    "write_baseline",
    "format_table",
    "junit_xml",
    "github_annotations",
]

BASELINE_FORMAT = "robustbench-lift-baseline/1"
DIRECTIONS: tuple[str, ...] = ("max_drop", "max_increase")
KNOWN_KEYS: tuple[str, ...] = tuple(s.key for s in HEADLINE)


class CheckInputError(ValueError):
    """The baseline, run or thresholds cannot be used (exit code 2)."""


@dataclass(frozen=True)
class Threshold:
    """An allowed change: ``amount`` in the metric's unit, or a fraction of the baseline when ``relative``."""

    direction: str
    amount: float
    relative: bool = False

    def allowed(self, baseline: float) -> float:
        """The allowed change in the metric's unit for this baseline value."""
        return abs(baseline) * self.amount / 100.0 if self.relative else self.amount

    def __str__(self) -> str:
        sign = "-" if self.direction == "max_drop" else "+"
        return f"{sign}{self.amount:g}{'%' if self.relative else ''}"


def parse_threshold(direction: str, value: Any, where: str = "") -> Threshold:
    """``1.0`` / ``"1.0"`` (absolute) or ``"2%"`` (relative to the baseline) -> :class:`Threshold`."""
    if direction not in DIRECTIONS:
        raise CheckInputError(f"unknown threshold kind {direction!r}{where}; valid: {', '.join(DIRECTIONS)}")
    text = str(value).strip()
    relative = text.endswith("%")
    number = text[:-1].strip() if relative else text
    try:
        amount = float(number)
    except ValueError:
        raise CheckInputError(
            f"bad {direction} threshold {value!r}{where}: expected a number, optionally with a '%' suffix"
        ) from None
    if not math.isfinite(amount) or amount < 0:
        raise CheckInputError(f"bad {direction} threshold {value!r}{where}: must be a finite number >= 0")
    return Threshold(direction, amount, relative)


def parse_threshold_args(direction: str, items: Iterable[str]) -> dict[str, Threshold]:
    """``["clean_acc=1.0", "mce=2%"]`` -> ``{key: Threshold}``."""
    out: dict[str, Threshold] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CheckInputError(
                f"bad --{direction.replace('_', '-')} {item!r}: expected METRIC=VALUE (e.g. mce=2%)"
            )
        out[key.strip()] = parse_threshold(direction, value, f" for {key.strip()!r}")
    return out


def _thresholds_from_mapping(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Threshold]]:
    """``{"max_drop": {key: v}, "max_increase": {...}}`` -> ``{direction: {key: Threshold}}``."""
    if not isinstance(data, Mapping):
        raise CheckInputError(f"{where}: thresholds must be a table/object, got {type(data).__name__}")
    unknown = [k for k in data if k not in DIRECTIONS]
    if unknown:
        raise CheckInputError(f"{where}: unknown threshold kind(s) {unknown}; valid: {', '.join(DIRECTIONS)}")
    out: dict[str, dict[str, Threshold]] = {}
    for direction, entries in data.items():
        if not isinstance(entries, Mapping):
            raise CheckInputError(f"{where}: {direction} must map metric names to thresholds")
        out[direction] = {
            str(k): parse_threshold(direction, v, f" for {k!r} in {where}") for k, v in entries.items()
        }
    return out


def load_config(path: str | os.PathLike[str]) -> dict[str, dict[str, Threshold]]:
    """Thresholds from a JSON or TOML file: ``{"max_drop": {...}, "max_increase": {...}}``.

    A top-level ``thresholds`` table is also accepted, so a baseline JSON can serve as a config.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CheckInputError(f"cannot read config {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise CheckInputError(
                    f"TOML config {os.fspath(path)!r} needs Python >= 3.11; use JSON"
                ) from None
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise CheckInputError(f"cannot parse config {os.fspath(path)!r}: {exc}") from exc
    if isinstance(data, Mapping) and "thresholds" in data:
        data = data["thresholds"]
    return _thresholds_from_mapping(data, os.fspath(path))


# ------------------------------------------------------------------------------------------------------ baseline
@dataclass
class Baseline:
    """Per-model metric values and the thresholds stored with them."""

    values: dict[str, dict[str, float]]
    thresholds: dict[str, dict[str, Threshold]] = field(default_factory=dict)
    #: per (model, metric) thresholds from CSV rows: {(model, key): {direction: Threshold}}
    row_thresholds: dict[tuple[str, str], dict[str, Threshold]] = field(default_factory=dict)


def _number(value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CheckInputError(f"{where}: {value!r} is not a number") from None
    return v


def _is_run_table(path: Path) -> bool:
    """A results table (the schema's columns) or a report's summary.csv (no ``metric`` column), not a baseline CSV."""
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False
    if all(c in header for c in CORE_RESULT_COLUMNS):
        return True
    return "model" in header and "metric" not in header and "value" not in header


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline: a baseline CSV or JSON (see the module docstring), or a run directory, its results.csv or a
    report's summary.csv (their headline numbers, thresholds from the command line or a config);
    :class:`CheckInputError` says what is wrong."""
    p = Path(path)
    name = os.fspath(path)
    if not p.exists():
        raise CheckInputError(f"baseline file {name!r} does not exist (create one with --update-baseline)")
    if p.is_dir() or (p.suffix.lower() == ".csv" and _is_run_table(p)):
        # a run directory, its results.csv or a report's summary.csv: the headline numbers as check computes them
        # for a run (same keys, same units), without thresholds of its own
        try:
            values = current_metrics(p)
        except CheckInputError as exc:
            raise CheckInputError(f"baseline {name!r}: {exc}") from None
        return Baseline(values, {})
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckInputError(f"cannot read baseline {name!r}: {exc}") from exc
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
            raise CheckInputError(
                f"baseline {name!r} must be a JSON object with a 'models' object "
                '({"models": {"MODEL": {"METRIC": VALUE}}, "thresholds": {...}})'
            )
        values: dict[str, dict[str, float]] = {}
        for model, metrics in data["models"].items():
            if not isinstance(metrics, Mapping):
                raise CheckInputError(
                    f"baseline {name!r}: models[{model!r}] must map metric names to numbers"
                )
            values[str(model)] = {
                str(k): _number(v, f"baseline {name!r}, model {model!r}, metric {k!r}")
                for k, v in metrics.items()
            }
        thresholds = _thresholds_from_mapping(data.get("thresholds", {}), f"baseline {name!r}")
        baseline = Baseline(values, thresholds)
    else:
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise CheckInputError(f"cannot read baseline {name!r}: {exc}") from exc
        missing = [c for c in ("model", "metric", "value") if c not in df.columns]
        if missing:
            raise CheckInputError(
                f"baseline {name!r} lacks the column(s) {missing}; expected model,metric,value"
                f"[,max_drop,max_increase] (found {', '.join(map(str, df.columns)) or 'no columns'})"
            )
        values = {}
        row_thresholds: dict[tuple[str, str], dict[str, Threshold]] = {}
        for i, rec in enumerate(df.to_dict("records"), start=2):
            model, key = rec["model"].strip(), rec["metric"].strip()
            if not model or not key:
                raise CheckInputError(f"baseline {name!r}, line {i}: empty model or metric")
            values.setdefault(model, {})[key] = _number(rec["value"], f"baseline {name!r}, line {i}")
            for direction in DIRECTIONS:
                text = str(rec.get(direction, "")).strip()
                if text:
                    row_thresholds.setdefault((model, key), {})[direction] = parse_threshold(
                        direction, text, f" (baseline {name!r}, line {i})"
                    )
        baseline = Baseline(values, {}, row_thresholds)
    if not baseline.values:
        raise CheckInputError(f"baseline {name!r} holds no models")
    return baseline


# ------------------------------------------------------------------------------------------------------ current run
def current_metrics(run: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """``{model: {key: value}}`` of a run directory, its ``results.csv``, or a ``summary.csv`` from ``report``."""
    p, summary, _ = _current_summary(run)
    metrics = summary_metrics(summary)
    if not metrics:
        raise CheckInputError(f"{os.fspath(p)!r} holds no models")
    return metrics


def current_notes(run: str | os.PathLike[str]) -> list[str]:
    """Warnings about the run the checks read (models that produced NaN/inf logits), for stderr."""
    _, summary, results = _current_summary(run)
    return nonfinite_notes(results) if results is not None else summary_nonfinite_notes(summary)


def _current_summary(run: str | os.PathLike[str]) -> tuple[Path, pd.DataFrame, pd.DataFrame | None]:
    """The file read, its summary table and (for a results table) the results."""
    p = Path(run)
    name = os.fspath(run)
    if p.is_dir():
        if (p / "results.csv").exists():
            p = p / "results.csv"
        elif (p / "summary.csv").exists():
            p = p / "summary.csv"
        else:
            raise CheckInputError(f"{name!r} holds neither results.csv nor summary.csv")
    if not p.exists():
        raise CheckInputError(f"run {name!r} does not exist")
    if p.name == RESULTS_FILE or (p.parent / MANIFEST_FILE).exists():
        problems = run_problems(p.parent) if (p.parent / MANIFEST_FILE).exists() else table_problems(p)
    else:
        problems = table_problems(p)
    if problems:
        raise CheckInputError("; ".join(problems))
    try:
        header = pd.read_csv(p, nrows=0).columns
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CheckInputError(f"cannot read {os.fspath(p)!r}: {exc}") from exc
    results = None
    if all(c in header for c in CORE_RESULT_COLUMNS):
        results = read_results_table(p)
        summary, _ = build_summary(results)
    elif "model" in header:
        summary = pd.read_csv(p, keep_default_na=False, na_values=[""])
    else:
        raise CheckInputError(
            f"{os.fspath(p)!r} is neither a results table (columns {', '.join(RESULT_COLUMNS)}) nor a summary.csv "
            "(a 'model' column and metric columns)"
        )
    return p, summary, results


# ------------------------------------------------------------------------------------------------------ checks
@dataclass
class CheckResult:
    """One check: a metric of a model against its baseline value and threshold."""

    model: str
    metric: str
    baseline: float
    current: float
    delta: float
    threshold: str
    status: str  # PASS | FAIL | SKIP
    reason: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def run_checks(
    baseline: Baseline,
    current: Mapping[str, Mapping[str, float]],
    thresholds: Mapping[str, Mapping[str, Threshold]] | None = None,
) -> tuple[list[CheckResult], list[str]]:
    """Check every baseline (model, metric) against ``current``.

    Args:
        baseline: from :func:`load_baseline`.
        current: from :func:`current_metrics`.
        thresholds: ``{direction: {key: Threshold}}`` given by the user (override the baseline's).

    Returns:
        the checks and notes (e.g. run models absent from the baseline).

    Raises:
        CheckInputError: baseline models missing from the run, thresholds for metrics no baseline has, or nothing
            to check.
    """
    missing = sorted(set(baseline.values) - set(current))
    if missing:
        raise CheckInputError(
            f"baseline model(s) not in the run: {', '.join(missing)}; run models: {', '.join(sorted(current))}. "
            "Evaluate the same models (same names) or update the baseline with --update-baseline"
        )
    notes = []
    extra = sorted(set(current) - set(baseline.values))
    if extra:
        notes.append(f"run model(s) without a baseline, not checked: {', '.join(extra)}")
    user = {d: dict((thresholds or {}).get(d, {})) for d in DIRECTIONS}
    known = {k for metrics in baseline.values.values() for k in metrics}
    unknown = sorted({k for d in DIRECTIONS for k in user[d]} - known)
    if unknown:
        raise CheckInputError(
            f"threshold(s) for metric(s) the baseline does not hold: {', '.join(unknown)}; "
            f"baseline metrics: {', '.join(sorted(known))}"
        )
    results: list[CheckResult] = []
    for model, metrics in baseline.values.items():
        for key, base in metrics.items():
            cur = current[model].get(key, math.nan)
            delta = cur - base if math.isfinite(cur) else math.nan
            active: dict[str, Threshold] = {}
            for d in DIRECTIONS:
                t = user[d].get(key) or baseline.row_thresholds.get((model, key), {}).get(d)
                t = t or baseline.thresholds.get(d, {}).get(key)
                if t is not None:
                    active[d] = t
            tstr = " ".join(str(t) for t in active.values()) or "-"
            if not active:
                results.append(CheckResult(model, key, base, cur, delta, tstr, "SKIP", "no threshold"))
                continue
            if not math.isfinite(cur):
                reason = (
                    "metric missing from the run"
                    if key not in current[model]
                    else "current value is not finite"
                )
                results.append(CheckResult(model, key, base, cur, delta, tstr, "FAIL", reason))
                continue
            reasons = []
            for d, t in active.items():
                allowed = t.allowed(base)
                if d == "max_drop" and cur < base - allowed:
                    reasons.append(f"dropped by {base - cur:.4g} > allowed {allowed:.4g}")
                elif d == "max_increase" and cur > base + allowed:
                    reasons.append(f"increased by {cur - base:.4g} > allowed {allowed:.4g}")
            if reasons:
                results.append(CheckResult(model, key, base, cur, delta, tstr, "FAIL", "; ".join(reasons)))
            else:
                results.append(CheckResult(model, key, base, cur, delta, tstr, "PASS", "within threshold"))
    if not any(r.status != "SKIP" for r in results):
        raise CheckInputError(
            "no metric has a threshold, so nothing would be checked; give --max-drop / --max-increase, --config, "
            "or thresholds in the baseline file"
        )
    return results, notes


def write_baseline(
    path: str | os.PathLike[str],
    current: Mapping[str, Mapping[str, float]],
    thresholds: Mapping[str, Mapping[str, Threshold]] | None = None,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Write ``current`` (optionally only ``metrics``) as a baseline; ``.json`` -> JSON, anything else -> CSV.

    Raises:
        CheckInputError: ``metrics`` names a number the run does not hold (the message lists those it holds).
    """
    p = Path(path)
    keep = set(metrics) if metrics else None
    if keep:
        known = {k for vals in current.values() for k in vals}
        unknown = sorted(keep - known)
        if unknown:
            raise CheckInputError(
                f"--metrics names metric(s) the run does not hold: {', '.join(unknown)}; "
                f"available: {', '.join(sorted(known))}"
            )
    values = {
        m: {k: float(v) for k, v in vals.items() if keep is None or k in keep} for m, vals in current.items()
    }
    thresholds = thresholds or {}
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".json":
        data = {
            "format": BASELINE_FORMAT,
            "models": values,
            "thresholds": {
                d: {
                    k: (f"{t.amount:g}%" if t.relative else t.amount)
                    for k, t in thresholds.get(d, {}).items()
                }
                for d in DIRECTIONS
                if thresholds.get(d)
            },
        }
        atomic_write_text(p, json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        rows = []
        for model, vals in values.items():
            for key, v in vals.items():
                row = {"model": model, "metric": key, "value": repr(v)}
                for d in DIRECTIONS:
                    t = thresholds.get(d, {}).get(key)
                    row[d] = "" if t is None else (f"{t.amount:g}%" if t.relative else f"{t.amount:g}")
                rows.append(row)
        table = pd.DataFrame(rows, columns=["model", "metric", "value", *DIRECTIONS])
        atomic_write_text(p, table.to_csv(index=False, lineterminator="\n"))
    return p


# ------------------------------------------------------------------------------------------------------ output
def format_table(results: Sequence[CheckResult]) -> str:
    """Plain-text table: model, metric, baseline, current, delta, threshold, status, why."""
    head = ("model", "metric", "baseline", "current", "delta", "threshold", "status", "why")
    rows = [
        (r.model, r.metric, _fmt(r.baseline), _fmt(r.current), _fmt(r.delta), r.threshold, r.status, r.reason)
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def junit_xml(results: Sequence[CheckResult], name: str = "robustbench-lift check") -> str:
    """JUnit XML, one testcase per check (FAIL -> <failure>, SKIP -> <skipped>)."""
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(results)),
        failures=str(sum(r.failed for r in results)),
        skipped=str(sum(r.status == "SKIP" for r in results)),
        errors="0",
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"{name}.{r.model}", name=r.metric)
        text = (
            f"baseline={_fmt(r.baseline)} current={_fmt(r.current)} delta={_fmt(r.delta)} "
            f"threshold={r.threshold}: {r.reason}"
        )
        if r.failed:
            ET.SubElement(case, "failure", message=r.reason, type="regression").text = text
        elif r.status == "SKIP":
            ET.SubElement(case, "skipped", message=r.reason)
        else:
            ET.SubElement(case, "system-out").text = text
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def github_annotations(results: Sequence[CheckResult], file: str | None = None) -> list[str]:
    """GitHub Actions workflow commands: ``::error`` for failures, ``::notice`` for passes."""
    lines = []
    for r in results:
        if r.status == "SKIP":
            continue
        kind = "error" if r.failed else "notice"
        props = f"title={_gh_escape(f'{r.model} {r.metric} {r.status}', prop=True)}"
        if file:
            props = f"file={_gh_escape(file, prop=True)}," + props
        msg = (
            f"{r.model} {r.metric}: baseline {_fmt(r.baseline)}, current {_fmt(r.current)}, "
            f"delta {_fmt(r.delta)}, threshold {r.threshold}: {r.reason}"
        )
        lines.append(f"::{kind} {props}::{_gh_escape(msg)}")
    return lines


def as_records(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """The checks as JSON-able dicts."""
    out = []
    for r in results:
        rec = asdict(r)
        for k in ("baseline", "current", "delta"):
            if not math.isfinite(rec[k]):
                rec[k] = None  # JSON has no NaN
        out.append(rec)
    return out


__all__.append("as_records")
