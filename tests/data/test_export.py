"""data.export: corrupted copies of a dataset in the CIFAR-10-C (.npy) and ImageNet-C (JPEG folders) layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import corruptions
from robustbench_lift.data import export as cmd
from robustbench_lift.data.loader import select_indices
from tests.fixtures.tiny_set import TinySet


def test_cifar10_c_layout_round_trip(tmp_path):
    from robustbench_lift.data import open_dataset

    ds = TinySet(7, 32, id_offset=100)
    info = cmd.write_corrupted(
        ds, tmp_path, suite="cifar10-c", corruptions=["fog", "contrast"], limit=6, seed=3
    )
    assert info["written"] == ["fog", "contrast"] and info["num_images"] == 6
    # --limit picks the seeded random subset evaluate picks (select_indices), kept in dataset order
    pos = select_indices(7, 6, 3).tolist()
    assert pos != list(range(6)) and pos == sorted(pos)
    fog = np.load(tmp_path / "fog.npy")
    labels = np.load(tmp_path / "labels.npy")
    assert fog.dtype == np.uint8 and fog.shape == (30, 32, 32, 3)
    assert labels.dtype == np.int64 and labels.tolist() == [i % 3 for i in pos] * 5
    # severity s = rows (s-1)*N : s*N, seeded by the dataset's sample ids
    expected = corruptions.corrupt(
        ds.images[pos], "fog", 4, suite="cifar10-c", seed=3, ids=[100 + i for i in pos]
    )
    np.testing.assert_array_equal(fog[18:24], expected.permute(0, 2, 3, 1).numpy())
    assert not (fog[0:6] == fog[24:30]).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "contrast.npy",
        "corrupt_meta.json",
        "fog.npy",
        "labels.npy",
    ]
    meta = json.loads((tmp_path / "corrupt_meta.json").read_text())
    assert meta["suite"] == "cifar10-c" and meta["corruptions"] == ["contrast", "fog"] and meta["seed"] == 3
    assert meta["subset"] == "seeded random (select_indices)"

    pre = open_dataset(f"cifar10-c:{tmp_path}")
    assert pre.corruptions == ("fog", "contrast") and pre.image_size == (32, 32)
    cell = pre.cell("fog", 4)
    x, y = cell[2]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y == pos[2] % 3
    assert torch.equal(x, expected[2])


def test_imagenet_c_layout_round_trip(tmp_path):
    from robustbench_lift.data import open_dataset

    ds = TinySet(6, 112)
    cmd.write_corrupted(
        ds, tmp_path, suite="imagenet-c", corruptions=["snow"], severities=[1, 5], fmt="jpeg-folders"
    )
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.JPEG"))
    assert len(files) == 12
    assert "snow/1/cat/00000000.JPEG" in files and "snow/5/frog/00000005.JPEG" in files
    with Image.open(tmp_path / "snow/5/dog/00000004.JPEG") as im:
        assert im.format == "JPEG" and im.size == (112, 112) and im.mode == "RGB"
    pre = open_dataset(f"imagenet-c:{tmp_path}")
    assert (
        pre.corruptions == ("snow",)
        and pre.severities == (1, 5)
        and pre.class_names == ("cat", "dog", "frog")
    )
    cell = pre.cell("snow", 5)
    assert len(cell) == 6
    images, labels = cell.get_batch(range(6))
    assert images.shape == (6, 3, 112, 112) and images.dtype == torch.uint8
    # read back in class-folder order: cat = images 0, 3; dog = 1, 4; frog = 2, 5
    order = [0, 3, 1, 4, 2, 5]
    assert labels.tolist() == [ds.labels[i] for i in order]
    expected = corruptions.corrupt(ds.images[order], "snow", 5, suite="imagenet-c", ids=order).float()
    mse = ((images.float() - expected) ** 2).mean()
    assert 10 * torch.log10(255**2 / mse) > 30, "JPEG (quality 85) of the corrupted images"


def test_interrupted_write_leaves_no_partial_file_and_resumes(tmp_path, monkeypatch):
    ds = TinySet(4, 32)
    real = corruptions.corrupt
    calls = {"n": 0}

    def flaky(images, name, severity, **kw):
        if name == "snow" and severity == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(images, name, severity, **kw)

    monkeypatch.setattr(corruptions, "corrupt", flaky)
    with pytest.raises(KeyboardInterrupt):
        cmd.write_corrupted(ds, tmp_path, corruptions=["fog", "snow", "frost"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt_meta.json", "fog.npy"]
    monkeypatch.setattr(corruptions, "corrupt", real)
    info = cmd.write_corrupted(ds, tmp_path, corruptions=["fog", "snow", "frost"])
    assert info["skipped"] == ["fog"] and info["written"] == ["snow", "frost"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "corrupt_meta.json",
        "fog.npy",
        "frost.npy",
        "labels.npy",
        "snow.npy",
    ]

    with pytest.raises(KeyboardInterrupt):  # the folder layout: nothing of the interrupted corruption remains
        monkeypatch.setattr(corruptions, "corrupt", flaky)
        cmd.write_corrupted(
            TinySet(4, 112), tmp_path / "inet", suite="imagenet-c", corruptions=["snow"], fmt="jpeg-folders"
        )
    assert [p.name for p in (tmp_path / "inet").iterdir()] == []


def test_settings_change_is_refused_unless_overwrite(tmp_path):
    ds = TinySet(4, 32)
    cmd.write_corrupted(ds, tmp_path, corruptions=["contrast"], seed=1)
    with pytest.raises(ValueError, match="other settings"):
        cmd.write_corrupted(ds, tmp_path, corruptions=["contrast"], seed=2)
    before = np.load(tmp_path / "contrast.npy")
    cmd.write_corrupted(ds, tmp_path, corruptions=["fog"], seed=2, overwrite=True)
    assert json.loads((tmp_path / "corrupt_meta.json").read_text())["seed"] == 2
    assert np.array_equal(np.load(tmp_path / "contrast.npy"), before)  # untouched: not part of this run


def test_bad_arguments(tmp_path):
    ds = TinySet(4, 32)
    with pytest.raises(ValueError, match="valid: gaussian_noise"):
        cmd.write_corrupted(ds, tmp_path, corruptions=["rain"])
    with pytest.raises(ValueError, match="all five severities"):
        cmd.write_corrupted(ds, tmp_path, severities=[1, 2])
    with pytest.raises(ValueError, match="1..5"):
        cmd.write_corrupted(ds, tmp_path, severities=[0, 1], fmt="jpeg-folders")
    with pytest.raises(ValueError, match="format"):
        cmd.write_corrupted(ds, tmp_path, fmt="png")
    with pytest.raises(ValueError, match="valid: cifar10-c|valid: imagenet-c"):
        cmd.write_corrupted(ds, tmp_path, suite="mnist-c")


def test_class_folder_names_keep_label_order():
    assert cmd.class_folder_names(["n01440764", "n01443537"]) == ["n01440764", "n01443537"]
    names = cmd.class_folder_names(["T-shirt/top", "Trouser", "Pullover"])
    assert names == ["0000_T-shirt_top", "0001_Trouser", "0002_Pullover"]
    assert sorted(names) == names


def test_grayscale_npy(tmp_path):
    ds = TinySet(3, 28, class_names=("b", "a"), channels=1)
    cmd.write_corrupted(ds, tmp_path, corruptions=["frost", "gaussian_noise"])
    arr = np.load(tmp_path / "frost.npy")
    assert arr.shape == (15, 28, 28, 1) and arr.dtype == np.uint8
