"""Report figures, one module per figure, registered in :data:`PLOTS` by the imports below (in report order).

A new figure is one module here - a function ``table -> Figure | None`` decorated with
``@register_plot(name, title=..., description=..., table=...)`` - plus its import line below; :func:`render_plots`
draws every registered figure whose table holds something to draw.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .base import (
    PLOTS,
    POOLING_COLOURS,
    ModelStyle,
    PlotResult,
    model_styles,
    pooling_colour,
    register_plot,
    save_figure,
)

# the figures, in report order (registration order is the order of these imports)
from .error_per_corruption import plot_error_per_corruption  # isort: skip
from .error_vs_severity import plot_error_vs_severity  # isort: skip
from .ce_heatmap import plot_ce_heatmap  # isort: skip
from .mce_vs_clean import plot_mce_vs_clean  # isort: skip
from .consistency_vs_accuracy import plot_consistency_vs_accuracy  # isort: skip
from .diagonal_shift import plot_diagonal_shift  # isort: skip
from .flip_probability import plot_flip_probability  # isort: skip
from .reconstruction import plot_reconstruction  # isort: skip
from .robust_accuracy import plot_robust_accuracy  # isort: skip

__all__ = [
    "PLOTS",
    "POOLING_COLOURS",
    "ModelStyle",
    "model_styles",
    "PlotResult",
    "save_figure",
    "register_plot",
    "plot_error_per_corruption",
    "plot_error_vs_severity",
    "plot_ce_heatmap",
    "plot_mce_vs_clean",
    "plot_consistency_vs_accuracy",
    "plot_diagonal_shift",
    "plot_flip_probability",
    "plot_reconstruction",
    "plot_robust_accuracy",
    "pooling_colour",
    "render_plots",
]

log = logging.getLogger(__name__)


def render_plots(
    tables: Mapping[str, pd.DataFrame], out_dir: str | Path | None, formats: Sequence[str] = ("png", "svg")
) -> list[PlotResult]:
    """Draw every registered figure the tables support, save them, and return them in report order."""
    results: list[PlotResult] = []
    for name in PLOTS.names():
        meta = PLOTS.meta(name)
        fig = PLOTS.get(name)(tables.get(meta["table"], pd.DataFrame()))
        if fig is None:
            log.info("plot %s skipped: no rows to draw", name)
            continue
        png, paths = save_figure(fig, out_dir, name, formats)
        caption = meta.get("caption")
        description = caption(tables) if caption is not None else meta["description"]
        results.append(PlotResult(name, meta["title"], description, png, paths))
    return results
