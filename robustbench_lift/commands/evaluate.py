"""``robustbench-lift evaluate``: corruption-suite evaluation of checkpoints into a resumable run directory.

Examples::

    robustbench-lift evaluate ckpt/lift.safetensors ckpt/max.safetensors --dataset fashion-mnist \\
        --suite cifar10-c --limit 1000 --out reports/fmnist
    robustbench-lift evaluate resnet18.pth --arch torchvision:resnet18 --num-classes 10 \\
        --dataset cifar10-c:~/data/CIFAR-10-C --clean-dataset cifar10:~/data --out reports/c10c
    robustbench-lift evaluate ckpt/lift.safetensors r18.pth --arch - --arch timm:resnet18 --pool - --pool blur \\
        --dataset cifar10:~/data --out reports/mixed

``--arch``, ``--pool``, ``--num-classes`` and ``--in-channels`` are given once (for every external checkpoint;
native ones keep what they record) or once per CKPT (``-``: none for that one).

``--suite`` (and ``--probe``) take comma lists; each entry is dispatched to the suite kind that accepts it
(corruption suites are built in; perturbation suites and probes plug in through
``robustbench_lift.evaluation.register_suite_kind``). A kind that needs its own options adds them through
``EXTRA_OPTIONS`` / ``EXTRA_KWARGS``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

from ._args import (
    OUT_HELP,
    HelpFormatter,
    UsageError,
    add_limit,
    device_name,
    non_negative_int,
    parse_floats,
    parse_ints,
    parse_list,
    positive_int,
    run_path,
)

__all__ = ["register", "run", "EXTRA_OPTIONS", "parse_list", "parse_ints"]

#: Hooks that add options for plug-in suite kinds: ``fn(parser)``; their values reach ``evaluate`` through
#: ``EXTRA_KWARGS`` (``fn(args) -> dict``).
EXTRA_OPTIONS: list[Callable[[argparse.ArgumentParser], None]] = []
EXTRA_KWARGS: list[Callable[[argparse.Namespace], dict[str, Any]]] = []


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate checkpoints on corruption suites (resumable run directory, results.csv)",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "checkpoints", nargs="+", metavar="CKPT", help="checkpoint files (.safetensors, .pt/.pth, ...)"
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="fashion-mnist[:ROOT], cifar10:ROOT, cifar100:ROOT, imagefolder:ROOT, cifar10-c:ROOT, imagenet-c:ROOT "
        "(default: fashion-mnist)",
    )
    data.add_argument(
        "--clean-dataset", default=None, metavar="DATASET", help="clean images for a pre-generated -C set"
    )
    add_limit(data)
    data.add_argument(
        "--strict", action="store_true", help="unreadable image files are fatal instead of skipped"
    )
    data.add_argument(
        "--no-jpeg-storage",
        action="store_true",
        help="on-the-fly imagenet-c: skip storing each corrupted image as a quality-85 JPEG, as the published "
        "files were (then no row is AlexNet-normalised)",
    )
    suite = p.add_argument_group("suites")
    suite.add_argument(
        "--suite",
        type=parse_list,
        default=None,
        metavar="S[,S...]",
        help="cifar10-c, imagenet-c, a suite .json file, cifar10-p, shift, pgd-linf, autoattack-l2, ... "
        "(default: a pre-generated set's own suite, else "
        "cifar10-c for models up to 64 px, imagenet-c above)",
    )
    suite.add_argument(
        "--probe",
        type=parse_list,
        default=None,
        metavar="P[,P...]",
        help="probes to run too (e.g. shift,reconstruction); alone, only the probes run",
    )
    suite.add_argument(
        "--corruptions",
        type=parse_list,
        default=None,
        metavar="C[,C...]",
        help="only these corruptions of the suites (default: all of them)",
    )
    suite.add_argument(
        "--severities",
        type=parse_ints,
        default=None,
        metavar="1,3,5|1-5",
        help="only these severities, 1..5 (default: all five)",
    )
    suite.add_argument("--backend", default="torch", choices=("torch", "reference"), help="corruption engine")
    adv = p.add_argument_group("adversarial suites (pgd-linf, pgd-l2, autoattack-linf, autoattack-l2)")
    adv.add_argument(
        "--eps",
        default=None,
        metavar="E[,E...]",
        help="radii on the [0, 1] pixel scale, before normalisation; fractions accepted, e.g. 0,2/255,8/255 "
        "(default: 0,2/255,8/255 for L-inf, 0,0.25,0.5 for L2)",
    )
    adv.add_argument(
        "--attack-steps", type=positive_int, default=None, metavar="N", help="PGD iterations (default 10)"
    )
    adv.add_argument(
        "--attack-step-size",
        type=float,
        default=None,
        metavar="A",
        help="PGD step size on the [0, 1] scale (default 2.5 * eps / steps)",
    )
    adv.add_argument(
        "--attack-restarts",
        type=positive_int,
        default=None,
        metavar="R",
        help="PGD random restarts (default 1)",
    )
    models = p.add_argument_group("models")
    models.add_argument(
        "--name", action="append", default=None, metavar="MODEL", help="model name, once per CKPT"
    )
    models.add_argument("--baseline", default=None, metavar="MODEL", help="the model that scores 100 in mCE")
    models.add_argument(
        "--arch",
        action="append",
        type=_or_unset(str),
        default=None,
        metavar="ARCH",
        help="architecture of an external checkpoint: a toolkit model, torchvision:NAME or timm:NAME; once (every "
        "external CKPT) or once per CKPT ('-': none for that one)",
    )
    models.add_argument(
        "--pool",
        action="append",
        type=_or_unset(str),
        default=None,
        help="pooling to build with (swapped in); once (every external CKPT) or once per CKPT (a native CKPT is "
        "then rebuilt with it)",
    )
    models.add_argument(
        "--num-classes",
        action="append",
        type=_or_unset(positive_int),
        default=None,
        metavar="K",
        help="head outputs (default: read from the weights); once or once per CKPT",
    )
    models.add_argument(
        "--in-channels",
        action="append",
        type=_or_unset(positive_int),
        default=None,
        metavar="C",
        help="input channels (default: read from the weights); once or once per CKPT",
    )
    models.add_argument(
        "--input-size", type=parse_ints, default=None, metavar="H[,W]", help="override input size"
    )
    models.add_argument(
        "--mean", type=parse_floats, default=None, metavar="M[,M,M]", help="override normalisation mean"
    )
    models.add_argument(
        "--std", type=parse_floats, default=None, metavar="S[,S,S]", help="override normalisation std"
    )
    models.add_argument(
        "--trust-pickle", action="store_true", help="allow full pickles (runs code from the file)"
    )
    run_ = p.add_argument_group("execution")
    run_.add_argument("--out", required=True, type=run_path, metavar="DIR", help=f"run directory: {OUT_HELP}")
    run_.add_argument("--new-run", action="store_true", help="discard what DIR holds instead of resuming")
    run_.add_argument(
        "--batch-size", type=positive_int, default=128, metavar="B", help="images per forward pass"
    )
    run_.add_argument(
        "--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or mps (default: %(default)s)"
    )
    run_.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        metavar="W",
        help="data-loading processes (0: load in this process)",
    )
    run_.add_argument(
        "--seed", type=int, default=0, help="seed of the corruptions, the --limit subset and the bootstrap"
    )
    run_.add_argument(
        "--amp",
        nargs="?",
        const="bf16",
        default=None,
        choices=("bf16", "fp16"),
        help="CUDA autocast (bf16 when given alone)",
    )
    run_.add_argument(
        "--channels-last", action="store_true", help="NHWC memory format (often faster on GPUs)"
    )
    run_.add_argument(
        "--n-boot", type=non_negative_int, default=1000, metavar="B", help="bootstrap resamples for CIs"
    )
    run_.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run_.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="where cells run: this process, or Ray tasks (extra 'ray'; see docs/ray.md)",
    )
    run_.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster for --executor ray: auto, HOST:6379 or ray://HOST:10001 (default: a local instance)",
    )
    for hook in EXTRA_OPTIONS:
        hook(p)
    return p


#: Stands for "not given for this checkpoint" in a per-checkpoint list of --arch/--pool/--num-classes/--in-channels.
UNSET = "-"


def _or_unset(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that reads ``-`` as None (not given for this checkpoint) and anything else with ``parse``."""

    def convert(text: str) -> Any:
        return None if text == UNSET else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _build_options(args: argparse.Namespace) -> dict[str, Any]:
    """--arch/--pool/--num-classes/--in-channels as ``evaluate`` takes them: a value, or one per checkpoint."""
    n = len(args.checkpoints)
    out: dict[str, Any] = {}
    for flag, key in (
        ("--arch", "arch"),
        ("--pool", "pool"),
        ("--num-classes", "num_classes"),
        ("--in-channels", "in_channels"),
    ):
        values = getattr(args, key)
        if values is None:
            out[key] = None
        elif len(values) == 1:
            out[key] = values[0]
        elif len(values) == n:
            out[key] = list(values)
        else:
            raise UsageError(
                f"{flag} given {len(values)} times for {n} checkpoints: give it once (for every external "
                f"checkpoint) or once per checkpoint ({UNSET!r}: none for that one)"
            )
    return out


