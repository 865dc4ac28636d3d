"""One baseline for a report over several runs.

Every run normalises its models by its own baseline model (mCE = 100 for it). Put side by side, two runs evaluated
separately would each show their own 100: numbers that look comparable and are not. So a report over several runs
normalises every model by ONE baseline - the first run's, unless told otherwise:

* when the runs evaluated the same images (same dataset, subset, seed and suite settings; the same image ids in
  every stored cell), the normalised rows of each suite are recomputed from the runs' stored cells by the
  evaluator's own aggregator, with the report's baseline and one set of bootstrap resamples;
* otherwise each run keeps its own numbers, and their protocol says so (``each run normalised by its own
  baseline``, which also names the summary column ``..._run-baseline-normalised``), with a note giving the reason.

See docs/report.md, "Reports over several runs".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..schema import RESULT_COLUMNS
from ..store import RunStore
from .tables import Run

__all__ = ["NORMALISED_METRICS", "PER_RUN", "Normalisation", "is_normalised", "run_baseline", "one_baseline"]

#: Metrics relative to a baseline model (plus every ``<metric>_diff``, a difference to it).
NORMALISED_METRICS = frozenset(
    {"ce", "relative_ce", "mce", "relative_mce", "fr", "t5d", "mfr", "mt5d_normalised"}
)
#: Protocol marker of normalised rows that could not be put on the report's one baseline.
PER_RUN = "each run normalised by its own baseline"
#: Bootstrap resamples assumed for runs whose manifest does not record them (``evaluate``'s default).
DEFAULT_N_BOOT = 1000
_BASELINE_IN_PROTOCOL = re.compile(r"baseline model '([^']+)'")


@dataclass
class Normalisation:
    """What :func:`one_baseline` did: the results table to report, the baseline, the suites recomputed, notes."""

    results: pd.DataFrame
    baseline: str | None = None
    recomputed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_normalised(metric: str) -> bool:
    return metric in NORMALISED_METRICS or metric.endswith("_diff")


def run_baseline(run: Run) -> str | None:
    """The baseline model of a run (its original name): recorded by ``evaluate``, else read from the protocols."""
    for session in reversed(run.manifest.get("sessions") or []):
        if isinstance(session, dict) and session.get("baseline"):
            return str(session["baseline"])
    found = _BASELINE_IN_PROTOCOL.findall(" ".join(run.results["protocol"].astype(str)))
    return found[0] if found else None


def _n_boot(run: Run) -> int | None:
    for session in reversed(run.manifest.get("sessions") or []):
        if isinstance(session, dict) and session.get("n_boot") is not None:
            return int(session["n_boot"])
    return None


_SAME_CONFIG = ("dataset", "clean_dataset", "limit", "seed", "backend")


def _different_images(runs: Sequence[Run]) -> str | None:
    """Why the runs' images may differ, or None when their manifests say they are the same."""
    configs = []
    for run in runs:
        config = run.manifest.get("config") if isinstance(run.manifest, dict) else None
        if not isinstance(config, dict):
            return f"run {run.name!r} has no manifest to tell which images it used"
        if run.cells_dir is None:
            return f"run {run.name!r} stores no per-image cells"
        configs.append(config)
    for key in _SAME_CONFIG:
        values = [c.get(key) for c in configs]
        if any(v != values[0] for v in values[1:]):
            return f"the runs differ in {key} ({' vs '.join(repr(v) for v in values)})"
    return None


def _load_cells(runs: Sequence[Run]) -> dict[str, dict[str, tuple[dict, dict, dict]]]:
    """Stored cells of every run, keyed by the merged model names (``name@run`` on collisions)."""
    cells: dict[str, dict[str, tuple[dict, dict, dict]]] = {}
    for run in runs:
        for key, spec, arrays, info in RunStore(run.path).iter_cells():
            model = run.model_names.get(spec.get("model"), None)
            if model is not None:
                cells.setdefault(model, {})[key] = ({**spec, "model": model}, arrays, info)
    return cells


def _suite_cells(cells: dict, suite: str) -> dict[str, list[tuple[dict, dict]]]:
    out: dict[str, list[tuple[dict, dict]]] = {}
    for model, mine in cells.items():
        for spec, arrays, _ in mine.values():
            if spec.get("kind") == "clean" or spec.get("suite") == suite:
                out.setdefault(model, []).append((spec, arrays))
    return out


def _suite_problem(runs: Sequence[Run], suite: str, cells: dict, models: set[str]) -> str | None:
    descs = [run.manifest["config"].get("suites", {}).get(suite) for run in runs]
    if any(d is None for d in descs):
        return f"suite {suite!r} is not in every run's manifest"
    if any(d != descs[0] for d in descs[1:]):
        return f"the runs evaluated suite {suite!r} with different settings"
    mine = _suite_cells(cells, suite)
    missing = sorted(m for m in models if not any(s.get("kind") != "clean" for s, _ in mine.get(m, [])))
    if missing:
        return f"no stored cells of suite {suite!r} for {', '.join(missing)}"
    reference: tuple[np.ndarray, np.ndarray] | None = None
    for model in sorted(mine):
        for _, arrays in mine[model]:
            if "ids" not in arrays or "labels" not in arrays:
                return f"cells of {model} hold no image ids"
            order = np.argsort(arrays["ids"], kind="stable")
            ids, labels = np.asarray(arrays["ids"])[order], np.asarray(arrays["labels"]).reshape(-1)[order]
            if reference is None:
                reference = (ids, labels)
            elif not (np.array_equal(ids, reference[0]) and np.array_equal(labels, reference[1])):
                return f"the cells of suite {suite!r} cover different images"
    return None


