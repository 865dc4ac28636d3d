"""report.gallery: the one corruption gallery (report and ``corrupt --gallery``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import corrupt
from robustbench_lift.report import gallery
from tests.fixtures.tiny_set import TinySet


def test_rows_are_the_seeded_corruptions_of_the_image():
    ds = TinySet(2, 32, id_offset=7)
    image = ds[1][0]
    clean, rows = gallery.corrupted_rows(image, "cifar10-c", corruptions=["gaussian_noise", "fog"], seed=3,
                                         sample_id=ds.sample_id(1), severities=(2, 5))  # fmt: skip
    assert list(rows) == ["gaussian_noise", "fog"] and all(len(r) == 2 for r in rows.values())
    assert clean.shape == (32, 32, 3)
    np.testing.assert_allclose(clean, image.permute(1, 2, 0).numpy() / 255.0, atol=1e-7)
    want = corrupt(image[None], "gaussian_noise", 5, suite="cifar10-c", seed=3, ids=[8])[0]
    np.testing.assert_allclose(rows["gaussian_noise"][1] * 255.0, want.permute(1, 2, 0).numpy(), atol=1e-3)
    assert not np.allclose(rows["gaussian_noise"][0], rows["gaussian_noise"][1])


def test_write_gallery_grayscale_png_grows_with_rows_and_columns(tmp_path):
    ds = TinySet(3, 28, class_names=("b", "a"), channels=1)
    small = gallery.write_gallery(
        ds[0][0], tmp_path / "g" / "small.png", corruptions=["fog"], severities=(1, 3)
    )
    big = gallery.write_gallery(ds[0][0], tmp_path / "g" / "big.png", corruptions=["frost", "fog", "snow"])
    with Image.open(small) as a, Image.open(big) as b:
        assert a.format == b.format == "PNG"
        assert b.size[0] > a.size[0] and b.size[1] > a.size[1]
    assert not [p for p in big.parent.iterdir() if p.name.startswith(".")]


def test_bad_image_and_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        gallery.corrupted_rows(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "cifar10-c")
    with pytest.raises(ValueError, match="severities"):
        gallery.gallery_figure({"fog": [np.zeros((4, 4))]}, np.zeros((4, 4)))
