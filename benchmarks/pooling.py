"""Forward and forward+backward time of the pooling layers, as a table with each time's ratio to max pooling.

Usage::

    python benchmarks/pooling.py            # CPU, and CUDA when present
    python benchmarks/pooling.py --quick    # fewer repeats
    python benchmarks/pooling.py --threads 2 --kinds max blur lift-old lift

"forward" runs in eval mode under ``torch.no_grad()`` (inference); "fwd+bwd" runs in training mode with an input
that requires grad and back-propagates ``y.sum()`` plus, for lift, the layer's auxiliary loss (what training pays).
``lift-old`` is the pre-optimisation LiftDownPool2d kept in ``_lift_reference.py``, timed in the same run so the
speed-up is measured side by side; ``lift-torch`` is today's layer with its fused CPU kernel switched off
(``RBL_LIFT_KERNEL=0``: torch operations only, what runs where no C++ compiler is found), ``lift`` the layer as it
runs by default. A second table times one training step (forward, cross-entropy plus the
auxiliary losses, backward, SGD step) of whole models. Each entry is the minimum over repeats after warm-up: other
processes only ever add time, so the minimum is the least noisy estimate on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import torch

from robustbench_lift.layers import kernel
from robustbench_lift.layers.lift import LiftDownPool2d, lifting_loss
from robustbench_lift.layers.pools import create_pool, list_pools
from robustbench_lift.models import build_model

DEFAULT_KINDS = ("max", "avg", "blur", "maxblur", "lift-old", "lift-torch", "lift")
SHAPES = ((64, 64, 32, 32), (16, 128, 56, 56))
#: (model, batch, channels, size): the Fashion-MNIST ConvNet and the CIFAR ResNet-18.
MODELS = (("convnet", 64, 1, 28), ("resnet18", 32, 3, 32))
MODEL_POOLS = ("max", "blur", "lift-old", "lift-torch", "lift")
OLD = "lift-old"
TORCH = "lift-torch"


def _reference_module():
    name = "rbl_lift_reference"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "_lift_reference.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _to_reference(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every LiftDownPool2d in ``module`` by the reference implementation with the same weights."""
    ref = _reference_module()
    if isinstance(module, LiftDownPool2d):
        old = ref.LiftDownPool2d(
            module.channels, module.kernel_size, module.bands, module.lambda_u, module.lambda_p
        )
        old.load_state_dict(module.state_dict())
        return old
    for name, child in module.named_children():
        setattr(module, name, _to_reference(child))
    return module


def _pool(kind: str, channels: int) -> torch.nn.Module:
    if kind == OLD:
        return _to_reference(create_pool("lift", channels))
    return create_pool("lift" if kind == TORCH else kind, channels)


