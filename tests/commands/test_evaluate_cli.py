import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustbench_lift.checkpoint import save_checkpoint
from robustbench_lift.cli import main
from robustbench_lift.evaluation import evaluate
from robustbench_lift.models import build_model
from robustbench_lift.store import RunStore

REPO = Path(__file__).resolve().parents[2]
FMNIST = "/usr/share/datasets/fashion-mnist"
pytestmark = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST is not installed")

ARGS = (
    "--dataset fashion-mnist --suite cifar10-c --limit 32 --batch-size 8 --n-boot 100 --no-progress".split()
)
ARGS += ["--corruptions", "gaussian_noise,contrast", "--severities", "1,5"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "convnet-max.safetensors"
    save_checkpoint(path, build_model("convnet", pool="max", num_classes=10, in_channels=1))
    return path


@pytest.fixture(scope="module")
def torchvision_state_dict(tmp_path_factory) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    return path


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, checkpoint):
    run = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "cli.py"), "evaluate", str(checkpoint), *ARGS, "--out", str(run)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cells = run / "cells"

    def stored():
        return [p for p in cells.glob("*/*.npz") if not p.name.startswith(".tmp-")]

    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if cells.exists() and len(stored()) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the evaluation finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "results.csv").exists()
    before = {p: p.stat().st_mtime_ns for p in stored()}
    assert 2 <= len(before) < 5

    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"reused {len(before)}" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished cells were not recomputed
    assert len(stored()) == 5
    assert not list(run.rglob(".tmp-*"))

    reference = evaluate(
        [checkpoint],
        "fashion-mnist",
        "cifar10-c",
        out=tmp_path / "uninterrupted",
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 5],
        limit=32,
        batch_size=64,
        n_boot=100,
        progress=False,
    )
    assert (run / "results.csv").read_bytes() == (reference.run_dir / "results.csv").read_bytes()
    manifest = RunStore(run).read_manifest()
    assert len(manifest["sessions"]) == 2
    assert manifest["config"]["models"]["convnet-max"]["content_hash"].startswith("sha256")
    assert manifest["sessions"][0]["versions"]["torch"] == torch.__version__


def test_torchvision_state_dict_end_to_end(tmp_path, torchvision_state_dict, capsys, caplog):
    argv = ["evaluate", str(torchvision_state_dict), "--arch", "torchvision:resnet18", "--num-classes", "10"]
    argv += ["--dataset", "fashion-mnist", "--corruptions", "brightness", "--severities", "2", "--limit", "8"]
    argv += ["--no-progress", "--n-boot", "20", "--out", str(tmp_path / "tv")]
    assert main(argv) == 0
    # a bare state_dict says nothing about normalisation: the user is told, with the flags to pass
    assert "records no input normalisation" in caplog.text and "--mean" in caplog.text
    out = capsys.readouterr().out
    assert "resnet18" in out and "clean_err" in out and "mCE" in out
    df = RunStore(tmp_path / "tv").read_results()
    row = df.query("corruption == 'brightness' and severity == 2 and metric == 'top1_error'")
    assert row["n"].item() == 8 and row["arch"].item() == "torchvision:resnet18"


def test_cli_class_mismatch_and_refusals(tmp_path, checkpoint, capsys):
    seven = tmp_path / "seven.safetensors"
    save_checkpoint(seven, build_model("convnet", pool="avg", num_classes=7, in_channels=1))
    argv = [
        "evaluate",
        str(seven),
        "--dataset",
        "fashion-mnist",
        "--limit",
        "8",
        "--out",
        str(tmp_path / "bad"),
    ]
    assert main(argv) == 2
    assert "predicts 7 classes but dataset 'fashion-mnist' has 10" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    base = ["evaluate", str(checkpoint), "--dataset", "fashion-mnist", "--corruptions", "contrast"]
    base += [
        "--severities",
        "1",
        "--limit",
        "8",
        "--no-progress",
        "--n-boot",
        "10",
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "seed: stored 0, requested 3" in err and "--new-run" in err
    with RunStore(tmp_path / "r"):
        assert main(base) == 2
        assert "run.lock" in capsys.readouterr().err
    assert main([*base, "--seed", "3", "--new-run"]) == 0
    assert main(["evaluate", str(checkpoint), "--out", "../escape"]) == 2
    assert "'..' components" in capsys.readouterr().err
    assert main([*base[:-1], str(tmp_path / "bad name")]) == 2
    assert "invalid run name" in capsys.readouterr().err


def test_native_and_external_checkpoints_in_one_run(tmp_path, checkpoint, capsys):
    """Build options once (every external CKPT) or once per CKPT; sizes of state_dicts read from the weights."""
    torch.manual_seed(1)
    gray = tmp_path / "gray-avg.pt"  # 1-channel convnet state_dict: no --in-channels needed
    torch.save(build_model("convnet", pool="avg", num_classes=10, in_channels=1).state_dict(), gray)
    r10 = tmp_path / "r10.pth"
    torch.save(build_model("timm:resnet10t", pool=None, num_classes=10, in_channels=1).state_dict(), r10)
    small = ["--dataset", "fashion-mnist", "--corruptions", "contrast", "--severities", "1", "--limit", "8"]
    small += ["--no-progress", "--n-boot", "10", "--input-size", "28"]

    # once: the native checkpoint keeps its own arch and pool, the state_dict gets them
    argv = ["evaluate", str(checkpoint), str(gray), "--arch", "convnet", "--pool", "avg", *small]
    assert main([*argv, "--out", str(tmp_path / "once")]) == 0
    df = RunStore(tmp_path / "once").read_results()
    pooling = df.groupby("model")["pooling"].first().to_dict()
    assert pooling == {"convnet-max": "max", "gray-avg": "avg"}

    # per checkpoint, '-' for the native one
    argv = ["evaluate", str(checkpoint), str(gray), str(r10), "--arch", "-", "--arch", "convnet"]
    argv += ["--arch", "timm:resnet10t", "--pool", "-", "--pool", "avg", "--pool", "-", *small]
    assert main([*argv, "--out", str(tmp_path / "each")]) == 0
    df = RunStore(tmp_path / "each").read_results()
    archs = df.groupby("model")["arch"].first().to_dict()
    assert archs == {"convnet-max": "convnet", "gray-avg": "convnet", "r10": "timm:resnet10t"}

    # an explicit value that contradicts a native checkpoint: a clear error, exit 2
    capsys.readouterr()
    argv = ["evaluate", str(checkpoint), str(gray), "--arch", "vgg11", "--arch", "convnet", *small]
    assert main([*argv, "--out", str(tmp_path / "bad")]) == 2
    assert "arch='vgg11' given, but" in capsys.readouterr().err
