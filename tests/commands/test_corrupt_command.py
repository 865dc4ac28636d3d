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
