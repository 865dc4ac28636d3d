"""``robustbench-lift train``: train a registered architecture with a given pooling; resumable.

Examples::

    robustbench-lift train --arch convnet --pool lift --dataset fashion-mnist --epochs 10 --out ckpt/lift.safetensors
    robustbench-lift train --arch resnet18 --pool blur --dataset cifar10:~/data --epochs 100 --out ckpt/r18-blur.safetensors
    robustbench-lift train --arch resnet50 --pool lift --model-opt stem=imagenet --dataset imagefolder:~/imagenet/train \\
        --val-dataset imagefolder:~/imagenet/val --image-size 224 --epochs 90 --out ckpt/r50-lift.safetensors

    robustbench-lift train --arch convnet --pool lift --dataset fashion-mnist --epochs 10 --seeds 0,1,2 \
        --out ckpt/lift.safetensors     # ckpt/lift-seed0.safetensors, lift-seed1..., lift-seed2...

Validation (and so the best checkpoint) uses a seeded held-out split of the training set unless ``--val-split test``
or ``--val-dataset`` asks otherwise; the checkpoint records which, and the seed. Writes the last checkpoint to
``--out``, the best one next to it (``NAME.best.safetensors``) and a resume state
(``NAME.safetensors.resume.pt``); interrupting and re-running the same command resumes after the last finished
epoch. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._args import HelpFormatter, UsageError, device_name, non_negative_int, positive_int

__all__ = ["register", "run", "parse_options", "OPTIMIZERS", "VAL_SPLITS"]

#: ``--optimizer`` / ``--val-split`` choices, written out here so that ``--help`` does not import torch (a test
#: checks them against ``robustbench_lift.train``).
OPTIMIZERS = ("sgd", "adamw")
VAL_SPLITS = ("holdout", "test")


def arch_name(text: str) -> str:
    """``--arch``: a registered architecture (the registry is imported only when the option is given)."""
    from robustbench_lift.models import list_models

    valid = list_models()
    if text not in valid:
        raise argparse.ArgumentTypeError(f"unknown architecture {text!r}; valid: {', '.join(valid)}")
    return text


def pool_name(text: str) -> str:
    """``--pool``: a registered pooling layer (the registry is imported only when the option is given)."""
    from robustbench_lift.layers.pools import list_pools

    valid = list_pools()
    if text not in valid:
        raise argparse.ArgumentTypeError(f"unknown pooling {text!r}; valid: {', '.join(valid)}")
    return text


def parse_options(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["stem=imagenet", "widths=[16,32,64]"]`` -> ``{"stem": "imagenet", "widths": [16, 32, 64]}``.

    Values are read as JSON when they parse (numbers, lists, true/false), else kept as strings.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model with a given pooling layer (resumable)",
        description=__doc__.split("\n\n")[0],
        epilog="Re-running the same command resumes after the last finished epoch.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--arch",
        required=True,
        type=arch_name,
        metavar="ARCH",
        help="registered model architecture, e.g. convnet, resnet18 (a wrong name lists them all)",
    )
    p.add_argument(
        "--pool",
        required=True,
        type=pool_name,
        metavar="POOL",
        help="pooling at every downsampling point, e.g. lift, max, avg, blur (a wrong name lists them all)",
    )
    p.add_argument(
        "--dataset", required=True, help="dataset spec, e.g. fashion-mnist, cifar10:ROOT (train split)"
    )
    p.add_argument("--epochs", required=True, type=positive_int, help="total number of epochs")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.safetensors",
        help="last checkpoint, a path used as given ending in .safetensors (the only format written); best and "
        "resume state go next to it",
    )
    p.add_argument(
        "--val-split",
        choices=VAL_SPLITS,
        default="holdout",
        help="validate (and pick the best checkpoint) on a seeded held-out split of the training set, or on the "
        "dataset's test split (the evaluation images: only when you mean it)",
    )
    p.add_argument(
        "--holdout",
        type=positive_int,
        default=None,
        help="size of the held-out split (default: a tenth of the training set, at most 5000)",
    )
    p.add_argument(
        "--val-dataset", default=None, help="validate on this dataset spec (its test split) instead"
    )
    p.add_argument("--batch-size", type=positive_int, default=128, help="images per training step")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="SGD (momentum, Nesterov) or AdamW")
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: 0.05 SGD, 2e-3 AdamW)"
    )
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain momentum for SGD")
    p.add_argument(
        "--weight-decay", type=float, default=None, help="weight decay (default: 5e-4 SGD, 0.05 AdamW)"
    )
    p.add_argument("--warmup-epochs", type=float, default=0.5, help="linear warm-up, then cosine decay")
    p.add_argument(
        "--label-smoothing", type=float, default=0.0, help="label smoothing of the loss, in [0, 1)"
    )
    p.add_argument(
        "--crop-padding", type=non_negative_int, default=4, help="random-crop padding (0: no crops)"
    )
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: on, off for digit datasets)",
    )
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="training seed (data order, augmentation, init)")
    seeds.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        metavar="S1,S2,...",
        help="train one model per seed with the same recipe; --out NAME.safetensors becomes NAME-seed<S>.safetensors",
    )
    p.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="allow nondeterministic algorithms",
    )
    p.add_argument(
        "--limit-train", type=positive_int, default=None, help="train on a seeded subset of N images"
    )
    p.add_argument(
        "--limit-val", type=positive_int, default=None, help="validate on a seeded subset of N images"
    )
    p.add_argument(
        "--model-opt", action="append", metavar="KEY=VALUE", help="architecture option, e.g. stem=imagenet"
    )
    p.add_argument(
        "--pool-opt", action="append", metavar="KEY=VALUE", help="pooling option, e.g. kernel_size=3 (lift)"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument(
        "--device", type=device_name, default=None, help="cpu, cuda, cuda:1 (default: cuda when available)"
    )
    p.add_argument(
        "--image-size", type=positive_int, default=None, help="resize + centre-crop imagefolder images"
    )
    p.add_argument("--download", action="store_true", help="download CIFAR / (Fashion-)MNIST when missing")
    p.add_argument("--restart", action="store_true", help="ignore an existing resume state and start over")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (distinct ints, in the order given)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer seeds, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds repeat: {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    from robustbench_lift.train import seed_out_path

    if args.seeds is None:
        return _train_one(args, args.seed, args.out)
    for i, seed in enumerate(args.seeds):
        out = seed_out_path(args.out, seed)
        print(f"== seed {seed} ({i + 1} of {len(args.seeds)}): {out}")
        status = _train_one(args, seed, out)
        if status:
            return status
    return 0


def _train_one(args: argparse.Namespace, seed: int, out: str) -> int:
    from robustbench_lift.train import train

    result = train(
        args.arch,
        args.pool,
        args.dataset,
        epochs=args.epochs,
        out=out,
        val_dataset=args.val_dataset,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        crop_padding=args.crop_padding,
        flip=args.flip,
        seed=seed,
        deterministic=args.deterministic,
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        val_split=args.val_split,
        holdout=args.holdout,
        model_kwargs=parse_options(args.model_opt, "--model-opt"),
        pool_kwargs=parse_options(args.pool_opt, "--pool-opt"),
        num_threads=args.threads,
        device=args.device,
        image_size=args.image_size,
        download=args.download,
        restart=args.restart,
        progress=None if args.progress else False,
    )
    source = result.config.val_source
    if result.epochs_trained == 0:
        print(f"already trained {len(result.history)} epochs; nothing to do")
    elif result.start_epoch:
        print(f"resumed after epoch {result.start_epoch}; trained {result.epochs_trained} more")
    for rec in result.history[result.start_epoch :]:
        print(
            f"epoch {rec['epoch']:3d}  train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.4f}  "
            f"val ({source}) acc {rec['val_acc']:.4f}  {rec['seconds']:.1f} s"
        )
    print(f"final val accuracy ({source}): {result.final_val_acc:.4f}")
    print(f"best  val accuracy ({source}): {result.best_val_acc:.4f} at epoch {result.best_epoch}")
    print(f"last checkpoint: {result.last_path}")
    print(f"best checkpoint: {result.best_path}")
    return 0
