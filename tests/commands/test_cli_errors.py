"""Exit codes 0/1/2 only: bad devices, reversed ranges, a full disk; ``python -m robustbench_lift``."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_lift.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _exit_code(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


@pytest.mark.parametrize("device", ["tpu9", "cuda:x", "npu"])
def test_unknown_device_exits_2_listing_the_valid_ones(device, capsys):
    assert _exit_code(["evaluate", "m.safetensors", "--out", "r", "--device", device]) == 2
    err = capsys.readouterr().err
    assert f"unknown device {device!r}" in err and "cpu, cuda, cuda:N, mps" in err


@pytest.mark.parametrize("command", [["evaluate", "m.safetensors", "--out", "r"], ["train"]])
def test_cuda_without_cuda_exits_2(command, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _exit_code([*command, "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_reversed_severity_range_is_refused(capsys):
    assert _exit_code(["evaluate", "m.safetensors", "--out", "r", "--severities", "5-1"]) == 2
    assert "empty range '5-1'" in capsys.readouterr().err


def test_disk_full_is_a_clear_message_with_exit_2(monkeypatch, capsys):
    from robustbench_lift.commands import check

    def full(_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "reports/x/results.csv")

    monkeypatch.setattr(check, "run", full)
    assert main(["check", "a", "--baseline", "b"]) == 2
    err = capsys.readouterr().err
    assert "disk full" in err and "reports/x/results.csv" in err and "Traceback" not in err


def test_disk_full_while_saving_a_plot_leaves_no_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from robustbench_lift.report.plots import save_figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    real = Figure.savefig

    def half_then_full(self, fname, *a, **k):
        if k.get("format") == "svg":
            Path(fname).write_text("<svg")  # a truncated file, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))
        return real(self, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", half_then_full)
    with pytest.raises(OSError):
        save_figure(fig, tmp_path, "plot", formats=("png", "svg"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]  # no plot.svg, no temporary


def test_python_dash_m_runs_the_cli():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "robustbench_lift", "--version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0 and out.stdout.startswith("robustbench-lift ")


def test_evaluate_has_no_progress_bar_when_stderr_is_not_a_terminal(monkeypatch):
    import argparse

    import robustbench_lift.commands.evaluate as cmd

    seen = {}

    class Stop(Exception):
        pass

    def fake_evaluate(*a, **kw):
        seen["progress"] = kw["progress"]
        raise Stop

    monkeypatch.setattr("robustbench_lift.evaluation.evaluate", fake_evaluate)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd.register(sub)
    args = parser.parse_args(["evaluate", "m.pt", "--out", "x"])
    import pytest

    with pytest.raises(Stop):
        cmd.run(args)
    assert seen["progress"] is False  # pytest captures stderr: not a TTY


def test_build_option_counts_must_be_one_or_one_per_checkpoint(tmp_path, capsys):
    argv = [
        "evaluate",
        "a.pt",
        "b.pt",
        "c.pt",
        "--arch",
        "convnet",
        "--arch",
        "vgg11",
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--arch given 2 times for 3 checkpoints" in err and "once per checkpoint" in err
    assert "Traceback" not in err
    argv = ["evaluate", "a.pt", "b.pt", "--num-classes", "10", "--num-classes", "-", "--num-classes", "3"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert "--num-classes given 3 times for 2 checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_build_options_reach_evaluate_once_or_per_checkpoint(monkeypatch):
    import robustbench_lift.commands.evaluate as cmd
    from robustbench_lift.cli import build_parser

    seen = {}

    class Stop(Exception):
        pass

    def fake_evaluate(*a, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr("robustbench_lift.evaluation.evaluate", fake_evaluate)
    argv = ["evaluate", "a.safetensors", "b.pt", "--arch", "-", "--arch", "timm:resnet18", "--pool", "blur"]
    args = build_parser().parse_args([*argv, "--num-classes", "-", "--num-classes", "7", "--out", "x"])
    with pytest.raises(Stop):
        cmd.run(args)
    assert seen["arch"] == [None, "timm:resnet18"] and seen["num_classes"] == [None, 7]
    assert seen["pool"] == "blur" and seen["in_channels"] is None
