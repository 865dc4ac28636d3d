"""report / compare / check write their files atomically: a failure mid-write keeps the previous file whole."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from robustbench_lift.fileio import TMP_PREFIX
from tests.fixtures.make_runs import MODELS, make_run

TWO = {k: MODELS[k] for k in ("lift", "max")}


def _fail_mid_write(monkeypatch, suffix: str) -> None:
    """The first write of a ``suffix`` file gets half its bytes on disk, then the disk is full."""
    real = Path.write_bytes

    def half_then_full(self, data):
        if self.suffix == suffix:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", half_then_full)


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob(f"{TMP_PREFIX}*")]


@pytest.mark.parametrize(
    "suffix,name", [(".csv", "summary.csv"), (".md", "report.md"), (".html", "report.html")]
)
def test_report_files_survive_a_failed_rewrite(tmp_path, monkeypatch, suffix, name):
    import robustbench_lift.report.plots as plots
    from robustbench_lift.report import write_report

    monkeypatch.setattr(plots, "render_plots", lambda *a, **k: [])  # the figures' writer has its own test
    run_a = make_run(tmp_path / "run-a", TWO, seed=0, n=40, kinds=("corruptions",))
    run_b = make_run(tmp_path / "run-b", TWO, seed=1, n=40, kinds=("corruptions",), shift=0.05)
    out = tmp_path / "report"
    write_report([run_a], out, title="first", make_gallery=False, formats=["png"])
    before = (out / name).read_bytes()
    _fail_mid_write(monkeypatch, suffix)
    with pytest.raises(OSError):
        write_report([run_b], out, title="second", make_gallery=False, formats=["png"])
    assert (out / name).read_bytes() == before
    assert _no_temporaries(out)


def test_compare_csv_survives_a_failed_rewrite(tmp_path, monkeypatch):
    from robustbench_lift.report.compare import compare_runs, write_csv

    run_a = make_run(tmp_path / "run-a", TWO, seed=0, n=40, kinds=("corruptions",))
    run_b = make_run(tmp_path / "run-b", TWO, seed=1, n=40, kinds=("corruptions",), shift=0.05)
    target = tmp_path / "deltas.csv"
    write_csv(compare_runs(run_a, run_a, paired=False).table, target)
    before = target.read_bytes()
    _fail_mid_write(monkeypatch, ".csv")
    with pytest.raises(OSError):
        write_csv(compare_runs(run_a, run_b, paired=False).table, target)
    assert target.read_bytes() == before and _no_temporaries(tmp_path)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_baseline_survives_a_failed_rewrite(tmp_path, monkeypatch, suffix):
    from robustbench_lift.report.check import current_metrics, write_baseline

    run_a = make_run(tmp_path / "run-a", TWO, seed=0, n=40, kinds=("corruptions",))
    run_b = make_run(tmp_path / "run-b", TWO, seed=1, n=40, kinds=("corruptions",), shift=0.05)
    target = tmp_path / f"baseline{suffix}"
    write_baseline(target, current_metrics(run_a), {})
    before = target.read_bytes()
    _fail_mid_write(monkeypatch, suffix)
    with pytest.raises(OSError):
        write_baseline(target, current_metrics(run_b), {})
    assert target.read_bytes() == before and _no_temporaries(tmp_path)
