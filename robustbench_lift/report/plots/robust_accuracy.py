"""Report figure ``robust_accuracy``: robust accuracy against the attack radius, one panel per attack."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .base import _label, _legend_top, _models, model_styles, register_plot


@register_plot(
    "robust_accuracy",
    title="Robust accuracy vs eps",
    description="Accuracy under each attack as the radius grows (eps 0 = clean), with 95 % bootstrap intervals "
    "over images; one line per model.",
    table="adversarial",
)
def plot_robust_accuracy(adversarial: pd.DataFrame) -> Figure | None:
    """One panel per attack: robust accuracy (%) against eps, a line per model with its CI band."""
    if adversarial.empty or "robust_accuracy_%" not in adversarial.columns:
        return None
    attacks = list(dict.fromkeys(adversarial["attack"]))
    models = _models(adversarial)
    styles = model_styles(adversarial)
    fig = Figure(figsize=(min(14.0, 4.2 * len(attacks) + 1.0), 3.9), layout="constrained")
    axes = fig.subplots(1, len(attacks), squeeze=False)[0]
    handles = []
    for ax, attack in zip(axes, attacks):
        data = adversarial[adversarial["attack"] == attack]
        handles = []
        for model, _pooling in models:
            d = data[data["model"] == model].sort_values("eps_value")
            if d.empty:
                continue
            style = styles[model]
            (line,) = ax.plot(
                d["eps_value"],
                d["robust_accuracy_%"],
                marker=style.marker,
                ls=style.linestyle,
                color=style.colour,
                lw=1.6,
                ms=5,
            )
            handles.append(line)
            if d["robust_accuracy_%_ci_low"].notna().any():
                ax.fill_between(
                    d["eps_value"],
                    d["robust_accuracy_%_ci_low"],
                    d["robust_accuracy_%_ci_high"],
                    color=style.colour,
                    alpha=0.15,
                    lw=0,
                )
        ticks = list(dict.fromkeys(zip(data["eps_value"], data["eps"])))
        ax.set_xticks([v for v, _ in ticks], [t for _, t in ticks], fontsize=8)
        ax.set_xlabel("eps ([0, 1] pixel scale)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(f"{attack} (higher is better)", fontsize=10, loc="left")
    _legend_top(fig, handles, [_label(m, p) for m, p in models])
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.9))
    return fig
