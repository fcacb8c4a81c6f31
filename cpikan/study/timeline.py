"""Error against training time: each run's relative L2 error as training went on, and the time a
variant takes to reach the baseline's final error, against the baseline's own (`time_to_reach`).

The history of a run records, in both phases (Adam and L-BFGS), ``rel_l2`` on a fixed evaluation
subset (None where not evaluated) and ``time_s``, the training wall time at that row with the
evaluations excluded. A run whose history has no ``rel_l2`` has no curve.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from cpikan.study.registry import BASELINE
from cpikan.study.store import StudyRun
from cpikan.study.verdicts import SHARED_TIME_RESOLUTION, paired_ratio

NEVER = math.inf  # the time to reach an error a run never reached


def error_curve(run: StudyRun) -> pd.Series:
    """rel_l2 (values) against time_s (index, increasing) over the rows that evaluated it; empty
    for a failed run or a history without rel_l2."""
    history = run.result.history
    if run.result.status != "ok" or "rel_l2" not in history or "time_s" not in history:
        return pd.Series(dtype=float)
    points = [(t, e) for t, e in zip(history["time_s"], history["rel_l2"])
              if t is not None and e is not None and math.isfinite(t) and math.isfinite(e)]
    times, errors = zip(*points) if points else ((), ())
    return pd.Series(errors, index=pd.Index(times, name="time_s"), dtype=float, name="rel_l2").sort_index()


def first_time_at(curve: pd.Series, target: float) -> float:
    """The first time_s at which the curve is at or below `target`; `NEVER` if it never is."""
    reached = curve.index[curve.to_numpy() <= target]
    return float(reached[0]) if len(reached) else NEVER


def on_grid(curve: pd.Series, grid: np.ndarray) -> np.ndarray:
    """The curve on `grid` (interpolated linearly in log rel_l2): NaN before its first time, its
    final value after its last (a run that stopped keeps its final error)."""
    if curve.empty:
        return np.full(len(grid), np.nan)
    return np.exp(np.interp(grid, curve.index.to_numpy(), np.log(curve.to_numpy()), left=np.nan))


def time_to_reach(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """Per (ablation, problem, variant other than the baseline): how long the variant trains until
    its rel_l2 (history, evaluation subset) first reaches the baseline's final one, paired by seed,
    against how long the baseline itself took to first get there. Only seeds where both arms have
    an error curve count; a variant with none has no row.

    The ratio: on each seed where the variant reached the target (the baseline always reaches its
    own final error), time variant / baseline; their geometric mean with its 95 % Student t interval
    on the log ratios (`cpikan.study.verdicts.paired_ratio`; below 1: the variant gets there sooner).
    Where the arm's seeds trained together (``members`` > 1) they share one clock, whose jitter is
    common to every seed's ratio: the interval is widened by `SHARED_TIME_RESOLUTION` at each end.

    Columns: ablation, problem, variant, seeds (paired, with curves on both arms), reached (seeds
    where the variant got there: those the ratio is over), target_rel_l2 (median over seeds of the
    baseline's final error), baseline_time_s and time_s (medians over seeds, a seed that never got
    there counting as infinite: `NEVER` when most did not), time_ratio, time_low, time_high (NaN when
    no seed reached; (0, inf) with one), run_files.
    """
    by_key = {(r.ablation, r.problem, r.variant, r.seed): r for r in runs}
    arms: dict[tuple[str, str, str], list[StudyRun]] = {}
    for r in runs:
        if r.variant != BASELINE:
            arms.setdefault((r.ablation, r.problem, r.variant), []).append(r)
    rows = []
    for (ablation, problem, variant), arm in arms.items():
        targets, base_times, times, files = [], [], [], []
        for r in arm:
            base = by_key.get((ablation, problem, BASELINE, r.seed))
            curve, base_curve = error_curve(r), error_curve(base) if base else pd.Series(dtype=float)
            if curve.empty or base_curve.empty:
                continue
            targets.append(float(base_curve.iloc[-1]))
            base_times.append(first_time_at(base_curve, targets[-1]))
            times.append(first_time_at(curve, targets[-1]))
            files += [str(r.path), str(base.path)]
        if not times:
            continue
        reached = [(b, t) for b, t in zip(base_times, times) if t < NEVER]
        shared = any(r.result.metrics.get("members", 1) > 1 for r in arm)
        ratio = paired_ratio(*zip(*reached), resolution=SHARED_TIME_RESOLUTION if shared else 1.0) if reached else None
        rows.append({"ablation": ablation, "problem": problem, "variant": variant, "seeds": len(times),
                     "reached": len(reached), "target_rel_l2": float(np.median(targets)),
                     "baseline_time_s": float(np.median(base_times)), "time_s": float(np.median(times)),
                     "time_ratio": ratio.ratio if ratio else math.nan, "time_low": ratio.low if ratio else math.nan,
                     "time_high": ratio.high if ratio else math.nan, "run_files": ";".join(files)})
    return pd.DataFrame(rows, columns=["ablation", "problem", "variant", "seeds", "reached", "target_rel_l2",
                                       "baseline_time_s", "time_s", "time_ratio", "time_low", "time_high",
                                       "run_files"])
