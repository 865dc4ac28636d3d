"""Report figures (matplotlib, object API only: no pyplot state, no backend switching).

Each ``plot_*`` function takes the report's tables and returns a :class:`matplotlib.figure.Figure`, or ``None``
when the tables hold nothing to draw (a run without perturbations has no flip-probability plot). Every figure uses
the same colour for a pooling kind (:data:`POOLING_COLOURS`); models that share a pooling kind are told apart by
hatching (bars) or line style and marker (lines).
"""

from __future__ import annotations

import io
import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..fileio import atomic_path, atomic_write_bytes
from .tables import HELD_OUT, corruption_order

__all__ = [
    "POOLING_COLOURS",
    "ModelStyle",
    "model_styles",
    "PlotResult",
    "save_figure",
    "plot_error_per_corruption",
    "plot_error_vs_severity",
    "plot_ce_heatmap",
    "plot_mce_vs_clean",
    "plot_consistency_vs_accuracy",
    "plot_diagonal_shift",
    "plot_flip_probability",
    "plot_reconstruction",
    "gallery_figure",
    "gallery_from_dataset",
    "pooling_colour",
    "render_plots",
]

log = logging.getLogger(__name__)

#: One fixed colour per pooling kind (Okabe-Ito palette: distinguishable with the common colour-vision deficiencies).
POOLING_COLOURS: dict[str, str] = {
    "lift": "#D55E00",
    "max": "#0072B2",
    "avg": "#009E73",
    "blur": "#CC79A7",
    "maxblur": "#E69F00",
    "stride": "#56B4E9",
    "unknown": "#7F7F7F",
}
#: Colours for pooling kinds without a fixed one, picked by a stable hash of the name.
_EXTRA_COLOURS = ("#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#117733")
_HATCHES = ("", "//", "..", "xx", "\\\\", "oo")
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")


@dataclass(frozen=True)
class ModelStyle:
    """How one model is drawn in every figure."""

    colour: str
    hatch: str = ""
    linestyle: str = "-"
    marker: str = "o"


def pooling_colour(pooling: str) -> str:
    """The fixed colour of a pooling kind (a stable extra colour for kinds without one)."""
    if pooling in POOLING_COLOURS:
        return POOLING_COLOURS[pooling]
    return _EXTRA_COLOURS[zlib.crc32(pooling.encode("utf-8")) % len(_EXTRA_COLOURS)]


def model_styles(models: pd.DataFrame) -> dict[str, ModelStyle]:
    """``{model: ModelStyle}`` from a table with ``model`` and ``pooling`` columns (first appearance order)."""
    styles: dict[str, ModelStyle] = {}
    counts: dict[str, int] = {}
    for model, pooling in (
        models.loc[:, ["model", "pooling"]].drop_duplicates("model").itertuples(index=False)
    ):
        k = counts.get(pooling, 0)
        counts[pooling] = k + 1
        styles[str(model)] = ModelStyle(
            colour=pooling_colour(str(pooling)),
            hatch=_HATCHES[k % len(_HATCHES)],
            linestyle=_LINESTYLES[k % len(_LINESTYLES)],
            marker=_MARKERS[k % len(_MARKERS)],
        )
    return styles


def _label(model: str, pooling: str) -> str:
    return model if model == pooling else f"{model} ({pooling})"


def _models(df: pd.DataFrame) -> list[tuple[str, str]]:
    return [
        (str(m), str(p))
        for m, p in df.loc[:, ["model", "pooling"]].drop_duplicates("model").itertuples(index=False)
    ]


def _legend_top(fig: Figure, handles: Sequence[Any], labels: Sequence[str]) -> None:
    ncol = min(len(labels), 6)
    fig.legend(handles, labels, loc="upper center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 1.0))


def _grouped_bars(
    ax: Any,
    data: pd.DataFrame,
    category: str,
    value: str,
    categories: Sequence[str],
    styles: Mapping[str, ModelStyle],
    models: Sequence[tuple[str, str]],
) -> list[Any]:
    """Bars of ``value`` grouped by ``category``, one bar per model; CIs as error bars when present."""
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(categories))
    handles = []
    for i, (model, _) in enumerate(models):
        sub = data[data["model"] == model].set_index(category)
        vals = sub[value].reindex(categories).to_numpy(dtype=float)
        err = None
        if f"{value}_ci_low" in sub.columns:
            lo = sub[f"{value}_ci_low"].reindex(categories).to_numpy(dtype=float)
            hi = sub[f"{value}_ci_high"].reindex(categories).to_numpy(dtype=float)
            if np.isfinite(lo).any():
                err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
                err = np.nan_to_num(err)
        st = styles[model]
        h = ax.bar(
            x - 0.4 + width * (i + 0.5),
            vals,
            width,
            color=st.colour,
            hatch=st.hatch,
            edgecolor="white" if not st.hatch else "#222222",
            linewidth=0.4,
            yerr=err,
            error_kw={"elinewidth": 0.6, "capsize": 0, "ecolor": "#333333"},
        )
        handles.append(h)
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("_", " ") for c in categories], rotation=40, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return handles


