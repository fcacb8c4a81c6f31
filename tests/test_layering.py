"""The core imports no wing, and a bare install (torch, numpy, scipy only; `bare_python` in conftest) trains
and runs the CLI."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cpikan"
WINGS = ("cpikan.study", "cpikan.explorer")
STUDY_STACK = ("pandas", "plotly", "ipywidgets", "anywidget", "papermill", "nbformat", "dask", "tabulate",
               "IPython", "jupyterlab")
OPTIONAL = ("tqdm",)  # progress bars when present (cpikan.progress); the bare venv lacks it too
# The CLI is the one core module that dispatches to a wing (`cpikan study`), and only lazily.
DISPATCHER = PACKAGE / "cli.py"


def core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not any(p.is_relative_to(PACKAGE / w.split(".")[1])
                                                               for w in WINGS))


def imported_names(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_wing(path):
    names = imported_names(path, top_level_only=path == DISPATCHER)
    assert not [n for n in names if n.startswith(WINGS) or n.split(".")[0] in STUDY_STACK]


def test_importing_the_core_loads_no_wing_and_no_study_stack():
    code = ("import sys, cpikan, cpikan.cli, cpikan.bench, cpikan.derivatives\n"
            f"print(sorted(m for m in sys.modules if m.startswith({WINGS!r}) or m.split('.')[0] in {STUDY_STACK!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_bare_venv_lacks_the_study_stack(bare_python):
    for module in STUDY_STACK + OPTIONAL:
        done = subprocess.run([str(bare_python), "-c", f"import {module}"], capture_output=True, text=True)
        assert done.returncode != 0, f"{module} is importable in the bare venv"


@pytest.mark.slow
def test_bare_install_runs_the_cli(bare_python, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(bare_python), "-m", "cpikan.cli", "run", "--problem", "poisson1d", "--profile", "smoke",
                           "--device", "cpu", "--quiet", "--set", "threads=1", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rel_l2" in done.stdout and list(tmp_path.glob("*.json"))


def test_bare_install_explains_the_study_extra(bare_python, tmp_path):
    done = subprocess.run([str(bare_python), "-m", "cpikan.cli", "study", "run", "--profile", "smoke"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "pip install 'cpikan[study]'" in done.stderr
