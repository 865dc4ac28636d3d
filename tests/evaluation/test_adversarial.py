"""The adversarial suites end to end on real Fashion-MNIST (a small ConvNet trained once for the module)."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_lift.attacks import adversarial_suite
from robustbench_lift.evaluation import evaluate
from robustbench_lift.train import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("adv") / "max.safetensors"
    train(
        "convnet",
        "max",
        "fashion-mnist",
        epochs=2,
        out=out,
        limit_train=3000,
        limit_val=300,
        batch_size=64,
        crop_padding=0,
        model_kwargs={"widths": (8, 16, 32), "convs_per_stage": 1},
        num_threads=1,
        progress=False,
    )
    return out


def _rows(result, suite):
    df = result.results
    df = df[(df.suite == suite) & (df.metric == "top1_error")]
    return dict(zip(df.corruption, df.value))


def _cell(run_dir, model, suite, token):
    with np.load(Path(run_dir) / "cells" / model / f"{suite}__{token}__s0.npz") as z:
        return {k: z[k] for k in z.files}


def test_pgd_linf_curve_on_a_trained_convnet(trained, tmp_path):
    res = evaluate(
        [trained],
        "fashion-mnist",
        [adversarial_suite("pgd-linf", "0,0.02,0.1")],
        out=tmp_path / "run",
        limit=150,
        progress=False,
        n_boot=200,
    )
    err = _rows(res, "pgd-linf")
    assert err["eps=0"] == err["clean"]  # eps 0 is exactly the clean error
    assert err["clean"] <= err["eps=0.02"] <= err["eps=0.1"]
    assert err["eps=0.1"] - err["clean"] >= 0.20  # at least 20 points lost at L-inf 0.1
    rows = res.results[res.results.suite == "pgd-linf"]
    assert rows.ci_low.notna().all() and (rows.n == 150).all()
    assert all(
        "PGD (Madry et al.), L-inf" in p and "10 steps" in p
        for p in rows.protocol[rows.corruption != "clean"]
    )
    # resuming with one more eps runs only the new cells
    again = evaluate(
        [trained],
        "fashion-mnist",
        [adversarial_suite("pgd-linf", "0,0.02,0.05,0.1")],
        out=tmp_path / "run",
        limit=150,
        progress=False,
        n_boot=200,
    )
    assert again.cells_run == 1
    assert _rows(again, "pgd-linf")["eps=0.1"] == err["eps=0.1"]


def test_pgd_per_sample_results_do_not_depend_on_batch_size(trained, tmp_path):
    flags = []
    for b in (7, 32):
        evaluate(
            [trained],
            "fashion-mnist",
            [adversarial_suite("pgd-l2", "1.0", steps=5)],
            out=tmp_path / f"b{b}",
            limit=40,
            batch_size=b,
            progress=False,
            n_boot=0,
        )
        flags.append(_cell(tmp_path / f"b{b}", "max", "pgd-l2", "eps1.0"))
    assert np.array_equal(flags[0]["ids"], flags[1]["ids"])
    assert np.array_equal(flags[0]["wrong"], flags[1]["wrong"])
    assert np.array_equal(flags[0]["pred"], flags[1]["pred"])


class _Rounding(nn.Module):
    """A model whose input quantisation kills the gradient (gradient masking)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
        self.default_cfg = {"arch": "rounding", "pool": "none", "num_classes": 10, "in_channels": 1}

    def forward(self, x):
        return self.net(torch.round(x * 4) / 4)


def test_masked_gradients_are_flagged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        res = evaluate(
            [_Rounding()],
            "fashion-mnist",
            [adversarial_suite("pgd-linf", "0.1", steps=2)],
            out=tmp_path / "run",
            limit=20,
            progress=False,
            n_boot=0,
        )
    assert any("'rounding'" in r.getMessage() and "masked" in r.getMessage() for r in caplog.records)
    row = res.results[(res.results.suite == "pgd-linf") & (res.results.corruption == "eps=0.1")]
    assert row.protocol.str.contains("WARNING: zero input gradient for 20/20 images").all()


