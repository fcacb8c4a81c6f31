"""Running the study: an ablation's or reproduction's variants in-process (`run_variants`, what
each study notebook calls), every ablation notebook through papermill (`run_study`), then the
report notebook (`build_report`), and every reproduction notebook (`run_reproductions`), then
the reproductions' table.

`run_variants` runs variants x problems x seeds (registry: `cpikan.study.registry`) and writes
one run file each (`cpikan.study.store`); a run that raises leaves a ``failed`` file and the
others go on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from cpikan.config import ConfigError, check_profile
from cpikan.runs import RunResult, run_path, run_seeds
from cpikan.study import batch, published, reproductions
from cpikan.study.parameters import StudyParameters
from cpikan.study.registry import get, names, plan, variant_config
from cpikan.study.store import StudyRun, reusable


def run_variants(params: StudyParameters, progress: bool = True) -> list[StudyRun]:
    """Run the variants x problems x seeds of the ablation (or reproduction) and write one run file each.

    Each arm (a variant on a problem) trains its seeds as one batched run (`cpikan.run_seeds`): the
    seeds are ``params.first_seed`` .. ``params.first_seed + params.seed_count - 1``, the same for
    every arm, so arms are paired. An arm that raises an Exception leaves a ``failed`` file per seed
    (its error in the file) and the others go on; KeyboardInterrupt stops the batch, leaving the
    files written so far. With ``params.resume`` an ``ok`` file holding the same resolved config
    (threads aside) is reused, and an arm trains only its seeds without one (never another
    ablation's baseline: its times would not pair). Variants for CUDA only (on a CPU) or for other
    profiles are left out. Returns the runs in order: problem, variant, seed.
    """
    ablation = reproductions.entry(params.ablation)
    cuda = params.device.startswith("cuda") or (params.device == "auto" and torch.cuda.is_available())
    variants = [v for v in ablation.variants if (cuda or not v.cuda_only) and params.profile in v.profiles]
    seeds = list(range(params.first_seed, params.first_seed + params.seed_count))
    arms = [(p, v) for p in params.problem_list for v in variants]
    out = []
    for problem, variant in tqdm(arms, desc=ablation.name, disable=not progress, leave=False):
        configs = {seed: variant_config(ablation, variant, problem, params.profile, seed, params.device,
                                        params.threads) for seed in seeds}
        paths = {seed: run_path(params.results_dir, params.profile, ablation.name, problem, variant.name, seed)
                 for seed in seeds}
        done = {seed: reusable(paths[seed], configs[seed]) if params.resume else None for seed in seeds}
        todo = [seed for seed in seeds if done[seed] is None]
        if todo:
            try:
                results = run_seeds(configs[todo[0]], todo, progress=False)
            except Exception as err:
                results = [RunResult.failed(configs[seed], err) for seed in todo]
            for seed, result in zip(todo, results):
                done[seed] = result
                result.save(paths[seed])
        out += [StudyRun(ablation.name, problem, variant.name, seed, paths[seed], done[seed]) for seed in seeds]
    return out


def run_study(profile: str, only: Sequence[str] | None = None, seeds: int | None = None, jobs: int = 1,
              executor: str = "local", address: str | None = None, root: str | os.PathLike = "reports",
              notebooks: str | os.PathLike | None = None, first_seed: int = 0) -> list[batch.NotebookOutcome]:
    """Execute the ablation notebooks of `profile` with papermill into ``<root>/<profile>/notebooks/``.

    Args:
        only: ablation names (default: all, in registry order).
        seeds: seeds per arm (default: each ablation's for the profile).
        first_seed: the arms' seeds are first_seed, first_seed + 1, ... (another study on other seeds:
            another first seed).
        jobs: notebooks executed at once; with more than one, each run uses one torch thread.
        executor: "local", or "dask" to submit the notebooks to a Dask cluster at `address` (a
            LocalCluster of `jobs` workers when None). Workers must see `root` and `notebooks`.
        notebooks: folder holding ``ablations/<name>.ipynb`` (default: the checkout's notebooks/).
    Runs already done are skipped (resume); a failing notebook is recorded and the batch goes on.
    The costliest notebooks start first. Returns one outcome per notebook, in registry order,
    also written to ``<root>/<profile>/notebooks/batch.json``.
    """
    check_profile(profile)
    chosen = [get(name).name for name in (only or names())]
    work = {row["ablation"]: row["work"] for row in plan(profile)}
    longest_first = sorted(chosen, key=lambda name: -work[name])  # fewer idle workers at the end
    return _execute_notebooks("ablations", chosen, longest_first, "batch.json", profile, seeds, jobs, executor,
                              address, root, notebooks, first_seed)


def run_reproductions(profile: str, only: Sequence[str] | None = None, seeds: int | None = None, jobs: int = 1,
                      executor: str = "local", address: str | None = None, root: str | os.PathLike = "reports",
                      notebooks: str | os.PathLike | None = None, first_seed: int = 0) -> list[batch.NotebookOutcome]:
    """Execute the reproduction notebooks of `profile` (``notebooks/reproductions/<name>.ipynb``,
    `cpikan.study.reproductions`) like `run_study` does the ablations' (same arguments, resume,
    outcomes in ``<root>/<profile>/notebooks/reproductions.json``), in registry order; then write
    ``<root>/<profile>/tables/reproductions.csv|md`` (`cpikan.study.published.write_tables`).
    """
    check_profile(profile)
    chosen = [reproductions.get(name).name for name in (only or reproductions.names())]
    outcomes = _execute_notebooks("reproductions", chosen, chosen, "reproductions.json", profile, seeds, jobs,
                                  executor, address, root, notebooks, first_seed)
    for path in published.write_tables(root, profile):
        print(f"wrote {path}")
    return outcomes


def _execute_notebooks(kind: str, chosen: list[str], order: list[str], record: str, profile: str,
                       seeds: int | None, jobs: int, executor: str, address: str | None,
                       root: str | os.PathLike, notebooks: str | os.PathLike | None,
                       first_seed: int) -> list[batch.NotebookOutcome]:
    """Execute ``<notebooks>/<kind>/<name>.ipynb`` for the `chosen` names, started in `order`,
    into ``<root>/<profile>/notebooks/``; outcomes in `chosen` order, also written to `record` there."""
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} must be a positive int")
    source = Path(notebooks) if notebooks is not None else batch.NOTEBOOKS
    if not (source / kind).is_dir():
        raise ConfigError(f"no notebook folder {source / kind}; run from a cpikan checkout or pass notebooks=")
    out_dir = Path(root).resolve() / profile / "notebooks"
    params = {"profile": profile, "seeds": seeds, "first_seed": first_seed, "device": "auto",
              "results_dir": str(Path(root).resolve()), "threads": 1 if jobs > 1 else None, "resume": True}
    todo = [batch.NotebookJob(name, source / kind / f"{name}.ipynb", out_dir / f"{name}.ipynb", params)
            for name in order]
    done = batch.execute_all(todo, workers=jobs, executor=executor, address=address)
    outcomes = sorted(done, key=lambda o: chosen.index(o.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / record).write_text(json.dumps([o.to_json() for o in outcomes], indent=1))
    print(batch.describe(outcomes))
    return outcomes


def build_report(profile: str, root: str | os.PathLike = "reports", notebooks: str | os.PathLike | None = None) -> Path:
    """Execute ``report.ipynb`` for `profile`; it writes ``<root>/<profile>/report.html`` and ``tables/``.

    Returns the path of report.html; raises when the report notebook fails.
    """
    check_profile(profile)
    source = Path(notebooks) if notebooks is not None else batch.NOTEBOOKS
    root = Path(root).resolve()
    job = batch.NotebookJob("report", source / "report.ipynb", root / profile / "notebooks" / "report.ipynb",
                            {"profile": profile, "results_dir": str(root)})
    outcome = batch.execute(job)
    if outcome.status != "ok":
        raise RuntimeError(f"the report notebook failed; see {outcome.output}: {outcome.error}")
    return root / profile / "report.html"
