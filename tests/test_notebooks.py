"""Ablation notebooks are renderings of their registry entries; rendering keeps checked outputs."""

import nbformat
import papermill
import pytest
from nbformat.v4 import new_output

from cpikan.config import ConfigError
from cpikan.study import figures, get, names, notebooks, reproductions
from cpikan.study.batch import CHECK_MARK

FOLDER = notebooks.FOLDER
ENTRIES = [*names(), *reproductions.names()]


def _inputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` without outputs and execution counts."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def test_there_is_one_notebook_per_ablation_and_per_reproduction():
    assert sorted(p.stem for p in FOLDER.glob("*.ipynb")) == sorted(names())
    assert sorted(p.stem for p in notebooks.REPRODUCTIONS.glob("*.ipynb")) == sorted(reproductions.names())


@pytest.mark.parametrize("name", ENTRIES)
def test_committed_notebook_equals_its_rendering(name):
    entry = reproductions.entry(name)
    path = notebooks.folder_of(entry) / f"{name}.ipynb"
    committed = nbformat.read(path, as_version=4)
    assert _inputs(committed) == _inputs(notebooks.render(entry)), \
        f"{path} differs from its registry entry: run `cpikan study render --only {name}`"


@pytest.mark.parametrize("name", ENTRIES)
def test_rendering_is_valid_deterministic_and_calls_a_figure_function(name):
    entry = reproductions.entry(name)
    nb = notebooks.render(entry)
    nbformat.validate(nb)
    assert nb == notebooks.render(entry)
    function = entry.figure.split("(")[0]
    assert function.startswith("figures.") and callable(getattr(figures, function.removeprefix("figures."), None))


@pytest.mark.parametrize("name", reproductions.names())
def test_a_reproduction_notebook_states_its_reference_numbers_and_differences(name):
    entry = reproductions.get(name)
    intro = notebooks.render(entry).cells[0].source
    assert intro.startswith(f"# Reproduction: {entry.title}")
    for text in (entry.paper, entry.code, *entry.differences, *(p.source for p in entry.published.values())):
        assert text in intro
    sources = [c.source for c in notebooks.render(entry).cells]
    assert sources[1].startswith("## What the quick profile found\n\n" + (entry.finding or "Not run yet."))
    assert any("published.table(runs, entry)" in s for s in sources)
    assert "figures.against_published(runs, entry)" in sources
    assert sources[-1].startswith(CHECK_MARK) and "published.summary(runs, entry)" in sources[-1]


def test_the_parameters_cell_declares_the_study_parameters_with_help(tmp_path):
    path = notebooks.write(get("amp"), tmp_path)
    declared = papermill.inspect_notebook(str(path))
    assert list(declared) == ["profile", "seeds", "first_seed", "problems", "device", "results_dir", "threads", "resume"]
    assert declared["seeds"]["inferred_type_name"] == "Optional[int]"
    assert declared["profile"]["default"] == '"smoke"'
    assert declared["results_dir"]["help"] == "results root: runs go to <results_dir>/<profile>/runs/amp/"


def test_write_keeps_the_checked_output_and_nothing_else(tmp_path):
    path = notebooks.write(get("amp"), tmp_path)
    nb = nbformat.read(path, as_version=4)
    for count, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.outputs, cell.execution_count = [new_output("stream", name="stdout", text=f"{count}\n")], count + 1
    nbformat.write(nb, path)
    notebooks.write(get("amp"), tmp_path)
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert [c.outputs for c in code[:-1]] == [[]] * (len(code) - 1)
    assert code[-1].source.startswith(CHECK_MARK)
    assert code[-1].outputs[0].text == f"{len(code) - 1}\n" and code[-1].execution_count == len(code)


def test_render_rejects_an_unknown_ablation(tmp_path):
    with pytest.raises(ConfigError, match="unknown ablation 'clip'; valid: grad_clip"):
        notebooks.render_notebooks(["clip"], tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_new_notebook_is_executed_for_its_checked_output(tmp_path):
    folder = tmp_path / "notebooks" / "ablations"  # the default results_dir, ../../reports, stays in tmp_path
    folder.mkdir(parents=True)
    [line] = notebooks.render_notebooks(["grad_clip"], folder)
    assert line.endswith("executed it for its checked output")
    checked = nbformat.read(folder / "grad_clip.ipynb", as_version=4).cells[-1]
    assert checked.outputs and checked.outputs[0].text.startswith("poisson1d: best ")
    assert list((tmp_path / "reports" / "smoke" / "runs" / "grad_clip").rglob("seed0.json"))
    assert notebooks.render_notebooks(["grad_clip"], folder) == [
        f"rendered {folder / 'grad_clip.ipynb'} (checked output kept)"]
    stale = nbformat.read(folder / "grad_clip.ipynb", as_version=4)
    stale.cells[-1].outputs[0].text = "helmholtz2d: what an earlier smoke problem printed\n"
    nbformat.write(stale, folder / "grad_clip.ipynb")
    [line] = notebooks.render_notebooks(["grad_clip"], folder, execute=True)  # cpikan study render --execute
    assert line.endswith("executed it for its checked output")
    assert nbformat.read(folder / "grad_clip.ipynb", as_version=4).cells[-1].outputs[0].text == checked.outputs[0].text
