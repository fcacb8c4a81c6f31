"""`cpikan bench seeds`: member-steps per second of S seeds trained as one batched run
(`cpikan.run_seeds`) against the same S seeds trained one after another (`cpikan.run`), both
measured in the same invocation, at a problem's quick sizes.

A member-step is one member's Adam epoch or L-BFGS evaluation. Two phases: ``adam`` (the Adam
phase alone, `train.epochs` steps) and ``whole`` (Adam, then L-BFGS: the runs the study makes).
Times are the runs' own training times (``adam_time_s``, ``lbfgs_time_s``: set-up, scoring and
evaluation left out), so the rates compare training steps, not start-up. On a CPU every run uses
one torch thread, as the study's runs do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from cpikan.config import RunConfig
from cpikan.runs import RunResult, pick_device, run, run_seeds

PROBLEMS = ("poisson1d", "helmholtz2d", "diffusion1d")
MEMBERS = (1, 2, 4, 8, 16)
HEADER = (f"{'problem':<13} {'phase':<6} {'S':>3} {'batched steps/s':>16} {'separate steps/s':>17} "
          f"{'speed-up':>9} {'ms/epoch batched':>17}")


@dataclass(frozen=True)
class SeedRow:
    """One measurement: `members` seeds of `problem`, `phase` "adam" or "whole"."""

    problem: str
    phase: str
    members: int
    batched: float  # member-steps per second, one batched run
    separate: float  # member-steps per second, the seeds one after another
    ms_per_epoch: float  # the batched run's time per Adam epoch

    @property
    def speedup(self) -> float:
        return self.batched / self.separate

    def line(self) -> str:
        return (f"{self.problem:<13} {self.phase:<6} {self.members:>3} {self.batched:>16.1f} {self.separate:>17.1f} "
                f"{self.speedup:>8.2f}x {self.ms_per_epoch:>17.2f}")


def member_steps(results: Sequence[RunResult]) -> int:
    """Adam epochs and L-BFGS evaluations of every member of `results`."""
    return sum(r.metrics["epochs_run"] + r.metrics["lbfgs_iterations"] for r in results)


def training_seconds(result: RunResult) -> float:
    """The training time of a run (a batched run's members share its clock: the longest is the run's)."""
    return result.metrics["adam_time_s"] + result.metrics["lbfgs_time_s"]


def seed_row(problem: str, members: int, phase: str, epochs: int, lbfgs: int, device: str) -> SeedRow:
    """Batched against separate for `members` seeds 0 .. S-1 of `problem` (quick sizes, `epochs` Adam
    epochs and, for the whole phase, `lbfgs` L-BFGS iterations)."""
    cfg = RunConfig(problem=problem, profile="quick", device=device, threads=1 if device == "cpu" else None).override(
        {"train.epochs": epochs, "train.lbfgs_iterations": lbfgs if phase == "whole" else 0})
    seeds = list(range(members))
    batched = run_seeds(cfg, seeds, progress=False)
    separate = [run(cfg.override({"seed": s}), progress=False) for s in seeds]
    return SeedRow(problem, phase, members, member_steps(batched) / max(map(training_seconds, batched)),
                   member_steps(separate) / sum(map(training_seconds, separate)),
                   batched[0].metrics["time_per_epoch_ms"])


def seed_table(problems: Sequence[str] = PROBLEMS, members: Sequence[int] = MEMBERS, epochs: int = 100,
               lbfgs: int = 100, device: str = "auto", phases: Sequence[str] = ("adam", "whole")) -> int:
    """Print the table of `cpikan bench seeds`, row by row; returns 0."""
    dev = pick_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"cpikan bench seeds: torch {torch.__version__}, device {name}{', one thread' if dev.type == 'cpu' else ''}, "
          f"quick sizes, {epochs} Adam epochs (+ {lbfgs} L-BFGS iterations for 'whole'); member-steps per second "
          f"of one batched run of S seeds and of the S seeds one after another\n{HEADER}\n{'-' * len(HEADER)}",
          flush=True)
    run(RunConfig(problem="poisson1d", profile="smoke", device=str(dev)), progress=False)  # warm-up, not shown
    for problem in problems:
        for phase in phases:
            for s in members:
                print(seed_row(problem, s, phase, epochs, lbfgs, str(dev)).line(), flush=True)
    return 0
