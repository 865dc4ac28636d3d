"""report.plots: figures registered in PLOTS, drawn by render_plots in registration order."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

import robustbench_lift.report.plots as plots
from corruptions.registry import Registry

REPORT_ORDER = [
    "error_per_corruption",
    "error_vs_severity",
    "ce_heatmap",
    "mce_vs_clean",
    "consistency_vs_accuracy",
    "diagonal_shift",
    "flip_probability",
    "reconstruction",
    "robust_accuracy",
]


def test_every_figure_is_registered_in_report_order_with_its_table():
    assert plots.PLOTS.names() == REPORT_ORDER
    tables = {
        "summary",
        "per_corruption",
        "per_severity",
        "perturbations",
        "shifts",
        "reconstruction",
        "adversarial",
    }
    for name in REPORT_ORDER:
        meta = plots.PLOTS.meta(name)
        assert meta["table"] in tables and meta["title"] and meta["description"]


def test_render_plots_draws_whatever_is_registered(tmp_path, monkeypatch):
    registry: Registry = Registry("plot")
    seen = {}

    def tiny(table: pd.DataFrame) -> Figure | None:
        seen["rows"] = len(table)
        fig = Figure(figsize=(1, 1))
        fig.add_subplot().plot([0, 1])
        return fig

    registry.add("tiny", tiny, title="Tiny", description="one line", table="shifts")
    registry.add("never", lambda table: None, title="Never", description="skipped", table="summary")
    monkeypatch.setattr(plots, "PLOTS", registry)
    out = plots.render_plots({"shifts": pd.DataFrame({"a": [1, 2, 3]})}, tmp_path, ("png",))
    assert [p.name for p in out] == ["tiny"] and seen == {"rows": 3}
    assert out[0].title == "Tiny" and (tmp_path / "tiny.png").read_bytes() == out[0].png
    assert not (tmp_path / "never.png").exists()
