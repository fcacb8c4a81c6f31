"""Paired-seed verdicts: is a variant better, worse, or not detectably different from the baseline?
And the settings they support: `recommended`.

For one (ablation, problem, variant) and a metric m where lower is better (rel_l2, time per
epoch, wall time, peak memory), take the seeds that both the variant and the baseline ran, and
per seed the log ratio d_s = log m_variant(s) - log m_baseline(s). Then

    ratio    = exp(mean d)                       (geometric-mean ratio, variant / baseline)
    interval = exp(mean d -+ t_{n-1, 0.975} sd(d) / sqrt(n))    (Student t on the log ratios)

A t interval on the logs, not a bootstrap: with 3 to 5 seeds a bootstrap has too few distinct
resamples to give a 95 % interval. Costs (time, memory) have a resolution r = `RESOLUTION`: the
part of a machine's run-to-run jitter that pairing seeds does not remove (warm caches, load from
other jobs, the order of runs), so their interval is widened to [low / r, high * r]. Verdicts:
``better`` when the whole interval lies below 1, ``worse`` when above, ``failed`` when a run of
either arm failed, and ``no detectable difference`` otherwise, including one seed (no interval).
A cost difference is thus claimed only when it is detectably larger than the resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cpikan.overrides import set_arguments
from cpikan.study.registry import ABLATIONS, BASELINE

LEVEL = 0.95
BETTER, WORSE, SAME, FAILED = "better", "worse", "no detectable difference", "failed"
VERDICTS = (BETTER, WORSE, SAME, FAILED)
TIME_RESOLUTION = 1.05  # timings: a ratio within 5 % of 1 is not told apart from jitter
MEMORY_RESOLUTION = 1.05  # peak memory (CPU: peak RSS of the process, which moves a little from run to run)
# The judged metrics (names of the run files; lower is better for each) and their resolution.
RESOLUTION = {"rel_l2": 1.0, "time_per_epoch_ms": TIME_RESOLUTION, "wall_time_s": TIME_RESOLUTION,
              "peak_mem_mb": MEMORY_RESOLUTION}
JUDGED = tuple(RESOLUTION)
LABELS = {"rel_l2": "rel_l2", "time_per_epoch_ms": "time/epoch", "wall_time_s": "wall time",
          "peak_mem_mb": "peak memory"}
NOTHING = "nothing better than the baseline at this budget"


@dataclass(frozen=True)
class Ratio:
    """Geometric-mean ratio variant / baseline over `n` paired seeds, its interval and verdict."""

    ratio: float
    low: float
    high: float
    n: int
    verdict: str


def paired_ratio(baseline: Sequence[float], variant: Sequence[float], level: float = LEVEL,
                 resolution: float = 1.0) -> Ratio:
    """The paired ratio of `variant` over `baseline` (same seeds, same order; positive values).

    `resolution` >= 1 widens the t interval to [low / resolution, high * resolution] (for costs,
    whose jitter is partly systematic within a batch, not only random between seeds); the
    verdict is ``better`` / ``worse`` when that interval lies wholly below / above 1.
    With one pair the interval is (0, inf) and the verdict is no detectable difference.
    A non-finite or non-positive value (a failed run) gives ``failed``.
    """
    b, v = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if b.shape != v.shape or b.size == 0:
        raise ValueError(f"paired_ratio needs the same non-zero number of values, got {b.size} and {v.size}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(v)) and np.all(b > 0) and np.all(v > 0)):
        return Ratio(math.nan, math.nan, math.nan, b.size, FAILED)
    d = np.log(v) - np.log(b)
    mean, n = float(d.mean()), d.size
    if n < 2:
        return Ratio(math.exp(mean), 0.0, math.inf, n, SAME)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)) + math.log(resolution)
    low, high = math.exp(mean - half), math.exp(mean + half)
    verdict = BETTER if high < 1 else WORSE if low > 1 else SAME
    return Ratio(math.exp(mean), low, high, n, verdict)


def verdicts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (ablation, problem, variant other than the baseline) of a runs frame
    (`cpikan.study.report.frame`): for each judged metric its ratio, interval and verdict.

    Columns: group (the ablation's stage in the registry; rows are ordered by it), ablation,
    problem, variant, seeds (paired), then ``<metric>_ratio``, ``<metric>_low``, ``<metric>_high``,
    ``<metric>_verdict`` for each metric of `JUDGED`, and run_files (the variant's and the
    baseline's, ``;``-separated). A variant with a failed run (or whose baseline failed) is
    ``failed`` for every metric; a metric the frame lacks has NaN and an empty verdict.
    """
    rows = []
    for (ablation, problem), group in runs.groupby(["ablation", "problem"], sort=False):
        base = group[group.variant == BASELINE].set_index("seed")
        entry = ABLATIONS.get(ablation)
        for variant, arm in group[group.variant != BASELINE].groupby("variant", sort=False):
            arm = arm.set_index("seed")
            seeds = sorted(set(arm.index) & set(base.index))
            failed = bool((arm.status != "ok").any() or (base.loc[seeds].status != "ok").any()) or not seeds
            row = {"group": entry.stage if entry else "other", "ablation": ablation, "problem": problem,
                   "variant": variant, "seeds": len(seeds)}
            for metric in JUDGED:
                if metric not in group:  # not recorded by these runs
                    result = Ratio(math.nan, math.nan, math.nan, len(seeds), "")
                elif failed:
                    result = Ratio(math.nan, math.nan, math.nan, len(seeds), FAILED)
                else:
                    result = paired_ratio(base.loc[seeds, metric], arm.loc[seeds, metric],
                                          resolution=RESOLUTION[metric])
                row |= {f"{metric}_ratio": result.ratio, f"{metric}_low": result.low,
                        f"{metric}_high": result.high, f"{metric}_verdict": result.verdict}
            files = [*arm.get("run_file", []), *base.loc[seeds].get("run_file", [])]
            rows.append(row | {"run_files": ";".join(map(str, files))})
    columns = ["group", "ablation", "problem", "variant", "seeds",
               *(f"{m}_{p}" for m in JUDGED for p in ("ratio", "low", "high", "verdict")), "run_files"]
    table = pd.DataFrame(rows, columns=columns)
    order = {g: i for i, g in enumerate(dict.fromkeys(table.group))}
    return table.sort_values("group", key=lambda g: g.map(order), kind="stable", ignore_index=True)


