"""The project's CI regression gate (``make gate``): the tiny ``demo --profile ci`` run checked against the committed
baseline passes, and drifting numbers - doctored baselines, or a corruption that silently stops corrupting - fail."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from robustbench_lift.cli import main
from robustbench_lift.demo import POOLINGS, run_demo
from robustbench_lift.report.check import load_baseline, parse_threshold

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "reports" / "baseline" / "baseline.json"
TOLERANCES = ROOT / "reports" / "baseline" / "tolerances.json"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

needs_fmnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")),
    reason="needs the dataset-fashion-mnist package",
)

CHECKED = (
    "clean_acc",
    "mce",
    "mean_corruption_error",
    "held_out_mean_corruption_error",
    "mfr",
    "mfp",
    "crop_consistency",
    "circular_consistency",
)


@pytest.fixture(scope="module")
def gate_dir(tmp_path_factory) -> Path:
    """What ``make gate`` computes: the ci profile from scratch (checkpoints, run store), without the report.

    With ``RBL_GATE_OUT`` set (``.ci/run``) the run goes to the gate's own folder, which ``make gate GATE_FRESH=``
    then resumes instead of training the same models a second time.
    """
    shared = os.environ.get("RBL_GATE_OUT")
    out = Path(shared).resolve() if shared else tmp_path_factory.mktemp("gate") / "ci-gate"
    run_demo(out, profile="ci", report=False, progress=False, restart=True)
    return out


def _check(run: Path, baseline: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["check", "--baseline", str(baseline), str(run)])
    return rc, capsys.readouterr().out


def _doctored(tmp_path: Path, model: str, metric: str, delta: float) -> Path:
    data = json.loads(BASELINE.read_text())
    data["models"][model][metric] += delta
    path = tmp_path / f"baseline-{model}-{metric}.json"
    path.write_text(json.dumps(data))
    return path


def test_committed_baseline_covers_every_model_with_two_sided_tolerances():
    base = load_baseline(BASELINE)
    assert set(base.values) == set(POOLINGS)
    for model, values in base.values.items():
        assert set(CHECKED) <= set(values), model
        # the normalised numbers of the baseline model are 100 by construction
    assert base.values["max"]["mce"] == pytest.approx(100.0)
    assert base.values["max"]["mfr"] == pytest.approx(100.0)
    # every checked metric has a tolerance in both directions (a drift either way is a change of the numbers)
    for metric in CHECKED:
        assert metric in base.thresholds["max_drop"] and metric in base.thresholds["max_increase"], metric
    # the stored tolerances are those of the committed tolerance file that reports/baseline/update.sh uses
    tolerances = json.loads(TOLERANCES.read_text())
    for direction, entries in tolerances.items():
        for metric, value in entries.items():
            assert base.thresholds[direction][metric] == parse_threshold(direction, value), (
                direction,
                metric,
            )


@needs_fmnist
@pytest.mark.slow
def test_gate_passes_on_the_committed_baseline(gate_dir, capsys):
    rc, out = _check(gate_dir / "run", BASELINE, capsys)
    assert rc == 0, out
    assert "FAIL" not in out
    assert len(re.findall(r"\bPASS\b", out)) == sum(len(v) for v in load_baseline(BASELINE).values.values())


@needs_fmnist
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "metric", "delta"),
    [
        ("lift", "clean_acc", 5.0),  # the run is 5 points less accurate than the baseline says
        ("max", "mean_corruption_error", -2.0),  # the run's corruptions became harder
        ("blur", "circular_consistency", -5.0),  # the run became more shift-consistent than before
        ("avg", "mfr", 30.0),
    ],
)
def test_gate_fails_when_the_numbers_drift(gate_dir, tmp_path, capsys, model, metric, delta):
    rc, out = _check(gate_dir / "run", _doctored(tmp_path, model, metric, delta), capsys)
    assert rc == 1, out
    failed = [line.split()[:2] for line in out.splitlines() if " FAIL " in line]
    assert failed == [[model, metric]]


@needs_fmnist
@pytest.mark.slow
def test_gate_fails_when_a_corruption_stops_corrupting(gate_dir, tmp_path, capsys, monkeypatch):
    from corruptions.base import CORRUPTIONS

    broken = tmp_path / "broken"
    shutil.copytree(gate_dir, broken)
    stale = sorted((broken / "run" / "cells").glob("*/cifar10-c__gaussian_noise__s*.npz"))
    assert len(stale) == 5 * len(POOLINGS)
    for path in stale:
        path.unlink()
    monkeypatch.setitem(CORRUPTIONS._items, "gaussian_noise", lambda x, param, ctx: x)
    result = run_demo(broken, profile="ci", report=False, progress=False)
    assert result.cells_run == len(stale) and all(n == 0 for n in result.trained_epochs.values())
    rc, out = _check(broken / "run", BASELINE, capsys)
    assert rc == 1, out
    failed = {tuple(line.split()[:2]) for line in out.splitlines() if " FAIL " in line}
    # the models that gaussian noise hurt get markedly better on the broken corruption
    assert {("lift", "mean_corruption_error"), ("lift", "mce")} <= failed


def test_make_gate_is_wired_into_ci():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^gate:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert target, "Makefile has no gate target"
    recipe = target.group(1)
    assert "demo --profile ci" in recipe and "$(GATE_FRESH)" in recipe
    assert "check --baseline $(GATE_BASELINE)" in recipe
    assert "GATE_BASELINE ?= reports/baseline/baseline.json" in makefile
    # on its own (a fresh clone) the gate trains from scratch
    assert re.search(r"^GATE_FRESH\s*\?=\s*--restart$", makefile, flags=re.M)
    assert re.search(r"^GATE_OUT\s*\?=\s*reports/ci-gate$", makefile, flags=re.M)
    # in CI the tests train the gate's models into its folder, and the gate resumes from them: trained once
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    test_step = steps.index("RBL_GATE_OUT=reports/ci-gate make test")
    assert steps.index("make gate GATE_FRESH=") > test_step
    assert steps.index("rm -rf reports/ci-gate") < test_step


@needs_fmnist
@pytest.mark.slow
def test_gate_resumes_the_run_the_tests_made(gate_dir, capsys):
    # what `make gate GATE_FRESH=` does after the tests: nothing trained or evaluated again, same numbers
    before = (gate_dir / "run" / "results.csv").read_bytes()
    result = run_demo(gate_dir, profile="ci", report=False, progress=False)
    assert result.trained_epochs == {p: 0 for p in POOLINGS} and result.cells_run == 0
    assert (gate_dir / "run" / "results.csv").read_bytes() == before
