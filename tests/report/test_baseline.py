"""report.baseline: a report over several runs normalises every model by ONE baseline."""

from __future__ import annotations

import pandas as pd
import pytest

from robustbench_lift.report import write_report
from tests.fixtures.make_runs import MODELS, make_run

# run B's baseline is a different, more fragile max-pool model than run A's
FRAGILE_MAX = ("max", 0.09, 1.3)
SOME = ("gaussian_noise", "fog", "pixelate", "spatter")  # a few corruptions keep the stored cells few


def _two_runs(tmp_path, seed_b=0):
    a = make_run(tmp_path / "run-a", {"lift": MODELS["lift"], "max": MODELS["max"]}, seed=0, cells=True,
                 kinds=("corruptions",), corruptions=SOME)  # fmt: skip
    b = make_run(tmp_path / "run-b", {"blur": MODELS["blur"], "max": FRAGILE_MAX}, seed=seed_b, cells=True,
                 kinds=("corruptions",), corruptions=SOME)  # fmt: skip
    return a, b


def _mce(summary: pd.DataFrame) -> tuple[str, pd.Series]:
    col = next(c for c in summary.columns if c.startswith("mCE_%") and not c.endswith(("_low", "_high")))
    return col, summary.set_index("model")[col]


def test_two_run_report_normalises_by_one_baseline(tmp_path):
    a, b = _two_runs(tmp_path)
    alone = pd.read_csv(write_report([b], tmp_path / "b-alone", make_gallery=False, formats=("png",)).out_dir
                        / "summary.csv")  # fmt: skip
    assert _mce(alone)[1]["max"] == pytest.approx(100.0)  # alone, run B's max is its own 100
    res = write_report([a, b], tmp_path / "rep", make_gallery=False, formats=("png",))
    assert res.baseline == "max@run-a"
    assert any("one baseline, max@run-a" in n for n in res.notes)
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    col, mce = _mce(summary)
    assert col == "mCE_%_baseline-normalised"
    assert mce["max@run-a"] == pytest.approx(100.0)
    # every model is relative to run A's max: B's fragile max is far above 100, and the value is the CE formula on
    # the stored errors (sum over severities of the model's errors over the baseline's, averaged over corruptions)
    sev = pd.read_csv(tmp_path / "rep" / "per_severity.csv")
    sev = sev[(sev["severity"] > 0) & sev["corruption"].isin(pd.read_csv(tmp_path / "rep" / "per_corruption.csv")
                                                                .query("group == 'benchmark'")["corruption"])]  # fmt: skip
    err = sev.pivot_table(index="corruption", columns="model", values="top1_error_%", aggfunc="sum")
    for model in ("max@run-b", "blur", "lift"):
        want = (100 * err[model] / err["max@run-a"]).mean()
        assert mce[model] == pytest.approx(want, rel=1e-5), model  # summary.csv keeps 6 digits
    assert mce["max@run-b"] > 110
    # the numbers of run A's own models are what run A alone reports
    alone_a = pd.read_csv(write_report([a], tmp_path / "a-alone", make_gallery=False, formats=("png",)).out_dir
                          / "summary.csv")  # fmt: skip
    assert mce["lift"] == pytest.approx(_mce(alone_a)[1]["lift"])


def test_runs_on_different_images_are_labelled_not_mixed(tmp_path):
    a, b = _two_runs(tmp_path, seed_b=1)  # other seed: other images, other corruption draws
    res = write_report([a, b], tmp_path / "rep", make_gallery=False, formats=("png",))
    assert any("NOT put on one baseline" in n and "seed" in n for n in res.notes)
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    col, mce = _mce(summary)
    assert col == "mCE_%_run-baseline-normalised"
    assert mce["max@run-a"] == pytest.approx(100.0) and mce["max@run-b"] == pytest.approx(100.0)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "each run normalised by its own baseline" in md


def test_report_baseline_option(tmp_path):
    a, b = _two_runs(tmp_path)
    res = write_report([a, b], tmp_path / "rep", make_gallery=False, formats=("png",), baseline="max@run-b")
    assert _mce(pd.read_csv(tmp_path / "rep" / "summary.csv"))[1]["max@run-b"] == pytest.approx(100.0)
    assert res.baseline == "max@run-b"
    with pytest.raises(ValueError, match="not a model of the report; models: lift, max@run-a"):
        write_report([a, b], tmp_path / "rep2", make_gallery=False, baseline="max")
