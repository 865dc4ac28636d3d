"""Report figure ``diagonal_shift``: diagonal shift."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .base import (
    _label,
    _legend_top,
    _models,
    model_styles,
    register_plot,
)


@register_plot(
    "diagonal_shift",
    title="Diagonal shift",
    description="Accuracy and agreement with the unshifted prediction for diagonal shifts.",
    table="shifts",
)
def plot_diagonal_shift(shifts: pd.DataFrame) -> Figure | None:
    """Accuracy and agreement with the unshifted prediction along the diagonal shift."""
    if shifts.empty:
        return None
    data = shifts[(shifts["probe"] == "diagonal") & shifts["metric"].isin(["accuracy", "agreement"])]
    if data.empty:
        return None
    metrics = [m for m in ("accuracy", "agreement") if (data["metric"] == m).any()]
    models = _models(data)
    styles = model_styles(data)
    fig = Figure(figsize=(5.0 * len(metrics) + 0.5, 3.9), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    lines = []
    for ax, metric in zip(axes, metrics):
        lines = []
        for model, _ in models:
            s = data[(data["model"] == model) & (data["metric"] == metric)].sort_values("shift")
            st = styles[model]
            (ln,) = ax.plot(
                s["shift"],
                s["value"],
                color=st.colour,
                linestyle=st.linestyle,
                marker=st.marker,
                markersize=3,
            )
            lines.append(ln)
        ax.set_xlabel("diagonal shift (pixels)")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title("P(correct class)" if metric == "accuracy" else "agreement with shift 0", fontsize=10)
        ax.grid(alpha=0.3)
    _legend_top(fig, lines, [_label(m, p) for m, p in models])
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.9))
    return fig
