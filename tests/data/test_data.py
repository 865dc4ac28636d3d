"""Datasets: every on-disk layout written here in miniature and read back; preprocessing helpers."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_lift import data
from robustbench_lift.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetWarning,
    ImageDataset,
    Normalize,
    PregeneratedSequences,
    PregeneratedSet,
    list_datasets,
    load_cifar_pickle,
    match_channels,
    open_dataset,
    prepare_batch,
    read_idx,
    resize_to,
    to_float,
)

# ----------------------------------------------------------------------------------------------------- writers


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def write_idx_set(
    root: Path, n_train: int = 7, n_test: int = 5, compress: bool = True
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


def write_cifar10(root: Path, n: int = 4, protocol: int = 2) -> dict[str, tuple[np.ndarray, list[int]]]:
    """torchvision's python layout with str keys, lists of labels and bytes file names."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        batch = {
            "batch_label": f"{fname} of 6",
            "labels": labels,
            "data": images,
            "filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        with open(folder / fname, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)
        written[fname] = (images, labels)
    meta = {
        b"label_names": [c.encode() for c in CIFAR10_CLASSES],
        b"num_cases_per_batch": n,
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=protocol)
    return written


def write_cifar100(root: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n)
        batch = {b"data": images, b"fine_labels": [int(v) for v in fine], b"coarse_labels": [0] * n}
        with open(folder / split, "wb") as fh:
            pickle.dump(batch, fh, protocol=4)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": list(data.CIFAR100_CLASSES), "coarse_label_names": ["x"] * 20}, fh)
    return images, fine


