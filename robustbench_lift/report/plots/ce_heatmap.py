"""Report figure ``ce_heatmap``: corruption error heat map."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..rows import corruption_order
from .base import (
    _models,
    register_plot,
)


@register_plot(
    "ce_heatmap",
    title="Corruption error heat map",
    description="CE per corruption and model (baseline model = 100; blue is better than the baseline, red worse).",
    table="per_corruption",
)
def plot_ce_heatmap(per_corruption: pd.DataFrame) -> Figure | None:
    """Models x corruptions heat map of CE (baseline = 100), or of mean error when no CE is stored."""
    if per_corruption.empty:
        return None
    suite = per_corruption["suite"].iloc[0]
    data = per_corruption[per_corruption["suite"] == suite]
    value = "CE_%" if "CE_%" in data.columns and data["CE_%"].notna().any() else "mean_top1_error_%"
    if value not in data.columns:
        return None
    cats = corruption_order(data["corruption"])
    models = [m for m, _ in _models(data)]
    grid = data.pivot_table(index="model", columns="corruption", values=value, aggfunc="first")
    grid = grid.reindex(index=models, columns=cats)
    arr = grid.to_numpy(dtype=float)
    fig = Figure(figsize=(max(7.0, 0.5 * len(cats) + 2.5), 0.45 * len(models) + 2.2), layout="constrained")
    ax = fig.add_subplot()
    finite = arr[np.isfinite(arr)]
    if value == "CE_%" and finite.size:
        # symmetric about the baseline, so that equal distances from 100 get equally strong colours
        half = max(float(np.abs(finite - 100.0).max()), 5.0)
        norm, cmap = Normalize(vmin=100.0 - half, vmax=100.0 + half), "RdBu_r"
    else:
        norm, cmap = None, "viridis"
    im = ax.imshow(np.ma.masked_invalid(arr), aspect="auto", cmap=cmap, norm=norm)
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels([c.replace("_", " ") for c in cats], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models, fontsize=8)
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            if np.isfinite(arr[i, j]):
                r, g, b, _ = im.cmap(im.norm(arr[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(
                    j,
                    i,
                    f"{arr[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    label = "CE (%, baseline = 100)" if value == "CE_%" else "mean top-1 error (%)"
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    ax.set_title(
        f"{'Corruption error' if value == 'CE_%' else 'Mean error'} per corruption ({suite})",
        fontsize=10,
        loc="left",
    )
    return fig
