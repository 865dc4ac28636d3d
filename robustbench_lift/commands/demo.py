"""``robustbench-lift demo``: the main job - lift vs max vs avg vs blur pooling on real Fashion-MNIST, end to end.

Examples::

    robustbench-lift demo                       # about 10 minutes on a 2-core CPU; report in reports/demo/report/
    robustbench-lift demo --quick               # the same pipeline on fewer images and epochs (about 2 minutes)
    robustbench-lift demo --epochs 5 --limit 1000 --out reports/demo-long --device cuda

Trains four ConvNets that differ only in pooling, evaluates each on the corruption suite (cifar10-c), the
perturbation suite (cifar10-p), the shift probes and the reconstruction probe, and writes the comparative report.
Re-running the same command reuses the finished checkpoints and evaluation cells.
"""

from __future__ import annotations

import argparse
import math

from ._args import LIMIT_HELP, OUT_HELP, HelpFormatter, device_name, positive_int, run_path

__all__ = ["register", "run", "PROFILE_NAMES"]

#: ``--profile`` choices, written out here so that ``--help`` does not import torch (a test checks them against
#: ``robustbench_lift.demo.PROFILES``).
PROFILE_NAMES = ("default", "quick", "ci")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="train lift/max/avg/blur ConvNets on Fashion-MNIST, evaluate them, write the comparative report",
        description=__doc__.split("\n\n")[0],
        epilog="Re-running the same command resumes: finished checkpoints and evaluation cells are reused.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer images and epochs, same pipeline (same as --profile quick)",
    )
    p.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default=None,
        help="amount of work: default (~10 min on 2 CPU cores), quick (~2 min), ci (the tiny regression-gate run)",
    )
    p.add_argument(
        "--out",
        default=None,
        type=run_path,
        metavar="DIR",
        help=f"output folder: {OUT_HELP} (default: reports/demo, reports/demo-quick with --quick, "
        "reports/ci-gate with ci)",
    )
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N", help="training epochs per model")
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help=LIMIT_HELP,
    )
    p.add_argument(
        "--limit-train",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on a seeded subset of N images",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of training and evaluation (default 0)")
    p.add_argument(
        "--device", type=device_name, default=None, help="cpu, cuda, cuda:1 (default: cuda when available)"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: all cores)"
    )
    p.add_argument(
        "--dataset",
        default="fashion-mnist",
        metavar="DATASET",
        help="fashion-mnist (Debian package dataset-fashion-mnist) or fashion-mnist:DIR",
    )
    p.add_argument(
        "--no-report", action="store_true", help="train and evaluate only (no HTML, plots, tables)"
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the folder's earlier demo work (needed after changing settings)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


_DEFAULT_OUT = {"default": "reports/demo", "quick": "reports/demo-quick", "ci": "reports/ci-gate"}


def run(args: argparse.Namespace) -> int:
    from ..demo import format_headline, run_demo
    from ._args import UsageError

    if args.quick and args.profile not in (None, "quick"):
        raise UsageError(f"--quick contradicts --profile {args.profile}")
    profile = "quick" if args.quick else (args.profile or "default")
    out = args.out or _DEFAULT_OUT[profile]
    result = run_demo(
        out,
        profile=profile,
        epochs=args.epochs,
        limit=args.limit,
        limit_train=args.limit_train,
        threads=args.threads,
        seed=args.seed,
        device=args.device,
        dataset=args.dataset,
        report=not args.no_report,
        restart=args.restart,
        progress=None if args.progress else False,
    )
    prof = result.profile
    reused = [p for p, n in result.trained_epochs.items() if n == 0]
    print(
        f"demo ({prof.name}): {len(result.checkpoints)} models, {prof.epochs} epoch(s) on "
        f"{prof.limit_train or 'all'} training images, evaluated on {prof.limit} test images"
        + (f" ({prof.limit_probes} for perturbations and probes)" if prof.limit_probes is not None else "")
    )
    print(
        f"checkpoints: {result.out_dir / 'checkpoints'}"
        + (f"  (reused: {', '.join(reused)})" if reused else "")
    )
    print(f"run: {result.run_dir}  (cells computed {result.cells_run}, reused {result.cells_reused})")
    print()
    print(format_headline(result.headline))
    print(
        "clean acc and consistencies in %; mCE, relative mCE and mFR normalised by the max-pool model (= 100); "
        "mean corruption error unnormalised over the 15 benchmark corruptions x 5 severities; "
        "95 % bootstrap CIs over images in brackets"
    )
    if result.answer:
        print("\nthe answer (each pooling against the baseline pooling; intervals over seeds and images):")
        for line in result.answer:
            print(f"  {line}")
    for note in result.notes:
        print(f"note: {note}")
    print()
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
    print(f"time: {times}")
    if result.report_dir is not None:
        print(f"report: {result.report_dir / 'report.html'}")
        print(f"        {result.report_dir / 'report.md'}, {result.report_dir / 'summary.csv'}")
    bad = result.headline.get("clean_acc")
    return 1 if bad is not None and any(not math.isfinite(v) for v in bad) else 0
