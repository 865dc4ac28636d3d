"""Forward and forward+backward time of the pooling layers, as a table with each time's ratio to max pooling.

Usage::

    python benchmarks/pooling.py            # CPU, and CUDA when present
    python benchmarks/pooling.py --quick    # fewer repeats
    python benchmarks/pooling.py --threads 2 --kinds max avg lift

"forward" runs in eval mode under ``torch.no_grad()`` (inference); "fwd+bwd" runs in training mode with an input
that requires grad and back-propagates ``y.sum()`` plus, for lift, the layer's auxiliary loss (what training pays).
Each entry is the median over repeats after warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import torch

from robustbench_lift.layers.lift import lifting_loss
from robustbench_lift.layers.pools import create_pool, list_pools

DEFAULT_KINDS = ("max", "avg", "blur", "maxblur", "lift")
SHAPES = ((64, 64, 32, 32), (16, 128, 56, 56))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_one(
    kind: str,
    shape: tuple[int, int, int, int],
    device: torch.device,
    warmup: int,
    repeats: int,
    seed: int = 0,
) -> tuple[float, float]:
    """Median forward and forward+backward milliseconds of one pool kind at one input shape."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(device)
    pool = create_pool(kind, shape[1]).to(device)

    def forward() -> None:
        with torch.no_grad():
            pool(x)

    x_grad = x.clone().requires_grad_(True)

    def forward_backward() -> None:
        x_grad.grad = None
        pool.zero_grad(set_to_none=True)
        loss = pool(x_grad).sum() + lifting_loss(pool)
        loss.backward()

    pool.eval()
    fwd = _median_ms(forward, device, warmup, repeats)
    pool.train()
    fwd_bwd = _median_ms(forward_backward, device, warmup, repeats)
    return fwd, fwd_bwd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3 warm-up, 5 timed)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: all)"
    )
    parser.add_argument(
        "--kinds", nargs="+", default=list(DEFAULT_KINDS), choices=list_pools(), metavar="KIND"
    )
    parser.add_argument(
        "--devices", nargs="+", default=None, help="devices to time (default: cpu, plus cuda when available)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats (default 20, 5 with --quick)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"--threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    warmup = 3 if args.quick else 5
    repeats = args.repeats or (5 if args.quick else 20)
    kinds = list(dict.fromkeys(["max", *args.kinds]))  # max is the reference of the ratios
    print(
        f"torch {torch.__version__}, {args.threads} CPU threads, median of {repeats} after {warmup} warm-up"
    )
    header = f"{'device':<7} {'shape (N,C,H,W)':<18} {'pool':<8} {'forward ms':>11} {'x max':>6} {'fwd+bwd ms':>11} {'x max':>6}"
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        for shape in SHAPES:
            results = {kind: bench_one(kind, shape, device, warmup, repeats) for kind in kinds}
            ref_f, ref_fb = results["max"]
            for kind, (fwd, fwd_bwd) in results.items():
                shape_s = "x".join(map(str, shape))
                print(
                    f"{name:<7} {shape_s:<18} {kind:<8} {fwd:>11.2f} {fwd / ref_f:>6.2f} "
                    f"{fwd_bwd:>11.2f} {fwd_bwd / ref_fb:>6.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
