"""report and check over killed, half-written or truncated runs say what is missing and how to finish; check
accepts a run directory, its results.csv or a report's summary.csv as the baseline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_lift.evaluation import evaluate
from robustbench_lift.models import build_model
from robustbench_lift.store import run_problems

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(
        "convnet", pool="max", num_classes=10, in_channels=1, widths=(4, 8), convs_per_stage=1
    )
    out = tmp_path_factory.mktemp("status") / "run"
    evaluate(
        [model.eval()],
        "fashion-mnist",
        "cifar10-c",
        out=out,
        corruptions=["gaussian_noise", "contrast"],
        severities=[1, 3],
        limit=16,
        names=["max"],
        progress=False,
        n_boot=20,
        command=["robustbench-lift", "evaluate", "m.pt", "--out", str(out)],
    )
    return out


def _copy(run_dir, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def test_a_finished_run_has_no_problems(run_dir):
    assert run_problems(run_dir) == []
    session = json.loads((run_dir / "manifest.json").read_text())["sessions"][-1]
    assert session["results_rows"] > 0 and len(session["results_sha256"]) == 64


def test_truncated_results_are_refused_by_report_and_check(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    data = (run / "results.csv").read_bytes()
    (run / "results.csv").write_bytes(data[: len(data) // 2])
    (problem,) = run_problems(run)
    assert "truncated or edited" in problem and "re-run the same evaluate command" in problem
    rep = _cli("report", str(run), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 2 and "truncated or edited" in rep.stderr
    chk = _cli("check", "--baseline", str(run_dir), str(run), "--max-drop", "clean_acc=1")
    assert chk.returncode == 2 and "truncated or edited" in chk.stderr
    # a bare results.csv cut mid-line, away from its manifest
    bare = tmp_path / "bare.csv"
    bare.write_bytes(data[: len(data) // 2 + 3])
    chk = _cli("check", "--baseline", str(run_dir), str(bare), "--max-drop", "clean_acc=1")
    assert chk.returncode == 2 and "ends in the middle of a line" in chk.stderr


def test_a_killed_evaluate_says_what_is_stored_and_how_to_finish(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["sessions"].append(
        {"time": "2026-12-02T10:00:00+00:00", "command": ["robustbench-lift", "evaluate", "x"]}
    )
    (run / "manifest.json").write_text(json.dumps(manifest))
    (problem,) = run_problems(run)
    assert "did not finish" in problem and "5 cells are stored" in problem
    assert "(robustbench-lift evaluate x)" in problem
    rep = _cli("report", str(run), "--out", str(tmp_path / "rep"))
    assert rep.returncode == 2 and "did not finish" in rep.stderr
    assert not (tmp_path / "rep" / "summary.csv").exists()


@pytest.mark.parametrize("which", ["dir", "results", "summary"])
def test_check_accepts_runs_and_summaries_as_the_baseline(run_dir, tmp_path, which):
    if which == "summary":
        rep = _cli("report", str(run_dir), "--out", str(tmp_path / "rep"))
        assert rep.returncode == 0, rep.stderr
        baseline = tmp_path / "rep" / "summary.csv"
    else:
        baseline = run_dir if which == "dir" else run_dir / "results.csv"
    chk = _cli(
        "check",
        "--baseline",
        str(baseline),
        str(run_dir),
        "--max-drop",
        "clean_acc=0",
        "--max-increase",
        "mce=0",
    )
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert "2 of 2 check(s) passed" in chk.stdout + chk.stderr


def test_re_reporting_removes_the_previous_reports_stale_files(run_dir, tmp_path):
    from robustbench_lift.report import write_report

    out = tmp_path / "rep"
    out.mkdir()
    for stale in ("robust_accuracy.png", "robust_accuracy.svg", "adversarial.csv", "reconstruction.png"):
        (out / stale).write_text("old")
    (out / "notes.txt").write_text("mine")  # not a report file: kept
    result = write_report([run_dir], out, make_gallery=False)
    assert not (out / "robust_accuracy.png").exists() and not (out / "adversarial.csv").exists()
    assert not (out / "reconstruction.png").exists()  # the run has no reconstruction rows
    assert (out / "notes.txt").read_text() == "mine"
    assert {p.name for p in result.removed} >= {"robust_accuracy.png", "adversarial.csv"}
    assert (out / "summary.csv").exists() and (out / "error_per_corruption.png").exists()