class _Exploit:
    """Pickles into a shell call creating a marker file: must never run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> None:
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[...] = color
    array[: size[1] // 2, : size[0] // 3] = (255, 255, 255)
    Image.fromarray(array).save(path, format=fmt)


def write_imagefolder(root: Path) -> None:
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    write_image(root / "cat" / "a.png", (40, 30), (200, 10, 10), "PNG")
    write_image(root / "cat" / "b.jpg", (50, 60), (10, 200, 10), "JPEG")
    write_image(root / "dog" / "c.JPEG", (64, 64), (10, 10, 200), "JPEG")
    (root / "dog" / "broken.png").write_bytes(b"this is not an image at all")
    (root / "dog" / "notes.txt").write_text("ignored: not an image extension")


# ------------------------------------------------------------------------------------------------- registry


def test_registry_lists_every_layout() -> None:
    names = set(list_datasets())
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder"} <= names
    assert {"cifar10-c", "cifar100-c", "imagenet-c", "cifar10-p"} <= names
    assert set(list_datasets("corruptions")) == {"cifar10-c", "cifar100-c", "imagenet-c"}


def test_unknown_prefix_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'.*cifar10.*imagefolder"):
        open_dataset("svhn:/tmp")


def test_spec_without_root_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs a location.*cifar10:ROOT"):
        open_dataset("cifar10")
    with pytest.raises(ValueError, match=r"unknown split 'val'.*train, test"):
        open_dataset(f"mnist:{tmp_path}", split="val")


def test_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        open_dataset(f"cifar10:{tmp_path / 'nowhere'}")


# ------------------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("compress", [True, False])
def test_idx_layout_round_trip(tmp_path: Path, compress: bool) -> None:
    arrays = write_idx_set(tmp_path, compress=compress)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = open_dataset(f"fashion-mnist:{tmp_path}", split=split)
        images, labels = arrays[prefix]
        assert isinstance(ds, ImageDataset)
        assert len(ds) == len(images) and ds.channels == 1 and ds.image_size == (28, 28)
        assert ds.class_names == FASHION_MNIST_CLASSES and ds.split == split
        x, y = ds[3]
        assert x.dtype == torch.uint8 and x.shape == (1, 28, 28) and isinstance(y, int)
        np.testing.assert_array_equal(x[0].numpy(), images[3])
        assert y == labels[3]
        xb, yb = ds.get_batch([4, 0, 2])
        assert xb.shape == (3, 1, 28, 28) and yb.dtype == torch.int64
        np.testing.assert_array_equal(xb[:, 0].numpy(), images[[4, 0, 2]])
        np.testing.assert_array_equal(yb.numpy(), labels[[4, 0, 2]])
        np.testing.assert_array_equal(ds.labels(), labels)
        assert ds.sample_id(2) == 2


def test_mnist_in_torchvision_raw_folder(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "MNIST" / "raw")
    ds = open_dataset(f"mnist:{tmp_path}")
    assert len(ds) == 5 and ds.class_names[0] == "0"


def test_idx_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*dataset-fashion-mnist.*download=True"):
        open_dataset(f"fashion-mnist:{tmp_path}")


def test_idx_truncated_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 4)
    with pytest.raises(ValueError, match="announces shape"):
        read_idx(path)
    path.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 12, 3, 4], dtype=np.uint8))
    with pytest.raises(ValueError, match="class count inconsistency"):
        open_dataset(f"fashion-mnist:{tmp_path}")


@pytest.mark.skipif(not Path(data.FASHION_MNIST_ROOT).is_dir(), reason="Fashion-MNIST package not installed")
def test_real_fashion_mnist() -> None:
    ds = open_dataset("fashion-mnist")
    assert len(ds) == 10000 and ds.num_classes == 10 and ds.image_size == (28, 28)
    x, y = ds.get_batch(np.arange(10000))
    assert x.shape == (10000, 1, 28, 28)
    assert np.bincount(y.numpy(), minlength=10).tolist() == [1000] * 10
    assert 0 < x.float().mean() < 255


# ---------------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_layout(tmp_path: Path, protocol: int) -> None:
    written = write_cifar10(tmp_path, protocol=protocol)
    test = open_dataset(f"cifar10:{tmp_path}")
    images, labels = written["test_batch"]
    assert len(test) == 4 and test.image_size == (32, 32) and test.channels == 3
    assert test.class_names == CIFAR10_CLASSES
    x, y = test[1]
    np.testing.assert_array_equal(x.numpy(), images[1].reshape(3, 32, 32))
    assert y == labels[1]
    xb, yb = test.get_batch([0, 1, 2, 3])
    np.testing.assert_array_equal(xb.numpy(), images.reshape(-1, 3, 32, 32))
    train = open_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", split="train")
    assert len(train) == 20
    np.testing.assert_array_equal(train[4][0].numpy(), written["data_batch_2"][0][0].reshape(3, 32, 32))


def test_cifar100_layout(tmp_path: Path) -> None:
    images, fine = write_cifar100(tmp_path)
    ds = open_dataset(f"cifar100:{tmp_path}")
    assert ds.num_classes == 100 and ds.class_names[:2] == ("apple", "aquarium_fish")
    np.testing.assert_array_equal(ds.labels(), fine)
    np.testing.assert_array_equal(ds[5][0].numpy(), images[5].reshape(3, 32, 32))


def test_cifar_wrong_layout_names_expected_file(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(ValueError, match=r"expected cifar-10-batches-py/test_batch"):
        open_dataset(f"cifar10:{tmp_path}")


def test_malicious_pickle_is_not_executed(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": _Exploit(marker), "labels": [0]}, fh, protocol=2)
    with pytest.raises(ValueError, match=r"refusing to load (posix|os|nt)\.system"):
        open_dataset(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_codecs(tmp_path: Path) -> None:
    path = tmp_path / "evil"
    # GLOBAL _codecs.encode called with a non-latin1 codec: refused.
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="refusing _codecs.encode"):
        load_cifar_pickle(path)


def test_cifar_class_count_mismatch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["a", "b", "c"]}, fh)
    with pytest.raises(ValueError, match="lists 3 classes, expected 10"):
        open_dataset(f"cifar10:{tmp_path}")


# ---------------------------------------------------------------------------------------------- imagefolder


def test_imagefolder_variable_size_and_corrupt_file(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    with pytest.warns(DatasetWarning, match="skipped 1 unreadable"):
        ds = open_dataset(f"imagefolder:{tmp_path}")
    assert ds.class_names == ("cat", "dog") and len(ds) == 3 and ds.num_skipped == 1
    assert ds.image_size is None and ds.channels == 3
    x, y = ds[0]
    assert x.shape == (3, 30, 40) and y == 0
    np.testing.assert_array_equal(x[:, 20, 30].numpy(), [200, 10, 10])  # PNG is lossless
    assert ds[2][1] == 1
    with pytest.raises(ValueError, match="differ in size"):
        ds.get_batch([0, 1])


def test_imagefolder_resize_center_crop(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    with pytest.warns(DatasetWarning):
        ds = open_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert ds.image_size == (16, 16)
    x, y = ds.get_batch([0, 1, 2])
    assert x.shape == (3, 3, 16, 16) and y.tolist() == [0, 0, 1]
    # 40x30 -> shorter side round(16*256/224)=18 -> 24x18 -> centre crop 16x16 starting at (1, 4)
    img = Image.open(tmp_path / "cat" / "a.png").convert("RGB").resize((24, 18), Image.BILINEAR)
    expected = np.asarray(img)[1:17, 4:20]
    np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), expected)


def test_imagefolder_strict_raises_on_corrupt_file(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    with pytest.raises(ValueError, match=r"unreadable image .*broken\.png"):
        open_dataset(f"imagefolder:{tmp_path}", strict=True)


def test_imagefolder_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no class subfolders"):
        open_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        open_dataset(f"imagefolder:{tmp_path}")


# ---------------------------------------------------------------------------------------- pre-generated sets


def write_cifar_c(root: Path, n: int = 3, names=("fog", "gaussian_noise", "my_corruption")) -> dict:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 10, size=n)
    np.save(root / "labels.npy", np.tile(labels, 5))
    arrays = {}
    for name in names:
        arrays[name] = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
        np.save(root / f"{name}.npy", arrays[name])
    return {"labels": labels, **arrays}


def test_cifar10_c_layout(tmp_path: Path) -> None:
    arrays = write_cifar_c(tmp_path)
    pre = open_dataset(f"cifar10-c:{tmp_path}")
    assert isinstance(pre, PregeneratedSet)
    assert pre.corruptions == ("gaussian_noise", "fog", "my_corruption")  # canonical order, then the rest
    assert pre.severities == (1, 2, 3, 4, 5) and pre.num_classes == 10 and pre.image_size == (32, 32)
    cell = pre.cell("fog", 3)
    assert len(cell) == 3 and cell.name == "cifar10-c/fog/3" and cell.fast_batch
    x, y = cell.get_batch([0, 1, 2])
    np.testing.assert_array_equal(x.permute(0, 2, 3, 1).numpy(), arrays["fog"][6:9])
    np.testing.assert_array_equal(y.numpy(), arrays["labels"])
    np.testing.assert_array_equal(cell[2][0].permute(1, 2, 0).numpy(), arrays["fog"][8])
    xs, _ = cell.get_batch([2, 0])
    np.testing.assert_array_equal(xs.permute(0, 2, 3, 1).numpy(), arrays["fog"][[8, 6]])
    # cells pickle without dragging the memory map along (DataLoader workers)
    clone = pickle.loads(pickle.dumps(cell))
    torch.testing.assert_close(clone.get_batch([1])[0], cell.get_batch([1])[0])
    assert pre.cell("fog", 3) is cell  # opened once
    # the whole set pickles too (executors ship it to other processes)
    clone_set = pickle.loads(pickle.dumps(pre))
    torch.testing.assert_close(
        clone_set.cell("gaussian_noise", 5).get_batch([0])[0], pre.cell("gaussian_noise", 5)[0][0][None]
    )
    with pytest.raises(ValueError, match=r"unknown corruption 'snow'; available: gaussian_noise, fog"):
        pre.cell("snow", 1)
    with pytest.raises(ValueError, match="severity 6 not available"):
        pre.cell("fog", 6)


def test_cifar_c_layout_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected .*labels\.npy"):
        open_dataset(f"cifar10-c:{tmp_path}")
    np.save(tmp_path / "labels.npy", np.zeros(7, np.int64))
    with pytest.raises(ValueError, match="labels.npy has 7 entries"):
        open_dataset(f"cifar10-c:{tmp_path}")
    np.save(tmp_path / "labels.npy", np.full(10, 50, np.int64))
    with pytest.raises(ValueError, match="class count inconsistency"):
        open_dataset(f"cifar10-c:{tmp_path}")
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    np.save(tmp_path / "snow.npy", np.zeros((10, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="expected uint8"):
        open_dataset(f"cifar10-c:{tmp_path}")


def write_imagenet_c(root: Path, corruptions=("gaussian_noise", "snow"), severities=range(1, 6)) -> None:
    for c in corruptions:
        for s in severities:
            for wnid, color in (("n01440764", (250, 0, 0)), ("n01443537", (0, 250, 0))):
                folder = root / c / str(s) / wnid
                folder.mkdir(parents=True)
                write_image(folder / f"ILSVRC2012_val_{s}.JPEG", (24, 24), color, "JPEG")


def test_imagenet_c_layout(tmp_path: Path) -> None:
    write_imagenet_c(tmp_path)
    pre = open_dataset(f"imagenet-c:{tmp_path}")
    assert isinstance(pre, PregeneratedSet)
    assert pre.corruptions == ("gaussian_noise", "snow") and pre.severities == (1, 2, 3, 4, 5)
    assert pre.class_names == ("n01440764", "n01443537") and pre.image_size == (24, 24)
    cell = pre.cell("snow", 4)
    x, y = cell.get_batch([0, 1])
    assert x.shape == (2, 3, 24, 24) and y.tolist() == [0, 1]
    assert x[0, 0, 20, 20] > 200 and x[1, 1, 20, 20] > 200
    clone = pickle.loads(pickle.dumps(pre))
    torch.testing.assert_close(clone.cell("gaussian_noise", 1).get_batch([1])[0], x[1:])
    torch.testing.assert_close(clone.cell("snow", 4).get_batch([1])[0], x[1:])
    # the native size is accepted; any other is refused (never resized again)
    assert open_dataset(f"imagenet-c:{tmp_path}", image_size=24).image_size == (24, 24)
    with pytest.raises(ValueError, match="never resized again"):
        open_dataset(f"imagenet-c:{tmp_path}", image_size=32)


def test_imagenet_c_inconsistent_classes_and_severities(tmp_path: Path) -> None:
    write_imagenet_c(tmp_path)
    extra = tmp_path / "snow" / "2" / "n99999999"
    extra.mkdir()
    write_image(extra / "x.JPEG", (24, 24), (1, 2, 3), "JPEG")
    pre = open_dataset(f"imagenet-c:{tmp_path}")
    with pytest.raises(ValueError, match="differ from the expected 2 classes"):
        pre.cell("snow", 2)
    write_imagenet_c(tmp_path / "other", corruptions=("fog",), severities=(1, 2))
    write_imagenet_c(tmp_path / "other", corruptions=("snow",))
    with pytest.raises(ValueError, match="missing severity folders"):
        open_dataset(f"imagenet-c:{tmp_path / 'other'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <corruption>/<severity>"):
        open_dataset(f"imagenet-c:{tmp_path / 'empty'}")


def test_cifar10_p_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    seqs = rng.integers(0, 256, size=(3, 5, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "translate.npy", seqs)
    np.save(tmp_path / "gaussian_noise.npy", seqs[:, :4])
    pre = open_dataset(f"cifar10-p:{tmp_path}")
    assert isinstance(pre, PregeneratedSequences)
    assert pre.perturbations == ("gaussian_noise", "translate") and pre.labels is None
    arr = pre.sequences("translate")
    assert arr.shape == (3, 5, 3, 32, 32) and arr.num_frames == 5 and len(arr) == 3
    block = arr[1:3]
    assert block.dtype == torch.uint8 and block.shape == (2, 5, 3, 32, 32)
    np.testing.assert_array_equal(block.permute(0, 1, 3, 4, 2).numpy(), seqs[1:3])
    assert pre.sequences("gaussian_noise").num_frames == 4
    with pytest.raises(
        ValueError, match="unknown perturbation 'rotate'; available: gaussian_noise, translate"
    ):
        pre.sequences("rotate")
    np.save(tmp_path / "labels.npy", np.array([1, 2, 3]))
    np.testing.assert_array_equal(open_dataset(f"cifar10-p:{tmp_path}").labels, [1, 2, 3])
    np.save(tmp_path / "labels.npy", np.array([1, 2]))
    with pytest.raises(ValueError, match="labels.npy has 2 entries"):
        open_dataset(f"cifar10-p:{tmp_path}")


# ------------------------------------------------------------------------------------------- preprocessing


def test_to_float_range_and_input_unchanged() -> None:
    x = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    y = to_float(x)
    assert y.dtype == torch.float32 and x.dtype == torch.uint8
    torch.testing.assert_close(y, torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))
    with pytest.raises(TypeError, match="uint8 or floating"):
        to_float(x.to(torch.int32))


def test_match_channels_gray_rgb() -> None:
    gray = torch.rand(2, 1, 4, 5)
    rgb = match_channels(gray, 3)
    assert rgb.shape == (2, 3, 4, 5)
    torch.testing.assert_close(rgb[:, 2:], gray)
    assert match_channels(rgb, 3) is rgb
    # a gray image replicated to RGB has luma equal to itself (weights sum to 1)
    torch.testing.assert_close(match_channels(rgb, 1), gray)
    pix = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(match_channels(pix, 1), torch.full((1, 1, 1, 1), 0.299))
    u8 = torch.tensor([255, 255, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert match_channels(u8, 1).item() == round(255 * (0.299 + 0.587))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        match_channels(gray, 2)


def test_resize_to() -> None:
    x = torch.rand(2, 3, 28, 28)
    assert resize_to(x, 28) is x
    y = resize_to(x, (32, 32))
    assert y.shape == (2, 3, 32, 32) and y.dtype == x.dtype
    const = torch.full((1, 1, 28, 28), 0.25)
    torch.testing.assert_close(resize_to(const, 14), torch.full((1, 1, 14, 14), 0.25))
    u8 = torch.full((1, 1, 28, 28), 77, dtype=torch.uint8)
    out = resize_to(u8, 32)
    assert out.dtype == torch.uint8 and bool((out == 77).all())


def test_prepare_batch_and_normalize() -> None:
    batch = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    x = prepare_batch(batch, channels=3, size=32)
    assert x.shape == (2, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    norm = Normalize([0.5, 0.4, 0.3], [0.25, 0.5, 1.0])
    z = norm(torch.ones(1, 3, 2, 2))
    torch.testing.assert_close(z[0, :, 0, 0], torch.tensor([2.0, 1.2, 0.7]))
    assert norm.state_dict() == {}
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        norm(torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize([0.5], [0.0])


# ------------------------------------------------------------------------------------------------- download


def test_cifar_download_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, filename=None, md5=None):
        calls.append((url, filename, md5))
        write_cifar10(Path(download_root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    with pytest.raises(ValueError, match="download=True"):
        open_dataset(f"cifar10:{tmp_path}")
    assert calls == []
    ds = open_dataset(f"cifar10:{tmp_path / 'new'}", download=True)
    assert len(ds) == 4 and calls[0][1] == "cifar-10-python.tar.gz" and calls[0][2]
    open_dataset(f"cifar10:{tmp_path / 'new'}", download=True)
    assert len(calls) == 1  # already there: nothing fetched again


def test_fashion_mnist_download_into_torchvision_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            assert download
            write_idx_set(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    ds = open_dataset(f"fashion-mnist:{tmp_path / 'fm'}", download=True, split="train")
    assert len(ds) == 7 and ds.class_names == FASHION_MNIST_CLASSES


# ------------------------------------------------------------------------------------------- JPEG storage step
def test_store_as_jpeg_is_a_quality_85_file_round_trip():
    import io

    from robustbench_lift.data import store_as_jpeg

    rng = np.random.default_rng(0)
    u8 = torch.from_numpy(rng.integers(0, 256, (2, 3, 24, 20), dtype=np.uint8))
    out = store_as_jpeg(u8)
    assert out.dtype == torch.uint8 and out.shape == u8.shape
    for i in range(2):
        buf = io.BytesIO()
        # the generator's call: Image.fromarray(np.uint8(img)).save(path, quality=85, optimize=True)
        Image.fromarray(u8[i].permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=85, optimize=True)
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        np.testing.assert_array_equal(out[i].permute(1, 2, 0).numpy(), expected)
    assert not torch.equal(out, u8)  # lossy: the step is not a no-op
    # float images on the 8-bit levels give the same levels back, as floats
    f = store_as_jpeg(u8.float() / 255.0)
    assert f.dtype == torch.float32
    torch.testing.assert_close(f * 255.0, out.float(), atol=1e-4, rtol=0)
    gray = store_as_jpeg(u8[:, :1])
    assert gray.shape == (2, 1, 24, 20)
    with pytest.raises(ValueError, match="quality"):
        store_as_jpeg(u8, 0)
    with pytest.raises(ValueError, match="expects"):
        store_as_jpeg(u8[0])
    # batched == one by one
    torch.testing.assert_close(torch.cat([store_as_jpeg(u8[i : i + 1]) for i in range(2)]), out)
