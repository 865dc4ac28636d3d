"""Report figure ``reconstruction``: reconstruction quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .base import (
    model_styles,
    register_plot,
)


@register_plot(
    "reconstruction",
    title="Reconstruction quality",
    description="PSNR and SSIM of images passed down and back up a pooling pair (each pair once: the probe builds the "
    "pairs itself, so they do not depend on the evaluated model).",
    table="reconstruction",
)
def plot_reconstruction(reconstruction: pd.DataFrame) -> Figure | None:
    """PSNR and SSIM of down-then-up pooling, one bar per (model, pair)."""
    if reconstruction.empty:
        return None
    metrics = [m for m in ("psnr_dB", "ssim") if m in reconstruction.columns]
    if not metrics:
        return None
    data = reconstruction.copy()
    # the probe's pairs are built fresh (random P/U), not from the model: a pair with the same numbers in several
    # models is one measurement, drawn once and labelled by the pair alone
    same = data.groupby("pair")[metrics].nunique(dropna=False).max(axis=1) == 1
    shared = set(same[same].index)
    data = pd.concat(
        [data[data["pair"].isin(shared)].drop_duplicates("pair"), data[~data["pair"].isin(shared)]]
    ).sort_index()
    data["label"] = [
        p if p in shared else (m if m == p else f"{m}: {p}") for m, p in zip(data["model"], data["pair"])
    ]
    styles = model_styles(data)
    fig = Figure(figsize=(4.2 * len(metrics) + 0.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        x = np.arange(len(data))
        raw = data[metric].to_numpy(dtype=float)
        # a perfect reconstruction has infinite PSNR: draw it as a bar just above the highest finite one
        finite = raw[np.isfinite(raw)]
        top = float(finite.max()) * 1.1 if finite.size else 1.0
        vals = np.where(np.isposinf(raw), top, raw)
        colours = [styles[m].colour for m in data["model"]]
        hatches = [styles[m].hatch for m in data["model"]]
        bars = ax.bar(x, vals, 0.7, color=colours, edgecolor="#222222", linewidth=0.4)
        for bar, h in zip(bars, hatches):
            bar.set_hatch(h)
        for xi, v, r in zip(x, vals, raw):
            if np.isfinite(v):
                text = "inf" if np.isposinf(r) else (f"{r:.1f}" if metric == "psnr_dB" else f"{r:.3f}")
                ax.text(xi, v, text, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(data["label"], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr_dB" else "SSIM")
        if metric == "ssim":
            ax.set_ylim(0, 1.08)
        else:
            ax.set_ylim(0, np.nanmax(vals) * 1.12 if np.isfinite(vals).any() else 1)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle("Reconstruction after down- and up-pooling (higher is better)", fontsize=10)
    return fig