def test_cli_adversarial_options(trained, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
        )

    bad = cli("evaluate", str(trained), "--suite", "cifar10-c", "--eps", "0.1", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--eps need an adversarial suite" in bad.stderr
    bad = cli("evaluate", str(trained), "--suite", "pgd-linf", "--eps", "-1", "--out", str(tmp_path / "y"))
    assert bad.returncode == 2 and "eps must be" in bad.stderr
    ok = cli(
        "evaluate",
        str(trained),
        "--suite",
        "pgd-linf",
        "--eps",
        "0,2/255",
        "--attack-steps",
        "3",
        "--limit",
        "16",
        "--n-boot",
        "0",
        "--no-progress",
        "--out",
        str(tmp_path / "z"),
    )
    assert ok.returncode == 0, ok.stderr
    csv = (tmp_path / "z" / "results.csv").read_text()
    assert "eps=2/255" in csv and "3 steps" in csv


@pytest.mark.autoattack
def test_autoattack_runs_end_to_end_and_keeps_global_rng(trained, tmp_path):
    pytest.importorskip("torchattacks")
    from robustbench_lift.attacks.autoattack import run_autoattack

    model = _Rounding().net.eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    run_autoattack(model, model, x, torch.tensor([0, 1, 2, 3]), eps=0.1, norm="linf", num_classes=10, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the library's manual_seed calls stay inside
    res = evaluate(
        [trained],
        "fashion-mnist",
        [adversarial_suite("autoattack-linf", "0,0.1")],
        out=tmp_path / "run",
        limit=8,
        progress=False,
        n_boot=0,
    )
    err = _rows(res, "autoattack-linf")
    assert err["eps=0"] == err["clean"] <= err["eps=0.1"]
    proto = res.results[res.results.corruption == "eps=0.1"].protocol.iloc[0]
    assert "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)" in proto and "torchattacks" in proto


def test_report_summary_and_check_know_robust_accuracy(trained, tmp_path):
    from robustbench_lift.report.check import current_metrics
    from robustbench_lift.report.tables import build_summary, corruption_suites

    res = evaluate(
        [trained],
        "fashion-mnist",
        [adversarial_suite("pgd-linf", "0,8/255", steps=3)],
        out=tmp_path / "run",
        limit=30,
        progress=False,
        n_boot=50,
    )
    assert corruption_suites(res.results) == []  # attacks are not corruption suites
    summary, columns = build_summary(res.results)
    keys = {c["key"] for c in columns.values()}
    assert {"robust_acc[pgd-linf:0]", "robust_acc[pgd-linf:8/255]", "clean_acc"} <= keys
    metrics = current_metrics(tmp_path / "run")["max"]
    err = _rows(res, "pgd-linf")
    assert metrics["robust_acc[pgd-linf:8/255]"] == pytest.approx(100 * (1 - err["eps=8/255"]))
    assert metrics["robust_acc[pgd-linf:0]"] == pytest.approx(metrics["clean_acc"])

    def check(*args):
        return subprocess.run(
            [sys.executable, "cli.py", "check", *args], cwd=REPO, capture_output=True, text=True, timeout=120
        )

    base = str(tmp_path / "base.json")
    run = str(tmp_path / "run")
    made = check("--baseline", base, run, "--update-baseline", "--max-drop", "robust_acc[pgd-linf:8/255]=0.5")
    assert made.returncode == 0, made.stdout + made.stderr
    proc = check("--baseline", base, run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "robust_acc[pgd-linf:8/255]" in proc.stdout

    # the report: a table per attack and eps and the robust-accuracy curve
    from robustbench_lift.report.tables import build_adversarial, build_tables

    table = build_adversarial(res.results)
    assert list(table["eps"]) == ["0", "8/255"] and list(table["attack"]) == ["pgd-linf"] * 2
    assert table["robust_accuracy_%"].iloc[1] == pytest.approx(metrics["robust_acc[pgd-linf:8/255]"])
    assert "adversarial" in build_tables(res.results)
    rep = subprocess.run(
        [sys.executable, "cli.py", "report", run, "--out", str(tmp_path / "rep")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "rep" / "adversarial.csv").exists() and (
        tmp_path / "rep" / "robust_accuracy.png"
    ).exists()
    assert "Adversarial attacks" in (tmp_path / "rep" / "report.html").read_text()


def _cifar10_layout(root: Path, n: int = 6) -> Path:
    """torchvision's CIFAR-10 python layout (random pixels), as users have it on disk."""
    import pickle

    rng = np.random.default_rng(3)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, size=n)],
            "filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    classes = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": classes}))
    return root


@pytest.mark.parametrize(
    "suites",
    ["pgd-linf,pgd-l2", pytest.param("autoattack-linf,autoattack-l2", marks=pytest.mark.autoattack)],
)
def test_the_four_suites_run_from_the_cli_on_a_cifar10_layout(tmp_path, suites):
    if suites.startswith("autoattack"):
        pytest.importorskip("torchattacks")
    from robustbench_lift.checkpoint import save_checkpoint
    from robustbench_lift.models import build_model

    root = _cifar10_layout(tmp_path / "cifar")
    torch.manual_seed(0)
    model = build_model(
        "convnet", pool="blur", num_classes=10, in_channels=3, widths=(4, 8), convs_per_stage=1
    )
    ckpt = save_checkpoint(
        tmp_path / "c10.safetensors", model.eval(), input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3
    )
    proc = subprocess.run(
        [sys.executable, "cli.py", "evaluate", str(ckpt), "--dataset", f"cifar10:{root}", "--suite", suites,
         "--eps", "0,8/255", "--attack-steps", "2", "--n-boot", "0", "--no-progress", "--out", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pandas as pd

    df = pd.read_csv(tmp_path / "run" / "results.csv")
    for suite in suites.split(","):
        rows = df[(df["suite"] == suite) & (df["metric"] == "top1_error")]
        assert set(rows["corruption"]) == {"clean", "eps=0", "eps=8/255"} and (rows["n"] == 6).all()
