"""Paired-seed verdicts: is a variant better, worse, or not detectably different from the baseline?
With the error rate of the whole table controlled, per metric. And the settings they support:
`recommended`.

One row. For one (ablation, problem, variant) and a metric m where lower is better, take the n
seeds that both the variant and the baseline ran, per seed the log ratio
d_s = log m_variant(s) - log m_baseline(s), their mean d and standard error se = sd(d) / sqrt(n):

    ratio            = exp(d)                                  (geometric mean, variant / baseline)
    interval at L    = exp(d -+ (t_{n-1, (1+L)/2} se + log r))  (Student t on the log ratios)
    p                = min(1, 2 P(T_{n-1} > (|d| - log r) / se))

A t interval on the logs, not a bootstrap: with 3 to 5 seeds a bootstrap has too few distinct
resamples. r = `RESOLUTION[m]`: 1 for the errors; for costs (time, memory) the part of a machine's
run-to-run jitter that pairing seeds does not remove (warm caches, load from other jobs, the order
of runs), so a cost difference is claimed only when it is detectably larger than r. p is the
two-sided p-value of that same widened test, so the interval at level L excludes 1 exactly when
p < 1 - L. One seed: p = 1 and the interval is (0, inf).

Seeds trained together. The members of a batched run (`cpikan.runs.run_seeds`; ``members`` > 1 in
the runs frame) share one clock and one process: their time and memory are one measurement, the
same value on every seed, so se = 0 and the seeds add nothing to a cost comparison. Such a row's
cost is judged with r = `SHARED_RESOLUTION[m]`, the spread between two batched arms of identical
arithmetic in one study: the interval is ratio x/÷ r and p is 0 or 1 (outside the band or not).
Measured on the quick study (10 seeds, 2 notebooks at a time on 2 cores): arms that differ only in
their initialisation or learning-rate schedule gave time-per-epoch ratios of 0.72 to 1.37, wall
time 0.77 to 1.68 (L-BFGS iteration counts differ too) and peak memory 1.00 to 1.08.

The metrics (`JUDGED`): ``rel_l2_adam``, the relative L2 error at the end of the Adam phase (on the
history's evaluation subset), ``rel_l2`` at the end of the run (after L-BFGS when there is one; on
the full evaluation set), time per epoch, wall time, peak memory. When no paired run of either arm
ran an L-BFGS iteration (metric ``lbfgs_iterations`` 0 on all of them), the end of Adam is the end
of the run: the row is judged once, on ``rel_l2``, and ``rel_l2_adam`` says `ONE_PHASE`, so the
same comparison is neither printed nor counted twice. A metric some paired run did not record
(run files from before it was: NaN in the runs frame) has NaN and an empty verdict.

The whole table. Each metric is one family: its m rows with a p-value (neither failed nor empty).
Benjamini-Hochberg at alpha = 1 - `LEVEL` selects R of them; every row's printed interval is at
level 1 - max(R, 1) alpha / m (the false-coverage-rate adjusted intervals of Benjamini & Yekutieli,
JASA 2005), which excludes 1 for exactly the R selected rows (ties at the bound aside). The verdict
word is read off the printed interval: ``better`` when it lies wholly below 1, ``worse`` when
above, ``failed`` when a run of either arm failed, ``no detectable difference`` otherwise. So the
word and its interval always agree. Among a metric's better/worse words the expected share of wrong
ones is at most alpha (false discovery rate), when no variant differs at all the chance of any
better/worse word is at most alpha, and on average at most alpha of the selected rows' intervals
miss their true ratio (false coverage rate). These are BH's guarantees for rows that are
independent or positively dependent; variants that share their baseline's runs have positively
correlated log ratios. The unadjusted 95 % interval stays in the table (``_raw_low``, ``_raw_high``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from cpikan.overrides import set_arguments
from cpikan.study.registry import ABLATIONS, BASELINE, Ablation

ALPHA = 0.05  # the error rate each metric's family of rows is held to
LEVEL = 1 - ALPHA
BETTER, WORSE, SAME, FAILED = "better", "worse", "no detectable difference", "failed"
VERDICTS = (BETTER, WORSE, SAME, FAILED)
ONE_PHASE = "no L-BFGS: see end of run"  # rel_l2_adam of a row whose runs had no L-BFGS phase
TIME_RESOLUTION = 1.05  # timings: a ratio within 5 % of 1 is not told apart from jitter
MEMORY_RESOLUTION = 1.05  # peak memory (CPU: peak RSS of the process, which moves a little from run to run)
SHARED_TIME_RESOLUTION = 1.5  # timings of seeds trained together: one clock for all seeds (module docstring)
SHARED_MEMORY_RESOLUTION = 1.15  # peak memory of seeds trained together: one process for all seeds
# The judged metrics (names of the run files; lower is better for each) and their resolution, for
# runs of one seed each and for seeds trained together.
RESOLUTION = {"rel_l2_adam": 1.0, "rel_l2": 1.0, "time_per_epoch_ms": TIME_RESOLUTION,
              "wall_time_s": TIME_RESOLUTION, "peak_mem_mb": MEMORY_RESOLUTION}
SHARED_RESOLUTION = RESOLUTION | {"time_per_epoch_ms": SHARED_TIME_RESOLUTION,
                                  "wall_time_s": SHARED_TIME_RESOLUTION, "peak_mem_mb": SHARED_MEMORY_RESOLUTION}
JUDGED = tuple(RESOLUTION)
PHASES = {"rel_l2_adam": "after Adam", "rel_l2": "end of run"}  # the error, by the moment it is read
ACCURACY = tuple(PHASES)
COSTS = tuple(m for m in JUDGED if m not in PHASES)
LABELS = {"rel_l2_adam": "rel_l2 after Adam", "rel_l2": "rel_l2 end of run", "time_per_epoch_ms": "time/epoch",
          "wall_time_s": "wall time", "peak_mem_mb": "peak memory"}
CELLS = ("ratio", "low", "high", "verdict", "p", "level", "raw_low", "raw_high")  # columns per metric
NOTHING = "nothing better than the baseline at this budget"
METHOD = (f"Verdicts hold for the whole table, per metric: the rows' paired-seed p-values (Student t on the per-seed "
          "log ratios; for time and memory, on the excess of |mean log ratio| over the resolution, "
          f"{SHARED_TIME_RESOLUTION:g} for time and {SHARED_MEMORY_RESOLUTION:g} for memory where an arm's seeds "
          "trained together and share one clock) go through "
          f"Benjamini-Hochberg at {100 * ALPHA:.0f} %, so that on average at most {100 * ALPHA:.0f} % of a metric's "
          f"better/worse words are wrong, and, where nothing differs, none is said with probability at least "
          f"{100 * LEVEL:.0f} %. Each printed interval is at level 1 - max(R, 1) x {ALPHA:g} / m (R of the metric's "
          "m judged rows selected; the false-coverage-rate intervals of Benjamini & Yekutieli 2005), so it excludes "
          "1 exactly when its word is better or worse. `verdicts.csv` also keeps each p-value (`<metric>_p`) and "
          f"the unadjusted {100 * LEVEL:.0f} % interval (`<metric>_raw_low`, `<metric>_raw_high`).")


@dataclass(frozen=True)
class Ratio:
    """Geometric-mean ratio variant / baseline over `n` paired seeds, its interval at `level`, the
    verdict that interval gives, and the p-value (NaN when there is none: failed, not judged)."""

    ratio: float
    low: float
    high: float
    n: int
    verdict: str
    p: float = math.nan
    level: float = math.nan


def paired_ratio(baseline: Sequence[float], variant: Sequence[float], level: float = LEVEL,
                 resolution: float = 1.0) -> Ratio:
    """The paired ratio of `variant` over `baseline` (same seeds, same order; positive values), its
    interval at `level` and p-value (module docstring).

    `resolution` >= 1 widens the t interval to [low / resolution, high * resolution] (for costs,
    whose jitter is partly systematic within a batch, not only random between seeds) and tests
    |mean log ratio| - log(resolution); the verdict is ``better`` / ``worse`` when the interval
    lies wholly below / above 1. With one pair the interval is (0, inf), p = 1 and the verdict is
    no detectable difference. A non-finite or non-positive value (a failed run) gives ``failed``.
    """
    b, v = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if b.shape != v.shape or b.size == 0:
        raise ValueError(f"paired_ratio needs the same non-zero number of values, got {b.size} and {v.size}")
    if not (np.isfinite(b) & np.isfinite(v) & (b > 0) & (v > 0)).all():
        return Ratio(math.nan, math.nan, math.nan, b.size, FAILED, level=level)
    d = np.log(v) - np.log(b)
    mean, n = float(d.mean()), d.size
    if n < 2:
        return Ratio(math.exp(mean), 0.0, math.inf, n, SAME, 1.0, level)
    se, excess = math.sqrt(float(np.square(d - mean).sum()) / (n - 1) / n), abs(mean) - math.log(resolution)
    if se > 0:
        p = min(1.0, float(2 * special.stdtr(n - 1, -excess / se)))  # 2 P(T_{n-1} > excess / se)
    else:  # every seed the same log ratio
        p = 0.0 if excess > 0 else 1.0
    half = float(special.stdtrit(n - 1, 0.5 + level / 2)) * se + math.log(resolution)  # t quantile
    low, high = math.exp(mean - half), math.exp(mean + half)
    verdict = BETTER if high < 1 else WORSE if low > 1 else SAME
    return Ratio(math.exp(mean), low, high, n, verdict, p, level)


def fcr_level(p_values: Sequence[float], alpha: float = ALPHA) -> float:
    """1 - max(R, 1) alpha / m: the level of every interval of a family of m tests (the finite
    `p_values`) of which Benjamini-Hochberg at `alpha` selects R; 1 - alpha when m = 0."""
    p = np.asarray([v for v in p_values if math.isfinite(v)], dtype=float)
    if p.size == 0:
        return 1 - alpha
    selected = int((stats.false_discovery_control(p) <= alpha).sum())
    return 1 - max(selected, 1) * alpha / p.size


def judge(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], resolution: float | Sequence[float] = 1.0,
          alpha: float = ALPHA) -> tuple[list[Ratio], list[Ratio]]:
    """One metric over the rows of a table, each row a (baseline, variant) pair of per-seed values
    and its `resolution` (one for all rows, or one per row): (the unadjusted `paired_ratio` at
    1 - alpha, the same at the family's `fcr_level`) per row."""
    rs = [resolution] * len(pairs) if isinstance(resolution, (int, float)) else list(resolution)
    raw = [paired_ratio(b, v, 1 - alpha, r) for (b, v), r in zip(pairs, rs)]
    level = fcr_level([r.p for r in raw], alpha)
    return raw, [paired_ratio(b, v, level, r) for (b, v), r in zip(pairs, rs)]


def resolution(metric: str, paired: pd.DataFrame) -> float:
    """The resolution of `metric` on a row's paired runs: `SHARED_RESOLUTION` when some arm's seeds
    trained together (``members`` > 1), else `RESOLUTION`."""
    shared = "members" in paired and bool((paired.members.fillna(1) > 1).any())
    return (SHARED_RESOLUTION if shared else RESOLUTION)[metric]


def verdicts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (ablation, problem, variant other than the baseline) of a runs frame
    (`cpikan.study.report.frame`): for each judged metric its ratio, interval and verdict, the
    error of the whole table controlled per metric (module docstring).

    Columns: group (the ablation's stage in the registry; rows are ordered by it), ablation,
    problem, variant, seeds (paired), then for each metric m of `JUDGED`: ``<m>_ratio``,
    ``<m>_low``, ``<m>_high`` (the printed, adjusted interval), ``<m>_verdict``, ``<m>_p``,
    ``<m>_level`` (of the printed interval), ``<m>_raw_low``, ``<m>_raw_high`` (the unadjusted 95 %
    interval); and run_files (the variant's and the baseline's, ``;``-separated). A variant with a
    failed run (or whose baseline failed) is ``failed`` for every metric; a metric not recorded has
    NaN and an empty verdict; ``rel_l2_adam`` of a row without L-BFGS says `ONE_PHASE`.
    """
    rows: list[dict] = []
    pairs: dict[str, dict[int, tuple]] = {m: {} for m in JUDGED}  # metric -> row index -> (baseline, variant)
    resolutions: dict[str, dict[int, float]] = {m: {} for m in JUDGED}
    for (ablation, problem), group in runs.groupby(["ablation", "problem"], sort=False):
        base = group[group.variant == BASELINE].set_index("seed")
        entry = ABLATIONS.get(ablation)
        for variant, arm in group[group.variant != BASELINE].groupby("variant", sort=False):
            arm = arm.set_index("seed")
            seeds = sorted(set(arm.index) & set(base.index))
            paired = pd.concat([base.loc[seeds], arm.loc[seeds]])
            failed = bool((arm.status != "ok").any() or (paired.status != "ok").any()) or not seeds
            row = {"group": entry.stage if entry else "other", "ablation": ablation, "problem": problem,
                   "variant": variant, "seeds": len(seeds)}
            for metric in JUDGED:
                word = FAILED if failed else _unjudged(metric, paired)
                if word is None:
                    pairs[metric][len(rows)] = (base.loc[seeds, metric], arm.loc[seeds, metric])
                    resolutions[metric][len(rows)] = resolution(metric, paired)
                else:
                    row |= _cells(metric, Ratio(math.nan, math.nan, math.nan, len(seeds), word))
            files = [*arm.get("run_file", []), *base.loc[seeds].get("run_file", [])]
            rows.append(row | {"run_files": ";".join(map(str, files))})
    for metric, judged in pairs.items():
        raw, adjusted = judge(list(judged.values()), list(resolutions[metric].values()))
        for i, r, a in zip(judged, raw, adjusted):
            rows[i] |= _cells(metric, a, r)
    columns = ["group", "ablation", "problem", "variant", "seeds", *(f"{m}_{c}" for m in JUDGED for c in CELLS),
               "run_files"]
    table = pd.DataFrame(rows, columns=columns)
    order = {g: i for i, g in enumerate(dict.fromkeys(table.group))}
    return table.sort_values("group", key=lambda g: g.map(order), kind="stable", ignore_index=True)


def _unjudged(metric: str, paired: pd.DataFrame) -> str | None:
    """Why `metric` is not judged on the paired ok runs of a row (`ONE_PHASE`, or "" when a run did
    not record it), or None when it is."""
    if metric == "rel_l2_adam" and "lbfgs_iterations" in paired and (paired.lbfgs_iterations == 0).all():
        return ONE_PHASE
    if metric not in paired or paired[metric].isna().any():
        return ""
    return None


def _cells(metric: str, adjusted: Ratio, raw: Ratio | None = None) -> dict:
    values = {"ratio": adjusted.ratio, "low": adjusted.low, "high": adjusted.high, "verdict": adjusted.verdict,
              "p": adjusted.p, "level": adjusted.level, "raw_low": raw.low if raw else math.nan,
              "raw_high": raw.high if raw else math.nan}
    return {f"{metric}_{c}": values[c] for c in CELLS}


def error_control(table: pd.DataFrame) -> pd.DataFrame:
    """Per judged metric of a verdicts table: rows judged (m), rows called better or worse (R)
    and the level of its printed intervals, 1 - max(R, 1) alpha / m (`METHOD`)."""
    rows = []
    for metric in JUDGED:
        judged = table[table[f"{metric}_p"].notna()]
        levels = judged[f"{metric}_level"]
        rows.append({"metric": LABELS[metric], "rows judged": len(judged),
                     "better or worse": int(judged[f"{metric}_verdict"].isin([BETTER, WORSE]).sum()),
                     "interval level": f"{100 * levels.iloc[0]:.4g} %" if len(levels) else "–"})
    return pd.DataFrame(rows, columns=["metric", "rows judged", "better or worse", "interval level"])


def recommended(table: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Per problem and ablation of a verdicts table (the `combined` ablation aside), the setting
    the verdicts support, as ``cpikan run`` arguments (``--set train.grad_clip=10.0``), or `NOTHING`,
    and the phase it holds for. The arguments are the variant's overrides over the ablation's
    `base` setup for `profile` (if any), so that ``cpikan run --profile <profile> <arguments>``
    trains the config that was judged.

    Only a ``better`` variant is recommended. Goal rel_l2: one row per phase (`PHASES`: "after
    Adam", judged on rel_l2_adam, where some row was judged there; "end of run", on rel_l2), each
    recommending the variant better at that phase. Cost goals (time, memory): one row, phase "end
    of run"; the goal's verdict is better and rel_l2 is neither worse nor failed at either phase.
    Among several, the lowest ratio on the goal wins. Columns: problem, ablation, goal, phase,
    recommended, variant, goal_ratio / _low / _high / _level (of the goal's metric at that phase),
    rel_l2_adam_ratio / _low / _high / _level, rel_l2_ratio / _low / _high / _level, seeds, run_files.
    """
    rows = []
    for (problem, name), group in table.groupby(["problem", "ablation"], sort=False):
        ablation = ABLATIONS.get(name)
        if ablation is None or name == "combined":
            continue
        if ablation.goal == "rel_l2":
            for metric, phase in PHASES.items():
                if metric == "rel_l2" or group[f"{metric}_p"].notna().any():
                    picked = group[group[f"{metric}_verdict"] == BETTER]
                    rows.append(_recommend(group, picked, metric, phase, ablation, profile))
        else:
            goal = ablation.goal
            picked = group[(group[f"{goal}_verdict"] == BETTER) & group.rel_l2_verdict.isin([BETTER, SAME])
                           & ~group.rel_l2_adam_verdict.isin([WORSE, FAILED])]
            rows.append(_recommend(group, picked, goal, PHASES["rel_l2"], ablation, profile))
    judged = [f"{m}_{c}" for m in ("goal", *ACCURACY) for c in ("ratio", "low", "high", "level")]
    return pd.DataFrame(rows, columns=["problem", "ablation", "goal", "phase", "recommended", "variant", *judged,
                                       "seeds", "run_files"])


def _recommend(group: pd.DataFrame, picked: pd.DataFrame, metric: str, phase: str, ablation: Ablation,
               profile: str) -> dict:
    """The row of `recommended` for one goal at one phase: the `picked` variant with the lowest ratio."""
    row = {"problem": group.problem.iloc[0], "ablation": ablation.name, "goal": ablation.goal, "phase": phase,
           "recommended": NOTHING, "variant": BASELINE,
           **{f"{m}_{c}": math.nan for m in ("goal", *ACCURACY) for c in ("ratio", "low", "high", "level")},
           "seeds": int(group.seeds.max()), "run_files": ""}
    if len(picked):
        best = picked.loc[picked[f"{metric}_ratio"].idxmin()]
        overrides = {**ablation.base.get(profile, {}), **ablation.variant(best.variant).overrides}
        row |= {"recommended": set_arguments(overrides), "variant": best.variant,
                **{f"goal_{c}": best[f"{metric}_{c}"] for c in ("ratio", "low", "high", "level")},
                **{f"{m}_{c}": best[f"{m}_{c}"] for m in ACCURACY for c in ("ratio", "low", "high", "level")},
                "seeds": int(best.seeds), "run_files": best.run_files}
    return row


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
    """`table` with each ``<m>_ratio`` / ``<m>_low`` / ``<m>_high`` triple (and ``<m>_verdict``) as
    one text column, e.g. ``0.42 [0.31, 0.57] better``, headed ``<label of m> ratio [adjusted CI]``
    when the table gives the interval's level (``<m>_level``: a verdicts or recommended table),
    else ``... [95 % CI]``. The p-value, level and unadjusted interval columns are left out."""
    out = table.copy()
    for metric in [c[:-len("_ratio")] for c in table.columns if c.endswith("_ratio")]:
        parts = [table[f"{metric}_{p}"] for p in ("ratio", "low", "high")]
        text = [interval_text(*values) for values in zip(*parts)]
        if f"{metric}_verdict" in table:
            words = table[f"{metric}_verdict"]
            text = [v if v in (FAILED, ONE_PHASE) else t if t == "–" else f"{t} {v}" for t, v in zip(text, words)]
        ci = "adjusted CI" if f"{metric}_level" in table else f"{100 * LEVEL:.0f} % CI"
        out.insert(out.columns.get_loc(f"{metric}_ratio"), f"{LABELS.get(metric, metric)} ratio [{ci}]", text)
        out = out.drop(columns=[f"{metric}_{c}" for c in CELLS if f"{metric}_{c}" in out])
    return out
