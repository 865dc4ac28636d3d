"""The ``check`` regression gate: pass, fail and bad input, through the CLI's exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from fixtures.make_runs import make_run

from robustbench_lift.cli import main
from robustbench_lift.report.check import (
    CheckInputError,
    load_baseline,
    parse_threshold,
    run_checks,
    write_baseline,
)

KINDS = ("corruptions", "shift")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    good = make_run(root / "good", seed=0, n=100, kinds=KINDS)
    # same models, every error rate 5 points higher and consistencies 5 points lower
    worse = make_run(root / "worse", seed=0, n=100, kinds=KINDS, shift=0.05)
    return root, good, worse


def _baseline(tmp_path, good, *extra):
    path = tmp_path / "baseline.json"
    assert main(["check", "--baseline", str(path), "--update-baseline", str(good), *extra]) == 0
    return path


def test_update_then_check_same_run_passes(runs, tmp_path, capsys):
    _, good, _ = runs
    base = _baseline(tmp_path, good, "--max-drop", "clean_acc=1.0", "--max-increase", "mce=2%")
    data = json.loads(base.read_text())
    assert set(data["models"]) == {"lift", "max", "avg", "blur"}
    assert data["thresholds"] == {"max_drop": {"clean_acc": 1.0}, "max_increase": {"mce": "2%"}}
    capsys.readouterr()
    assert main(["check", "--baseline", str(base), str(good)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out
    assert "clean_acc" in out and "mce" in out


def test_regression_fails_with_reason(runs, tmp_path, capsys):
    _, good, worse = runs
    base = _baseline(tmp_path, good)
    capsys.readouterr()
    code = main(
        [
            "check",
            "--baseline",
            str(base),
            "--max-drop",
            "clean_acc=1.0",
            "--max-increase",
            "mce=200",
            str(worse),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    fails = [line for line in out.splitlines() if "FAIL" in line]
    # every model lost 5 points of clean accuracy; mCE (normalised by max, which got worse too) stays in bounds
    assert len(fails) == 4 and all("clean_acc" in line and "dropped by" in line for line in fails)


def test_relative_threshold(runs, tmp_path):
    _, good, worse = runs
    base = _baseline(tmp_path, good)
    # the unnormalised mean corruption error rises by ~5 points out of ~20: +30 % passes, +10 % fails
    assert (
        main(["check", "--baseline", str(base), "--max-increase", "mean_corruption_error=30%", str(worse)])
        == 0
    )
    assert (
        main(["check", "--baseline", str(base), "--max-increase", "mean_corruption_error=10%", str(worse)])
        == 1
    )


def test_config_file_toml_and_summary_csv(runs, tmp_path):
    root, good, worse = runs
    base = _baseline(tmp_path, good)
    cfg = tmp_path / "gate.toml"
    cfg.write_text('[max_drop]\ncrop_consistency = 1.0\n[max_increase]\nclean_error = "10%"\n')
    assert main(["check", "--baseline", str(base), "--config", str(cfg), str(good)]) == 0
    assert main(["check", "--baseline", str(base), "--config", str(cfg), str(worse)]) == 1
    # a summary.csv written by 'report' is accepted as the current run
    from robustbench_lift.report.tables import build_summary, read_results_table

    summary, _ = build_summary(read_results_table(worse / "results.csv"))
    summary.to_csv(tmp_path / "summary.csv", index=False)
    assert main(["check", "--baseline", str(base), "--config", str(cfg), str(tmp_path / "summary.csv")]) == 1


def test_csv_baseline_with_row_thresholds(runs, tmp_path):
    _, good, worse = runs
    base = tmp_path / "baseline.csv"
    assert (
        main(["check", "--baseline", str(base), "--update-baseline", "--metrics", "clean_acc,mce", str(good)])
        == 0
    )
    text = base.read_text().splitlines()
    assert text[0] == "model,metric,value,max_drop,max_increase" and len(text) == 1 + 4 * 2
    rows = [line.split(",") for line in text[1:]]
    rows = [[m, k, v, "1.0" if k == "clean_acc" else "", ""] for m, k, v, *_ in rows]
    base.write_text("\n".join([text[0], *(",".join(r) for r in rows)]) + "\n")
    assert main(["check", "--baseline", str(base), str(good)]) == 0
    assert main(["check", "--baseline", str(base), str(worse)]) == 1


def test_junit_and_github_output(runs, tmp_path, capsys):
    _, good, worse = runs
    base = _baseline(tmp_path, good)
    junit = tmp_path / "out" / "check.xml"
    capsys.readouterr()
    code = main(
        [
            "check",
            "--baseline",
            str(base),
            "--max-drop",
            "clean_acc=1",
            "--junit",
            str(junit),
            "--github",
            str(worse),
        ]
    )
    assert code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) > 4
    assert int(suite.get("failures")) == 4 == sum(c.find("failure") is not None for c in cases)
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(errors) == 4 and all("clean_acc" in line for line in errors)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("model,value\nlift,1\n", "lacks the column"),
        ('{"models": []}', "'models' object"),
        ("{not json", "cannot read baseline"),
        ("model,metric,value\nlift,mce,abc\n", "not a number"),
    ],
)
def test_bad_baseline_exits_2(runs, tmp_path, capsys, content, message):
    _, good, _ = runs
    suffix = ".json" if content and content.startswith("{") else ".csv"
    base = tmp_path / f"baseline{suffix}"
    if content is not None:
        base.write_text(content)
    assert main(["check", "--baseline", str(base), "--max-drop", "clean_acc=1", str(good)]) == 2
    assert message in capsys.readouterr().err


def test_mismatched_models_are_listed(runs, tmp_path, capsys):
    _, good, _ = runs
    base = tmp_path / "baseline.json"
    base.write_text(
        json.dumps(
            {"models": {"lift": {"clean_acc": 90}, "resnet_x": {"clean_acc": 90}, "vgg_y": {"clean_acc": 80}}}
        )
    )
    assert main(["check", "--baseline", str(base), "--max-drop", "clean_acc=1", str(good)]) == 2
    err = capsys.readouterr().err
    assert "resnet_x, vgg_y" in err and "not in the run" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--max-drop", "clean_acc"],  # no value
        ["--max-drop", "clean_acc=abc"],
        ["--max-increase", "mce=-1"],
        ["--max-drop", "no_such_metric=1"],
        [],  # no threshold anywhere: nothing would be checked
    ],
)
def test_bad_thresholds_exit_2(runs, tmp_path, args):
    _, good, _ = runs
    base = _baseline(tmp_path, good)
    assert main(["check", "--baseline", str(base), *args, str(good)]) == 2


def test_bad_run_exits_2(runs, tmp_path, capsys):
    _, good, _ = runs
    base = _baseline(tmp_path, good)
    bogus = tmp_path / "bogus.csv"
    bogus.write_text("a,b\n1,2\n")
    assert main(["check", "--baseline", str(base), "--max-drop", "clean_acc=1", str(bogus)]) == 2
    assert "neither a results table" in capsys.readouterr().err
    assert main(["check", "--baseline", str(base), "--max-drop", "clean_acc=1", str(tmp_path / "nope")]) == 2


def test_missing_metric_in_run_fails(runs, tmp_path):
    _, good, _ = runs
    base = tmp_path / "baseline.json"
    base.write_text(
        json.dumps(
            {
                "models": {"lift": {"clean_acc": 94.0, "mfr": 90.0}},
                "thresholds": {"max_increase": {"mfr": 1.0}},
            }
        )
    )
    # the run has no perturbation rows: a gated metric that disappeared is a regression, not a pass
    assert main(["check", "--baseline", str(base), str(good)]) == 1


def test_threshold_semantics():
    assert parse_threshold("max_drop", "2%").allowed(50.0) == pytest.approx(1.0)
    assert parse_threshold("max_drop", 1.5).allowed(50.0) == 1.5
    with pytest.raises(CheckInputError, match="unknown threshold kind"):
        parse_threshold("max_jump", 1)


def test_run_checks_boundaries(tmp_path):
    base = tmp_path / "b.csv"
    base.write_text("model,metric,value,max_drop,max_increase\nm,clean_acc,90,1,\nm,mce,100,,2\n")
    baseline = load_baseline(base)
    ok, _ = run_checks(baseline, {"m": {"clean_acc": 89.0, "mce": 102.0}})
    assert [r.status for r in ok] == ["PASS", "PASS"]  # exactly at the limit passes
    bad, _ = run_checks(baseline, {"m": {"clean_acc": 88.99, "mce": 102.01}})
    assert [r.status for r in bad] == ["FAIL", "FAIL"]


def test_baseline_update_refuses_metrics_the_run_lacks(tmp_path):
    current = {"lift": {"mce": 90.0, "clean_acc": 93.0}}
    with pytest.raises(CheckInputError, match=r"does not hold: mfr; available: clean_acc, mce"):
        write_baseline(tmp_path / "b.json", current, metrics=["mce", "mfr"])
    assert not (tmp_path / "b.json").exists()
    path = write_baseline(tmp_path / "b.json", current, metrics=["mce"])
    assert json.loads(path.read_text())["models"] == {"lift": {"mce": 90.0}}
