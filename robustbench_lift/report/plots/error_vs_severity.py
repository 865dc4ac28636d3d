"""Report figure ``error_vs_severity``: error vs severity."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from ..rows import corruption_order
from .base import (
    _label,
    _legend_top,
    _models,
    model_styles,
    register_plot,
    severities_text,
)


@register_plot(
    "error_vs_severity",
    title="Error vs severity",
    description="Top-1 error at severities 1-5 (0 = clean), one panel per corruption.",
    table="per_severity",
    caption=lambda t: (
        f"Top-1 error at {severities_text(t.get('per_severity', pd.DataFrame()))} (0 = clean), one "
        "panel per corruption."
    ),
)
def plot_error_vs_severity(per_severity: pd.DataFrame, ncols: int = 5) -> Figure | None:
    """Top-1 error against severity (0 = clean), one small panel per corruption, shared y axis."""
    if per_severity.empty:
        return None
    suite = per_severity["suite"].iloc[0]
    data = per_severity[per_severity["suite"] == suite]
    cats = corruption_order(c for c in data["corruption"] if c != "clean")
    if not cats:
        return None
    models = _models(data)
    styles = model_styles(data)
    clean = data[data["corruption"] == "clean"].set_index("model")["top1_error_%"]
    ncols = min(ncols, len(cats))
    nrows = math.ceil(len(cats) / ncols)
    fig = Figure(figsize=(2.4 * ncols + 0.6, 1.9 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    lines = []
    for k, c in enumerate(cats):
        ax = axes[k // ncols][k % ncols]
        sub = data[data["corruption"] == c]
        lines = []
        for model, _ in models:
            s = sub[sub["model"] == model].sort_values("severity")
            xs, ys = s["severity"].tolist(), s["top1_error_%"].tolist()
            if model in clean.index:
                xs, ys = [0, *xs], [float(clean[model]), *ys]
            st = styles[model]
            (ln,) = ax.plot(xs, ys, color=st.colour, linestyle=st.linestyle, marker=st.marker, markersize=3)
            lines.append(ln)
        ax.set_title(c.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xticks(range(0, 6))
    for k in range(len(cats), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.supxlabel("severity (0 = clean)", fontsize=9)
    fig.supylabel("top-1 error (%)", fontsize=9)
    _legend_top(fig, lines, [_label(m, p) for m, p in models])
    fig.get_layout_engine().set(rect=(0, 0, 1, 1 - 0.45 / (1.9 * nrows + 0.9)))
    return fig
