"""Adversarial suite throughput and agreement with a library PGD.

Prints two tables on real Fashion-MNIST with a ConvNet trained here for a few seconds (or a checkpoint given with
``--checkpoint``):

1. speed: images/s of pure inference, of one forward+backward pass (the bound an attack step cannot beat), and of
   our PGD-10 (L-inf), with the ratio PGD-10 / inference and PGD-10 / (11 x forward+backward), i.e. how close the
   attack is to its own lower bound (10 steps + the checked final iterate + the clean gradient check);
2. agreement: robust error of our PGD and of torchattacks' PGD (same eps, steps, step size, random start, same
   model, same images) at several eps; the difference should stay within 1 point.

Example: ``python benchmarks/adversarial.py --images 500 --threads 2``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import numpy as np
import torch
import torch.nn.functional as F

from corruptions.rng import torch_generator
from robustbench_lift.attacks import default_step_size, parse_eps, pgd_attack
from robustbench_lift.checkpoint import load_checkpoint
from robustbench_lift.data import open_dataset
from robustbench_lift.data.loader import get_batch, select_indices
from robustbench_lift.data.transforms import prepare_batch


def _model(path: str | None, tmp: Path, threads: int):
    if path is None:
        from robustbench_lift.train import train

        path = tmp / "max.safetensors"
        train(
            "convnet",
            "max",
            "fashion-mnist",
            epochs=2,
            out=path,
            limit_train=5000,
            limit_val=500,
            batch_size=64,
            crop_padding=0,
            model_kwargs={"widths": (16, 32, 64), "convs_per_stage": 1},
            num_threads=threads,
            progress=False,
        )
    ckpt = load_checkpoint(path)
    return ckpt.model.eval(), ckpt.meta


def _timed(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a Fashion-MNIST checkpoint (default: train one here)")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eps", default="0.02,0.05,0.1", help="L-inf radii for the agreement table")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model, meta = _model(args.checkpoint, Path(tmp), args.threads)
    data = open_dataset("fashion-mnist", split="test")
    idx = select_indices(len(data), args.images, 0)
    images, labels = get_batch(data, idx)
    x_all = prepare_batch(images, channels=int(meta.in_channels or 1))
    mean = torch.tensor(meta.mean).view(1, -1, 1, 1) if meta.mean else None
    std = torch.tensor(meta.std).view(1, -1, 1, 1) if meta.std else None

    def forward(x):
        return model((x - mean) / std) if mean is not None else model(x)

    y_all = labels.long()
    bs = args.batch_size
    chunks = [(x_all[i : i + bs], y_all[i : i + bs], idx[i : i + bs]) for i in range(0, len(idx), bs)]
    n = len(idx)

    def infer():
        with torch.inference_mode():
            for x, _, _ in chunks:
                forward(x)

    def fwd_bwd():
        for x, y, _ in chunks:
            x = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(forward(x), y, reduction="sum"), x)

    eps0 = parse_eps(args.eps.split(",")[-1])

    def ours(eps=eps0):
        broken = []
        for x, y, ids in chunks:
            gens = [[torch_generator(0, int(i), "bench", r) for i in ids] for r in range(1)]
            broken.append(pgd_attack(forward, x, y, eps=eps, steps=args.steps, generators=gens).broken)
        return torch.cat(broken)

    t_inf = _timed(infer, args.repeats)
    t_fb = _timed(fwd_bwd, args.repeats)
    t_pgd = _timed(ours, max(1, args.repeats - 1))
    print(f"Fashion-MNIST, {n} images, batch {bs}, {args.threads} threads, model {meta.arch}/{meta.pool}")
    print()
    print(f"{'what':<28}{'images/s':>12}{'time (s)':>12}")
    for name, t in (
        ("inference", t_inf),
        ("forward+backward", t_fb),
        (f"PGD-{args.steps} L-inf (ours)", t_pgd),
    ):
        print(f"{name:<28}{n / t:>12.1f}{t:>12.3f}")
    print()
    print(f"PGD-{args.steps} / inference time: {t_pgd / t_inf:.1f}x")
    bound = (args.steps + 1) * t_fb
    print(
        f"PGD-{args.steps} / ({args.steps + 1} x forward+backward) time: {t_pgd / bound:.2f}x (1.0 = at the bound)"
    )

    try:
        import torchattacks
    except ImportError:
        print("\ntorchattacks is not installed (extra 'adversarial'): agreement table skipped")
        return

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return forward(x)

    wrapped = Wrapped().eval()
    print()
    print(f"{'eps':>8}{'clean err %':>13}{'ours %':>10}{'torchattacks %':>16}{'diff (pts)':>12}")
    with torch.no_grad():
        clean = (forward(x_all).argmax(1) != y_all).float().mean().item()
    worst = 0.0
    for text in args.eps.split(","):
        eps = parse_eps(text)
        ours_err = ours(eps).float().mean().item()
        torch.manual_seed(0)
        lib = torchattacks.PGD(
            wrapped, eps=eps, alpha=default_step_size(eps, args.steps), steps=args.steps, random_start=True
        )
        wrong = []
        for x, y, _ in chunks:
            adv = lib(x, y)
            with torch.no_grad():
                wrong.append((forward(adv).argmax(1) != y) | (forward(x).argmax(1) != y))
        lib_err = torch.cat(wrong).float().mean().item()
        worst = max(worst, abs(ours_err - lib_err) * 100)
        print(
            f"{text:>8}{clean * 100:>13.1f}{ours_err * 100:>10.1f}{lib_err * 100:>16.1f}"
            f"{(ours_err - lib_err) * 100:>+12.1f}"
        )
    print(
        f"\nlargest |ours - torchattacks|: {worst:.1f} points ({'within' if worst <= 1.0 else 'OVER'} 1 point)"
    )
    print(f"torchattacks {torchattacks.__version__}, numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
