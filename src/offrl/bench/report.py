"""report.html: one self-contained page per sweep — tables, curves, and every run's config.

Images are base64 data URIs and the CSS is inline, so the file can be mailed or attached to
a paper review as it is. The tables are rendered from the same Table objects as table.md.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from offrl.atomic import atomic_write
from offrl.bench import FAILED_FILE, SWEEP_YAML
from offrl.bench.plots import plot_learning_curves
from offrl.bench.tables import DASH, Results, RunRecord, Table, collect, score_table
from offrl.training import CONFIG_FILE, SUMMARY_FILE

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.avg td { font-weight: bold; border-top: 2px solid #888; }
.failed { color: #b00; } .diverged { color: #b60; } .pending { color: #888; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 48%; margin: 0.3em; }
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(lab)}</th>" for lab in ["dataset", *table.labels])
    rows = [
        "<tr><td>"
        + escape(d)
        + "</td>"
        + "".join(f"<td>{escape(c.text)}</td>" for c in cells)
        + "</tr>"
        for d, cells in table.rows
    ]
    avg = "".join(f"<td>{DASH if a is None else f'{a:.1f}'}</td>" for a in table.average)
    rows.append(f'<tr class="avg"><td>average</td>{avg}</tr>')
    return (
        f"<h3>{escape(table.title)}</h3>\n<table><tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"
    )


def _run_html(results: Results, run: RunRecord) -> str:
    rel = run.dir.relative_to(results.root) if run.dir.is_relative_to(results.root) else run.dir
    score = DASH if run.final is None else f"{run.final:.1f}" + (" (return)" * run.is_return)
    parts = [
        f"<li><code>{escape(str(rel))}</code> — seed {run.seed}, "
        f'<span class="{escape(run.status)}">{escape(run.status)}</span>, final {escape(score)}'
    ]
    summary = run.dir / SUMMARY_FILE
    if summary.exists():
        s = json.loads(summary.read_text())
        if s.get("wall_seconds") is not None:  # a diverged run's summary has no timings
            parts[0] += (
                f", {s['steps']:,} updates in {s['wall_seconds']:.0f} s "
                f"({s['updates_per_second']:,.0f} updates/s)"
            )
    if run.error:
        parts.append(f'<pre class="failed">{escape(run.error)}</pre>')
        trace = json.loads((run.dir / FAILED_FILE).read_text()).get("traceback", "")
        if trace:
            parts.append(
                f"<details><summary>traceback</summary><pre>{escape(trace)}</pre></details>"
            )
    config = run.dir / CONFIG_FILE
    text = config.read_text() if config.exists() else "(no config.json yet)"
    parts.append(f"<details><summary>config.json</summary><pre>{escape(text)}</pre></details>")
    return "\n".join(parts) + "</li>"


def write_report(results_dir: Path) -> Path:
    """Write RESULTS/report.html (also writing the curve PNGs it embeds); return its path."""
    results = collect(results_dir)
    title = f"Sweep {results.name}"
    body = [f"<h1>{escape(title)}</h1>", "<h2>Scores</h2>"]
    body += [_table_html(score_table(results, which)) for which in ("final", "best")]
    body.append("<h2>Learning curves</h2>")
    for png in plot_learning_curves(results.root):
        data = base64.b64encode(png.read_bytes()).decode()
        body.append(f'<img alt="{escape(png.stem)}" src="data:image/png;base64,{data}">')
    spec = results.root / SWEEP_YAML
    if spec.exists():
        body.append(
            f"<details><summary>sweep.yaml</summary><pre>{escape(spec.read_text())}</pre></details>"
        )
    body.append("<h2>Runs</h2>")
    for dataset in results.datasets:
        for label in results.labels:
            runs = results.cell(dataset, label)
            if runs:
                body.append(f"<h3>{escape(dataset)} / {escape(label)}</h3><ul>")
                body += [_run_html(results, r) for r in runs]
                body.append("</ul>")
    html = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    out = results.root / "report.html"
    atomic_write(out, html.encode())
    return out
