"""Paired-seed verdicts: is a variant better, worse, or not detectably different from the baseline?

For one (ablation, problem, variant) and a metric m where lower is better (rel_l2, time per
epoch, wall time), take the seeds that both the variant and the baseline ran, and per seed the
log ratio d_s = log m_variant(s) - log m_baseline(s). Then

    ratio    = exp(mean d)                       (geometric-mean ratio, variant / baseline)
    interval = exp(mean d -+ t_{n-1, 0.975} sd(d) / sqrt(n))    (Student t on the log ratios)

A t interval on the logs, not a bootstrap: with 3 to 5 seeds a bootstrap has too few distinct
resamples to give a 95 % interval. Verdicts: ``better`` when the whole interval lies below 1,
``worse`` when above, ``failed`` when a run of either arm failed, and ``no detectable
difference`` otherwise, including one seed (no interval) and time ratios whose interval stays
within `TIME_RESOLUTION` of 1 (the run-to-run timing jitter of a shared machine; see `paired_ratio`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cpikan.study.registry import BASELINE

LEVEL = 0.95
BETTER, WORSE, SAME, FAILED = "better", "worse", "no detectable difference", "failed"
VERDICTS = (BETTER, WORSE, SAME, FAILED)
# Lower is better for each; the metric names are those of the run files.
JUDGED = ("rel_l2", "time_per_epoch_ms", "wall_time_s")
TIME_RESOLUTION = 1.05  # a time ratio whose whole interval lies in [1/1.05, 1.05] is no difference


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

    `resolution` >= 1: an interval inside [1/resolution, resolution] counts as no difference even
    when it excludes 1 (for timings, whose jitter is systematic within a batch, not only random).
    With one pair the interval is (0, inf) and the verdict is no detectable difference.
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
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    low, high = math.exp(mean - half), math.exp(mean + half)
    if high < 1 and not low >= 1 / resolution:
        verdict = BETTER
    elif low > 1 and not high <= resolution:
        verdict = WORSE
    else:
        verdict = SAME
    return Ratio(math.exp(mean), low, high, n, verdict)


def verdicts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (ablation, problem, variant other than the baseline) of a runs frame
    (`cpikan.study.report.frame`): for each judged metric its ratio, interval and verdict.

    Columns: ablation, problem, variant, seeds (paired), then ``<metric>_ratio``, ``<metric>_low``,
    ``<metric>_high``, ``<metric>_verdict`` for rel_l2, time_per_epoch_ms and wall_time_s.
    A variant with a failed run (or whose baseline failed) is ``failed`` for every metric.
    """
    rows = []
    for (ablation, problem), group in runs.groupby(["ablation", "problem"], sort=False):
        base = group[group.variant == BASELINE].set_index("seed")
        for variant, arm in group[group.variant != BASELINE].groupby("variant", sort=False):
            arm = arm.set_index("seed")
            seeds = sorted(set(arm.index) & set(base.index))
            failed = bool((arm.status != "ok").any() or (base.loc[seeds].status != "ok").any()) or not seeds
            row = {"ablation": ablation, "problem": problem, "variant": variant, "seeds": len(seeds)}
            for metric in JUDGED:
                if failed:
                    result = Ratio(math.nan, math.nan, math.nan, len(seeds), FAILED)
                else:
                    result = paired_ratio(base.loc[seeds, metric], arm.loc[seeds, metric],
                                          resolution=1.0 if metric == "rel_l2" else TIME_RESOLUTION)
                row |= {f"{metric}_ratio": result.ratio, f"{metric}_low": result.low,
                        f"{metric}_high": result.high, f"{metric}_verdict": result.verdict}
            rows.append(row)
    columns = ["ablation", "problem", "variant", "seeds"] + [f"{m}_{p}" for m in JUDGED
                                                             for p in ("ratio", "low", "high", "verdict")]
    return pd.DataFrame(rows, columns=columns)


def interval_text(ratio: float, low: float, high: float) -> str:
    """``0.42 [0.31, 0.57]``: a ratio and its interval for tables."""
    if not math.isfinite(ratio):
        return "–"
    return f"{ratio:.3g} [{low:.3g}, {high:.3g}]"
