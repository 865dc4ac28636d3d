"""Reports on finished runs: tables, plots, a self-contained HTML page, a Markdown summary, ``compare`` and the
``check`` regression gate. Everything here reads ``results.csv`` and ``manifest.json`` only (and, for paired
differences, the per-sample arrays of the stored cells)."""
