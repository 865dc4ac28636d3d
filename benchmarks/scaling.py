"""Scaling of one evaluation across Ray workers: wall time and speed-up against the local executor.

Usage::

    python benchmarks/scaling.py                      # Fashion-MNIST (or synthetic data), convnet, 9 cells
    python benchmarks/scaling.py --limit 500 --workers 1 2 4
    python benchmarks/scaling.py --resnet50           # per-image CPU cost of ResNet-50 (docs/ray.md estimate)

The same run (the toolkit's ``convnet``, max pooling, on ``--limit`` images; the clean cell plus each corruption at
each severity) is evaluated

* by the local executor in this process with ``--threads`` torch threads (default 1), and
* on a local Ray instance with ``N`` CPUs for each ``N`` in ``--workers``: one task per cell, one CPU and one torch
  thread per task, so ``N`` cells run at once.

Each wall time covers the whole ``evaluate`` call (planning, worker start-up and imports, inference, storing, the
results table); starting the Ray instance itself is timed separately. Every run must produce the same
``results.csv``, which the script checks. The 1-minute load average before each run is printed with it: on a shared
machine other processes take cores from the workers. "s inside cells" adds up the cells' own clocks: next to the wall
time it shows how much of the run the workers spent evaluating (the rest is start-up, scheduling and storing).
Output: a Markdown table on stdout.

``--resnet50`` instead measures the inference cost per 224 px image of the toolkit's ResNet-50 (ImageNet stem) for
several poolings and of torchvision's ResNet-50, as CPU time of one thread (independent of the machine's load), the
input of the ImageNet-C estimate in docs/ray.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import numpy as np
import torch

from robustbench_lift.data import ArrayDataset  # noqa: E402
from robustbench_lift.evaluation import evaluate  # noqa: E402
from robustbench_lift.models import build_model  # noqa: E402
from robustbench_lift.store import RunStore  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression")


def _dataset(n: int) -> str | ArrayDataset:
    """Fashion-MNIST by spec when installed (each Ray worker opens it), else random 28 px images."""
    if os.path.isdir(FASHION_MNIST_DIR):
        return "fashion-mnist"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return ArrayDataset(
        images, rng.integers(0, 10, size=n), layout="NHW", class_names=[str(i) for i in range(10)], name="toy"
    )


def _model() -> torch.nn.Module:
    model = build_model("convnet", pool="max", num_classes=10, in_channels=1)
    return model.eval()


def _timed_run(
    model, data, out: Path, args: argparse.Namespace, executor=None
) -> tuple[float, bytes, int, float]:
    start = time.perf_counter()
    result = evaluate(
        [model],
        data,
        "cifar10-c",
        out=out,
        corruptions=list(args.corruptions),
        severities=list(args.severities),
        limit=args.limit,
        batch_size=args.batch_size,
        executor=executor,
        progress=False,
        new_run=True,
        n_boot=0,
        names=["convnet"],
    )
    seconds = time.perf_counter() - start
    # time spent inside the cells (their own clocks, wherever they ran): how busy the workers were
    busy = sum(float(info.get("seconds", 0.0)) for _, _, _, info in RunStore(out).iter_cells())
    return seconds, (out / "results.csv").read_bytes(), result.cells_run, busy


def resnet50_cost(pools: list[str], batch: int = 4, repeats: int = 2) -> list[tuple[str, float]]:
    """CPU seconds per image (one thread, batch ``batch``, 224 px) of ResNet-50 variants, after one warm-up batch."""
    import torchvision

    torch.set_num_threads(1)
    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    variants = [("torchvision resnet50", lambda: torchvision.models.resnet50())]
    variants += [
        (
            f"resnet50 imagenet stem, {p}",
            lambda p=p: build_model("resnet50", pool=p, num_classes=1000, stem="imagenet"),
        )
        for p in pools
    ]
    out = []
    for label, make in variants:
        model = make().eval()
        with torch.inference_mode():
            model(x)
            start = time.process_time()
            for _ in range(repeats):
                model(x)
            out.append((label, (time.process_time() - start) / (repeats * batch)))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=1000, help="images per cell (default 1000)")
    parser.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS))
    parser.add_argument("--severities", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="Ray CPUs (one task each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local executor")
    parser.add_argument(
        "--resnet50", action="store_true", help="measure ResNet-50 per-image CPU cost instead"
    )
    parser.add_argument("--pools", nargs="+", default=["max", "avg", "blur", "lift"], help="for --resnet50")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resnet50:
        rows = resnet50_cost(args.pools)
        reference = rows[0][1]
        print("| model | CPU s / image (1 thread, batch 4, 224 px) | relative to torchvision |")
        print("|---|---|---|")
        for label, seconds in rows:
            print(f"| {label} | {seconds:.3f} | {seconds / reference:.2f} |")
        return 0
    if args.limit <= 0 or args.threads <= 0 or any(w <= 0 for w in args.workers):
        print("--limit, --threads and --workers must be positive", file=sys.stderr)
        return 2
    try:
        import ray

        from robustbench_lift.evaluation.executors.ray import RayExecutor
    except ImportError:
        print("this benchmark needs Ray: pip install 'robustbench-lift[ray]'", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    model = _model()
    data = _dataset(args.limit)
    cells = 1 + len(args.corruptions) * len(args.severities)
    images = cells * args.limit
    rows: list[tuple[str, float, float, int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="rbl-scaling-") as tmp:
        load = os.getloadavg()[0]
        base_s, base_csv, ran, busy = _timed_run(model, data, Path(tmp) / "local", args)
        rows.append((f"local executor, {args.threads} thread(s)", base_s, 0.0, ran, busy, load))
        for n in args.workers:
            t0 = time.perf_counter()
            ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - t0
            try:
                executor = RayExecutor(cpus_per_task=1)
                load = os.getloadavg()[0]
                seconds, csv, ran, busy = _timed_run(model, data, Path(tmp) / f"ray{n}", args, executor)
            finally:
                ray.shutdown()
            if csv != base_csv:
                print(f"results with {n} Ray worker(s) differ from the local executor's", file=sys.stderr)
                return 1
            rows.append((f"Ray, {n} worker(s) x 1 thread", seconds, init_s, ran, busy, load))
    name = data if isinstance(data, str) else "synthetic 28 px"
    print(
        f"convnet (max pool), {name}, {cells} cells x {args.limit} images = {images} images; "
        f"batch {args.batch_size}; {os.cpu_count()} CPU cores; torch {torch.__version__}, ray {ray.__version__}"
    )
    print()
    print(
        "| executor | cells | wall s | images/s | speed-up vs local | Ray start s (not in wall) "
        "| s inside cells (sum) | load before |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, seconds, init_s, ran, busy, load in rows:
        start = f"{init_s:.1f}" if init_s else "-"
        print(
            f"| {label} | {ran} | {seconds:.1f} | {images / seconds:.0f} | {base_s / seconds:.2f}x | {start} "
            f"| {busy:.1f} | {load:.1f} |"
        )
    print()
    print("results.csv identical across all runs: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
