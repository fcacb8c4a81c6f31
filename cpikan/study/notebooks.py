"""Ablation notebooks rendered from their registry entries.

Every ablation notebook is the same nine cells around its entry's text (title, intro, problems
and why, figure call, story) and the parameters cell of `StudyParameters`. `render` builds one;
`render_notebooks` (``cpikan study render``) writes them, keeping the committed output of the
checked cell that nbval compares. A new ablation is one registry entry, then ``cpikan study render``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cpikan.study.batch import CHECK_MARK, NOTEBOOKS, keep_checked_outputs, refresh
from cpikan.study.parameters import StudyParameters, parameters_cell
from cpikan.study.registry import Ablation, get, names

FOLDER = NOTEBOOKS / "ablations"
METADATA = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}
RUNS = ("## Runs\n\nOne run file per variant, problem and seed "
        "(`<results_dir>/<profile>/runs/<ablation>/<problem>/<variant>/seed<k>.json`); a run that fails is "
        "recorded as failed and the others go on.")
SUMMARY = ("## Summary\n\nThe most accurate variant per problem and its relative L2 error against the baseline's "
           "(one significant digit, so the line is stable from run to run).")


def render(ablation: Ablation) -> nbformat.NotebookNode:
    """The notebook of `ablation`, without outputs. Cell ids are fixed names, so the same entry
    always gives the same file."""
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
        "summary-heading": new_markdown_cell(SUMMARY),
        "summary": new_code_cell(f"{CHECK_MARK}\nprint(report.summary(runs))"),
    }
    for cell_id, cell in cells.items():
        cell.id = cell_id
    return new_notebook(cells=list(cells.values()), metadata=METADATA)


def write(ablation: Ablation, folder: Path = FOLDER) -> Path:
    """Render `ablation` to ``<folder>/<name>.ipynb``, keeping the checked outputs of the file there."""
    path = Path(folder) / f"{ablation.name}.ipynb"
    notebook = render(ablation)
    if path.is_file():
        notebook = keep_checked_outputs(nbformat.read(path, as_version=4), notebook)
    nbformat.write(notebook, path)
    return path


def render_notebooks(only: Iterable[str] | None = None, folder: Path = FOLDER) -> list[str]:
    """Write the notebooks of the ablations `only` (default: all); one line per notebook says what
    was done. A notebook whose checked cell has no output yet (a new ablation) is executed once
    with its defaults, the smoke profile, to get it. Unknown names are a ConfigError."""
    lines = []
    for ablation in [get(n) for n in (only or names())]:
        path = write(ablation, folder)
        checked = [c for c in nbformat.read(path, as_version=4).cells
                   if c.cell_type == "code" and c.source.startswith(CHECK_MARK)]
        if all(c.outputs for c in checked):
            lines.append(f"rendered {path} (checked output kept)")
        else:
            refresh(path)
            lines.append(f"rendered {path} and executed it for its checked output")
    return lines
