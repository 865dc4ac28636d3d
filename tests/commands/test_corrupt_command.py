"""The ``corrupt`` command: parses, calls data.export and report.gallery, prints."""

from __future__ import annotations

import os

import numpy as np
import pytest

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="Fashion-MNIST not installed")
def test_cli_on_fashion_mnist(tmp_path, capsys):
    from robustbench_lift.cli import main

    out = tmp_path / "fmnist-c"
    gallery = tmp_path / "gallery.png"
    rc = main(
        ["corrupt", "--dataset", "fashion-mnist", "--out", str(out), "--corruptions", "fog,pixelate",
         "--limit", "5", "--gallery", str(gallery)]
    )  # fmt: skip
    assert rc == 0
    assert np.load(out / "fog.npy").shape == (25, 28, 28, 1)
    assert np.load(out / "labels.npy").shape == (25,)
    assert gallery.is_file()
    assert "CIFAR-10-C layout, 5 images" in capsys.readouterr().out
    rc = main(["corrupt", "--dataset", "fashion-mnist", "--out", str(out), "--corruptions", "rain"])
    assert rc == 2
    assert "valid:" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="Fashion-MNIST not installed")
def test_limit_selects_the_same_images_in_corrupt_and_evaluate(tmp_path, monkeypatch, capsys):
    import torch

    from robustbench_lift.checkpoint import save_checkpoint
    from robustbench_lift.cli import build_parser, main
    from robustbench_lift.commands._args import LIMIT_HELP
    from robustbench_lift.data.loader import select_indices
    from robustbench_lift.models import build_model
    from robustbench_lift.store import RunStore

    monkeypatch.chdir(tmp_path)
    common = ["--corruptions", "contrast", "--severities", "1", "--limit", "12", "--seed", "3"]
    out = tmp_path / "fmnist-c"
    assert (
        main(
            ["corrupt", "--dataset", "fashion-mnist", "--out", str(out), "--format", "jpeg-folders", *common]
        )
        == 0
    )
    corrupt_ids = sorted(int(p.stem) for p in out.rglob("*.JPEG"))

    torch.manual_seed(0)
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, build_model("convnet", pool="max", num_classes=10, in_channels=1))
    argv = ["evaluate", str(ckpt), "--dataset", "fashion-mnist", "--suite", "cifar10-c", "--n-boot", "0"]
    assert main([*argv, "--no-progress", *common, "--out", "lim"]) == 0
    cells = {key: arrays for key, _, arrays, _ in RunStore(tmp_path / "reports" / "lim").iter_cells()}
    assert cells and all(sorted(a["ids"].tolist()) == corrupt_ids for a in cells.values())

    # a seeded random subset (not the first 12), different for another seed
    assert corrupt_ids == sorted(select_indices(10_000, 12, 3).tolist()) != list(range(12))
    assert corrupt_ids != sorted(select_indices(10_000, 12, 4).tolist())
    # one help text
    sub = build_parser()._subparsers._group_actions[0].choices
    for name in ("corrupt", "evaluate"):
        (limit,) = [a for a in sub[name]._actions if "--limit" in a.option_strings]
        assert limit.help == LIMIT_HELP