def _format_summary(table: Any) -> str:
    if table.empty:
        return "(no corruption-suite results)"
    cols = [c for c in table.columns if c != "mCE_protocol"]
    widths = {c: max(len(c), *(len(str(v)) for v in table[c])) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    for _, row in table.iterrows():
        lines.append("  ".join(str(row[c]).ljust(widths[c]) for c in cols))
    protocols = sorted({p for p in table.get("mCE_protocol", []) if isinstance(p, str) and p})
    if protocols:
        lines.append("")
        lines += [f"mCE: {p}" for p in protocols]
    lines.append(
        "errors in %, 95 % bootstrap CIs over images in brackets; mCE_vs_base is paired (model - baseline)"
    )
    return "\n".join(lines)


def _executor(args: argparse.Namespace) -> Any:
    """The executor named by ``--executor`` (None: the evaluator's local default)."""
    if args.executor == "local":
        if args.ray_address is not None:
            raise UsageError("--ray-address needs --executor ray")
        return None
    from ..evaluation.executors.ray import RayExecutor, RayNotInstalledError

    try:
        return RayExecutor(address=args.ray_address)
    except RayNotInstalledError as exc:
        raise UsageError(str(exc)) from None


def _adversarial_suites(suites: list[Any], args: argparse.Namespace) -> list[Any]:
    """Turn adversarial suite names into suites carrying --eps and the attack options."""
    from ..attacks import ADVERSARIAL_SUITES, adversarial_suite

    options = {
        "--eps": args.eps,
        "--attack-steps": args.attack_steps,
        "--attack-step-size": args.attack_step_size,
        "--attack-restarts": args.attack_restarts,
    }
    if not any(s in ADVERSARIAL_SUITES for s in suites):
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} need an adversarial suite (--suite {'|'.join(ADVERSARIAL_SUITES)})"
            )
        return suites
    out = []
    for s in suites:
        if s not in ADVERSARIAL_SUITES:
            out.append(s)
            continue
        try:
            out.append(
                adversarial_suite(
                    s,
                    args.eps,
                    steps=args.attack_steps,
                    step_size=args.attack_step_size,
                    restarts=args.attack_restarts,
                )
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return out


def run(args: argparse.Namespace) -> int:
    from ..evaluation import check_probes, evaluate

    if args.name is not None and len(args.name) != len(args.checkpoints):
        raise UsageError(f"--name given {len(args.name)} times for {len(args.checkpoints)} checkpoints")
    build = _build_options(args)
    executor = _executor(args)
    # probes are suites of their own kind; with --probe alone only the probes run
    suites: list[Any] = list(args.suite or []) + check_probes(args.probe or [])
    suites = _adversarial_suites(suites, args)
    extra: dict[str, Any] = {}
    for hook in EXTRA_KWARGS:
        extra.update(hook(args))
    result = evaluate(
        args.checkpoints,
        args.dataset,
        suites or None,
        out=args.out,
        corruptions=args.corruptions,
        severities=args.severities,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        amp=args.amp or False,
        channels_last=args.channels_last,
        # a progress bar only for a person watching: off when stderr is a file or a CI log
        progress=not args.no_progress and bool(getattr(sys.stderr, "isatty", lambda: False)()),
        executor=executor,
        names=args.name,
        baseline=args.baseline,
        new_run=args.new_run,
        strict=args.strict,
        backend=args.backend,
        jpeg_storage=not args.no_jpeg_storage,
        clean_dataset=args.clean_dataset,
        n_boot=args.n_boot,
        **build,
        trust_pickle=args.trust_pickle,
        input_size=None if args.input_size is None else (args.input_size * 2)[:2],
        mean=args.mean,
        std=args.std,
        command=["robustbench-lift", *sys.argv[1:]],
        **extra,
    )
    print(f"run: {result.run_dir}  (cells run {result.cells_run}, reused {result.cells_skipped})")
    if result.baseline:
        print(f"baseline: {result.baseline}")
    print(_format_summary(result.summary()))
    print(f"results: {result.run_dir / 'results.csv'}")
    if result.seeds is not None and not result.seeds.empty:
        from robustbench_lift.report.answer import answer_lines

        lines = answer_lines(result.seeds)
        if lines:
            print("answer (seed groups vs the baseline's group, 95 % two-level intervals):")
            for line in lines:
                print(f"  {line}")
        print(f"seed groups: {result.run_dir / 'seeds.csv'}")
    if result.failed:
        from ..store import failed_cells_message

        raise UsageError(f"{failed_cells_message(result.failed)}; fix the data and re-run to evaluate them")
    bad = result.results[result.results["metric"] == "top1_error"]["value"].map(
        lambda v: not math.isfinite(v)
    )
    return 1 if bool(bad.any()) else 0
