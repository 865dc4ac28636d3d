"""report.summary: the one home of the headline numbers (specs, views, builders)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from robustbench_lift import demo
from robustbench_lift.evaluation import RunResult
from robustbench_lift.report import markdown, summary
from tests.fixtures.make_runs import make_rows


def _results() -> pd.DataFrame:
    df, _ = make_rows(seed=0, n=100)
    return df


def test_views_name_only_specified_numbers_and_titles_come_from_the_specs():
    keys = {s.key for s in summary.HEADLINE}
    assert set(summary.MARKDOWN_KEYS) <= keys and set(summary.DEMO_KEYS) <= keys
    assert [k for k, _ in markdown.HEADLINE_KEYS] == list(summary.MARKDOWN_KEYS)
    assert [k for k, _ in demo.HEADLINE_KEYS] == list(summary.DEMO_KEYS)
    assert dict(markdown.HEADLINE_KEYS)["mce"] == "mCE %"
    assert dict(demo.HEADLINE_KEYS)["mce"] == "mCE (max=100)"
    assert summary.headline_title("crop_consistency", "max") == "crop cons. %"  # not normalised: no reference


def test_get_spec_rejects_unknown_keys_listing_the_valid_ones():
    with pytest.raises(ValueError, match="valid: .*mce"):
        summary.get_spec("mCE")
    assert summary.get_spec("mce[cifar10-c]").key == "mce"


def test_headline_table_matches_the_summary_columns():
    results = _results()
    table = summary.headline_table(results, ("clean_acc", "mce"), order=["max", "lift"])
    assert list(table["model"][:2]) == ["max", "lift"]
    built, columns = summary.build_summary(results)
    col = next(c for c, info in columns.items() if info["key"] == "mce")
    want = built.set_index("model")[col]
    for _, row in table.iterrows():
        assert row["mce"] == pytest.approx(want[row["model"]])
    assert table.set_index("model").loc["max", "mce"] == pytest.approx(100.0)
    assert all(math.isfinite(v) for v in table["clean_acc"])


def test_run_result_summary_is_the_suite_summary():
    results = _results()
    rr = RunResult(run_dir=None, results=results, cells_run=0, cells_skipped=0, baseline="max", manifest={})
    table = rr.summary()
    pd.testing.assert_frame_equal(table, summary.suite_summary(results))
    row = table[(table["model"] == "max") & (table["suite"] == "cifar10-c")].iloc[0]
    assert row["mCE"].startswith("100.00")
    assert set(table["suite"]) == {"cifar10-c"}  # probe and perturbation suites hold none of these numbers
