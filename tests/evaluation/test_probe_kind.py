"""The probe suite kind: which images the shift probes see, and protocol versions of stored cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustbench_lift.data import open_dataset
from robustbench_lift.evaluation import evaluate
from robustbench_lift.evaluation.kinds.probe import PROTOCOL_VERSIONS, larger_image
from robustbench_lift.store import ConfigMismatchError, RunStore


class _Sized(nn.Module):
    """A classifier with a 224 px input in its default_cfg; records the sizes of the inputs it is given."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.head = nn.Linear(4, num_classes)
        self.sizes: set[tuple[int, int]] = set()
        self.default_cfg = {
            "arch": "sized",
            "pool": "max",
            "num_classes": num_classes,
            "in_channels": 3,
            "input_size": (224, 224),
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
        }

    def forward(self, x):
        self.sizes.add(tuple(x.shape[-2:]))
        return self.head(torch.relu(self.conv(x)).amax(dim=(2, 3)))


def _folder(root, classes: int = 3, per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(per_class):
            h, w = (300, 270) if (k + i) % 2 else (260, 330)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{k}" / f"{i}.png")


def test_larger_image_is_resize_256_center_crop_256_of_the_same_files(tmp_path):
    _folder(tmp_path / "val")
    data = open_dataset(f"imagefolder:{tmp_path / 'val'}", image_size=224)
    big, crop = larger_image(data, (224, 224))
    assert crop == 224 and big.image_size == (256, 256) and len(big) == len(data)
    assert [big.sample_id(i) for i in range(len(big))] == [data.sample_id(i) for i in range(len(data))]
    path = data.samples[1][0]
    with Image.open(path) as img:
        w, h = img.size
        nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        ref = img.convert("RGB").resize((nw, nh), Image.BILINEAR)
        top, left = int(round((nh - 256) / 2.0)), int(round((nw - 256) / 2.0))
        ref = np.asarray(ref.crop((left, top, left + 256, top + 256)))
    np.testing.assert_array_equal(big[1][0].permute(1, 2, 0).numpy(), ref)
    assert data[1][0].shape == (3, 224, 224)  # the original is untouched
    # fixed-size data and models whose input is not the folder's size give no larger image
    assert larger_image(data, (32, 32)) is None
    assert larger_image(open_dataset(f"imagefolder:{tmp_path / 'val'}"), (224, 224)) is None


def test_shift_probe_on_an_image_folder_with_a_224_model_runs_zhangs_protocol(tmp_path):
    _folder(tmp_path / "val")
    model = _Sized()
    r = evaluate(
        [model],
        f"imagefolder:{tmp_path / 'val'}",
        "shift",
        corruptions=["crop", "diagonal", "circular"],
        out=tmp_path / "run",
        progress=False,
        n_boot=20,
    )
    assert model.sizes == {(224, 224)}  # the model only ever sees 224 px inputs
    res = r.results
    crop = res.query("corruption == 'crop' and metric == 'consistency'")
    assert crop["severity"].item() == 32
    assert (
        "Zhang 2019 ImageNet protocol: two 224 px crops of the 256x256 image at offsets in [0,32) per axis"
        in crop["protocol"].item()
    )
    diag = res.query("corruption == 'diagonal' and metric == 'agreement'")
    assert sorted(diag["severity"]) == list(range(33))  # crops at 0..32 px of real content
    assert diag["protocol"].str.contains("Zhang 2019").all()
    circ = res.query("corruption == 'circular' and metric == 'consistency'")["protocol"].item()
    assert "[-32,32)" in circ  # circular shifts act on the 224 px input
    with RunStore(r.run_dir) as store:
        specs = [spec for _, spec, _, _ in store.iter_cells()]
        params = store.manifest["config"]["suites"]["shift"]["params"]
    assert params["protocol_version"] == PROTOCOL_VERSIONS["shift"]
    assert all(["protocol_version", PROTOCOL_VERSIONS["shift"]] in s["options"] for s in specs)


def test_runs_made_under_an_older_shift_protocol_are_not_silently_reused(tmp_path):
    _folder(tmp_path / "val")
    kw = dict(corruptions=["circular"], out=tmp_path / "run", progress=False, n_boot=0)
    spec = f"imagefolder:{tmp_path / 'val'}"
    evaluate([_Sized()], spec, "shift", **kw)
    with RunStore(tmp_path / "run") as store:  # make it look like a run stored before the version existed
        manifest = store.manifest
        del manifest["config"]["suites"]["shift"]["params"]["protocol_version"]
        store.write_manifest(manifest)
    with pytest.raises(ConfigMismatchError, match="protocol_version"):
        evaluate([_Sized()], spec, "shift", **kw)


def test_short_side_must_cover_the_crop(tmp_path):
    from robustbench_lift.data import ImageFolderDataset

    _folder(tmp_path / "val", classes=1, per_class=1)
    with pytest.raises(ValueError, match="short_side 200 is smaller than the 224x224 crop"):
        ImageFolderDataset(tmp_path / "val", image_size=224, short_side=200)
    with pytest.raises(ValueError, match="short_side must be a positive int"):
        ImageFolderDataset(tmp_path / "val", image_size=224, short_side=0)
    ds = ImageFolderDataset(tmp_path / "val", image_size=224, short_side=224)
    assert ds[0][0].shape == (3, 224, 224)
