"""Writing a `cpikan.study.report.Report`: ``tables/*.csv|md``, a self-contained ``report.html``,
and the same sections in a notebook (`show`).

Tables (under <results_dir>/<profile>/tables/, rewritten each time):
- ``setup.md``: profile, budget per problem, seeds, machine, devices, torch (`cpikan.study.budget`),
  and how the verdicts hold the error of the whole table (`cpikan.study.verdicts.METHOD`, with the
  level of each metric's intervals)
- ``verdicts.csv|md``: per (ablation, problem, variant) the paired ratios, intervals and verdicts
  (the CSV also the p-values and the unadjusted intervals)
- ``recommended.csv|md``: the settings the verdicts support, as ``cpikan run --set`` arguments
- ``<problem>.csv|md``: the headline of each problem; ``timing.csv|md``; ``time_to_reach.csv|md``
- ``runs.csv``: every run file with its status and metrics
CSV files keep the numbers and the run files; markdown is what a person reads.
``reproductions.csv|md``, in the same folder, are `cpikan study reproduce`'s
(`cpikan.study.published`): rewriting the report's tables leaves them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from cpikan.study import figures, published
from cpikan.study.budget import CAVEAT
from cpikan.study.parameters import ReportParameters
from cpikan.study.report import Report, gather, readable
from cpikan.study.verdicts import (ACCURACY, BETTER, COSTS, METHOD, NOTHING, ONE_PHASE, SHARED_MEMORY_RESOLUTION,
                                    SHARED_TIME_RESOLUTION, TIME_RESOLUTION, error_control)

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:0.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}"""
VERDICT_RULE = ("Per ablation, problem and variant: the ratio of the geometric-mean metric, variant over baseline, "
                "paired by seed, with a Student-t interval on the per-seed log ratios; rel_l2 is judged after the "
                "Adam phase (on the history's evaluation subset) and at the end of the run (after L-BFGS; the full "
                f"evaluation set); where no run had an L-BFGS phase, once ({ONE_PHASE}). The time and memory "
                f"intervals are widened by the machine's resolution, a factor {TIME_RESOLUTION} at each end (jitter "
                "that pairing seeds does not remove); where an arm's seeds trained together they share one clock "
                f"and one process, their cost is one measurement, and the interval is the ratio times or divided by "
                f"{SHARED_TIME_RESOLUTION:g} for time and {SHARED_MEMORY_RESOLUTION:g} for memory (the spread of "
                "identical arms in one study). The printed interval is adjusted for the number of rows "
                "(its level per metric is in the setup section): the verdict is better or worse when it lies wholly "
                "below or above 1, failed when a run failed, otherwise no detectable difference (always so with one "
                "seed).")
RECOMMEND_RULE = ("Only a variant judged better on the ablation's goal is recommended, per phase (after Adam, end of "
                  "run); for a time or memory goal, its rel_l2 must also not be worse at either phase. The setting "
                  "is what `cpikan run` accepts.")

REACH_RULE = ("Median over seeds and min–max band. Time to reach: per seed, the first training time at which a "
              "variant's rel_l2 is at or below the baseline's final one (same seed); the median over seeds, a seed "
              "that never got there counting as never; time ratio = the geometric mean over the seeds that got "
              "there of variant / baseline time to that error, with its 95 % interval (below 1: sooner; widened by "
              f"a factor {SHARED_TIME_RESOLUTION:g} at each end where seeds trained together on one clock).")
Section = tuple[str, list[Any]]  # heading, items: text paragraphs, tables (shown readable) and figures


def sections(report: Report) -> list[Section]:
    """The report in reading order: setup, verdicts (forest plot), recommended settings, per problem
    the headline and loss curves, error against training time per ablation, timing, failures."""
    if not report.runs:
        return [("No runs", [f"No run files under {report.folder}/runs: run `cpikan study run --profile "
                             f"{report.profile}` first."])]
    judged, rec = report.verdicts, report.recommended
    accuracy = figures.forest(judged, ACCURACY, title="Accuracy: paired-seed ratio of rel_l2 after Adam and at "
                                                      "the end of the run, variant / baseline")
    costs = figures.forest(judged, COSTS, title="Cost: paired-seed ratios, variant / baseline")
    nothing = [] if (rec.recommended != NOTHING).any() else [f"Nothing is {BETTER} than the baseline at this budget."]
    out: list[Section] = [
        ("Setup", [pd.DataFrame(report.budget.facts(), columns=["setup", "value"]), report.budget.problems, CAVEAT,
                   METHOD, error_control(judged)]),
        ("Verdicts", [VERDICT_RULE, accuracy if len(judged) else "No variant beside a baseline.", judged]),
        ("Recommended settings", [RECOMMEND_RULE, rec, *nothing]),
    ]
    for problem, table in report.headlines.items():
        runs = [r for r in report.runs if r.problem == problem]
        loss = figures.curves(runs, "loss", facet="ablation", title=f"{problem}: training loss")
        out.append((problem, [table, loss]))
    out += _error_against_time(report)
    out.append(("Timing and memory", [costs if len(judged) else "", report.timing]))
    failed = report.runs_table[report.runs_table.status != "ok"]
    if len(failed):
        out.append(("Failed runs", [failed[["run_file", "error"]]]))
    notebooks = _failed_notebooks(Path(report.folder) / "notebooks" / "batch.json")
    if notebooks:
        out.append(("Failed notebooks", [f"{o['output']}: {o['error']}" for o in notebooks]))
    return out


