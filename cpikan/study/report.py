"""Study results -> tables: one row per run, per-problem headline tables, timing, recommended settings.

Every aggregate names the run files it comes from (column ``run_files``). Identical runs (same
toggle values and seed, e.g. the baseline shared by several ablations) count once.
`gather` reads a profile's store into a `Report`; `cpikan.study.export` writes it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from cpikan.config import schema
from cpikan.metrics import RUN_METRICS
from cpikan.overrides import set_arguments
from cpikan.study.registry import ABLATIONS, BASELINE, TOGGLES, variant_label
from cpikan.study.store import StudyRun, load_runs

HISTORY_METRICS = ("points_per_s",)  # last value of the run's history
MIN_GAIN = 1.1  # a variant is recommended over the baseline only when it is this many times better
ACCURACY_SLACK = 1.5  # for cost goals: candidates are within this factor of the baseline's rel_l2
_DEFAULTS = {row["key"]: row["default"] for row in schema()}
_OFF = (None, "none", "fixed", False, {})


def toggle_text(key: str, value: Any) -> str:
    """A toggle value as a table cell: ❌ when off (its default "off" value), ✔ for True, else the value."""
    if value == _DEFAULTS.get(key) and value in _OFF:
        return "❌"
    if value is True:
        return "✔"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "✔"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
        row |= {key: toggle_text(key, _config_value(res.config, key)) for key in TOGGLES}
        row |= {m: res.metrics.get(m, math.nan) for m in RUN_METRICS}
        row |= {m: _last(res.history, m) for m in HISTORY_METRICS}
        row |= {k: v for k, v in res.metrics.items() if k.endswith("_rel_err")}
        rows.append(row)
    columns = ["ablation", "problem", "variant", "seed", "status", "error", "run_file", *TOGGLES, *RUN_METRICS,
               *HISTORY_METRICS]
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
    """Per problem and variant: time per epoch, speed-up over the baseline, wall time, peak memory,
    points per second, device."""
    parts = []
    for problem in dict.fromkeys(runs.problem):
        table = variants(runs, problem)
        base = table.time_per_epoch_ms[table.variant == BASELINE]
        base_ms = float(base.iloc[0]) if len(base) else math.nan
        parts.append(table[["variant", "time_per_epoch_ms", "wall_time_s", "peak_mem_mb", "points_per_s",
                            "device", "run_files"]]
                     .assign(speedup=base_ms / table.time_per_epoch_ms).assign(problem=problem))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)[["problem", "variant", "time_per_epoch_ms", "speedup",
                                                 "wall_time_s", "peak_mem_mb", "points_per_s", "device",
                                                 "run_files"]]


def recommended(runs: pd.DataFrame) -> pd.DataFrame:
    """Per problem and ablation, the setting the runs support (the `combined` ablation aside), as
``cpikan run`` arguments (``--set train.grad_clip=10.0``), or "keep the default".

    Goal rel_l2: the variant with the lowest mean rel_l2. Cost goals (time, memory): the cheapest
    variant whose mean rel_l2 is within ACCURACY_SLACK of the baseline's. The winner replaces the
    baseline only when it is at least MIN_GAIN times better in the goal; else "keep the default".
    """
    rows = []
    ok = runs[runs.status == "ok"]
    for (problem, name), group in ok.groupby(["problem", "ablation"], sort=False):
        ablation = ABLATIONS.get(name)
        if ablation is None or name == "combined" or BASELINE not in set(group.variant):
            continue
        means = group.groupby("variant", sort=False)[list(dict.fromkeys(["rel_l2", ablation.goal]))].mean()
        base = means.loc[BASELINE]
        candidates = means if ablation.goal == "rel_l2" else \
            means[means.rel_l2 <= ACCURACY_SLACK * base.rel_l2]
        goal = candidates[ablation.goal].dropna()
        best = goal.idxmin() if len(goal) else BASELINE
        gain = base[ablation.goal] / means.loc[best, ablation.goal]
        if not gain >= MIN_GAIN:
            best, gain = BASELINE, 1.0
        names_ = [v.name for v in ablation.variants]
        overrides = ablation.variant(best).overrides if best in names_ else {}
        setting = set_arguments(overrides) or "keep the default"
        rows.append({"problem": problem, "ablation": name, "recommended": setting, "variant": best,
                     "goal": ablation.goal, "gain": gain, "rel_l2": means.loc[best, "rel_l2"],
                     "baseline_rel_l2": base.rel_l2, "seeds": int((group.variant == best).sum()),
                     "run_files": ";".join(group[group.variant.isin([best, BASELINE])].run_file)})
    return pd.DataFrame(rows)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A headline, timing or recommended table formatted for reading (markdown, HTML, notebooks)."""
    out = table.drop(columns=[c for c in ("run_files", "rel_l2_std") if c in table]).copy()
    if "rel_l2_mean" in table:
        out["rel_l2_mean"] = [_pm(m, s) for m, s in zip(table.rel_l2_mean, table.rel_l2_std)]
        out = out.rename(columns={"rel_l2_mean": "rel_l2 (mean ± std)"})
    if "error" in out:
        out["error"] = [e if not isinstance(e, str) or len(e) <= 80 else e[:77] + "..." for e in out.error]
    for column in out.columns:
        if out[column].dtype.kind == "f":
            out[column] = [_short(v) for v in out[column]]
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
    """A profile's results: every run, the headline per problem, timing and recommended settings."""

    profile: str
    folder: str
    runs: list[StudyRun]
    runs_table: pd.DataFrame
    headlines: dict[str, pd.DataFrame]
    timing: pd.DataFrame
    recommended: pd.DataFrame

    @property
    def problems(self) -> list[str]:
        return list(self.headlines)


def gather(results_dir: str | os.PathLike, profile: str) -> Report:
    """Read every ablation run file of `profile` under `results_dir` into a Report (reproductions
    have their own table: `cpikan.study.published`)."""
    runs = [r for r in load_runs(results_dir, profile) if r.ablation in ABLATIONS]
    df = frame(runs)
    headlines = {p: headline(df, p) for p in dict.fromkeys(df.problem)}
    return Report(profile, str(os.path.join(results_dir, profile)), runs, df, headlines, timing(df),
                  recommended(df))
