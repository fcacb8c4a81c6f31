"""Shared fixtures: one torch thread (tests run beside other work on 2 cores), a private cache, and
a bare venv (torch, numpy, scipy only) for the checks of what runs without the study extra."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# What a bare `pip install .` brings: the three dependencies and what they need in turn.
BARE = ("torch", "torchgen", "functorch", "numpy", "numpy.libs", "scipy", "scipy.libs", "sympy", "mpmath",
        "networkx", "jinja2", "markupsafe", "fsspec", "filelock", "typing_extensions.py")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("CPIKAN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> Path:
    """A venv whose site holds only the bare install's packages (linked from this one) and cpikan."""
    root = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    site = root / "site"
    site.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for name in BARE:
        if (ours / name).exists():
            (site / name).symlink_to(ours / name)
    python = root / "venv" / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    Path(venv_site, "bare.pth").write_text(f"{site}\n{ROOT}\n")
    return python