def _error_against_time(report: Report) -> list[Section]:
    """Per ablation whose runs logged rel_l2 in their history: the figure and its time-to-reach rows."""
    out = []
    for ablation in dict.fromkeys(r.ablation for r in report.runs):
        fig = figures.error_vs_time([r for r in report.runs if r.ablation == ablation],
                                    title=f"{ablation}: rel_l2 against training time")
        if fig.data:
            rows = report.time_to_reach[report.time_to_reach.ablation == ablation].drop(columns="ablation")
            out.append((f"Error against training time: {ablation}", [REACH_RULE, fig, rows]))
    if not out:
        return [("Error against training time", ["No run file holds rel_l2 in its history (runs from before it "
                                                 "was logged): run the study again to get these curves."])]
    return out


def write_tables(report: Report) -> Path:
    """Write every table of `report` and ``setup.md``; returns the tables folder."""
    folder = Path(report.folder) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*.csv"), *folder.glob("*.md")]:
        if old.stem != published.TABLE:  # the reproductions' table is `cpikan study reproduce`'s
            old.unlink()
    named = {**report.headlines, "timing": report.timing, "verdicts": report.verdicts,
             "recommended": report.recommended, "time_to_reach": report.time_to_reach}
    for name, table in named.items():
        table.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.md").write_text(_markdown(table) + "\n")
    control = error_control(report.verdicts).to_markdown(index=False, disable_numparse=True)
    (folder / "setup.md").write_text("\n\n".join([report.budget.markdown(), METHOD, control]) + "\n")
    report.runs_table.to_csv(folder / "runs.csv", index=False)
    return folder


def _markdown(table: pd.DataFrame) -> str:
    return readable(table).to_markdown(index=False, disable_numparse=True) if not table.empty else "(no rows)"


def _html(item: Any, plotly_js: bool) -> str:
    if isinstance(item, go.Figure):
        return item.to_html(full_html=False, include_plotlyjs=plotly_js)
    if isinstance(item, pd.DataFrame):
        return readable(item).to_html(index=False, na_rep="", escape=True) if not item.empty else "<p>(no rows)</p>"
    return f"<p>{html.escape(str(item))}</p>" if item else ""


def write_html(report: Report) -> Path:
    """Write ``report.html``: the `sections`, cells as plain text; plotly.js is embedded once (the
    file opens offline)."""
    failed = report.runs_table[report.runs_table.status != "ok"]
    parts = [f"<h1>cpikan ablation study: profile {html.escape(report.profile)}</h1>",
             f"<p>{len(report.runs)} runs ({len(failed)} failed) from <code>{html.escape(report.folder)}/runs</code>. "
             "Every row is traced to its run files in <code>tables/*.csv</code> (column run_files).</p>"]
    plotly_js = True
    for heading, items in sections(report):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for item in items:
            parts.append(_html(item, plotly_js))
            plotly_js = plotly_js and not isinstance(item, go.Figure)
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
    """Display the report's `sections` in a notebook."""
    from IPython.display import Markdown, display

    for heading, items in sections(report):
        display(Markdown(f"## {heading}"))
        for item in items:
            if isinstance(item, pd.DataFrame):
                display(readable(item) if not item.empty else Markdown("(no rows)"))
            elif item is not None and not isinstance(item, str):
                display(item)
            elif item:
                display(Markdown(item))


def build(params: ReportParameters) -> Report:
    """Gather the store and write ``report.html`` and ``tables/*.csv|md`` under <results_dir>/<profile>/."""
    report = gather(params.results_dir, params.profile)
    write_tables(report)
    write_html(report)
    return report
