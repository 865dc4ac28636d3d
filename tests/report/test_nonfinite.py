"""NaN/inf logits are reported by every summary of a run: a resumed evaluate, ``report`` (summary.csv, Markdown,
HTML, stderr) and ``check``, not only while the cells are computed."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustbench_lift.cli import main
from robustbench_lift.data import ArrayDataset
from robustbench_lift.evaluation import evaluate
from robustbench_lift.report.summary import NONFINITE_COLUMN, build_summary, nonfinite_notes
from robustbench_lift.schema import NONFINITE


class HalfNaN(nn.Module):
    """Logits of the first half of every batch are NaN."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.default_cfg = {"arch": "halfnan", "pool": "max", "num_classes": 10, "in_channels": 1}

    def forward(self, x):
        out = torch.zeros(x.shape[0], 10) + self.w
        out[: x.shape[0] // 2] = float("nan")
        return out


class Finite(HalfNaN):
    def forward(self, x):
        return torch.zeros(x.shape[0], 10) + self.w


def _data(n=8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 20, 20), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    return ArrayDataset(images, labels, layout="NHW", class_names=[str(i) for i in range(10)], name="toy")


def _evaluate(tmp_path):
    return evaluate(
        [HalfNaN(), Finite()],
        _data(),
        "cifar10-c",
        out=tmp_path / "r",
        names=["bad", "ok"],
        corruptions=["brightness"],
        severities=[1],
        progress=False,
        n_boot=0,
        batch_size=4,
    )


def test_nonfinite_counts_are_rows_of_the_results_and_warned_on_every_evaluate(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        first = _evaluate(tmp_path)
    rows = first.results[first.results["metric"] == NONFINITE]
    assert set(rows["model"]) == {"bad"}
    assert sorted(rows["corruption"]) == ["brightness", "clean"]
    assert (rows["value"] == 0.5).all() and (rows["n"] == 8).all()
    want = "model 'bad' produced NaN/inf logits for 8 of 16 images in 2 cell(s)"
    assert want in caplog.text and "model 'ok'" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = _evaluate(tmp_path)
    assert again.cells_run == 0 and want in caplog.text
    # the NaN rows change no other number of the run
    other = again.results[again.results["metric"] != NONFINITE]
    assert "clean" not in set(other["suite"])


def test_summary_and_report_say_it(tmp_path, capsys):
    r = _evaluate(tmp_path)
    summary, _ = build_summary(r.results)
    assert dict(zip(summary["model"], summary[NONFINITE_COLUMN])) == {"bad": 8, "ok": 0}
    finite_only = r.results[r.results["metric"] != NONFINITE]
    assert (
        NONFINITE_COLUMN not in build_summary(finite_only)[0].columns and nonfinite_notes(finite_only) == []
    )

    out = tmp_path / "rep"
    assert main(["report", str(r.run_dir), "--out", str(out), "--no-gallery", "--formats", "png"]) == 0
    err = capsys.readouterr().err
    assert "model 'bad' produced NaN/inf logits for 8 of 16 images" in err
    assert "NaN/inf logits" in (out / "report.md").read_text()
    assert "NaN/inf logits" in (out / "report.html").read_text()
    table = pd.read_csv(out / "summary.csv")
    assert dict(zip(table["model"], table[NONFINITE_COLUMN])) == {"bad": 8, "ok": 0}
    assert "per_corruption.csv" in {p.name for p in out.iterdir()}
    assert "clean" not in set(pd.read_csv(out / "per_corruption.csv")["suite"])


@pytest.mark.parametrize("source", ["run", "summary"])
def test_check_says_it(tmp_path, capsys, source):
    r = _evaluate(tmp_path)
    target = r.run_dir
    if source == "summary":
        assert main(["report", str(r.run_dir), "--out", str(tmp_path / "rep"), "--no-gallery"]) == 0
        target = tmp_path / "rep" / "summary.csv"
    capsys.readouterr()
    base = tmp_path / "base.json"
    assert (
        main(["check", str(target), "--baseline", str(base), "--update-baseline", "--max-increase", "mce=2%"])
        == 0
    )
    assert "model 'bad' produced NaN/inf logits for 8" in capsys.readouterr().err
    assert main(["check", str(target), "--baseline", str(base)]) == 0
    err = capsys.readouterr().err
    assert "model 'bad' produced NaN/inf logits for 8" in err and "model 'ok'" not in err


def test_compare_says_it(tmp_path, capsys):
    a = _evaluate(tmp_path / "a")
    b = _evaluate(tmp_path / "b")
    capsys.readouterr()
    assert main(["compare", str(a.run_dir), str(b.run_dir), "--n-boot", "10"]) == 0
    err = capsys.readouterr().err
    assert (
        err.count("model 'bad' produced NaN/inf logits for 8 of 16 images") == 2 and "model 'ok'" not in err
    )
