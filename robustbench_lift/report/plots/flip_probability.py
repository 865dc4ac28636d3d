"""Report figure ``flip_probability``: flip probability."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .base import (
    _grouped_bars,
    _label,
    _legend_top,
    _models,
    model_styles,
    register_plot,
)


@register_plot(
    "flip_probability",
    title="Flip probability",
    description="Probability that the top-1 prediction flips between frames, per perturbation.",
    table="perturbations",
)
def plot_flip_probability(perturbations: pd.DataFrame) -> Figure | None:
    """Flip probability per perturbation (lowest difficulty stored), bars grouped by perturbation."""
    if perturbations.empty or "flip_probability_%" not in perturbations.columns:
        return None
    data = perturbations[
        perturbations["flip_probability_%"].notna() & (perturbations["perturbation"] != "all")
    ]
    if data.empty:
        return None
    difficulty = int(data["difficulty"].min())
    data = data[data["difficulty"] == difficulty]
    cats = list(dict.fromkeys(data["perturbation"]))
    models = _models(data)
    styles = model_styles(data)
    fig = Figure(
        figsize=(min(14.0, max(7.0, 0.22 * len(cats) * max(len(models), 2) + 2)), 4.3), layout="constrained"
    )
    ax = fig.add_subplot()
    handles = _grouped_bars(ax, data, "perturbation", "flip_probability_%", cats, styles, models)
    ax.set_ylabel("flip probability (%)")
    ax.set_title(
        f"Flip probability per perturbation (difficulty {difficulty}, lower is better)",
        fontsize=10,
        loc="left",
    )
    _legend_top(fig, handles, [_label(m, p) for m, p in models])
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.92))
    return fig