@contextlib.contextmanager
def _fused_kernel(on: bool):
    """Switch LiftPool's fused CPU kernel on or off (it reads RBL_LIFT_KERNEL at each call)."""
    before = os.environ.get("RBL_LIFT_KERNEL")
    os.environ["RBL_LIFT_KERNEL"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RBL_LIFT_KERNEL")
        else:
            os.environ["RBL_LIFT_KERNEL"] = before


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _min_ms(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def bench_one(
    kind: str,
    shape: tuple[int, int, int, int],
    device: torch.device,
    warmup: int,
    repeats: int,
    seed: int = 0,
) -> tuple[float, float]:
    """Minimum forward and forward+backward milliseconds of one pool kind at one input shape."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(device)
    pool = _pool(kind, shape[1]).to(device)

    def forward() -> None:
        with torch.no_grad():
            pool(x)

    x_grad = x.clone().requires_grad_(True)

    def forward_backward() -> None:
        x_grad.grad = None
        pool.zero_grad(set_to_none=True)
        loss = pool(x_grad).sum() + lifting_loss(pool)
        loss.backward()

    with _fused_kernel(kind != TORCH):
        pool.eval()
        fwd = _min_ms(forward, device, warmup, repeats)
        pool.train()
        fwd_bwd = _min_ms(forward_backward, device, warmup, repeats)
    return fwd, fwd_bwd


def bench_model_step(
    arch: str,
    pool: str,
    batch: int,
    channels: int,
    size: int,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> float:
    """Minimum milliseconds of one SGD training step of ``arch`` built with ``pool``."""
    torch.manual_seed(0)  # model initialisation only; the batch comes from its own generator
    model = build_model(arch, pool="lift" if pool in (OLD, TORCH) else pool, in_channels=channels)
    if pool == OLD:
        model = _to_reference(model)
    model = model.to(device).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, channels, size, size, generator=gen).to(device)
    target = torch.randint(0, 10, (batch,), generator=gen).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), target) + lifting_loss(model)
        loss.backward()
        opt.step()

    with _fused_kernel(pool != TORCH):
        return _min_ms(step, device, warmup, repeats)


def _ratio(table: dict, a: str, b: str, col: int) -> str:
    if a not in table or b not in table:
        return "   -  "
    return f"{table[a][col] / table[b][col]:>6.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3 warm-up, 5 timed)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: all)"
    )
    parser.add_argument(
        "--kinds", nargs="+", default=list(DEFAULT_KINDS), choices=[*list_pools(), OLD, TORCH], metavar="KIND"
    )
    parser.add_argument(
        "--devices", nargs="+", default=None, help="devices to time (default: cpu, plus cuda when available)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats (default 20, 5 with --quick)"
    )
    parser.add_argument("--no-models", action="store_true", help="skip the model training-step table")
    parser.add_argument(
        "--models",
        nargs="+",
        default=[m[0] for m in MODELS],
        choices=[m[0] for m in MODELS],
        help="models of the training-step table (default: all)",
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
    print(f"torch {torch.__version__}, {args.threads} CPU threads, min of {repeats} after {warmup} warm-up")
    built = kernel.available() if kernel.enabled() else False
    print(f"LiftPool fused CPU kernel: {'built' if built else 'unavailable: ' + str(kernel.build_error())}")
    header = (
        f"{'device':<7} {'shape (N,C,H,W)':<18} {'pool':<10} {'forward ms':>11} {'x max':>6} {'x blur':>6}"
        f" {'fwd+bwd ms':>11} {'x max':>6} {'x blur':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        for shape in SHAPES:
            results = {kind: bench_one(kind, shape, device, warmup, repeats) for kind in kinds}
            shape_s = "x".join(map(str, shape))
            for kind, (fwd, fwd_bwd) in results.items():
                print(
                    f"{name:<7} {shape_s:<18} {kind:<10} {fwd:>11.2f} {_ratio(results, kind, 'max', 0)} "
                    f"{_ratio(results, kind, 'blur', 0)} {fwd_bwd:>11.2f} {_ratio(results, kind, 'max', 1)} "
                    f"{_ratio(results, kind, 'blur', 1)}"
                )
            for base in (OLD, TORCH):
                if base in results and "lift" in results:
                    print(
                        f"{'':<7} {shape_s:<18} {base} / lift: forward {_ratio(results, base, 'lift', 0)}, "
                        f"fwd+bwd {_ratio(results, base, 'lift', 1)}"
                    )
    if args.no_models:
        return 0
    print()
    header = f"{'device':<7} {'model':<18} {'pool':<10} {'train step ms':>13} {'x max':>6} {'x blur':>6}"
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        for arch, batch, channels, size in (m for m in MODELS if m[0] in args.models):
            label = f"{arch}@{size} b{batch}"
            steps = {
                pool: (bench_model_step(arch, pool, batch, channels, size, device, warmup, repeats),)
                for pool in MODEL_POOLS
            }
            for pool, (ms,) in steps.items():
                print(
                    f"{name:<7} {label:<18} {pool:<10} {ms:>13.1f} {_ratio(steps, pool, 'max', 0)} "
                    f"{_ratio(steps, pool, 'blur', 0)}"
                )
            for base in (OLD, TORCH):
                print(f"{'':<7} {label:<18} {base} / lift: {_ratio(steps, base, 'lift', 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
