"""``robustbench-lift check``: the regression gate for CI.

Examples::

    robustbench-lift check --baseline reports/baseline/baseline.json reports/ci-run
    robustbench-lift check --baseline base.csv --max-drop clean_acc=1.0 --max-increase mce=2% reports/ci-run
    robustbench-lift check --baseline base.json --config thresholds.toml --junit check.xml --github reports/ci-run
    robustbench-lift check --baseline base.json --update-baseline --max-drop clean_acc=1.0 reports/ci-run

Exit codes: 0 every check passed, 1 at least one regression, 2 bad input (missing or malformed baseline, unknown
metrics, models that do not match).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._args import OUT_HELP, HelpFormatter, run_path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check",
        help="regression gate: compare a run's headline metrics with a baseline (exit 0 pass, 1 fail, 2 bad input)",
        description=(
            "Compare a run directory (or its results.csv, or a summary.csv written by 'report') with a baseline "
            "file of per-model metrics. Metric names: clean_acc, clean_error, mce, relative_mce, "
            "mean_corruption_error, held_out_mean_corruption_error, mfr, mfp, mt5d, mt5d_normalised, "
            "crop_consistency, circular_consistency, reconstruction_psnr (with [suite] / [pair] suffixes when a "
            "run holds several). Thresholds are in the metric's unit (percentage points for % metrics) or, with a "
            "'%' suffix, relative to the baseline value."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "run", type=run_path, metavar="RUN", help=f"run directory, results.csv or summary.csv: {OUT_HELP}"
    )
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline file (.json or .csv)")
    p.add_argument(
        "--max-drop",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail when METRIC falls more than VALUE below the baseline (e.g. clean_acc=1.0 or clean_acc=2%%)",
    )
    p.add_argument(
        "--max-increase",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail when METRIC rises more than VALUE above the baseline (e.g. mce=2.0)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="thresholds from a JSON or TOML file: {max_drop: {METRIC: VALUE}, max_increase: {...}}",
    )
    p.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the baseline FILE from the run (with the thresholds given) instead of checking",
    )
    p.add_argument(
        "--metrics",
        metavar="LIST",
        help="with --update-baseline: comma list of metrics to store (default: every headline metric)",
    )
    p.add_argument("--junit", metavar="FILE", help="also write the checks as JUnit XML")
    p.add_argument(
        "--github", action="store_true", help="print GitHub Actions ::error / ::notice annotations"
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON instead of a table")
    return p


def run(args: argparse.Namespace) -> int:
    from ..report.check import (
        DIRECTIONS,
        CheckInputError,
        as_records,
        current_metrics,
        current_notes,
        format_table,
        github_annotations,
        junit_xml,
        load_baseline,
        load_config,
        parse_threshold_args,
        run_checks,
        write_baseline,
    )

    try:
        thresholds = {d: {} for d in DIRECTIONS}
        if args.config:
            for d, entries in load_config(args.config).items():
                thresholds[d].update(entries)
        thresholds["max_drop"].update(parse_threshold_args("max_drop", args.max_drop))
        thresholds["max_increase"].update(parse_threshold_args("max_increase", args.max_increase))
        current = current_metrics(args.run)
        for note in current_notes(args.run):
            print(f"warning: {note}", file=sys.stderr)
        if args.update_baseline:
            metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
            path = write_baseline(args.baseline, current, thresholds, metrics)
            n = sum(1 for vals in current.values() for k in vals if not metrics or k in metrics)
            print(f"wrote baseline {path} ({len(current)} model(s), {n} value(s))")
            return 0
        baseline = load_baseline(args.baseline)
        results, notes = run_checks(baseline, current, thresholds)
    except CheckInputError as exc:
        print(f"robustbench-lift check: error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.junit:
        from ..fileio import atomic_write_text

        atomic_write_text(Path(args.junit), junit_xml(results))
    if args.json:
        print(json.dumps(as_records(results), indent=2))
    else:
        print(format_table(results))
    if args.github:
        for line in github_annotations(results, file=args.baseline):
            print(line)
    failed = sum(r.failed for r in results)
    checked = sum(r.status != "SKIP" for r in results)
    verdict = "FAILED" if failed else "passed"
    print(
        f"\ncheck {verdict}: {checked - failed} of {checked} check(s) passed, {failed} regression(s)",
        file=sys.stderr,
    )
    return 1 if failed else 0
