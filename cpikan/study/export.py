"""Writing a `cpikan.study.report.Report`: ``tables/*.csv|md`` and a self-contained ``report.html``.

Tables (under <results_dir>/<profile>/tables/, rewritten each time):
- ``<problem>.csv|md``: the headline of each problem (CSV keeps the numbers and run files)
- ``timing.csv|md``, ``recommended.csv|md``: across problems
- ``runs.csv``: every run file with its status and metrics
``reproductions.csv|md``, in the same folder, are `cpikan study reproduce`'s
(`cpikan.study.published`): rewriting the report's tables leaves them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from cpikan.study import figures, published
from cpikan.study.parameters import ReportParameters
from cpikan.study.report import Report, gather, readable

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:0.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}"""


def write_tables(report: Report) -> Path:
    """Write every table of `report`; returns the tables folder."""
    folder = Path(report.folder) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*.csv"), *folder.glob("*.md")]:
        if old.stem != published.TABLE:  # the reproductions' table is `cpikan study reproduce`'s
            old.unlink()
    named = {**report.headlines, "timing": report.timing, "recommended": report.recommended}
    for name, table in named.items():
        table.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(_markdown(table) + "\n")
    report.runs_table.to_csv(folder / "runs.csv", index=False)
    return folder


def _markdown(table: pd.DataFrame) -> str:
    return readable(table).to_markdown(index=False, disable_numparse=True) if not table.empty else "(no runs)"


def _html_table(table: pd.DataFrame) -> str:
    return readable(table).to_html(index=False, na_rep="", escape=True) if not table.empty else "<p>(no runs)</p>"


def write_html(report: Report) -> Path:
    """Write ``report.html``: recommended settings, per problem the headline and loss curves,
    timing and memory, and any failures. plotly.js is embedded once (the file opens offline)."""
    failed = report.runs_table[report.runs_table.status != "ok"]
    parts = [f"<h1>cpikan ablation study: profile {html.escape(report.profile)}</h1>",
             f"<p>{len(report.runs)} runs ({len(failed)} failed) from <code>{html.escape(report.folder)}/runs</code>. "
             "Every row is traced to its run files in <code>tables/*.csv</code> (column run_files).</p>",
             "<h2>Recommended settings</h2>", _html_table(report.recommended)]
    plotly_js: bool | str = True
    for problem, table in report.headlines.items():
        runs = [r for r in report.runs if r.problem == problem]
        fig = figures.curves(runs, "loss", facet="ablation", title=f"{problem}: training loss")
        parts += [f"<h2>{html.escape(problem)}</h2>", _html_table(table),
                  fig.to_html(full_html=False, include_plotlyjs=plotly_js)]
        plotly_js = False
    parts += ["<h2>Timing and memory</h2>", _html_table(report.timing)]
    if len(failed):
        parts += ["<h2>Failed runs</h2>", failed[["run_file", "error"]].to_html(index=False, escape=True)]
    notebooks = _failed_notebooks(Path(report.folder) / "notebooks" / "batch.json")
    if notebooks:
        parts += ["<h2>Failed notebooks</h2>", "<ul>" + "".join(
            f"<li><code>{html.escape(o['output'])}</code>: {html.escape(str(o['error']))}</li>" for o in notebooks)
            + "</ul>"]
    path = Path(report.folder) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>cpikan {report.profile}</title>"
                    f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    return path


def _failed_notebooks(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [o for o in json.loads(path.read_text()) if o.get("status") != "ok"]


def show(report: Report) -> None:
    """Display the report in a notebook: per problem the headline and the loss curves, then timing."""
    from IPython.display import Markdown, display

    if not report.runs:
        display(Markdown(f"No runs under `{report.folder}/runs`: run `cpikan study run --profile {report.profile}`."))
        return
    for problem, table in report.headlines.items():
        runs = [r for r in report.runs if r.problem == problem]
        display(Markdown(f"## {problem}"), readable(table),
                figures.curves(runs, "loss", facet="ablation", title=f"{problem}: training loss"))
    display(Markdown("## Timing and memory"), readable(report.timing))


def build(params: ReportParameters) -> Report:
    """Gather the store and write ``report.html`` and ``tables/*.csv|md`` under <results_dir>/<profile>/."""
    report = gather(params.results_dir, params.profile)
    write_tables(report)
    write_html(report)
    return report
