"""``robustbench-lift compare``: metric-by-metric differences between two runs, with CIs and significance.

Examples::

    robustbench-lift compare reports/before reports/after
    robustbench-lift compare reports/before reports/after --all --out deltas.csv
    robustbench-lift compare reports/before reports/after --json > deltas.json
"""

from __future__ import annotations

import argparse
import sys

from ._args import OUT_HELP, HelpFormatter, run_path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="differences B - A between two runs, with paired bootstrap CIs where the same images were used",
        description=(
            "For every model present in both runs, print delta = B - A of each metric (percentage points for "
            "rates) with a 95 % CI and whether it is significant (CI excludes 0). Per-cell error differences use "
            "a paired bootstrap over images when both runs stored per-sample cells for the same images; otherwise "
            "an unpaired normal approximation from the runs' CIs."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "run_a", type=run_path, metavar="RUN_A", help=f"first run directory (or results.csv): {OUT_HELP}"
    )
    p.add_argument(
        "run_b", type=run_path, metavar="RUN_B", help=f"second run directory (or results.csv): {OUT_HELP}"
    )
    p.add_argument(
        "--out",
        metavar="CSV",
        help="write the full comparison (every shared row) as CSV, to this path as given",
    )
    p.add_argument("--json", action="store_true", help="print the full comparison as JSON instead of a table")
    p.add_argument("--all", action="store_true", help="print every shared row, not only the headline metrics")
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for paired CIs (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument(
        "--alpha", type=float, default=0.05, help="1 - CI coverage (default 0.05: 95 %% intervals)"
    )
    p.add_argument("--unpaired", action="store_true", help="ignore per-sample cells (unpaired CIs only)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..report.compare import compare_runs, format_table, headline_rows, write_csv

    if args.n_boot < 10:
        raise ValueError(f"--n-boot must be at least 10, got {args.n_boot}")
    result = compare_runs(
        args.run_a, args.run_b, n_boot=args.n_boot, seed=args.seed, alpha=args.alpha, paired=not args.unpaired
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        path = write_csv(result.table, args.out)
        print(f"wrote {path}", file=sys.stderr)
    table = result.table
    if args.json:
        print(result.to_json())
        return 0
    shown = table if args.all else headline_rows(table)
    print(f"A = {result.run_a}, B = {result.run_b}; delta = B - A")
    print(format_table(shown))
    sig = table["significant"].fillna(False).astype(bool)
    print(
        f"\n{int(sig.sum())} of {len(table)} shared metric rows differ significantly "
        f"({int((table['method'] == 'paired bootstrap').sum())} paired)"
        + ("" if args.all else "; --all prints every row")
    )
    return 0
