"""One rule for run folders (a bare NAME means reports/NAME), a refused evaluate leaves no folder, train --out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from robustbench_lift.checkpoint import save_checkpoint
from robustbench_lift.cli import main
from robustbench_lift.commands._args import run_path
from robustbench_lift.models import build_model

FMNIST = "/usr/share/datasets/fashion-mnist"
needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST is not installed")

EVAL = [
    "--dataset", "fashion-mnist", "--suite", "cifar10-c", "--corruptions", "contrast", "--severities", "1",
    "--limit", "16", "--batch-size", "16", "--n-boot", "0", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "convnet-max.safetensors"
    save_checkpoint(path, build_model("convnet", pool="max", num_classes=10, in_channels=1))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_path_rule():
    assert run_path("runA") == os.path.join("reports", "runA")
    assert run_path("results.csv") == os.path.join("reports", "results.csv")
    assert run_path("./runA") == "./runA"
    assert run_path("out/runA") == "out/runA"
    assert run_path("/abs/runA") == "/abs/runA"


@needs_fmnist
def test_a_bare_name_means_the_same_folder_in_every_command(tmp_path, monkeypatch, checkpoint, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(checkpoint), *EVAL, "--out", "runA"]) == 0
    assert (tmp_path / "reports" / "runA" / "results.csv").is_file()
    assert not (tmp_path / "runA").exists()
    capsys.readouterr()

    assert main(["report", "runA", "--out", "runA-report", "--no-gallery", "--formats", "png"]) == 0
    assert (tmp_path / "reports" / "runA-report" / "report.md").is_file()
    assert main(["check", "runA", "--baseline", "base.json", "--update-baseline"]) == 0
    assert main(["check", "runA", "--baseline", "base.json", "--max-drop", "clean_acc=1.0"]) == 0
    assert main(["compare", "runA", "runA", "--unpaired"]) == 0
    assert "reports/runA" in capsys.readouterr().out
    # a path is used as given: ./runA is not reports/runA
    assert main(["report", "./runA", "--out", "x", "--no-gallery"]) == 2
    assert "runA" in capsys.readouterr().err


@needs_fmnist
def test_a_refused_evaluate_leaves_no_run_folder(tmp_path, monkeypatch, checkpoint, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    refusals = [
        [str(tmp_path / "missing.safetensors"), *EVAL],
        [str(bad), *EVAL],
        [str(checkpoint), *EVAL, "--suite", "no-such-suite"],
        [str(checkpoint), *EVAL, "--baseline", "nobody"],  # refused after the store was opened
    ]
    for argv in refusals:
        assert main(["evaluate", *argv, "--out", "runB"]) == 2, argv
        assert "Traceback" not in capsys.readouterr().err
        assert not (tmp_path / "reports").exists(), argv

    # an existing run with results is left exactly as it was by a refused re-run
    assert main(["evaluate", str(checkpoint), *EVAL, "--out", "runC"]) == 0
    run = tmp_path / "reports" / "runC"
    before = _snapshot(run)
    for argv in ([*EVAL, "--seed", "7"], [*EVAL, "--baseline", "nobody"]):
        assert main(["evaluate", str(checkpoint), *argv, "--out", "runC"]) == 2
        assert _snapshot(run) == before


def test_train_refuses_an_out_suffix_it_would_not_write(tmp_path, capsys):
    for name in ("model.pt", "model.pth", "model"):
        out = tmp_path / name
        argv = ["train", "--arch", "convnet", "--pool", "max", "--dataset", "fashion-mnist", "--epochs", "1"]
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "accepted suffixes: .safetensors" in err and "Traceback" not in err
        assert not list(tmp_path.iterdir())


def test_a_failed_first_use_removes_the_folders_the_store_made(tmp_path):
    import numpy as np

    from robustbench_lift.store import RunStore

    config = {"seed": 0, "models": {"m": {}}}
    path = tmp_path / "reports" / "new"
    with pytest.raises(ValueError), RunStore(path) as store:
        store.open(config)
        raise ValueError("refused after the manifest was written")
    assert not (tmp_path / "reports").exists()

    # once a cell is stored the run is kept (it can be resumed)
    with pytest.raises(ValueError), RunStore(path) as store:
        store.open(config)
        store.save_cell("m/clean", {"a": 1}, {"x": np.zeros(3)}, {})
        raise ValueError("failed later")
    assert (path / "cells" / "m" / "clean.npz").is_file()

    # a folder that existed before is never removed
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(ValueError), RunStore(kept) as store:
        store.open(config)
        raise ValueError("refused")
    assert kept.is_dir()
