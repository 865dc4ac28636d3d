"""The demo pipeline end to end on a tiny configuration: train -> evaluate -> report, then a resume that recomputes
nothing."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from robustbench_lift import demo as demo_mod
from robustbench_lift.cli import main
from robustbench_lift.demo import POOLINGS, PROFILES, format_headline, resolve_profile, run_demo

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

needs_fmnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")),
    reason="needs the dataset-fashion-mnist package",
)

# The ci profile's tiny ConvNet, one epoch on a few hundred images, evaluated on 8 test images.
TINY = {"profile": "ci", "epochs": 1, "limit_train": 256, "limit": 8}
TINY_ARGS = ["--profile", "ci", "--epochs", "1", "--limit-train", "256", "--limit", "8"]


def _mtimes(paths) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = run_demo(out, progress=False, **TINY)
    return out, result


@needs_fmnist
def test_demo_writes_the_report_and_headline(tiny_demo):
    out, result = tiny_demo
    report = out / "report"
    for name in ("report.html", "report.md", "summary.csv", "per_corruption.csv", "perturbations.csv"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    assert (report / "gallery.png").read_bytes().startswith(b"\x89PNG")
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "data:image/png;base64" in html
    # one model per pooling, each trained, each evaluated on every suite
    assert set(result.checkpoints) == set(POOLINGS)
    assert all(p.is_file() for p in result.checkpoints.values())
    assert result.trained_epochs == {p: 1 for p in POOLINGS}
    results = pd.read_csv(out / "run" / "results.csv")
    assert set(results["model"]) == set(POOLINGS)
    assert {"cifar10-c", "cifar10-p", "shift", "reconstruction"} <= set(results["suite"])
    summary = pd.read_csv(report / "summary.csv")
    assert list(summary["model"]) == list(POOLINGS)
    # the max-pool model is the baseline of the normalised numbers
    head = result.headline.set_index("pooling")
    assert list(head.index) == list(POOLINGS)
    assert head.loc["max", "mce"] == pytest.approx(100.0)
    # (mFR needs the baseline to flip at least once: a model this small may not, and then there is no mFR)
    assert head.loc["max", "mfr"] == pytest.approx(100.0) or math.isnan(head.loc["max", "mfr"])
    for key in (
        "clean_acc",
        "mce",
        "mean_corruption_error",
        "crop_consistency",
        "circular_consistency",
    ):
        assert head[key].map(math.isfinite).all(), key
    assert ((head["clean_acc"] >= 0) & (head["clean_acc"] <= 100)).all()
    # demo.json records the settings, the timings and the same headline
    state = json.loads((out / "demo.json").read_text())
    assert state["status"] == "done"
    assert state["settings"]["epochs"] == 1 and state["settings"]["limit"] == 8
    assert state["settings"]["poolings"] == list(POOLINGS)
    assert {"train:lift", "evaluate", "report", "total"} <= set(state["timings"])
    assert [r["pooling"] for r in state["headline"]] == list(POOLINGS)
    text = format_headline(result.headline)
    assert text.splitlines()[0].startswith("pooling") and len(text.splitlines()) == 1 + len(POOLINGS)


@needs_fmnist
def test_demo_rerun_recomputes_nothing(tiny_demo, capsys):
    out, first = tiny_demo
    ckpts = sorted((out / "checkpoints").glob("*.safetensors"))
    cells = sorted((out / "run" / "cells").rglob("*.npz"))
    assert len(ckpts) == 2 * len(POOLINGS)  # last + best
    assert len(cells) == first.cells_run > 0
    before = _mtimes(ckpts + cells)

    rc = main(["demo", *TINY_ARGS, "--out", str(out), "--no-report", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"cells computed 0, reused {len(cells)}" in printed
    assert "reused: " + ", ".join(POOLINGS) in printed
    assert "mCE (max=100)" in printed and printed.count("\nlift ") == 1
    assert _mtimes(ckpts + cells) == before
    assert sorted((out / "run" / "cells").rglob("*.npz")) == cells
    state = json.loads((out / "demo.json").read_text())
    assert state["cells_run"] == 0 and state["cells_reused"] == len(cells)
    assert state["trained_epochs"] == {p: 0 for p in POOLINGS}
    # the numbers come back identical from the stored cells
    again = pd.DataFrame(state["headline"]).set_index("pooling")["mce"]
    assert again.to_dict() == pytest.approx(first.headline.set_index("pooling")["mce"].to_dict())


@needs_fmnist
def test_demo_refuses_other_settings_without_restart(tiny_demo):
    out, _ = tiny_demo
    before = (out / "demo.json").read_text()
    with pytest.raises(ValueError, match=r"other settings \(epochs: 1 -> 2\).*--restart"):
        run_demo(out, progress=False, **{**TINY, "epochs": 2})
    assert (out / "demo.json").read_text() == before


def test_missing_dataset_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr("robustbench_lift.data.FASHION_MNIST_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="sudo apt-get install dataset-fashion-mnist"):
        run_demo(tmp_path / "out", **TINY)
    assert not (tmp_path / "out").exists()
    rc = main(["demo", *TINY_ARGS, "--out", str(tmp_path / "out")])
    assert rc == 2


def test_profiles_and_overrides():
    quick, full = PROFILES["quick"], PROFILES["default"]
    # quick is the same pipeline with less work
    assert quick.epochs <= full.epochs and quick.limit < full.limit and quick.limit_train < full.limit_train
    p = resolve_profile("quick", epochs=5, limit=10)
    assert (p.epochs, p.limit, p.limit_train) == (5, 10, quick.limit_train)
    assert resolve_profile(p) is p
    with pytest.raises(ValueError, match="unknown demo profile 'fast'; valid: default, quick, ci"):
        resolve_profile("fast")
    with pytest.raises(ValueError, match="epochs must be a positive int, got 0"):
        resolve_profile("quick", epochs=0)
    with pytest.raises(ValueError, match="seed must be an int"):
        resolve_profile("quick", seed=1.5)


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown pooling"):
        run_demo(tmp_path / "a", poolings=["lift", "median"], **TINY)
    with pytest.raises(ValueError, match="at least one suite"):
        run_demo(tmp_path / "b", suites=[], **TINY)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out must be a folder"):
        run_demo(tmp_path / "file", **TINY)
    assert main(["demo", "--quick", "--profile", "ci", "--out", str(tmp_path / "c")]) == 2
    assert not any(Path(tmp_path).glob("*/demo.json"))


def test_headline_keys_exist_in_the_report_summary():
    from robustbench_lift.report.tables import HEADLINE

    keys = {s.key for s in HEADLINE}
    assert {k for k, _ in demo_mod.HEADLINE_KEYS} <= keys
