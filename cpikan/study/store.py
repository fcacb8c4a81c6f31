"""The results store: one run file per (ablation, problem, variant, seed), read back as `StudyRun`.

Paths come from `cpikan.runs.run_path`::

    <results_dir>/<profile>/runs/<ablation>/<problem>/<variant>/seed<k>.json
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cpikan import problems as registry
from cpikan.config import ConfigError, RunConfig, resolve
from cpikan.runs import RunResult, build_problem
from cpikan.study.registry import ABLATIONS
from cpikan.study.reproductions import REPRODUCTIONS


@dataclass
class StudyRun:
    """One run of the study: where it sits in the store and what it produced (`result.status`)."""

    ablation: str
    problem: str
    variant: str
    seed: int
    path: Path
    result: RunResult


def reusable(path: Path, cfg: RunConfig) -> RunResult | None:
    """The ok run of `cfg` already at `path` (a batch resuming), else None. A baseline is never
    taken from another ablation's folder: its times were taken in another notebook, under another
    load, and would not pair with this ablation's variants."""
    try:
        result = RunResult.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = _comparable(RunConfig.from_dict(result.config)) == _comparable(resolve(cfg, build_problem(cfg)))
    return result if result.status == "ok" and same else None


def _comparable(cfg: RunConfig) -> dict:
    return cfg.override({"threads": None}).to_dict()


def load_runs(results_dir: str | os.PathLike, profile: str, ablation: str | None = None) -> list[StudyRun]:
    """Every run file of a profile (or of one ablation or reproduction) in the store, in registry
    order: the ablations', then the reproductions'."""
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
    entries = [*ABLATIONS, *REPRODUCTIONS]
    ablation = ABLATIONS.get(r.ablation) or REPRODUCTIONS.get(r.ablation)
    names_ = [v.name for v in ablation.variants] if ablation else []
    problems_ = registry.names()
    return (entries.index(r.ablation) if ablation else len(entries), r.ablation,
            problems_.index(r.problem) if r.problem in problems_ else len(problems_), r.problem,
            names_.index(r.variant) if r.variant in names_ else len(names_), r.variant, r.seed)