def _recompute(
    runs: Sequence[Run], suite: str, cells: dict, baseline: str, order: list[str], seed: int, n_boot: int
) -> pd.DataFrame:
    from ..evaluation.suite_kinds import SUITE_KINDS, AggregateInput

    models: dict[str, dict[str, Any]] = {}
    for run in runs:
        for original, merged in run.model_names.items():
            models[merged] = run.manifest["config"].get("models", {}).get(original, {})
    desc = runs[0].manifest["config"]["suites"][suite]
    data = AggregateInput(
        cells=cells,
        models=models,
        model_order=[m for m in order if m in models],
        baseline=baseline,
        seed=seed,
        n_boot=n_boot,
    )
    rows = SUITE_KINDS.get(desc.get("kind", "corruption")).aggregate(suite, desc.get("params", {}), data)
    rows = [r for r in rows if r.get("suite") == suite]
    return (
        pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        if rows
        else pd.DataFrame(columns=list(RESULT_COLUMNS))
    )


def _splice(results: pd.DataFrame, suite: str, new: pd.DataFrame, run_of: dict[str, str]) -> pd.DataFrame:
    """``results`` with the rows of ``suite`` replaced by ``new``, placed where the suite's rows began."""
    mask = (results["suite"] == suite).to_numpy()
    first = int(np.flatnonzero(mask)[0])
    new = new.copy()
    new.insert(0, "run", new["model"].map(run_of))
    for c in ("model", "pooling", "arch", "suite", "corruption", "metric", "protocol"):
        new[c] = new[c].fillna("").astype(str)
    new["severity"] = pd.to_numeric(new["severity"]).fillna(0).astype(int)
    for c in ("value", "ci_low", "ci_high", "n"):
        new[c] = pd.to_numeric(new[c], errors="coerce")
    head, tail = results.iloc[:first], results.iloc[first:]
    parts = [head[~mask[:first]], new.loc[:, list(results.columns)], tail[~mask[first:]]]
    return pd.concat(parts, ignore_index=True)


def one_baseline(runs: Sequence[Run], results: pd.DataFrame, *, baseline: str | None = None) -> Normalisation:
    """Put every normalised number of a merged multi-run table on one baseline (see the module docstring).

    Args:
        runs: the loaded runs, after :func:`~robustbench_lift.report.tables.merge_runs` (which names the models).
        results: the merged table.
        baseline: the report's baseline, a model name of the merged table (default: the first run's baseline).

    Raises:
        ValueError: ``baseline`` is not a model of the report.
    """
    models = list(dict.fromkeys(results["model"]))
    if baseline is not None and baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not a model of the report; models: {', '.join(models)}")
    if len(runs) < 2:
        return Normalisation(results, baseline)
    bases = {run.name: run.model_names.get(b, b) for run in runs if (b := run_baseline(run)) is not None}
    chosen = baseline or bases.get(runs[0].name)
    normalised = results["metric"].map(is_normalised)
    out = Normalisation(results, chosen)
    if not normalised.any():
        return out
    problem = "the first run names no baseline model" if chosen is None else _different_images(runs)
    cells = _load_cells(runs) if problem is None else {}
    seed = int(runs[0].manifest.get("config", {}).get("seed", 0) or 0)
    boots = [_n_boot(run) for run in runs]
    n_boot = next((b for b in boots if b is not None), None)
    run_of = {merged: run.name for run in runs for merged in run.model_names.values()}
    table = results.copy()
    for suite in dict.fromkeys(results.loc[normalised, "suite"]):
        in_runs = set(results.loc[results["suite"] == suite, "run"]) if "run" in results.columns else set()
        if len(in_runs) == 1 and bases.get(next(iter(in_runs))) == chosen:
            continue  # one run holds the suite, normalised by the report's baseline already
        wanted = set(results.loc[results["suite"] == suite, "model"])
        reason = problem or _suite_problem(runs, suite, cells, wanted)
        if reason is None:
            new = _recompute(runs, suite, cells, chosen, models, seed, n_boot or DEFAULT_N_BOOT)
            if not new.empty:
                table = _splice(table, suite, new, run_of)
                out.recomputed.append(suite)
                continue
            reason = f"the stored cells of suite {suite!r} give no rows"
        # rows normalised by the published AlexNet errors share one reference already; differences do not
        fixed = table["protocol"].str.contains("AlexNet") & ~table["metric"].str.endswith("_diff")
        rows = (table["suite"] == suite) & table["metric"].map(is_normalised) & ~fixed
        table.loc[rows, "protocol"] = table.loc[rows, "protocol"].map(
            lambda p: f"{p}; {PER_RUN} (not comparable across runs)" if PER_RUN not in p else p
        )
        own = ", ".join(f"{bases.get(r.name, '?')} in {r.name}" for r in runs)
        out.notes.append(
            f"{suite}: normalised numbers NOT put on one baseline because {reason}; each run keeps its own "
            f"baseline ({own}), so its normalised numbers compare only within that run"
        )
    if out.recomputed:
        extra = (
            ""
            if n_boot is not None
            else f" ({DEFAULT_N_BOOT} bootstrap resamples: the runs do not record theirs)"
        )
        out.notes.append(
            f"{', '.join(out.recomputed)}: every model normalised by one baseline, {chosen}, recomputed from the "
            f"runs' stored cells (the runs evaluated the same images){extra}"
        )
    out.results = table
    return out