# ------------------------------------------------------------------------------------------------------ figures
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


def _first(columns: Sequence[str], prefix: str) -> str | None:
    for c in columns:
        if c.startswith(prefix) and not c.endswith(("_ci_low", "_ci_high")):
            return c
    return None


def _scatter(
    ax: Any,
    summary: pd.DataFrame,
    x: str,
    y: str,
    styles: Mapping[str, ModelStyle],
    marker: str | None = None,
    label_points: bool = True,
) -> list[Any]:
    handles = []
    placed: list[tuple[float, float]] = []
    xs, ys = summary[x].to_numpy(dtype=float), summary[y].to_numpy(dtype=float)
    span_x = float(np.nanmax(xs) - np.nanmin(xs)) or 1.0
    span_y = float(np.nanmax(ys) - np.nanmin(ys)) or 1.0
    for model, xv, yv in zip(summary["model"].astype(str), xs, ys):
        if not (np.isfinite(xv) and np.isfinite(yv)):
            continue
        st = styles[model]
        xerr = yerr = None
        for col, v, name in ((x, xv, "x"), (y, yv, "y")):
            if f"{col}_ci_low" in summary.columns:
                lo, hi = summary.loc[summary["model"] == model, [f"{col}_ci_low", f"{col}_ci_high"]].iloc[0]
                if np.isfinite(lo) and np.isfinite(hi):
                    e = [[max(v - lo, 0)], [max(hi - v, 0)]]
                    xerr, yerr = (e, yerr) if name == "x" else (xerr, e)
        h = ax.errorbar(
            xv,
            yv,
            xerr=xerr,
            yerr=yerr,
            fmt=marker or st.marker,
            color=st.colour,
            markersize=7,
            elinewidth=0.8,
            capsize=2,
        )
        handles.append(h)
        if label_points:
            # stack the labels of points that (nearly) coincide instead of printing them on top of each other
            near = sum(abs(px - xv) < 0.04 * span_x and abs(py - yv) < 0.04 * span_y for px, py in placed)
            placed.append((xv, yv))
            ax.annotate(model, (xv, yv), textcoords="offset points", xytext=(6, 5 - 11 * near), fontsize=8)
    ax.grid(alpha=0.3)
    return handles


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
    from matplotlib.lines import Line2D

    proxies = [Line2D([], [], color="#444444", marker=markers[y], linestyle="none") for y in ys]
    ax.legend(proxies, [y.split("_")[0] + " consistency" for y in ys], fontsize=8, loc="best")
    ax.set_xlabel("clean top-1 accuracy (%)")
    ax.set_ylabel("consistency (%)")
    ax.set_title("Shift consistency vs accuracy (up and right is better)", fontsize=10, loc="left")
    ax.margins(0.15)
    return fig


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


def plot_reconstruction(reconstruction: pd.DataFrame) -> Figure | None:
    """PSNR and SSIM of down-then-up pooling, one bar per (model, pair)."""
    if reconstruction.empty:
        return None
    metrics = [m for m in ("psnr_dB", "ssim") if m in reconstruction.columns]
    if not metrics:
        return None
    data = reconstruction.copy()
    data["label"] = [m if m == p else f"{m}: {p}" for m, p in zip(data["model"], data["pair"])]
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


