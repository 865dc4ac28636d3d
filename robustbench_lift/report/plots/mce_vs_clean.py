"""Report figure ``mce_vs_clean``: mce vs clean error."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .base import (
    _first,
    _scatter,
    model_styles,
    register_plot,
)


@register_plot(
    "mce_vs_clean",
    title="mCE vs clean error",
    description="Each model's mCE against its clean error, with 95 % CIs.",
    table="summary",
)
def plot_mce_vs_clean(summary: pd.DataFrame) -> Figure | None:
    """mCE (or the unnormalised mean corruption error) against clean error, one point per model with CIs."""
    x = "clean_top1_error_%"
    y = _first(summary.columns, "mCE_%") or _first(summary.columns, "mean_corruption_error_%")
    if x not in summary.columns or y is None or summary[[x, y]].dropna().empty:
        return None
    fig = Figure(figsize=(6.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    styles = model_styles(summary)
    _scatter(ax, summary, x, y, styles)
    ax.set_xlabel("clean top-1 error (%)")
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title("Corruption robustness vs clean error (lower left is better)", fontsize=10, loc="left")
    ax.margins(0.15)
    return fig
