"""environment.yml and pyproject.toml name the same dependencies with the same bounds."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def _split(requirement: str) -> tuple[str, str]:
    name, bounds = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)$", requirement.strip()).groups()
    return name.lower(), bounds.replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["study"]
                  + project["optional-dependencies"]["test"])
    if "dask" in wanted:
        wanted["distributed"] = wanted["dask"]
    conda = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^\s{2}- ([A-Za-z][\w.-]*)(.*)$", line)
        if match and match.group(1) not in ("python", "pip"):
            conda[match.group(1).lower()] = match.group(2).replace(" ", "")
    expected = {CONDA_NAMES.get(name, name): bounds for name, bounds in wanted.items()}
    assert conda == expected


def test_environment_installs_the_project_with_pip():
    text = (ROOT / "environment.yml").read_text()
    assert "- -e .[study,test]" in text
