"""Report figure ``consistency_vs_accuracy``: shift consistency vs accuracy."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .base import (
    _scatter,
    model_styles,
    register_plot,
)


@register_plot(
    "consistency_vs_accuracy",
    title="Shift consistency vs accuracy",
    description="Zhang-style: consistency of top-1 predictions under shifts against clean accuracy (crop and circular protocols are not comparable with each other).",
    table="summary",
)
def plot_consistency_vs_accuracy(summary: pd.DataFrame) -> Figure | None:
    """Shift consistency against clean accuracy (Zhang 2019, Fig. 1 style): up and right is better."""
    x = "clean_top1_accuracy_%"
    ys = [c for c in ("crop_consistency_%", "circular_consistency_%") if c in summary.columns]
    if x not in summary.columns or not ys or summary[[x, *ys]].dropna(how="all", subset=ys).empty:
        return None
    fig = Figure(figsize=(6.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    styles = model_styles(summary)
    markers = {"crop_consistency_%": "o", "circular_consistency_%": "s"}
    for y in ys:
        _scatter(ax, summary, x, y, styles, marker=markers[y], label_points=y == ys[0])
    proxies = [Line2D([], [], color="#444444", marker=markers[y], linestyle="none") for y in ys]
    ax.legend(proxies, [y.split("_")[0] + " consistency" for y in ys], fontsize=8, loc="best")
    ax.set_xlabel("clean top-1 accuracy (%)")
    ax.set_ylabel("consistency (%)")
    ax.set_title("Shift consistency vs accuracy (up and right is better)", fontsize=10, loc="left")
    ax.margins(0.15)
    return fig
