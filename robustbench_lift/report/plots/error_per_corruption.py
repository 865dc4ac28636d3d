"""Report figure ``error_per_corruption``: error per corruption."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..rows import HELD_OUT, corruption_order
from .base import (
    _grouped_bars,
    _label,
    _legend_top,
    _models,
    model_styles,
    register_plot,
    severities_text,
)


@register_plot(
    "error_per_corruption",
    title="Error per corruption",
    description="Mean top-1 error over the 5 severities; bars grouped by corruption, one colour per pooling kind, 95 % CIs as whiskers.",
    table="per_corruption",
    caption=lambda t: (
        f"Mean top-1 error over {severities_text(t.get('per_severity', pd.DataFrame()))}; bars "
        "grouped by corruption, one colour per pooling kind, 95 % CIs as whiskers."
    ),
)
def plot_error_per_corruption(per_corruption: pd.DataFrame) -> Figure | None:
    """Mean top-1 error over severities per corruption, bars grouped by corruption, one colour per pooling."""
    if per_corruption.empty or "mean_top1_error_%" not in per_corruption.columns:
        return None
    suite = per_corruption["suite"].iloc[0]
    data = per_corruption[per_corruption["suite"] == suite]
    cats = corruption_order(data["corruption"])
    models = _models(data)
    styles = model_styles(data)
    fig = Figure(
        figsize=(min(14.0, max(8.0, 0.16 * len(cats) * max(len(models), 2) + 2)), 4.6), layout="constrained"
    )
    ax = fig.add_subplot()
    handles = _grouped_bars(ax, data, "corruption", "mean_top1_error_%", cats, styles, models)
    held = [i for i, c in enumerate(cats) if c in HELD_OUT]
    if held and len(held) < len(cats):
        ax.axvline(min(held) - 0.5, color="#555555", linewidth=0.8, linestyle="--")
        ax.text(min(held) - 0.4, 0.98, "held-out", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    ax.set_ylabel("top-1 error, mean over severities (%)")
    ax.set_title(f"Error per corruption ({suite})", fontsize=10, loc="left")
    _legend_top(fig, handles, [_label(m, p) for m, p in models])
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.92))
    return fig
