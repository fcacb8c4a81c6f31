"""Executing notebooks with papermill: one at a time, several at once, or on a Dask cluster.

Also the parameters-cell contract: papermill only warns when it is given a parameter the notebook
does not declare, so `notebook_parameters` turns that into an error, and `keep_checked_outputs`
makes a notebook commit-ready (only the ``# NBVAL_CHECK_OUTPUT`` cells keep their outputs).

Refresh the committed outputs of notebooks after a change::

    python -m cpikan.study.batch notebooks/ablations/*.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat
from tqdm.auto import tqdm

from cpikan.config import ConfigError
from cpikan.spectral import cache_dir

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


# ---------------------------------------------------------------- execution

@dataclass(frozen=True)
class NotebookJob:
    """Execute `source` with `parameters` into `output` (the kernel starts in `source`'s folder)."""

    name: str
    source: Path
    output: Path
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class NotebookOutcome:
    name: str
    output: str
    status: str = "ok"
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def execute(job: NotebookJob) -> NotebookOutcome:
    """Run one notebook with papermill in a child process; a failure is returned, not raised.

    A child process keeps each execution's kernel client and event loop out of the caller (a
    thread of this process or a Dask worker). The error is the first failing cell's, read back
    from the executed notebook.
    """
    output = Path(job.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)  # an old notebook's error must not be read back as this one's
    started = time.perf_counter()
    outcome = NotebookOutcome(job.name, str(output))
    if not Path(job.source).is_file():
        outcome.status, outcome.error = "failed", f"FileNotFoundError: notebook {job.source} does not exist"
        return outcome
    command = [sys.executable, "-m", "papermill", str(job.source), str(output), "--cwd", str(Path(job.source).parent),
               "-y", json.dumps(dict(job.parameters)), "--no-progress-bar", "--log-level", "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, env=notebook_environment())
    if done.returncode != 0:
        outcome.status = "failed"
        outcome.error = _cell_error(output) or (done.stderr.strip().splitlines() or ["papermill failed"])[-1]
    outcome.seconds = time.perf_counter() - started
    return outcome


def notebook_environment() -> dict[str, str]:
    """A notebook process's environment: this process's, with Inductor's on-disk compile cache in
    ``$CPIKAN_CACHE/inductor`` (default ``~/.cache/cpikan/inductor``) unless TORCHINDUCTOR_CACHE_DIR
    is set. `train.compile` then compiles a graph once per machine, not once per notebook process
    (torch's own default, a folder in the system's temp dir, may not outlive the machine's session)."""
    return {"TORCHINDUCTOR_CACHE_DIR": str(cache_dir() / "inductor"), **os.environ}


def _cell_error(path: Path) -> str | None:
    """``ename: evalue`` of the first error output in the executed notebook, if any."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                return f"{out.ename}: {out.evalue}"
    return None


EXECUTORS = ("local", "dask")


def execute_all(jobs: Iterable[NotebookJob], workers: int = 1, executor: str = "local",
                address: str | None = None, progress: bool | None = None) -> list[NotebookOutcome]:
    """Execute notebooks, `workers` at once, with a progress bar over notebooks.

    executor "local": `workers` child processes at once (one papermill each).
    executor "dask": futures on the Dask scheduler at `address`, or on a LocalCluster of
    `workers` single-threaded workers when `address` is None.
    Outcomes come back in the order of `jobs`; a failing notebook does not stop the others.
    """
    jobs = list(jobs)
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not valid; choose one of {', '.join(EXECUTORS)}")
    bar = tqdm(total=len(jobs), desc="notebooks", unit="nb", disable=None if progress is None else not progress)
    try:
        if executor == "dask":
            return _on_dask(jobs, workers, address, bar)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(execute, job) for job in jobs]
            outcomes = []
            for future in futures:
                outcomes.append(future.result())
                bar.update(1)
            return outcomes
    finally:
        bar.close()


def _on_dask(jobs: list[NotebookJob], workers: int, address: str | None, bar: tqdm) -> list[NotebookOutcome]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        address = cluster.scheduler_address
    try:
        with Client(address) as client:
            futures = {client.submit(execute, job, pure=False): i for i, job in enumerate(jobs)}
            outcomes: list[NotebookOutcome | None] = [None] * len(jobs)
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                bar.update(1)
            return outcomes
    finally:
        if cluster is not None:
            cluster.close()


def describe(outcomes: list[NotebookOutcome]) -> str:
    """One line per notebook (status, seconds, output), then the failures with their errors."""
    lines = [f"{o.status:<6} {o.seconds:7.1f} s  {o.output}" for o in outcomes]
    failed = [o for o in outcomes if o.status != "ok"]
    lines.append(f"{len(outcomes) - len(failed)} of {len(outcomes)} notebooks ran"
                 + "".join(f"\nfailed: {o.name}: {o.error}" for o in failed))
    return "\n".join(lines)


# ---------------------------------------------------------------- commit-ready notebooks

def keep_checked_outputs(executed: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`source` with every output and execution count cleared except `executed`'s checked cells'.

    Cells are matched by id (papermill's injected cell is ignored); checked cells are those whose
    source starts with ``# NBVAL_CHECK_OUTPUT``. They keep their execution count: nbval refuses a
    reference cell that has outputs but no count.
    """
    ran = {c.get("id"): c for c in executed.cells if c.cell_type == "code"}
    clean = nbformat.from_dict(source)
    for cell in clean.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count, cell.outputs = None, []
        if cell.source.startswith(CHECK_MARK) and cell.get("id") in ran:
            cell.execution_count = ran[cell.id].execution_count
            cell.outputs = ran[cell.id].outputs
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    return clean


def refresh(path: str | Path) -> None:
    """Execute the notebook at `path` with its defaults and keep only its checked outputs."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        outcome = execute(NotebookJob(path.stem, path, Path(tmp) / path.name))
        if outcome.status != "ok":
            raise RuntimeError(f"{path} failed: {outcome.error}")
        executed = nbformat.read(outcome.output, as_version=4)
    nbformat.write(keep_checked_outputs(executed, nbformat.read(path, as_version=4)), path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        refresh(name)
        print(f"refreshed {name}")
