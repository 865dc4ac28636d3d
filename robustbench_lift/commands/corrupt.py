"""``robustbench-lift corrupt``: write a corrupted copy of a dataset in the standard pre-generated layouts.

Examples::

    robustbench-lift corrupt --dataset cifar10:~/data --suite cifar10-c --out ~/data/CIFAR-10-C-rbl
    robustbench-lift corrupt --dataset imagefolder:~/data/val --image-size 224 --suite imagenet-c \\
        --out ~/data/ImageNet-C-rbl --corruptions fog,snow --severities 1-5 --gallery docs/gallery.png

The writer is :func:`robustbench_lift.data.export.write_corrupted` (layouts and resume rules in its module
documentation), the gallery :func:`robustbench_lift.report.gallery.write_gallery`; this module only parses and
prints.

Layouts (what ``open_dataset("cifar10-c:ROOT")`` / ``open_dataset("imagenet-c:ROOT")`` and other tools read):

* ``npy`` (CIFAR-10-C): ``<corruption>.npy`` uint8 (5 * N, H, W, C), severities 1..5 stacked (severity s = rows
  ``[(s - 1) * N : s * N]``), and ``labels.npy`` int64 (5 * N,);
* ``jpeg-folders`` (ImageNet-C): ``<corruption>/<severity>/<class>/<sample id>.JPEG``, JPEG quality 85. Every class
  of the dataset gets a folder (empty ones included) so that labels read back in sorted-folder order are the
  dataset's labels; class names are used as folder names when they are valid names already in sorted order,
  otherwise they are prefixed with their label index (``0003_Dress``).

Every file is written under a temporary name and renamed when complete, and a corruption counts as done only when
its ``.npy`` file / folder is in place: an interrupted run leaves no half-written file, and re-running the same
command resumes with the corruptions still missing. ``corrupt_meta.json`` records how the set was made; a re-run
with different settings is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import sys

from robustbench_lift.commands._args import HelpFormatter, add_limit, parse_ints, parse_list, positive_int

#: ``--format`` choices (the layouts of ``robustbench_lift.data.export``).
FORMATS = ("npy", "jpeg-folders")

__all__ = ["register", "run"]


# --------------------------------------------------------------------------------------------- CLI
def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "corrupt",
        help="write a corrupted copy of a dataset (CIFAR-10-C .npy or ImageNet-C JPEG folders)",
        description=__doc__.split("\n\n")[0],
        epilog="See the module documentation for the layouts.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--dataset", required=True, help="dataset spec, e.g. cifar10:ROOT, fashion-mnist, imagefolder:ROOT"
    )
    p.add_argument("--suite", default="cifar10-c", help="corruption suite: cifar10-c (default) or imagenet-c")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder of the corrupted set, used as given (read it back with --dataset cifar10-c:DIR)",
    )
    p.add_argument(
        "--corruptions", type=parse_list, default=None, help="comma-separated (default: the whole suite)"
    )
    p.add_argument(
        "--severities", type=parse_ints, default=[1, 2, 3, 4, 5], help="e.g. 1,3,5 or 1-5 (default)"
    )
    add_limit(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions and of the --limit subset")
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="default: npy for cifar10-c, jpeg-folders otherwise"
    )
    p.add_argument(
        "--image-size", type=positive_int, default=None, help="resize + centre-crop imagefolder images"
    )
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split of the dataset")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images corrupted at once")
    p.add_argument(
        "--backend",
        choices=["torch", "reference"],
        default="torch",
        help="corruption engine (reference: the imagecorruptions package, imagenet-c only)",
    )
    p.add_argument("--gallery", default=None, metavar="PNG", help="also write a gallery of the first image")
    p.add_argument("--overwrite", action="store_true", help="replace existing output")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import open_dataset
    from ..data.export import sample_ids, write_corrupted
    from ..report.gallery import write_gallery

    dataset = open_dataset(args.dataset, split=args.split, image_size=args.image_size)
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "class_names"):
        raise ValueError(
            f"--dataset {args.dataset!r} is not an image dataset (a pre-generated set cannot be corrupted)"
        )
    fmt = args.format or ("npy" if args.suite.startswith("cifar") else "jpeg-folders")

    def log(msg: str) -> None:
        print(f"corrupt: {msg}", file=sys.stderr)

    info = write_corrupted(
        dataset,
        args.out,
        suite=args.suite,
        corruptions=args.corruptions,
        severities=args.severities,
        limit=args.limit,
        seed=args.seed,
        fmt=fmt,
        batch_size=args.batch_size,
        backend=args.backend,
        overwrite=args.overwrite,
        source=args.dataset,
        progress=log,
    )
    if args.gallery:
        image, _ = dataset[0]
        path = write_gallery(
            image, args.gallery, suite=args.suite, corruptions=args.corruptions, severities=args.severities,
            seed=args.seed, sample_id=sample_ids(dataset, 1)[0], backend=args.backend,
        )  # fmt: skip
        log(f"gallery: {path}")
    print(
        f"{args.out}: {info['layout']} layout, {info['num_images']} images, "
        f"{len(info['written'])} corruptions written, {len(info['skipped'])} already present"
    )
    return 0
