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


def test_captions_name_the_severities_evaluated():
    from robustbench_lift.report.plots.base import severities_text

    per_sev = pd.DataFrame({"severity": [0, 1, 3, 5, 3]})
    assert severities_text(per_sev) == "severities 1, 3 and 5"
    assert severities_text(pd.DataFrame({"severity": [1, 2, 3]})) == "severities 1-3"
    assert severities_text(pd.DataFrame({"severity": [0, 2]})) == "severity 2"
    caption = plots.PLOTS.meta("error_per_corruption")["caption"]
    assert "severities 1, 3 and 5" in caption({"per_severity": per_sev})
    assert "severity 2" in plots.PLOTS.meta("error_vs_severity")["caption"](
        {"per_severity": pd.DataFrame({"severity": [2]})}
    )


def test_reconstruction_pairs_are_drawn_once():
    table = pd.DataFrame(
        {
            "model": ["lift-s0", "lift-s1", "max-s0", "max-s1"],
            "pooling": ["lift", "lift", "max", "max"],
            "pair": ["lift", "lift", "max", "max"],
            "psnr_dB": [96.0, 96.0, 14.5, 14.5],
            "ssim": [0.9999, 0.9999, 0.41, 0.41],
        }
    )
    fig = plots.plot_reconstruction(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lift", "max"]
    table.loc[1, "psnr_dB"] = 90.0  # a model-dependent pair stays per model
    labels = [t.get_text() for t in plots.plot_reconstruction(table).axes[0].get_xticklabels()]
    assert labels == ["lift-s0: lift", "lift-s1: lift", "max"]
