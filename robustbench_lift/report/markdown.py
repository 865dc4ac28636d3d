"""A short Markdown summary of a report, fit for a pull-request comment."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .summary import MARKDOWN_KEYS, headline_title
from .tables import Run

__all__ = ["render_markdown", "md_escape", "HEADLINE_KEYS"]

#: ``(check key, header)`` of the Markdown table; the keys and titles live in :mod:`.summary`.
HEADLINE_KEYS: tuple[tuple[str, str], ...] = tuple((k, headline_title(k)) for k in MARKDOWN_KEYS)


def md_escape(text: Any) -> str:
    """Escape a user string for a Markdown table cell (no HTML, no column breaks, no emphasis)."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("\r", " ").replace("\n", " ")
    for ch in ("\\", "|", "`", "*", "_", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s


def _fmt(v: Any, lo: Any = None, hi: Any = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    out = "inf" if math.isinf(float(v)) else f"{float(v):.2f}"
    if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
        out += f" [{float(lo):.2f}, {float(hi):.2f}]"
    return out


def render_markdown(
    *,
    title: str,
    runs: Sequence[Run],
    summary: pd.DataFrame,
    summary_columns: Mapping[str, Mapping[str, Any]],
    notes: Sequence[str] = (),
    answer: Any = None,
) -> str:
    """The seed-aware answer, the headline table (values with 95 % CIs), protocol notes and the runs' seeds and
    checkpoint hashes."""
    lines = [f"### {md_escape(title)}", ""]
    if answer is not None and answer.lines:
        lines += ["**The answer** (each pooling against the baseline pooling):", ""]
        lines += [f"- {md_escape(line)}" for line in answer.lines]
        lines.append("")
    by_key = {info["key"]: col for col, info in summary_columns.items()}
    shown = [(key, head, by_key[key]) for key, head in HEADLINE_KEYS if key in by_key]
    # numbers split per suite / pair keep their suffix in the header
    for col, info in summary_columns.items():
        base = info["key"].split("[", 1)[0]
        if "[" in info["key"] and base in dict(HEADLINE_KEYS):
            shown.append((info["key"], dict(HEADLINE_KEYS)[base] + " " + info["key"][len(base) :], col))
    if summary.empty:
        lines.append("No results.")
    else:
        lines.append("| model | pooling | " + " | ".join(md_escape(h) for _, h, _ in shown) + " |")
        lines.append("|---|---|" + "---:|" * len(shown))
        for rec in summary.to_dict("records"):
            cells = [md_escape(rec["model"]), md_escape(rec.get("pooling", ""))]
            for _, _, col in shown:
                cells.append(_fmt(rec.get(col), rec.get(f"{col}_ci_low"), rec.get(f"{col}_ci_high")))
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Values in % (PSNR in dB); 95 % bootstrap CIs over images in brackets.", ""]
    protos = [(col, summary_columns[col].get("protocol", "")) for _, _, col in shown]
    if protos:
        lines.append("<details><summary>Protocols</summary>")
        lines.append("")
        for col, proto in protos:
            lines.append(f"- {md_escape(col)}: {md_escape(proto or 'no protocol recorded')}")
        lines += ["", "</details>", ""]
    for note in notes:
        lines.append(f"> {md_escape(note)}")
    if notes:
        lines.append("")
    for run in runs:
        cfg = run.manifest.get("config", {}) if isinstance(run.manifest, dict) else {}
        seed = cfg.get("seed", run.manifest.get("seed", "?")) if run.manifest else "?"
        models = cfg.get("models", {}) if isinstance(cfg, dict) else {}
        hashes = []
        if isinstance(models, dict):
            for name, entry in models.items():
                h = entry.get("content_hash") or entry.get("hash") if isinstance(entry, dict) else None
                if h:
                    hashes.append(f"{md_escape(name)} {md_escape(str(h)[:23])}")
        line = f"- run **{md_escape(run.name)}**: seed {md_escape(seed)}"
        if hashes:
            line += "; checkpoints " + ", ".join(hashes)
        lines.append(line)
    return "\n".join(lines).rstrip() + "\n"
