"""A truncated ``.npy`` of a pre-generated set fails only its own cells; a re-run after fixing it runs only those."""

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lift.cli import main
from robustbench_lift.data import UnreadableCellError, open_dataset
from robustbench_lift.evaluation import evaluate
from robustbench_lift.store import RunStore, run_problems

N = 6


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)
        self.default_cfg = {"arch": "small", "pool": "max", "num_classes": 10, "in_channels": 3}

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).amax(dim=(2, 3)))


def _layout(root, corruptions=("fog", "contrast", "snow")):
    rng = np.random.default_rng(0)
    root.mkdir()
    data = {}
    for c in corruptions:
        data[c] = rng.integers(0, 256, size=(5 * N, 8, 8, 3), dtype=np.uint8)
        np.save(root / f"{c}.npy", data[c])
    np.save(root / "labels.npy", np.tile(rng.integers(0, 10, size=N), 5))
    return data


def _truncate(path, keep=0.5):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def test_truncated_file_is_found_from_its_header_and_only_its_cells_raise(tmp_path):
    root = tmp_path / "c10c"
    _layout(root)
    _truncate(root / "fog.npy")
    ds = open_dataset(f"cifar10-c:{root}")
    assert "fog" in ds.corruptions and set(ds.unreadable) == {"fog"}
    assert "fog.npy" in ds.unreadable["fog"] and "truncated" in ds.unreadable["fog"]
    assert len(ds.cell("contrast", 2)) == N
    with pytest.raises(UnreadableCellError, match=r"cell fog/3: .*fog\.npy' is truncated"):
        ds.cell("fog", 3)
    # nothing readable at all: the set cannot be opened
    for c in ("contrast", "snow"):
        _truncate(root / f"{c}.npy", keep=0.01)
    with pytest.raises(ValueError, match="no readable <corruption>.npy file"):
        open_dataset(f"cifar10-c:{root}")


def test_evaluate_stores_the_readable_cells_and_reruns_only_the_failed_ones(tmp_path):
    root = tmp_path / "c10c"
    data = _layout(root)
    _truncate(root / "fog.npy")
    kw = dict(out=tmp_path / "r", severities=[1, 5], progress=False, n_boot=0)
    r = evaluate([Small()], f"cifar10-c:{root}", None, **kw)
    assert sorted(r.failed) == ["small/cifar10-c__fog__s1", "small/cifar10-c__fog__s5"]
    assert all("fog.npy' is truncated" in why for why in r.failed.values())
    assert r.cells_run == 4
    assert set(r.results["corruption"]) >= {"contrast", "snow"}
    assert "fog" not in set(r.results["corruption"])
    assert not any("fog" in k for k in RunStore(r.run_dir).cell_keys())
    problems = run_problems(r.run_dir)
    assert len(problems) == 1 and "2 cell(s) failed" in problems[0] and "fog.npy" in problems[0]

    np.save(root / "fog.npy", data["fog"])
    r2 = evaluate([Small()], f"cifar10-c:{root}", None, **kw)
    assert r2.failed == {} and r2.cells_run == 2 and r2.cells_skipped == 4
    assert "fog" in set(r2.results["corruption"])
    assert run_problems(r2.run_dir) == []


def test_cli_reports_failed_cells_and_exits_2(tmp_path, capsys):
    from robustbench_lift.checkpoint import save_checkpoint
    from robustbench_lift.models import build_model

    root = tmp_path / "c10c"
    _layout(root, corruptions=("fog", "contrast"))
    _truncate(root / "contrast.npy")
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, build_model("convnet", pool="max", num_classes=10, in_channels=3))
    argv = ["evaluate", str(ckpt), "--dataset", f"cifar10-c:{root}", "--out", str(tmp_path / "r")]
    argv += ["--severities", "1", "--n-boot", "0", "--no-progress"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "1 cell(s) failed" in captured.err and "contrast.npy' is truncated" in captured.err
    assert "fog" in (tmp_path / "r" / "results.csv").read_text()
