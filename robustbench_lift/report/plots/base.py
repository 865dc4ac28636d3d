"""What every report figure shares: pooling colours and model styles, bar and scatter helpers, saving, and the
:data:`PLOTS` registry the figure modules register into (see ``report/plots/__init__.py``).

Figures use matplotlib's object API only (no pyplot state, no backend switching). Every figure uses the same colour
for a pooling kind (:data:`POOLING_COLOURS`); models that share a pooling kind are told apart by hatching (bars) or
line style and marker (lines).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from corruptions.registry import Registry

from ...fileio import atomic_path, atomic_write_bytes

__all__ = [
    "PLOTS",
    "PlotFunction",
    "register_plot",
    "POOLING_COLOURS",
    "ModelStyle",
    "model_styles",
    "pooling_colour",
    "PlotResult",
    "save_figure",
]

#: A figure builder: the report table it draws from -> a figure, or None when the table holds nothing to draw.
PlotFunction = Callable[[pd.DataFrame], "Figure | None"]
#: Report figures in report order. Metadata: ``title``, ``description`` (one line under the figure) and ``table``
#: (the stem of the report table passed to the function: ``summary``, ``per_corruption``, ...).
PLOTS: Registry[PlotFunction] = Registry("plot")


def register_plot(
    name: str,
    *,
    title: str,
    description: str,
    table: str,
    caption: Callable[[Mapping[str, pd.DataFrame]], str] | None = None,
) -> Callable[[PlotFunction], PlotFunction]:
    """Decorator registering a figure builder under ``name`` (the stem of its files, ``<name>.png``).

    ``caption(tables)``, when given, writes the line under the figure from the report's tables (e.g. naming the
    severities actually evaluated); ``description`` is the fallback.
    """
    return PLOTS.register(name, title=title, description=description, table=table, caption=caption)


def severities_text(per_severity: pd.DataFrame) -> str:
    """The corruption severities a report's rows hold: ``"severities 1-5"``, ``"severities 1, 3 and 5"``."""
    if per_severity.empty or "severity" not in per_severity.columns:
        return "the evaluated severities"
    sev = sorted({int(s) for s in per_severity["severity"] if int(s) > 0})
    if not sev:
        return "the evaluated severities"
    if len(sev) == 1:
        return f"severity {sev[0]}"
    if sev == list(range(sev[0], sev[-1] + 1)):
        return f"severities {sev[0]}-{sev[-1]}"
    return "severities " + ", ".join(map(str, sev[:-1])) + f" and {sev[-1]}"


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
