#!/usr/bin/env python3
"""Evaluator throughput and memory.

1. Suite vs pure inference: ``evaluate()`` over a corruption suite (clean + every corruption at one severity,
   corrupted on the fly, stored, aggregated with bootstrap CIs) against the model's forward pass alone on the same
   images, already resized and normalised, in the same process (the same forward work: one pass per cell; best of
   a few alternating rounds, so load from other processes hits both alike). Reported as images/s and their ratio;
   the target is suite >= 80 % of pure inference. Configurations: the toolkit's small ConvNet at 32 px and ResNet-18 at 224 px,
   on the CPU by default.
2. Peak memory vs dataset size: the same clean + one-corruption evaluation of two dataset sizes, each in a fresh
   subprocess, reporting its peak RSS (VmHWM); streaming keeps it flat.

Images are Fashion-MNIST test images when the Debian package is installed (otherwise seeded random images).

Usage: ``python benchmarks/evaluate.py [--quick] [--device cpu] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable (see _setup.py)
    import _setup  # noqa: F401
import numpy as np
import torch

from corruptions.api import list_corruptions  # noqa: E402
from robustbench_lift.data import FASHION_MNIST_ROOT, ArrayDataset, Normalize, open_dataset, prepare_batch  # noqa: E402
from robustbench_lift.evaluation import evaluate, load_models, select_indices  # noqa: E402
from robustbench_lift.models import build_model  # noqa: E402


def _dataset(n: int):
    if os.path.isdir(FASHION_MNIST_ROOT):
        return open_dataset("fashion-mnist")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return ArrayDataset(
        images, rng.integers(0, 10, n), layout="NHW", class_names=[str(i) for i in range(10)], name="random"
    )


def _prepared(entry, dataset, indices, batch_size: int, device: str) -> list[torch.Tensor]:
    """The model's input batches (resized, channel-matched, normalised), made once, outside the timing."""
    norm = Normalize(entry.mean, entry.std).to(device)
    batches = []
    for i in range(0, len(indices), batch_size):
        x, _ = dataset.get_batch(indices[i : i + batch_size])
        batches.append(norm(prepare_batch(x.to(device), channels=entry.in_channels, size=entry.input_size)))
    return batches


def _pure_seconds(model: torch.nn.Module, batches: list[torch.Tensor], passes: int, device: str) -> float:
    """Seconds for ``passes`` forward passes (plus top-5) over the prepared batches."""
    with torch.inference_mode():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(passes):
            for x in batches:
                model(x).topk(5, dim=1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start


def throughput(
    arch: str, n: int, severity: int, batch_size: int, device: str, corruptions: list[str] | None, rounds: int
) -> dict:
    """Best-of-``rounds`` timings, pure inference and suite alternating, so that load from other processes on the
    machine hits both alike. Pure inference does the same forward work as the suite: one pass per cell."""
    in_channels = 1 if arch == "convnet" else 3
    if arch == "convnet":
        model = build_model(arch, pool="max", num_classes=10, in_channels=in_channels)
    else:  # the ImageNet stem, fed 224 px images
        model = build_model(arch, pool="max", num_classes=10, in_channels=in_channels, stem="imagenet")
        model.default_cfg = {**model.default_cfg, "input_size": (224, 224)}
    entry = load_models([model], names=[arch])[0]
    model = entry.model.to(device).eval()
    dataset = _dataset(n)
    suite = "cifar10-c" if arch == "convnet" else "imagenet-c"
    names = corruptions or list_corruptions(suite)
    cells = 1 + len(names)
    batches = _prepared(entry, dataset, select_indices(len(dataset), n, 0), batch_size, device)
    _pure_seconds(model, batches[:1], 1, device)  # warm-up
    pure, full = [], []
    for _ in range(rounds):
        pure.append(_pure_seconds(model, batches, cells, device))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            evaluate(
                [entry],
                dataset,
                suite,
                out=Path(tmp) / "bench",
                corruptions=names,
                severities=[severity],
                limit=n,
                batch_size=batch_size,
                device=device,
                progress=False,
            )
            full.append(time.perf_counter() - start)
    images = cells * n
    return {
        "config": f"{arch} {entry.input_size[0]}px",
        "cells": cells,
        "images_per_cell": n,
        "pure_inference_img_s": round(images / min(pure), 1),
        "suite_img_s": round(images / min(full), 1),
        "ratio": round(min(pure) / min(full), 3),
    }


def _child(n: int) -> None:
    """Runs in a subprocess: one clean + one corruption evaluation of n images, prints peak RSS (MiB)."""
    model = build_model("convnet", pool="max", num_classes=10, in_channels=1)
    dataset = _dataset(max(n, 1))
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(
            [model],
            dataset,
            "cifar10-c",
            out=Path(tmp) / "m",
            corruptions=["gaussian_noise"],
            severities=[3],
            limit=n,
            batch_size=128,
            progress=False,
            n_boot=200,
        )
    print(json.dumps({"images": n, "peak_rss_mib": round(_peak_rss_kib() / 1024, 1)}))


def _peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM belongs to the process image (reset by exec), unlike ``ru_maxrss``, which
    Linux carries over from the parent across fork + exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(sizes: list[int], threads: int) -> list[dict]:
    out = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer images and corruptions (about a minute on 2 cores)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 gives stable figures on a busy machine)"
    )
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        _child(args.child)
        return
    if args.quick:
        runs = [("convnet", 512, None), ("resnet18", 16, ["gaussian_noise", "contrast", "jpeg_compression"])]
        sizes, rounds = [500, 5000], 2
    else:
        runs = [("convnet", 2000, None), ("resnet18", 64, None)]
        sizes, rounds = [1000, 10000], 3
    print(f"device {args.device}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'config':<16}{'cells':>6}{'img/cell':>9}{'pure img/s':>12}{'suite img/s':>13}{'suite/pure':>11}")
    for arch, n, corr in runs:
        r = throughput(
            arch,
            n,
            severity=3,
            batch_size=128 if arch == "convnet" else 32,
            device=args.device,
            corruptions=corr,
            rounds=rounds,
        )
        print(
            f"{r['config']:<16}{r['cells']:>6}{r['images_per_cell']:>9}{r['pure_inference_img_s']:>12}"
            f"{r['suite_img_s']:>13}{r['ratio']:>11.1%}",
            flush=True,
        )
    print("peak RSS, clean + gaussian_noise s3, convnet 32 px, each size in a fresh process:")
    for r in peak_rss(sizes, args.threads):
        print(f"  {r['images']:>6} images: {r['peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