def recommended(table: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Per problem and ablation of a verdicts table (the `combined` ablation aside), the setting
    the verdicts support, as ``cpikan run`` arguments (``--set train.grad_clip=10.0``), or `NOTHING`.
    The arguments are the variant's overrides over the ablation's `base` setup for `profile` (if
    any), so that ``cpikan run --profile <profile> <arguments>`` trains the config that was judged.

    Only a ``better`` variant is recommended. Goal rel_l2: the rel_l2 verdict is better. Cost goals
    (time, memory): the goal's verdict is better and the rel_l2 verdict is not worse (nor failed).
    Among several, the lowest ratio on the goal wins. Columns: problem, ablation, goal,
    recommended, variant, goal_ratio / goal_low / goal_high, rel_l2_ratio / _low / _high, seeds,
    run_files.
    """
    rows = []
    for (problem, name), group in table.groupby(["problem", "ablation"], sort=False):
        ablation = ABLATIONS.get(name)
        if ablation is None or name == "combined":
            continue
        goal = ablation.goal
        picked = group[group[f"{goal}_verdict"] == BETTER]
        if goal != "rel_l2":
            picked = picked[picked.rel_l2_verdict.isin([BETTER, SAME])]
        row = {"problem": problem, "ablation": name, "goal": goal, "recommended": NOTHING, "variant": BASELINE,
               "goal_ratio": math.nan, "goal_low": math.nan, "goal_high": math.nan,
               "rel_l2_ratio": math.nan, "rel_l2_low": math.nan, "rel_l2_high": math.nan,
               "seeds": int(group.seeds.max()), "run_files": ""}
        if len(picked):
            best = picked.loc[picked[f"{goal}_ratio"].idxmin()]
            overrides = {**ablation.base.get(profile, {}), **ablation.variant(best.variant).overrides}
            row |= {"recommended": set_arguments(overrides), "variant": best.variant,
                    **{f"goal_{p}": best[f"{goal}_{p}"] for p in ("ratio", "low", "high")},
                    **{f"rel_l2_{p}": best[f"rel_l2_{p}"] for p in ("ratio", "low", "high")},
                    "seeds": int(best.seeds), "run_files": best.run_files}
        rows.append(row)
    return pd.DataFrame(rows, columns=["problem", "ablation", "goal", "recommended", "variant", "goal_ratio",
                                       "goal_low", "goal_high", "rel_l2_ratio", "rel_l2_low", "rel_l2_high",
                                       "seeds", "run_files"])


def interval_text(ratio: float, low: float, high: float) -> str:
    """``0.42 [0.31, 0.57]``: a ratio and its interval for tables; ``1.3 [0, inf]`` for one seed.
    Three significant digits, more where a bound would round to 1 but is not 1 (``0.9996``), so
    that an interval that excludes 1 never reads as touching it."""
    if not math.isfinite(ratio):
        return "–"
    return f"{ratio:.3g} [{_off_one(low)}, {_off_one(high)}]"


def _off_one(value: float) -> str:
    digits = 3
    while float(f"{value:.{digits}g}") == 1.0 and value != 1.0 and digits < 12:
        digits += 1
    return f"{value:.{digits}g}"


def interval_cells(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with each ``<m>_ratio`` / ``<m>_low`` / ``<m>_high`` triple (and ``<m>_verdict``)
    as one text column ``<label of m> ratio [95 % CI]``, e.g. ``0.42 [0.31, 0.57] better``."""
    out = table.copy()
    for metric in [c[:-len("_ratio")] for c in table.columns if c.endswith("_ratio")]:
        parts = [table[f"{metric}_{p}"] for p in ("ratio", "low", "high")]
        text = [interval_text(*values) for values in zip(*parts)]
        if f"{metric}_verdict" in table:
            words = table[f"{metric}_verdict"]
            text = [v if v == FAILED else t if t == "–" else f"{t} {v}" for t, v in zip(text, words)]
        out.insert(out.columns.get_loc(f"{metric}_ratio"), f"{LABELS.get(metric, metric)} ratio [95 % CI]", text)
        out = out.drop(columns=[f"{metric}_{p}" for p in ("ratio", "low", "high", "verdict") if f"{metric}_{p}" in out])
    return out
