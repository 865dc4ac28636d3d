"""Throughput of the torch corruption engine against the reference backend (imagecorruptions 1.1.2).

Both run the ``imagenet-c`` suite on the same images (scikit-image's photos, resized) through the public API
(``corruptions.corrupt``, backend ``"torch"`` and ``"reference"``), so validation, seeding and quantisation are
counted. Per corruption the time per image is the mean over the severities; the whole-suite figure is one pass
over all corruptions: ``images/s = 1 / sum over corruptions of (seconds per image)``. The reference works one
image at a time, so it is timed image by image on the first ``--n-ref`` images; ours corrupts ``--n`` images per
call. Both take the best of their timings per severity (ours: ``--repeats`` calls; reference: the images), which
keeps the comparison fair on a machine shared with other work.

Usage::

    python benchmarks/corruptions.py [--sizes 32,224] [--n 64] [--n-ref 4] [--severities 1,2,3,4,5]
                                     [--corruptions a,b] [--device cpu|cuda|all] [--quick] [--csv FILE]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import torch

from corruptions.api import corrupt, list_corruptions  # noqa: E402
from corruptions.suites import SuiteSizeWarning  # noqa: E402

__all__ = ["Timing", "test_images", "time_engine", "time_reference", "run", "format_table", "main"]

SUITE = "imagenet-c"

#: The clock timings are read from (``--clock``): wall time, or the CPU time of this process (all its threads),
#: which a machine shared with other work disturbs much less.
_CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_now = time.perf_counter


@dataclass
class Timing:
    """Seconds per image for one corruption at one size, per backend (mean over severities)."""

    corruption: str
    size: int
    ours_cpu: float
    reference: float
    ours_cuda: float | None = None

    @property
    def ratio(self) -> float:
        """reference / ours (CPU): how many times faster the engine is."""
        return self.reference / self.ours_cpu if self.ours_cpu > 0 else float("inf")


def test_images(size: int, n: int) -> torch.Tensor:
    """``n`` uint8 photos (N, 3, size, size): scikit-image's pictures, repeated with flips to reach ``n``."""
    parity = _parity()
    base = parity.load_photos(size, parity.PHOTOS)
    reps = []
    k = 0
    while sum(len(r) for r in reps) < n:
        t = base
        if k % 2 == 1:
            t = t.flip(-1)
        if k % 4 >= 2:
            t = t.flip(-2)
        reps.append(t)
        k += 1
    return torch.cat(reps)[:n].contiguous()


def _parity():
    """The sibling script benchmarks/parity.py, loaded by path (this folder is not a package)."""
    import importlib.util

    name = "rbl_benchmarks_parity"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "parity.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_engine(
    images: torch.Tensor, name: str, severities: Sequence[int], device: torch.device, repeats: int = 3
) -> float:
    """Seconds per image of ``corrupt(..., backend="torch")`` on ``device``: per severity the best of ``repeats``
    calls on the whole batch (after a warm-up), then the mean over severities."""
    x = images.to(device)
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SuiteSizeWarning)
        corrupt(x[:2], name, severities[0], suite=SUITE, seed=1)  # warm-up: caches, lazy imports, kernels
        for s in severities:
            best = math.inf
            for _ in range(max(1, repeats)):
                _sync(device)
                t0 = _now()
                corrupt(x, name, s, suite=SUITE, seed=0)
                _sync(device)
                best = min(best, _now() - t0)
            total += best
    return total / (len(severities) * len(x))


def time_reference(images: torch.Tensor, name: str, severities: Sequence[int]) -> float:
    """Seconds per image of ``corrupt(..., backend="reference")``: per severity the best of the single-image calls
    (one per image, after a warm-up), then the mean over severities."""
    corrupt(images[:1], name, severities[0], suite=SUITE, seed=1, backend="reference")
    total = 0.0
    for s in severities:
        best = math.inf
        for i in range(len(images)):
            t0 = _now()
            corrupt(images[i : i + 1], name, s, suite=SUITE, seed=0, ids=[i], backend="reference")
            best = min(best, _now() - t0)
        total += best
    return total / len(severities)


def run(
    sizes: Sequence[int],
    n: int,
    n_ref: int,
    severities: Sequence[int],
    corruptions: Sequence[str],
    cuda: bool,
    log=None,
    repeats: int = 3,
) -> list[Timing]:
    """Time every corruption at every size."""
    out = []
    for size in sizes:
        images = test_images(size, max(n, n_ref))
        for name in corruptions:
            ours = time_engine(images[:n], name, severities, torch.device("cpu"), repeats)
            ref = time_reference(images[:n_ref], name, severities)
            gpu = time_engine(images[:n], name, severities, torch.device("cuda"), repeats) if cuda else None
            t = Timing(name, size, ours, ref, gpu)
            out.append(t)
            if log is not None:
                log(
                    f"{size:>4} px {name:<18} ours {ours * 1e3:8.3f} ms/img  reference {ref * 1e3:8.2f} ms/img  "
                    f"x{t.ratio:.1f}" + (f"  cuda {gpu * 1e3:.3f} ms/img" if gpu is not None else "")
                )
    return out


