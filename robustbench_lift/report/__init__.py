"""Reports on finished runs: tables, plots, a self-contained HTML page, a Markdown summary, ``compare`` and the
``check`` regression gate.

Everything here reads ``results.csv`` and ``manifest.json`` only (and, for paired differences in ``compare``, the
per-sample arrays of the stored cells). Submodules are imported on use, so ``check`` does not pay for matplotlib.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write_bytes, atomic_write_text

__all__ = ["ReportResult", "write_report"]

log = logging.getLogger(__name__)


@dataclass
class ReportResult:
    """What :func:`write_report` wrote: every file, and the remarks shown in the report."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    baseline: str | None = None
    removed: list[Path] = field(default_factory=list)  # stale files of an earlier report, deleted
    answer_lines: list[str] = field(default_factory=list)  # the seed-aware answer the report opens with


def write_report(
    runs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "robustbench-lift report",
    gallery: str | os.PathLike[str] | None = None,
    make_gallery: bool = True,
    formats: Sequence[str] = ("png", "svg"),
    baseline: str | None = None,
) -> ReportResult:
    """Write the tables, plots, ``report.html`` and ``report.md`` of one or more runs into ``out_dir``.

    Args:
        runs: run directories (or ``results.csv`` files); models whose names collide across runs become
            ``name@run``.
        out_dir: created if needed; files in it with the report's names are replaced.
        title: heading of the HTML and Markdown reports.
        gallery: a PNG to show as the corruption gallery (e.g. written by the ``corrupt`` command).
        make_gallery: without ``gallery``, try to draw one from the first run's dataset (skipped with a note
            when the dataset or the corruption engine is unavailable).
        formats: figure formats written next to the report (the HTML embeds PNGs).
        baseline: the one model every normalised number of a multi-run report is relative to (a model name of the
            report, ``name@run`` after renaming; default: the first run's baseline). See :mod:`.baseline`.

    Raises:
        FileNotFoundError / ValueError: a run or the gallery image cannot be read.
    """
    from .answer import report_answer
    from .baseline import one_baseline
    from .gallery import report_gallery
    from .html import render_html
    from .markdown import render_markdown
    from .plots import render_plots
    from .summary import nonfinite_notes
    from .tables import build_summary, build_tables, load_run, merge_runs

    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise ValueError(f"unknown figure format(s) {bad}; valid: png, svg, pdf")
    loaded = [load_run(r) for r in runs]
    results = merge_runs(loaded)
    normalised = one_baseline(loaded, results, baseline=baseline)
    results = normalised.results
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ReportResult(out_dir=out, models=list(dict.fromkeys(results["model"])))
    renamed = [f"{k} -> {v}" for run in loaded for k, v in run.model_names.items() if k != v]
    if renamed:
        report.notes.append(f"model names shared by several runs were renamed: {', '.join(renamed)}")
    report.notes += normalised.notes
    report.notes += nonfinite_notes(results)
    report.baseline = normalised.baseline
    tables = build_tables(results)
    _, columns = build_summary(results)
    absent = [name for name in ("perturbations", "shifts", "reconstruction") if tables[name].empty]
    if absent:
        report.notes.append(f"no {', '.join(absent)} rows in the run(s): those sections are left out")
    for name, df in tables.items():
        path = out / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
        report.files.append(path)
    answer = report_answer(runs, out)
    report.files += answer.files
    report.notes += answer.notes
    report.answer_lines = list(answer.lines)
    plots = render_plots(tables, out, formats)
    for p in plots:
        report.files += p.paths
    gallery_png = report_gallery(loaded, results, gallery, make_gallery and gallery is None, report.notes)
    if gallery_png is not None:
        path = out / "gallery.png"
        atomic_write_bytes(path, gallery_png)
        report.files.append(path)
    page = render_html(
        title=title,
        runs=loaded,
        tables=tables,
        summary_columns=columns,
        plots=plots,
        gallery_png=gallery_png,
        notes=report.notes,
        answer=answer,
    )
    atomic_write_text(out / "report.html", page)
    md = render_markdown(
        title=title,
        runs=loaded,
        summary=tables["summary"],
        summary_columns=columns,
        notes=report.notes,
        answer=answer,
    )
    atomic_write_text(out / "report.md", md)
    report.files += [out / "report.html", out / "report.md"]
    report.removed = _remove_stale(out, report.files)
    return report


def _remove_stale(out: Path, written: Sequence[Path]) -> list[Path]:
    """Delete what an earlier report left in ``out`` and this one did not write again (a figure or table whose
    rows are gone), so the folder never mixes two reports. Only files with the report's own names are touched."""
    from .plots import PLOTS
    from .tables import REPORT_TABLES

    names = {f"{name}.{ext}" for name in PLOTS.names() for ext in ("png", "svg", "pdf")}
    names |= {f"{t}.csv" for t in REPORT_TABLES}
    names |= {"gallery.png", "answer.csv", "summary_groups.csv"}
    keep = {Path(f).name for f in written}
    removed = []
    for name in sorted(names - keep):
        path = out / name
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
