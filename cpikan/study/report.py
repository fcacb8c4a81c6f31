"""Study results -> tables: one row per run, per-problem headline tables, timing, and (through
`cpikan.study.verdicts`, `timeline`, `budget`) verdicts, recommended settings, time to reach the
baseline's error and the budget the numbers hold for.

Every aggregate names the run files it comes from (column ``run_files``). In the headline and
timing tables identical runs (same toggle values and seed, e.g. the baseline shared by several
ablations) count once. `gather` reads a profile's store into a `Report`; `cpikan.study.export`
writes it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from cpikan.config import schema
from cpikan.metrics import RUN_METRICS
from cpikan.overrides import format_value
from cpikan.study.budget import Budget, budget
from cpikan.study.registry import ABLATIONS, BASELINE, TOGGLES, variant_label
from cpikan.study.store import StudyRun, load_runs
from cpikan.study.timeline import time_to_reach
from cpikan.study.verdicts import interval_cells, recommended, verdicts

HISTORY_METRICS = ("points_per_s",)  # last value of the run's history
# Read from a run's metrics where it has them (NaN where not: files from before they were recorded).
LATER_METRICS = ("rel_l2_adam", "lbfgs_iterations", "members")
_DEFAULTS = {row["key"]: row["default"] for row in schema()}


def _config_value(config: dict, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return (config.get(section, {}) if section else config).get(name, _DEFAULTS.get(key))


def _last(history: dict, key: str) -> float:
    values = [v for v in history.get(key, []) if v is not None]
    return float(values[-1]) if values else math.nan


def frame(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """One row per run: where it is, the toggle values (as cells), status, error and metrics."""
    rows = []
    for r in runs:
        res = r.result
        row = {"ablation": r.ablation, "problem": r.problem, "variant": r.variant, "seed": r.seed,
               "status": res.status, "error": res.error, "run_file": str(r.path)}
        # toggle cells: the text ``--set <key>=<cell>`` reads back, plain in any browser
        row |= {key: format_value(_config_value(res.config, key)) for key in TOGGLES}
        row |= {m: res.metrics.get(m, math.nan) for m in (*RUN_METRICS, *LATER_METRICS)}
        row |= {m: _last(res.history, m) for m in HISTORY_METRICS}
        row |= {k: v for k, v in res.metrics.items() if k.endswith("_rel_err")}
        rows.append(row)
    columns = ["ablation", "problem", "variant", "seed", "status", "error", "run_file", *TOGGLES, *RUN_METRICS,
               *LATER_METRICS, *HISTORY_METRICS]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(columns + [k for r in rows for k in r])))


def variants(runs: pd.DataFrame, problem: str) -> pd.DataFrame:
    """Every aggregate of `problem`'s runs: one row per distinct variant, baseline first.

    Columns: variant, every toggle, seeds (ok runs), failed, rel_l2_mean, rel_l2_std (over seeds;
    NaN for one seed), epochs, time_per_epoch_ms, wall_time_s, peak_mem_mb, points_per_s,
    recovered-parameter errors (``*_rel_err``), device, error (the first), run_files.
    """
    sub = runs[runs.problem == problem].copy()
    sub["_failed"] = sub.status != "ok"
    sub = sub.sort_values("_failed", kind="stable").drop_duplicates([*TOGGLES, "seed"]).sort_index()
    single = sub.ablation.nunique() == 1
    sub["_key"] = list(zip(*(sub[k] for k in TOGGLES)))
    rows = []
    for _, group in sub.groupby("_key", sort=False):
        ok = group[group.status == "ok"]
        first = group.iloc[0]
        rows.append({"variant": variant_label(first.ablation, first.variant, single),
                     **{k: first[k] for k in TOGGLES}, "seeds": len(ok), "failed": len(group) - len(ok),
                     "rel_l2_mean": ok.rel_l2.mean(), "rel_l2_std": ok.rel_l2.std(),
                     **{c: ok[c].mean() for c in group.columns if c.endswith("_rel_err")},
                     "epochs": ok.epochs_run.mean(), "time_per_epoch_ms": ok.time_per_epoch_ms.mean(),
                     "wall_time_s": ok.wall_time_s.mean(), "peak_mem_mb": ok.peak_mem_mb.mean(),
                     "points_per_s": ok.points_per_s.mean(), "device": ", ".join(sorted(set(ok.device.dropna()))),
                     "error": next((e for e in group.error if e), None), "run_files": ";".join(group.run_file)})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return pd.concat([table[table.variant == BASELINE], table[table.variant != BASELINE]], ignore_index=True)


def headline(runs: pd.DataFrame, problem: str) -> pd.DataFrame:
    """The headline of `problem` (jaxpi style): variant, one column per toggle that differs between
    rows, seeds, failed, rel_l2 mean and std, recovered-parameter errors, epochs, time per epoch,
    peak memory, error (only when a run failed), run_files."""
    table = variants(runs, problem)
    if table.empty:
        return table
    toggles = [k for k in TOGGLES if table[k].nunique() > 1]
    rel_err = [c for c in table.columns if c.endswith("_rel_err") and table[c].notna().any()]
    error = ["error"] if table.error.notna().any() else []
    return table[["variant", *toggles, "seeds", "failed", "rel_l2_mean", "rel_l2_std", *rel_err, "epochs",
                  "time_per_epoch_ms", "peak_mem_mb", *error, "run_files"]]


def timing(runs: pd.DataFrame) -> pd.DataFrame:
    """Per problem and variant: mean time per epoch, wall time, peak memory, points per second,
    device. Ratios to the baseline, with their intervals, are in the verdicts table."""
    parts = [variants(runs, problem).assign(problem=problem) for problem in dict.fromkeys(runs.problem)]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)[["problem", "variant", "time_per_epoch_ms", "wall_time_s",
                                                 "peak_mem_mb", "points_per_s", "device", "run_files"]]


def verdict_table(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """The verdicts of `runs` (`cpikan.study.verdicts.verdicts`; an ablation notebook's forest plot)."""
    return verdicts(frame(runs))


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A headline, timing, verdicts, recommended or time-to-reach table formatted for reading
    (markdown, HTML, notebooks): ratios with their interval and verdict as one text cell, times
    never reached as ``never``, numbers rounded, no run files."""
    out = interval_cells(table.drop(columns=[c for c in ("run_files", "rel_l2_std") if c in table]))
    if "group" in out:
        out = out.rename(columns={"group": "stage"})
    if "rel_l2_mean" in table:
        out["rel_l2_mean"] = [_pm(m, s) for m, s in zip(table.rel_l2_mean, table.rel_l2_std)]
        out = out.rename(columns={"rel_l2_mean": "rel_l2 (mean ± std)"})
    if "error" in out:
        out["error"] = [e if not isinstance(e, str) or len(e) <= 80 else e[:77] + "..." for e in out.error]
    for column in out.columns:
        if out[column].dtype.kind == "f":
            never = column.endswith("time_s")  # time_to_reach: inf is a time never reached
            out[column] = ["never" if never and v == math.inf else _short(v) for v in out[column]]
    return out


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.2e}" + (f" ± {std:.1e}" if math.isfinite(std) else "")


def _short(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if 100 <= abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.3g}" if 1e-2 <= abs(value) or value == 0 else f"{value:.2e}"


def table(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """Readable headline of every problem in `runs` (an ablation notebook's table)."""
    df = frame(runs)
    parts = [readable(headline(df, p)).assign(problem=p) for p in dict.fromkeys(df.problem)]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out.set_index(["problem", "variant"]).fillna("")


def summary(runs: Sequence[StudyRun]) -> str:
    """Deterministic, rounded lines for a notebook's checked cell: per problem the most accurate
    variant, its rel_l2 and the baseline's (1 significant digit), their ratio, and failed variants.

    Variants tied to 2 significant digits go to the first in registry order (the baseline first),
    so last-bit differences do not change the winner. Timings are left out: they vary by run.
    """
    df = frame(runs)
    lines = []
    for problem in dict.fromkeys(df.problem):
        sub = df[df.problem == problem]
        ok = sub[sub.status == "ok"].groupby("variant", sort=False).rel_l2.mean()
        failed = sub[sub.status != "ok"].groupby("variant", sort=False).error.first()
        text = f"{problem}: "
        if ok.empty:
            text += "no successful run"
        else:
            best = ok.map(lambda v: float(f"{v:.2g}")).idxmin()
            text += f"best {best} rel_l2 {ok[best]:.0e}"
            if BASELINE in ok and best != BASELINE:
                text += f", baseline {ok[BASELINE]:.0e} ({ok[BASELINE] / ok[best]:.1g}x)"
        if len(failed):
            text += "; failed: " + ", ".join(f"{v} ({str(e).split(':')[0]})" for v, e in failed.items())
        lines.append(text)
    return "\n".join(lines) or "no runs"


@dataclass
class Report:
    """A profile's results: every run, the budget they hold for, the headline per problem, timing,
    verdicts, recommended settings and time to reach the baseline's error."""

    profile: str
    folder: str
    runs: list[StudyRun]
    runs_table: pd.DataFrame
    budget: Budget
    headlines: dict[str, pd.DataFrame]
    timing: pd.DataFrame
    verdicts: pd.DataFrame
    recommended: pd.DataFrame
    time_to_reach: pd.DataFrame

    @property
    def problems(self) -> list[str]:
        return list(self.headlines)


def gather(results_dir: str | os.PathLike, profile: str) -> Report:
    """Read every ablation run file of `profile` under `results_dir` into a Report (reproductions
    have their own table: `cpikan.study.published`)."""
    runs = [r for r in load_runs(results_dir, profile) if r.ablation in ABLATIONS]
    df = frame(runs)
    headlines = {p: headline(df, p) for p in dict.fromkeys(df.problem)}
    judged = verdicts(df)
    return Report(profile, str(os.path.join(results_dir, profile)), runs, df, budget(runs, profile), headlines,
                  timing(df), judged, recommended(judged, profile), time_to_reach(runs))