def gallery_figure(images: Mapping[str, Sequence[np.ndarray]], clean: np.ndarray) -> Figure:
    """Grid of one image: a row per corruption, the clean image then severities 1..5.

    Args:
        images: corruption name -> five (H, W, C) or (H, W) arrays in [0, 1] (severities 1..5).
        clean: the uncorrupted image, same layout.
    """
    names = list(images)
    if not names:
        raise ValueError("gallery_figure needs at least one corruption")
    fig = Figure(figsize=(6 * 1.1 + 1.4, 1.1 * len(names) + 0.5), layout="constrained")
    axes = fig.subplots(len(names), 6, squeeze=False)
    for i, name in enumerate(names):
        row = [clean, *images[name]]
        for j, img in enumerate(row):
            ax = axes[i][j]
            arr = np.clip(np.asarray(img, dtype=float), 0, 1)
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("clean" if j == 0 else f"severity {j}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name.replace("_", " "), fontsize=8, rotation=0, ha="right", va="center")
    return fig


def gallery_from_dataset(
    dataset: str, suite: str, *, seed: int = 0, index: int = 0, corruptions: Sequence[str] | None = None
) -> Figure:
    """Corrupt image ``index`` of ``dataset`` at severities 1..5 with every corruption of ``suite``.

    Imports the dataset and corruption engines lazily (they pull in torch).

    Raises:
        ImportError: the corruption engine is not available.
        ValueError / FileNotFoundError: the dataset cannot be opened or holds no clean images.
    """
    import warnings

    import torch

    from corruptions import corrupt, list_corruptions

    from ..data import ImageDataset, open_dataset

    ds = open_dataset(dataset)
    if not isinstance(ds, ImageDataset) or len(ds) == 0:
        raise ValueError(f"dataset {dataset!r} holds no clean images to corrupt")
    image, _ = ds[index]
    sid = ds.sample_id(index)
    x = image.unsqueeze(0).to(torch.float32) / 255.0
    names = list(corruptions) if corruptions is not None else list_corruptions(suite)
    images: dict[str, list[np.ndarray]] = {}
    with warnings.catch_warnings():
        # an image size other than the suite's native one only changes how it looks, not what the gallery shows
        warnings.simplefilter("ignore", UserWarning)
        for name in names:
            row = []
            for severity in range(1, 6):
                y = corrupt(x, name, severity, suite=suite, seed=seed, ids=[sid])[0]
                row.append(_to_hwc(y.numpy()))
            images[name] = row
    return gallery_figure(images, _to_hwc(x[0].numpy()))


def _to_hwc(chw: np.ndarray) -> np.ndarray:
    return chw[0] if chw.shape[0] == 1 else np.transpose(chw, (1, 2, 0))


# ------------------------------------------------------------------------------------------------------ output
@dataclass
class PlotResult:
    """A rendered figure: its stem, title, a one-line description, the files written and the PNG bytes."""

    name: str
    title: str
    description: str
    png: bytes
    paths: list[Path] = field(default_factory=list)


def save_figure(
    fig: Figure,
    out_dir: str | Path | None,
    stem: str,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 110,
) -> tuple[bytes, list[Path]]:
    """Write ``fig`` as ``out_dir/stem.<fmt>`` for each format (none when ``out_dir`` is None).

    Returns:
        the PNG bytes (for embedding) and the paths written.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    png = buf.getvalue()
    paths: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = out / f"{stem}.{fmt}"
            if fmt == "png":
                atomic_write_bytes(path, png)
            else:  # atomically: a full disk leaves no truncated SVG/PDF behind
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
            paths.append(path)
    return png, paths


_PLOTS: tuple[tuple[str, str, str], ...] = (
    (
        "error_per_corruption",
        "Error per corruption",
        "Mean top-1 error over the 5 severities; bars grouped by "
        "corruption, one colour per pooling kind, 95 % CIs as whiskers.",
    ),
    (
        "error_vs_severity",
        "Error vs severity",
        "Top-1 error at severities 1-5 (0 = clean), one panel per corruption.",
    ),
    (
        "ce_heatmap",
        "Corruption error heat map",
        "CE per corruption and model (baseline model = 100; blue is better than the baseline, red worse).",
    ),
    ("mce_vs_clean", "mCE vs clean error", "Each model's mCE against its clean error, with 95 % CIs."),
    (
        "consistency_vs_accuracy",
        "Shift consistency vs accuracy",
        "Zhang-style: consistency of top-1 predictions "
        "under shifts against clean accuracy (crop and circular protocols are not comparable with each other).",
    ),
    (
        "diagonal_shift",
        "Diagonal shift",
        "Accuracy and agreement with the unshifted prediction for diagonal shifts.",
    ),
    (
        "flip_probability",
        "Flip probability",
        "Probability that the top-1 prediction flips between frames, per perturbation.",
    ),
    (
        "reconstruction",
        "Reconstruction quality",
        "PSNR and SSIM of images passed down and back up a pooling pair.",
    ),
)


def render_plots(
    tables: Mapping[str, pd.DataFrame], out_dir: str | Path | None, formats: Sequence[str] = ("png", "svg")
) -> list[PlotResult]:
    """Draw every figure the tables support, save them, and return them in report order."""
    builders = {
        "error_per_corruption": lambda: plot_error_per_corruption(
            tables.get("per_corruption", pd.DataFrame())
        ),
        "error_vs_severity": lambda: plot_error_vs_severity(tables.get("per_severity", pd.DataFrame())),
        "ce_heatmap": lambda: plot_ce_heatmap(tables.get("per_corruption", pd.DataFrame())),
        "mce_vs_clean": lambda: plot_mce_vs_clean(tables.get("summary", pd.DataFrame())),
        "consistency_vs_accuracy": lambda: plot_consistency_vs_accuracy(
            tables.get("summary", pd.DataFrame())
        ),
        "diagonal_shift": lambda: plot_diagonal_shift(tables.get("shifts", pd.DataFrame())),
        "flip_probability": lambda: plot_flip_probability(tables.get("perturbations", pd.DataFrame())),
        "reconstruction": lambda: plot_reconstruction(tables.get("reconstruction", pd.DataFrame())),
    }
    results: list[PlotResult] = []
    for name, title, description in _PLOTS:
        fig = builders[name]()
        if fig is None:
            log.info("plot %s skipped: no rows to draw", name)
            continue
        png, paths = save_figure(fig, out_dir, name, formats)
        results.append(PlotResult(name, title, description, png, paths))
    return results