def format_table(timings: Sequence[Timing]) -> str:
    """Markdown table: per corruption and size, ms per image and images/s of both backends, and the ratio."""
    cuda = any(t.ours_cuda is not None for t in timings)
    head = ["corruption", "size", "ours CPU ms/img", "reference ms/img", "speed-up"]
    if cuda:
        head.append("ours CUDA ms/img")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sizes = sorted({t.size for t in timings})
    for size in sizes:
        rows = [t for t in timings if t.size == size]
        for t in rows:
            cells = [
                t.corruption,
                str(size),
                f"{t.ours_cpu * 1e3:.3f}",
                f"{t.reference * 1e3:.2f}",
                f"{t.ratio:.1f}x",
            ]
            if cuda:
                cells.append("-" if t.ours_cuda is None else f"{t.ours_cuda * 1e3:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    head = ["whole suite (one pass)", "size", "ours CPU img/s", "reference img/s", "speed-up"]
    if cuda:
        head.append("ours CUDA img/s")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in sizes:
        rows = [t for t in timings if t.size == size]
        ours = sum(t.ours_cpu for t in rows)
        ref = sum(t.reference for t in rows)
        cells = [
            f"{len(rows)} corruptions",
            str(size),
            f"{1 / ours:.1f}",
            f"{1 / ref:.2f}",
            f"{ref / ours:.1f}x",
        ]
        if cuda:
            gpu = sum(t.ours_cuda or 0.0 for t in rows)
            cells.append(f"{1 / gpu:.1f}" if gpu > 0 else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=_ints, default=[32, 224], help="image sizes in px (default 32,224)")
    p.add_argument(
        "--n", type=int, default=None, help="images per engine call (default 256 at 32 px, 32 at 224)"
    )
    p.add_argument("--n-ref", type=int, default=4, help="images timed with the reference backend (default 4)")
    p.add_argument("--severities", type=_ints, default=[1, 2, 3, 4, 5])
    p.add_argument("--corruptions", default=None, help="comma-separated names (default: all of the suite)")
    p.add_argument(
        "--device", choices=["cpu", "cuda", "all"], default="all", help="'all': CUDA too when present"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="engine calls per cell, the best counts (default 3)"
    )
    p.add_argument(
        "--clock",
        choices=sorted(_CLOCK),
        default="wall",
        help="wall time (default) or the process's CPU time (all threads; robust on a busy machine; CPU only)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--quick", action="store_true", help="severities 1,3,5, 2 reference images, smaller batches"
    )
    p.add_argument("--csv", default=None, help="also write the per-corruption timings to this CSV")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    global _now
    args = build_parser().parse_args(argv)
    _now = _CLOCK[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    severities, n_ref, repeats = args.severities, args.n_ref, args.repeats
    if args.quick:
        severities, n_ref, repeats = [1, 3, 5], min(n_ref, 2), min(repeats, 2)
    names = args.corruptions.split(",") if args.corruptions else list_corruptions(SUITE)
    valid = list_corruptions(SUITE)
    bad = [c for c in names if c not in valid]
    if bad:
        print(f"unknown corruptions {', '.join(bad)}; valid: {', '.join(valid)}", file=sys.stderr)
        return 2
    cuda = args.device in ("cuda", "all") and torch.cuda.is_available() and args.clock == "wall"
    if args.device == "cuda" and not cuda:
        print("no CUDA device available", file=sys.stderr)
        return 2
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {args.clock} clock"
        + (f", CUDA {torch.cuda.get_device_name()}" if cuda else ""),
    )
    timings = []
    for size in args.sizes:
        n = args.n or (256 if size <= 64 else 32)
        if args.quick and not args.n:
            n = 128 if size <= 64 else 16
        timings += run(
            [size], n, n_ref, severities, names, cuda, lambda m: print(m, file=sys.stderr), repeats
        )
    print(
        f"# severities {','.join(map(str, severities))}; best of {repeats} engine calls and of {n_ref} reference "
        "images per cell"
    )
    print(format_table(timings))
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                ["corruption", "size", "ours_cpu_s_per_img", "reference_s_per_img", "speedup", "ours_cuda_s"]
            )
            for t in timings:
                w.writerow([t.corruption, t.size, t.ours_cpu, t.reference, t.ratio, t.ours_cuda])
    return 0


if __name__ == "__main__":
    sys.exit(main())
