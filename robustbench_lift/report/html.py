"""The self-contained HTML report: one file, images embedded as data URIs, no network references.

Every string that comes from a run (model names, paths, manifest values, protocols) goes through
:func:`html.escape`; tables are sortable by clicking a header (a few lines of inline JavaScript).
"""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from .plots import PlotResult, pooling_colour
from .tables import Run

__all__ = ["render_html", "format_value", "DETAIL_TABLES"]

#: Detail tables shown after the plots: (key, title, collapsed by default).
DETAIL_TABLES: tuple[tuple[str, str, bool], ...] = (
    ("per_corruption", "Per corruption", False),
    ("perturbations", "Perturbations", False),
    ("reconstruction", "Reconstruction", False),
    ("adversarial", "Adversarial attacks", False),
    ("shifts", "Shift probes", True),
    ("per_severity", "Per severity", True),
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
main{max-width:1320px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:34px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
.meta{color:#555;font-size:13px}.note{background:#fff7e0;border-left:4px solid #e6a700;padding:6px 10px;margin:8px 0}
.tablewrap{overflow-x:auto;max-width:100%;margin:6px 0 10px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;cursor:pointer;user-select:none;white-space:normal;max-width:130px;vertical-align:bottom}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
td.txt,th.txt{text-align:left}tbody tr:nth-child(even){background:#f8f8f8}
.ci{color:#666;font-size:12px}.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;
margin-right:5px;vertical-align:baseline}
figure{margin:14px 0 24px;background:#fff;border:1px solid #e3e3e3;padding:10px}
figure img{max-width:100%;height:auto;display:block}figcaption{color:#444;font-size:13px;margin-top:6px}
dl.protocols dt{font-family:ui-monospace,monospace;font-size:12px;margin-top:6px}
dl.protocols dd{margin:0 0 0 18px;color:#333}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;max-height:420px;font-size:12px}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("thead th").forEach(function(th,i){th.addEventListener("click",function(){
    var asc=th.dataset.dir!=="asc",body=t.tBodies[0];
    t.querySelectorAll("thead th").forEach(function(h){delete h.dataset.dir;});th.dataset.dir=asc?"asc":"desc";
    Array.from(body.rows).sort(function(a,b){
      var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v,r;
      if(x!==undefined&&y!==undefined){r=parseFloat(x)-parseFloat(y);}
      else if(x!==undefined||y!==undefined){return x===undefined?1:-1;}
      else{r=a.cells[i].textContent.localeCompare(b.cells[i].textContent);}
      return asc?r:-r;}).forEach(function(r){body.appendChild(r);});
  });});
});
"""

_TEXT_COLUMNS = frozenset(
    {
        "run",
        "model",
        "arch",
        "pooling",
        "suite",
        "corruption",
        "group",
        "perturbation",
        "probe",
        "metric",
        "unit",
        "pair",
        "protocol",
    }
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def format_value(value: Any, digits: int = 2) -> str:
    """A number for a table cell: fixed decimals for ordinary values, '' for missing ones."""
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        value = float(value)
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def _cell(col: str, value: Any, *, lo: Any = None, hi: Any = None, pooling: str | None = None) -> str:
    if value is None:
        value = float("nan")
    if col in _TEXT_COLUMNS or not isinstance(value, numbers.Real) or isinstance(value, bool):
        swatch = ""
        if pooling is not None:
            swatch = f'<span class="swatch" style="background:{_e(pooling_colour(pooling))}"></span>'
        return f'<td class="txt">{swatch}{_e(value)}</td>'
    text = format_value(value)
    attr = f' data-v="{float(value)!r}"' if _is_number(value) else ""
    ci = ""
    if _is_number(lo) and _is_number(hi):
        ci = f'<br><span class="ci">[{_e(format_value(lo))}, {_e(format_value(hi))}]</span>'
    return f"<td{attr}>{_e(text)}{ci}</td>"


def _table(
    df: pd.DataFrame, *, protocols: Mapping[str, Mapping[str, Any]] | None = None, fold_ci: bool = True
) -> str:
    """A sortable HTML table; ``<col>_ci_low/_ci_high`` columns are folded into the value cell as ``[lo, hi]``."""
    if df.empty:
        return '<p class="meta">(no rows)</p>'
    cols = [c for c in df.columns if not (fold_ci and str(c).endswith(("_ci_low", "_ci_high")))]
    head = []
    for c in cols:
        cls = ' class="txt"' if c in _TEXT_COLUMNS else ""
        title = ""
        if protocols and c in protocols:
            title = f' title="{_e(protocols[c].get("protocol", ""))}"'
        # let long protocol-style names wrap at their underscores
        label = _e(c).replace("_", "_<wbr>")
        head.append(f"<th{cls}{title}>{label}</th>")
    rows = []
    records = df.to_dict("records")
    for rec in records:
        cells = []
        for c in cols:
            lo = rec.get(f"{c}_ci_low") if fold_ci else None
            hi = rec.get(f"{c}_ci_high") if fold_ci else None
            pooling = str(rec.get("pooling")) if c == "model" and "pooling" in rec else None
            cells.append(_cell(str(c), rec[c], lo=lo, hi=hi, pooling=pooling))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="tablewrap"><table class="sortable"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table></div>"
    )


#: Grids shown above a detail table: (column, heading) per table, and the grid's row keys.
_GRIDS: dict[str, tuple[tuple[str, str], ...]] = {
    "per_corruption": (
        ("mean_top1_error_%", "Mean top-1 error over severities (%)"),
        ("CE_%", "CE (%, baseline model = 100)"),
    ),
    "perturbations": (
        ("flip_probability_%", "Flip probability (%)"),
        ("FR_%_baseline-normalised", "Flip rate (%, baseline model = 100)"),
    ),
}
_GRID_INDEX: dict[str, list[str]] = {
    "per_corruption": ["corruption", "group"],
    "perturbations": ["perturbation", "difficulty"],
}


def _pivot(table: pd.DataFrame, value: str, index: list[str]) -> pd.DataFrame | None:
    """Item x model grid of one column of a detail table (its first suite only)."""
    if value not in table.columns or table[value].isna().all():
        return None
    suite = table["suite"].iloc[0]
    df = table[(table["suite"] == suite) & table[value].notna()]
    models = list(dict.fromkeys(df["model"]))
    grid = df.pivot_table(index=index, columns="model", values=value, aggfunc="first", sort=False)
    grid = grid.reindex(columns=models).reset_index()
    grid.columns = [str(c) for c in grid.columns]
    return grid


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and obj and all(isinstance(v, Mapping) for v in obj):
        out = []
        for i, v in enumerate(obj):
            out += _flatten(v, f"{prefix}[{i}]")
        return out
    if isinstance(obj, list):
        return [(prefix, " ".join(str(v) for v in obj))]
    return [(prefix, obj)]


#: Manifest keys shown first (substring match on the flattened key), the rest is in the full JSON below.
_MANIFEST_HIGHLIGHTS = (
    "seed",
    "version",
    "device",
    "dataset",
    "checkpoint",
    "hash",
    "command",
    "created",
    "limit",
)


def _manifest_section(runs: Sequence[Run]) -> str:
    parts = []
    for run in runs:
        parts.append(f"<h3>Run {_e(run.name)}</h3>")
        parts.append(f'<p class="meta">path: <code>{_e(run.path)}</code></p>')
        if run.model_names and any(k != v for k, v in run.model_names.items()):
            renamed = ", ".join(f"{_e(k)} &rarr; {_e(v)}" for k, v in run.model_names.items() if k != v)
            parts.append(f'<p class="meta">models renamed in this report: {renamed}</p>')
        if not run.manifest:
            parts.append(
                '<p class="note">no manifest.json next to the results: versions, seeds and checkpoint '
                "hashes are unknown</p>"
            )
            continue
        flat = _flatten(run.manifest)
        key_rows = [(k, v) for k, v in flat if any(h in k.lower() for h in _MANIFEST_HIGHLIGHTS)]
        if key_rows:
            body = "".join(
                f'<tr><td class="txt">{_e(k)}</td><td class="txt">{_e(v)}</td></tr>' for k, v in key_rows
            )
            parts.append(
                '<div class="tablewrap"><table class="sortable"><thead><tr><th class="txt">field</th>'
                f'<th class="txt">value</th></tr></thead><tbody>{body}</tbody></table></div>'
            )
        text = json.dumps(run.manifest, indent=2, sort_keys=True, default=str)
        parts.append(f"<details><summary>full manifest.json</summary><pre>{_e(text)}</pre></details>")
    return "\n".join(parts)


def _protocol_list(columns: Mapping[str, Mapping[str, Any]]) -> str:
    if not columns:
        return ""
    items = "".join(
        f"<dt>{_e(col)}</dt><dd>{_e(info.get('protocol') or 'no protocol recorded')}</dd>"
        for col, info in columns.items()
    )
    return f'<details open><summary>What each number is (protocol)</summary><dl class="protocols">{items}</dl></details>'


def render_html(
    *,
    title: str,
    runs: Sequence[Run],
    tables: Mapping[str, pd.DataFrame],
    summary_columns: Mapping[str, Mapping[str, Any]],
    plots: Sequence[PlotResult],
    gallery_png: bytes | None = None,
    notes: Sequence[str] = (),
    answer: Any = None,
) -> str:
    """The whole report page as a string.

    Args:
        title: page title (escaped).
        runs: the runs merged into the report (for the manifest section).
        tables: the tables of :func:`~robustbench_lift.report.tables.build_tables`.
        summary_columns: column -> protocol info from :func:`~robustbench_lift.report.tables.build_summary`.
        plots: rendered figures, shown in order.
        gallery_png: optional corruption gallery image.
        notes: remarks shown under the title (skipped parts, renamed models, ...).
        answer: the seed-aware answer (:func:`~robustbench_lift.report.answer.report_answer`), shown first.
    """
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run_names = ", ".join(_e(r.name) for r in runs)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">runs: {run_names} &middot; generated {_e(now)} &middot; values in %, unless the column '
        "says otherwise; 95 % bootstrap CIs over images in brackets</p>",
    ]
    out += [f'<p class="note">{_e(n)}</p>' for n in notes]
    if answer is not None and answer.lines:
        from .answer import display_titles

        out.append('<h2 id="answer">The answer: each pooling against the baseline pooling</h2>')
        out.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in answer.lines) + "</ul>")
        if not answer.groups.empty:
            groups = answer.groups.rename(columns=display_titles(list(answer.groups.columns)))
            out.append("<h3>Per seed group (mean over seeds, 95 % seed-and-image interval)</h3>")
            out.append(_table(groups))
    out.append('<h2 id="summary">Summary</h2>')
    summary = tables.get("summary", pd.DataFrame())
    out.append(_table(summary, protocols=summary_columns))
    out.append(_protocol_list(summary_columns))
    if plots or gallery_png:
        out.append('<h2 id="plots">Plots</h2>')
    for p in plots:
        data = base64.b64encode(p.png).decode("ascii")
        out.append(
            f'<figure id="plot-{_e(p.name)}"><h3>{_e(p.title)}</h3>'
            f'<img alt="{_e(p.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(p.description)}</figcaption></figure>"
        )
    if gallery_png:
        data = base64.b64encode(gallery_png).decode("ascii")
        out.append(
            '<figure id="plot-gallery"><h3>Corruption gallery</h3>'
            f'<img alt="corruption gallery" src="data:image/png;base64,{data}">'
            "<figcaption>One image under each corruption at severities 1-5.</figcaption></figure>"
        )
    for key, heading, collapsed in DETAIL_TABLES:
        df = tables.get(key, pd.DataFrame())
        if df is None or df.empty:
            continue
        out.append(f'<h2 id="{_e(key)}">{_e(heading)}</h2>')
        if key in _GRIDS:
            # item x model grids read better than the long tables, which stay available below
            for value, label in _GRIDS[key]:
                grid = _pivot(df, value, _GRID_INDEX[key])
                if grid is not None:
                    out.append(f"<h3>{_e(label)}</h3>{_table(grid)}")
            collapsed = True
        body = _table(df)
        if collapsed:
            body = f"<details><summary>all {len(df)} rows</summary>{body}</details>"
        out.append(body)
    out.append('<h2 id="manifest">Runs and manifests</h2>')
    out.append(_manifest_section(runs))
    out.append(f"</main><script>{_JS}</script></body></html>")
    return "\n".join(out)
