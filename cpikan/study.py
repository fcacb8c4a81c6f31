"""The ablation study: notebook parameters, runs of variants, the results store, the batch.

Every run is one file::

    <results_dir>/<profile>/runs/<ablation>/<problem>/<variant>/seed<k>.json   (`cpikan.runs.run_path`)

`run_variants` runs an ablation's variants x problems x seeds (registry: `cpikan.ablations`) and
writes those files; a run that raises leaves a ``failed`` file and the others go on. `run_study`
executes the ablation notebooks with papermill (see `cpikan.batch`); `build_report` executes the
report notebook.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from cpikan import batch
from cpikan import problems as registry
from cpikan.ablations import (ABLATIONS, BASELINE, CHOSEN, TOGGLES, Ablation, Variant, get, names, plan,
                              variant_config)
from cpikan.config import PROFILES, ConfigError, RunConfig, resolve
from cpikan.runs import RunResult, build_problem, run, run_path

__all__ = ["ABLATIONS", "BASELINE", "CHOSEN", "TOGGLES", "Ablation", "StudyParameters", "StudyRun", "Variant",
           "build_report", "get", "load_runs", "names", "parameters", "plan", "run_study", "run_variants",
           "variant_config"]


# ---------------------------------------------------------------- notebook parameters

@dataclass(frozen=True)
class StudyParameters:
    """The parameters cell of every ablation notebook (`ablation` is fixed by the notebook).

    profile: size profile; seeds: seeds per run (None: the ablation's for the profile);
    problems: problems to run (None: the ablation's for the profile); device: 'auto', 'cpu',
    'cuda' or 'cuda:N'; results_dir: results root; threads: torch CPU threads per run (1: the
    same numbers on any machine; None: torch's setting); resume: reuse ok run files of the same config instead of running again.
    """

    ablation: str
    profile: str = "smoke"
    seeds: int | None = None
    problems: list[str] | None = None
    device: str = "auto"
    results_dir: str = "../../reports"
    threads: int | None = 1
    resume: bool = False

    def __post_init__(self) -> None:
        get(self.ablation)
        if self.profile not in PROFILES:
            raise ConfigError(f"notebook parameter profile={self.profile!r} is not valid; choose one of "
                              f"{', '.join(PROFILES)}")
        for key in ("seeds", "threads"):
            value = getattr(self, key)
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"notebook parameter {key}={value!r} is not valid: a positive int or None")
        if self.problems is not None:
            if not isinstance(self.problems, (list, tuple)) or not self.problems:
                raise ConfigError(f"notebook parameter problems={self.problems!r} is not valid: a non-empty "
                                  f"list of problem names or None; valid names: {', '.join(registry.names())}")
            for problem in self.problems:
                registry.check(problem)
        if not isinstance(self.device, str):
            raise ConfigError(f"notebook parameter device={self.device!r} is not valid: "
                              "'auto', 'cpu', 'cuda' or 'cuda:N'")
        RunConfig(device=self.device)
        if not isinstance(self.results_dir, str) or not self.results_dir:
            raise ConfigError(f"notebook parameter results_dir={self.results_dir!r} must be a folder path")
        if not isinstance(self.resume, bool):
            raise ConfigError(f"notebook parameter resume={self.resume!r} is not valid: True or False")

    @property
    def problem_list(self) -> list[str]:
        return list(self.problems or get(self.ablation).problems[self.profile])

    @property
    def seed_count(self) -> int:
        return self.seeds or get(self.ablation).seeds[self.profile]


def parameters(ablation: str, namespace: Mapping[str, Any]) -> StudyParameters:
    """The checked parameters of ablation notebook `ablation`, read from its ``globals()``.

    Raises ConfigError for an unknown parameter (one papermill injected under a name the
    parameters cell does not declare: papermill itself only warns) or a bad value.
    """
    return batch.notebook_parameters(StudyParameters, namespace, ablation=ablation)


# ---------------------------------------------------------------- runs

@dataclass
class StudyRun:
    """One run of the study: where it sits in the store and what it produced (`result.status`)."""

    ablation: str
    problem: str
    variant: str
    seed: int
    path: Path
    result: RunResult


def run_variants(params: StudyParameters, progress: bool = True) -> list[StudyRun]:
    """Run the ablation's variants x problems x seeds and write one run file each.

    A run that raises an Exception is saved as ``failed`` (its error in the file) and the others
    go on; KeyboardInterrupt stops the batch, leaving the files written so far. With
    ``params.resume`` an ``ok`` file holding the same resolved config (threads aside) is reused
    instead of running again; a baseline run may be reused from another ablation's folder.
    Variants for CUDA only (on a CPU) or for other profiles are left out.
    Returns the runs in order: problem, variant, seed.
    """
    ablation = get(params.ablation)
    cuda = params.device.startswith("cuda") or (params.device == "auto" and torch.cuda.is_available())
    variants = [v for v in ablation.variants if (cuda or not v.cuda_only) and params.profile in v.profiles]
    todo = [(p, v, s) for p in params.problem_list for v in variants for s in range(params.seed_count)]
    out = []
    for problem, variant, seed in tqdm(todo, desc=ablation.name, disable=not progress, leave=False):
        cfg = variant_config(ablation, variant, problem, params.profile, seed, params.device, params.threads)
        path = run_path(params.results_dir, params.profile, ablation.name, problem, variant.name, seed)
        result = _reusable(path, cfg, variant.name == BASELINE) if params.resume else None
        if result is None:
            try:
                result = run(cfg, progress=False)
            except Exception as err:
                result = RunResult.failed(cfg, err)
        result.save(path)
        out.append(StudyRun(ablation.name, problem, variant.name, seed, path, result))
    return out


def _reusable(path: Path, cfg: RunConfig, baseline: bool) -> RunResult | None:
    """An ok run of `cfg` already in the store: at `path`, or (baselines) another ablation's baseline."""
    candidates = [path]
    if baseline:
        runs = path.parents[3]  # <root>/<profile>/runs
        candidates += sorted(runs.glob(f"*/{path.parent.parent.name}/{BASELINE}/{path.name}"))
    wanted = _comparable(resolve(cfg, build_problem(cfg)))
    for candidate in candidates:
        try:
            result = RunResult.load(candidate)
            if result.status == "ok" and _comparable(RunConfig.from_dict(result.config)) == wanted:
                return result
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _comparable(cfg: RunConfig) -> dict:
    return cfg.override({"threads": None}).to_dict()


def load_runs(results_dir: str | os.PathLike, profile: str, ablation: str | None = None) -> list[StudyRun]:
    """Every run file of a profile (or of one ablation) in the store, in registry order."""
    runs_dir = Path(results_dir) / profile / "runs"
    pattern = f"{ablation or '*'}/*/*/seed*.json"
    found = []
    for path in runs_dir.glob(pattern):
        name, problem, variant = path.parts[-4:-1]
        try:
            result = RunResult.load(path)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"run file {path} cannot be read ({err}); delete it or run the study again") from None
        found.append(StudyRun(name, problem, variant, int(path.stem[4:]), path, result))
    return sorted(found, key=_order)


def _order(r: StudyRun) -> tuple:
    ablation = ABLATIONS.get(r.ablation)
    names_ = [v.name for v in ablation.variants] if ablation else []
    problems_ = registry.names()
    return (list(ABLATIONS).index(r.ablation) if ablation else len(ABLATIONS), r.ablation,
            problems_.index(r.problem) if r.problem in problems_ else len(problems_), r.problem,
            names_.index(r.variant) if r.variant in names_ else len(names_), r.variant, r.seed)


def run_study(profile: str, only: Sequence[str] | None = None, seeds: int | None = None, jobs: int = 1,
              executor: str = "local", address: str | None = None, root: str | os.PathLike = "reports",
              notebooks: str | os.PathLike | None = None) -> list[batch.NotebookOutcome]:
    """Execute the ablation notebooks of `profile` with papermill into ``<root>/<profile>/notebooks/``.

    Args:
        only: ablation names (default: all, in registry order).
        seeds: seeds per run (default: each ablation's for the profile).
        jobs: notebooks executed at once; with more than one, each run uses one torch thread.
        executor: "local", or "dask" to submit the notebooks to a Dask cluster at `address` (a
            LocalCluster of `jobs` workers when None). Workers must see `root` and `notebooks`.
        notebooks: folder holding ``ablations/<name>.ipynb`` (default: the checkout's notebooks/).
    Runs already done are skipped (resume); a failing notebook is recorded and the batch goes on.
    The costliest notebooks start first. Returns one outcome per notebook, in registry order,
    also written to ``<root>/<profile>/notebooks/batch.json``.
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is not valid; choose one of {', '.join(PROFILES)}")
    if jobs < 1:
        raise ConfigError(f"jobs={jobs} must be a positive int")
    chosen = [get(name).name for name in (only or names())]
    source = Path(notebooks) if notebooks is not None else batch.NOTEBOOKS
    if not (source / "ablations").is_dir():
        raise ConfigError(f"no notebook folder {source / 'ablations'}; run from a cpikan checkout or pass notebooks=")
    out_dir = Path(root).resolve() / profile / "notebooks"
    params = {"profile": profile, "seeds": seeds, "device": "auto", "results_dir": str(Path(root).resolve()),
              "threads": 1 if jobs > 1 else None, "resume": True}
    work = {row["ablation"]: row["work"] for row in plan(profile)}
    longest_first = sorted(chosen, key=lambda name: -work[name])  # fewer idle workers at the end
    todo = [batch.NotebookJob(name, source / "ablations" / f"{name}.ipynb", out_dir / f"{name}.ipynb", params)
            for name in longest_first]
    done = batch.execute_all(todo, workers=jobs, executor=executor, address=address)
    outcomes = sorted(done, key=lambda o: chosen.index(o.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "batch.json").write_text(json.dumps([o.to_json() for o in outcomes], indent=1))
    print(batch.describe(outcomes))
    return outcomes


def build_report(profile: str, root: str | os.PathLike = "reports", notebooks: str | os.PathLike | None = None) -> Path:
    """Execute ``report.ipynb`` for `profile`; it writes ``<root>/<profile>/report.html`` and ``tables/``.

    Returns the path of report.html; raises when the report notebook fails.
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is not valid; choose one of {', '.join(PROFILES)}")
    source = Path(notebooks) if notebooks is not None else batch.NOTEBOOKS
    root = Path(root).resolve()
    job = batch.NotebookJob("report", source / "report.ipynb", root / profile / "notebooks" / "report.ipynb",
                            {"profile": profile, "results_dir": str(root)})
    outcome = batch.execute(job)
    if outcome.status != "ok":
        raise RuntimeError(f"the report notebook failed; see {outcome.output}: {outcome.error}")
    return root / profile / "report.html"
