"""``compare``: deltas between two runs, paired bootstrap CIs on shared images, significance."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fixtures.make_runs import make_run

from robustbench_lift.cli import main
from robustbench_lift.report.compare import compare_runs, headline_rows

MODELS = {"lift": ("lift", 0.06, 0.85), "max": ("max", 0.07, 1.0)}
SOME = ("gaussian_noise", "fog", "pixelate", "spatter")  # a few corruptions keep the stored cells few


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = make_run(
        root / "run-a", MODELS, seed=3, n=300, kinds=("corruptions", "shift"), cells=True, corruptions=SOME
    )
    # same images (same seed -> same labels and ids), every error rate 8 points higher
    b = make_run(
        root / "run-b",
        MODELS,
        seed=3,
        n=300,
        kinds=("corruptions", "shift"),
        shift=0.08,
        cells=True,
        corruptions=SOME,
    )
    same = make_run(
        root / "run-same", MODELS, seed=3, n=300, kinds=("corruptions", "shift"), cells=True, corruptions=SOME
    )
    return a, b, same


def test_paired_deltas_on_shared_images(runs):
    a, b, _ = runs
    res = compare_runs(a, b, n_boot=300)
    t = res.table
    cells = t[t["metric"] == "top1_error"]
    assert (cells["method"] == "paired bootstrap").all()
    assert (cells["n"] == 300).all()
    # deltas are B - A in percentage points and match the stored values
    np.testing.assert_allclose(cells["delta"], cells["value_b"] - cells["value_a"], atol=1e-9)
    clean = cells[(cells["model"] == "max") & (cells["corruption"] == "clean")].iloc[0]
    assert clean["delta"] == pytest.approx(8.0, abs=0.5)
    assert clean["significant"] is True and clean["better"] == "A"
    assert clean["delta_ci_low"] < clean["delta"] < clean["delta_ci_high"]


def test_pairing_narrows_the_interval(runs):
    a, b, _ = runs
    paired = compare_runs(a, b, n_boot=300).table
    unpaired = compare_runs(a, b, paired=False).table
    key = ["model", "suite", "corruption", "severity", "metric"]
    both = paired.merge(unpaired, on=key, suffixes=("_p", "_u"))
    both = both[both["metric"] == "top1_error"]
    assert (both["method_u"] != "paired bootstrap").all()
    width_p = (both["delta_ci_high_p"] - both["delta_ci_low_p"]).median()
    width_u = (both["delta_ci_high_u"] - both["delta_ci_low_u"]).median()
    assert width_p < 0.8 * width_u  # correlated mistakes: the paired interval is clearly narrower


def test_identical_runs_have_no_significant_difference(runs):
    a, _, same = runs
    t = compare_runs(a, same, n_boot=200).table
    assert (t["delta"].abs() < 1e-9).all()
    assert not t["significant"].fillna(False).astype(bool).any()


def test_different_images_are_not_paired(tmp_path, runs):
    a, _, _ = runs
    other = make_run(
        tmp_path / "run-other", MODELS, seed=4, n=300, kinds=("corruptions",), cells=True, corruptions=SOME
    )
    res = compare_runs(a, other, n_boot=100)
    assert "paired bootstrap" not in set(res.table["method"])
    assert any("unpaired" in n for n in res.notes)


def test_cli_table_csv_json(runs, tmp_path, capsys):
    a, b, _ = runs
    out = tmp_path / "deltas.csv"
    assert main(["compare", str(a), str(b), "--n-boot", "100", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "delta = B - A" in text and "yes (A better)" in text
    table = pd.read_csv(out)
    assert {"delta", "delta_ci_low", "delta_ci_high", "significant", "method"} <= set(table.columns)
    assert len(table) > len(headline_rows(table))
    assert main(["compare", str(a), str(b), "--n-boot", "100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_a"] == "run-a" and len(data["rows"]) == len(table)
    assert all(r["delta_ci_low"] is None or math.isfinite(r["delta_ci_low"]) for r in data["rows"])


def test_no_shared_model_is_a_usage_error(runs, tmp_path, capsys):
    a, _, _ = runs
    other = make_run(tmp_path / "run-x", {"vgg": ("max", 0.1, 1.0)}, kinds=("shift",))
    assert main(["compare", str(a), str(other)]) == 2
    assert "share no model" in capsys.readouterr().err


def _aggregates(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["metric"].isin(["mce", "mean_corruption_error"])]
    return rows[rows["corruption"].isin(["benchmark", "held_out"])]


def test_a_run_compared_with_itself_shows_zero_with_a_zero_interval(runs):
    a, _, _ = runs
    agg = _aggregates(compare_runs(a, a, n_boot=200).table)
    assert set(agg["metric"]) == {"mce", "mean_corruption_error"} and len(agg) == 2 * 2 * len(MODELS)
    assert (agg["method"] == "paired bootstrap").all() and (agg["n"] == 300).all()
    for col in ("delta", "delta_ci_low", "delta_ci_high"):
        assert (agg[col] == 0.0).all(), col
    text = __import__("robustbench_lift.report.compare", fromlist=["format_table"]).format_table(agg)
    assert "+0.00 [+0.00, +0.00]" in text and "over 300 shared images" in text


def test_suite_aggregates_are_paired_over_the_shared_images(runs):
    a, b, _ = runs
    agg = _aggregates(compare_runs(a, b, n_boot=300).table)
    assert (agg["method"] == "paired bootstrap").all()
    # the paired estimate is the stored difference (both runs used all 300 images)
    np.testing.assert_allclose(agg["delta"], agg["value_b"] - agg["value_a"], rtol=1e-6, atol=1e-6)
    mce = agg[(agg["metric"] == "mean_corruption_error") & (agg["model"] == "lift")].iloc[0]
    assert mce["significant"] is True and mce["delta_ci_low"] > 0  # every error rate is 8 points higher in B


def test_only_shared_images_are_paired_and_the_count_is_said(tmp_path, runs):
    from robustbench_lift.store import RunStore

    a, _, _ = runs
    b = make_run(
        tmp_path / "run-part", MODELS, seed=3, n=300, kinds=("corruptions",), cells=True, corruptions=SOME
    )
    with RunStore(b) as store:  # run B evaluated only the first 200 images
        for key, spec, arrays, info in list(store.iter_cells()):
            store.save_cell(key, spec, {k: v[:200] for k, v in arrays.items()}, {**info, "n": 200})
    res = compare_runs(a, b, n_boot=100)
    agg = _aggregates(res.table)
    assert (agg["method"] == "paired bootstrap").all() and (agg["n"] == 200).all()
    cells = res.table[res.table["metric"] == "top1_error"]
    assert (cells["n"] == 200).all()
    assert any("only the 200 images both runs evaluated (A: 300, B: 200)" in n for n in res.notes)
