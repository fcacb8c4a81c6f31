"""What a report's numbers hold for: the training budget per problem, seeds per ablation, and the
machine, devices and torch versions, read from the run files (the report's first section).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from cpikan.study.store import StudyRun

SIZES = {"epochs": ("train", "epochs"), "lbfgs_iterations": ("train", "lbfgs_iterations"),
         "n_pde": ("sampling", "n_pde"), "n_bc": ("sampling", "n_bc"), "n_ic": ("sampling", "n_ic")}
CAVEAT = ("The verdicts hold for this budget: a variant with no detectable difference here may matter with "
          "more epochs, points or seeds, and a variant that wins here may not at a larger budget.")
_CPUINFO = Path("/proc/cpuinfo")


@dataclass
class Budget:
    """The setting of a profile's runs.

    problems: per problem the Adam epochs, L-BFGS iterations and points (interior, boundary,
        initial) of its runs' resolved configs; several values in one cell (`` / ``) when its
        ablations differ.
    seeds: ablation -> number of seeds it ran. machine: processor model and cores of the machine
        building the report. devices, torch, members (seeds per batched run): as the run files
        record them.
    """

    profile: str
    problems: pd.DataFrame
    seeds: dict[str, int]
    machine: str
    devices: list[str]
    torch: list[str]
    members: list[int]

    def facts(self) -> list[tuple[str, str]]:
        """(label, text) lines: profile, seeds, machine, devices, torch."""
        seeds = ", ".join(f"{name} {n}" for name, n in self.seeds.items()) or "–"
        members = ", ".join(map(str, self.members)) or "–"
        return [("profile", self.profile), ("seeds per ablation", seeds),
                ("seeds trained together (members of one batched run; their times are the batch's)", members),
                ("machine (where this report was built)", self.machine),
                ("devices (run files)", ", ".join(self.devices) or "–"),
                ("torch (run files)", ", ".join(self.torch) or "–")]

    def markdown(self) -> str:
        """The section as markdown (``tables/setup.md``, notebooks)."""
        lines = [f"- {label}: {text}" for label, text in self.facts()]
        table = self.problems.to_markdown(index=False, disable_numparse=True) if len(self.problems) else "(no runs)"
        return "\n".join([*lines, "", "Budget per problem:", "", table, "", CAVEAT])


def processor() -> str:
    """``<model name> (<n> cores)``: the processor model from /proc/cpuinfo, else what `platform` says."""
    model = ""
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown processor"
    return f"{model} ({os.cpu_count()} cores)"


def budget(runs: Sequence[StudyRun], profile: str) -> Budget:
    """The `Budget` of `runs` (every run file of a profile)."""
    rows: dict[str, dict[str, list]] = {}
    for r in runs:
        sizes = rows.setdefault(r.problem, {name: [] for name in SIZES})
        for name, (section, key) in SIZES.items():
            value = r.result.config.get(section, {}).get(key)  # None: a failed run's unresolved config
            if value is not None and value not in sizes[name]:
                sizes[name].append(value)
    problems = pd.DataFrame([{"problem": p, **{k: " / ".join(map(str, v)) or "–" for k, v in sizes.items()}}
                             for p, sizes in rows.items()], columns=["problem", *SIZES])
    seeds: dict[str, set] = {}
    for r in runs:
        seeds.setdefault(r.ablation, set()).add(r.seed)
    ok = [r.result.metrics for r in runs if r.result.status == "ok"]
    devices = sorted({str(m["device"]) for m in ok if m.get("device")})
    torch = sorted({str(m.get("versions", {}).get("torch")) for m in ok if m.get("versions", {}).get("torch")})
    members = sorted({int(m["members"]) for m in ok if m.get("members")})
    return Budget(profile, problems, {a: len(s) for a, s in seeds.items()}, processor(), devices, torch, members)
