"""Ablation and reproduction notebooks rendered from their registry entries.

Every ablation notebook is the same eleven cells around its entry's text (title, intro, problems and
why, figure call, story, goal) and the parameters cell of `StudyParameters`; among them the forest
plot of its verdicts. A reproduction notebook adds the paper's reference, its numbers and the setup
differences to the intro, shows the published numbers beside ours (`cpikan.study.published`) in a
table and a figure, and closes on the verdicts. `render` builds one; `render_notebooks` (``cpikan
study render``) writes them, keeping the committed output of the checked cell that nbval compares. A
new ablation or reproduction is one registry entry, then ``cpikan study render``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cpikan.study.batch import CHECK_MARK, NOTEBOOKS, keep_checked_outputs, refresh
from cpikan.study.parameters import StudyParameters, parameters_cell
from cpikan.study.registry import Ablation, names
from cpikan.study.published import RULE
from cpikan.study.reproductions import Reproduction, entry
from cpikan.study.reproductions import names as reproduction_names

FOLDER = NOTEBOOKS / "ablations"
REPRODUCTIONS = NOTEBOOKS / "reproductions"
METADATA = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}
RUNS = ("## Runs\n\nOne run file per variant, problem and seed "
        "(`<results_dir>/<profile>/runs/<ablation>/<problem>/<variant>/seed<k>.json`); a run that fails is "
        "recorded as failed and the others go on.")
VERDICTS = ("## Against the baseline\n\nPer variant and problem: the ratio of the geometric-mean result over the "
            "baseline's, paired by seed, with its interval (log axis; left of the dashed line is lower, i.e. "
            "better) and the verdict: better, worse, no detectable difference (always so with one seed) or failed. "
            "rel_l2 is judged after the Adam phase and at the end of the run (one panel each; once where there is "
            "no L-BFGS phase). Intervals are adjusted for the number of rows judged here, so that the verdicts "
            "together hold a 5 % error rate (the report adjusts over the whole study: its intervals may differ); "
            "time and memory intervals include the machine's timing resolution (`cpikan.study.verdicts`).")
SUMMARY = ("## Summary\n\nThe most accurate variant per problem and its relative L2 error against the baseline's "
           "(one significant digit, so the line is stable from run to run).")
AGAINST = ("## Published against ours\n\nOur seeds (dots), their geometric mean (bar) and the published value "
           "(diamond, with its spread when the paper gives one), on a log axis.")
FINDING = ("## What the quick profile found\n\n{finding}\n\nThe table: `reports/quick/tables/reproductions.md`; "
           "the executed notebook, with its figures: `reports/quick/notebooks/{name}.ipynb` (written by "
           "`cpikan study reproduce --profile quick --only {name}`).")
NOT_RUN = "Not run yet."
VERDICT = ("## Verdict\n\nPer arm: our geometric-mean relative L2 error (one significant digit), the published value, "
           "whether they match, and the paired ratio to the baseline arm (`cpikan.study.published`).\n\n{rule}\n\nThe "
           "checked output below is the smoke profile's, a few steps long: it says nothing about the paper. The "
           "quick profile's verdicts are in `reports/quick/tables/reproductions.md` and in the notebook "
           "`cpikan study reproduce --profile quick --only {name}` writes under `reports/quick/notebooks/`.")


def render(ablation: Ablation) -> nbformat.NotebookNode:
    """The notebook of `ablation` (or reproduction), without outputs. Cell ids are fixed names, so
    the same entry always gives the same file."""
    if isinstance(ablation, Reproduction):
        return _render_reproduction(ablation)
    name = ablation.name
    keys = ", ".join(f"`{k}`" for k in ablation.keys)
    variants = ", ".join(f"`{v.name}`" for v in ablation.variants)
    problems = "; ".join(f"{profile}: " + ", ".join(f"`{p}`" for p in ablation.problems[profile])
                         for profile in ("quick", "full"))
    intro = (f"# Ablation: {ablation.title} ({keys})\n\n{ablation.intro}\n\n"
             f"Problems ({problems}): {ablation.why}\n\n"
             f"Variants: {variants}. The defaults below are the smoke profile (seconds on a CPU); "
             f"`cpikan study run --profile quick --only {name}` runs this notebook with the quick profile "
             "through papermill.")
    cells = {
        "intro": new_markdown_cell(intro),
        "parameters": new_code_cell(parameters_cell(StudyParameters, ablation=name),
                                    metadata={"tags": ["parameters"]}),
        "setup": new_code_cell("from cpikan import study\nfrom cpikan.study import figures, report\n\n"
                               f'params = study.parameters("{name}", globals())\nparams'),
        "runs-heading": new_markdown_cell(RUNS),
        "runs": new_code_cell("runs = study.run_variants(params)\nreport.table(runs)"),
        "story": new_markdown_cell(f"## {ablation.story[:1].upper()}{ablation.story[1:]}"),
        "figure": new_code_cell(ablation.figure),
        "verdicts-heading": new_markdown_cell(VERDICTS),
        "verdicts": new_code_cell(f"figures.forest(report.verdict_table(runs){_cost(ablation)})"),
        "summary-heading": new_markdown_cell(SUMMARY),
        "summary": new_code_cell(f"{CHECK_MARK}\nprint(report.summary(runs))"),
    }
    return _notebook(cells)


def _render_reproduction(entry: Reproduction) -> nbformat.NotebookNode:
    name = entry.name
    numbers = "\n".join(f"- `{arm}`, {p.method}: " + (f"{p.value:.3g}" if p.value is not None else "")
                        + (f" ± {p.spread:.2g}" if p.spread is not None else "")
                        + (f" over {p.runs} runs" if p.runs else "")
                        + (f" — {p.source}" if p.value is not None else p.source)
                        for arm, p in entry.published.items())
    differences = "\n".join(f"- {d}" for d in entry.differences)
    arms = ", ".join(f"`{v.name}`" + ("" if v.profiles == ("smoke", "quick", "full") else
                                      f" ({', '.join(p for p in v.profiles if p != 'smoke')} profile only)")
                     for v in entry.variants)
    intro = (f"# Reproduction: {entry.title}\n\n{entry.intro}\n\n"
             f"**Reference.** {entry.paper}; {entry.result}.\n\n**Released code.** {entry.code}.\n\n"
             f"**Published relative L2 errors.**\n{numbers}\n\n"
             f"**Setup differences we cannot express.**\n{differences}\n\n"
             f"Arms: {arms}. The defaults below are the smoke profile (seconds on a CPU); "
             f"`cpikan study reproduce --profile quick --only {name}` runs this notebook with the quick profile "
             "through papermill. A reproduction that does not match says so below; it is not tuned until it does.")
    cells = {
        "intro": new_markdown_cell(intro),
        "finding": new_markdown_cell(FINDING.format(finding=entry.finding or NOT_RUN, name=name)),
        "parameters": new_code_cell(parameters_cell(StudyParameters, ablation=name),
                                    metadata={"tags": ["parameters"]}),
        "setup": new_code_cell("from cpikan import study\n"
                               "from cpikan.study import figures, published, reproductions\n\n"
                               f'params = study.parameters("{name}", globals())\n'
                               f'entry = reproductions.get("{name}")\nparams'),
        "runs-heading": new_markdown_cell(RUNS),
        "runs": new_code_cell("runs = study.run_variants(params)\npublished.table(runs, entry)"),
        "against-heading": new_markdown_cell(AGAINST),
        "against": new_code_cell("figures.against_published(runs, entry)"),
        "story": new_markdown_cell(f"## {entry.story[:1].upper()}{entry.story[1:]}"),
        "figure": new_code_cell(entry.figure),
        "summary-heading": new_markdown_cell(VERDICT.format(rule=RULE, name=name)),
        "summary": new_code_cell(f"{CHECK_MARK}\nprint(published.summary(runs, entry))"),
    }
    return _notebook(cells)


def _notebook(cells: dict) -> nbformat.NotebookNode:
    for cell_id, cell in cells.items():
        cell.id = cell_id
    return new_notebook(cells=list(cells.values()), metadata=METADATA)


def _cost(ablation: Ablation) -> str:
    """The forest plot's metrics argument: rel_l2 after Adam and at the end of the run (the default),
    and the goal when that is a cost."""
    return "" if ablation.goal == "rel_l2" else f', ["rel_l2_adam", "rel_l2", "{ablation.goal}"]'


def folder_of(ablation: Ablation) -> Path:
    """Where the notebook of `ablation` lives: ``notebooks/reproductions/`` or ``notebooks/ablations/``."""
    return REPRODUCTIONS if isinstance(ablation, Reproduction) else FOLDER


def write(ablation: Ablation, folder: Path | None = None) -> Path:
    """Render `ablation` to ``<folder>/<name>.ipynb`` (default `folder_of`), keeping the checked
    outputs of the file there."""
    path = Path(folder or folder_of(ablation)) / f"{ablation.name}.ipynb"
    notebook = render(ablation)
    if path.is_file():
        notebook = keep_checked_outputs(nbformat.read(path, as_version=4), notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def render_notebooks(only: Iterable[str] | None = None, folder: Path | None = None,
                     execute: bool = False) -> list[str]:
    """Write the notebooks of the ablations and reproductions `only` (default: all), into `folder`
    (default: each one's `folder_of`); one line per notebook says what was done. A notebook whose
    checked cell has no output yet (a new entry), or every one with `execute` (after a change of
    what its smoke profile runs), is executed once with its defaults, the smoke profile, to get
    it. Unknown names are a ConfigError."""
    lines = []
    for ablation in [entry(n) for n in (only or [*names(), *reproduction_names()])]:
        path = write(ablation, folder)
        checked = [c for c in nbformat.read(path, as_version=4).cells
                   if c.cell_type == "code" and c.source.startswith(CHECK_MARK)]
        if all(c.outputs for c in checked) and not execute:
            lines.append(f"rendered {path} (checked output kept)")
        else:
            refresh(path)
            lines.append(f"rendered {path} and executed it for its checked output")
    return lines
