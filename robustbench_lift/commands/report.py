"""``robustbench-lift report``: tables, plots, an HTML page and a Markdown summary of one or more runs.

Examples::

    robustbench-lift report reports/fmnist --out reports/fmnist/report
    robustbench-lift report reports/run-a reports/run-b --out reports/ab --gallery reports/gallery.png
"""

from __future__ import annotations

import argparse
import sys

from ._args import OUT_HELP, HelpFormatter, run_path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write tables, plots, report.html and report.md for one or more runs",
        description=(
            "Read the runs' results.csv and manifest.json and write summary.csv, per_corruption.csv, "
            "per_severity.csv, perturbations.csv, shifts.csv, reconstruction.csv, the plots (PNG and SVG), a "
            "self-contained report.html and a short report.md. Models whose names collide across runs are "
            "renamed NAME@RUN."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=run_path,
        metavar="RUN",
        help=f"run directory (or its results.csv): {OUT_HELP}",
    )
    p.add_argument(
        "--out",
        required=True,
        type=run_path,
        metavar="DIR",
        help=f"directory for the report files: {OUT_HELP}",
    )
    p.add_argument(
        "--title", default="robustbench-lift report", help="heading of the HTML and Markdown reports"
    )
    p.add_argument(
        "--gallery",
        metavar="PNG",
        help="corruption gallery image to embed (e.g. written by the 'corrupt' command); by default one is drawn "
        "from the run's dataset when it and the corruption engine are available",
    )
    p.add_argument("--no-gallery", action="store_true", help="do not draw a corruption gallery")
    p.add_argument(
        "--formats",
        default="png,svg",
        help="comma list of figure formats written next to the report (png, svg, pdf; default png,svg)",
    )
    p.add_argument(
        "--baseline",
        metavar="MODEL",
        help="with several runs: the model every normalised number (mCE, mFR, ...) is relative to (default: the "
        "first run's baseline; NAME@RUN where names collide)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from ..report import write_report

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    result = write_report(
        args.runs,
        args.out,
        title=args.title,
        gallery=args.gallery,
        make_gallery=not args.no_gallery,
        formats=formats,
        baseline=args.baseline,
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report for {len(result.models)} model(s) in {result.out_dir}:")
    for path in result.files:
        print(f"  {path}")
    return 0
