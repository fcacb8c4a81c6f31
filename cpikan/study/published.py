"""Published numbers against ours: the match rule, the reproduction table, its summary and files.

Match rule (`verdict`), per arm, on the relative L2 errors of our seeds (all runs ok):
  - the paper gives a spread s (± one standard deviation): ``matches within spread`` when the
    published interval [v - s, v + s] and our seeds' [min, max] overlap;
  - the paper gives no spread: ``matches within spread`` when v lies in our seeds' [min, max],
    or our geometric mean lies within a factor `FACTOR` (2) of v;
  - otherwise ``does not match``; ``no published value`` when we have none to compare with, and
    ``failed`` when a run of the arm failed.
The rule is deliberately loose (a factor of 2 where the paper gives one number, for one run of
other software): a reproduction that misses it has missed by a lot.

Each arm other than the baseline is also compared with the baseline arm on paired seeds
(`cpikan.study.verdicts.paired_ratio`): the question the paper's comparison answers.

The table of every reproduction of a profile goes to ``<results_dir>/<profile>/tables/
reproductions.csv|md`` (`write_tables`, run by ``cpikan study reproduce``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cpikan.study.budget import budget
from cpikan.study.reproductions import NOT_RETRIEVED, PROBE, Published, Reproduction, names
from cpikan.study.reproductions import get as get_reproduction
from cpikan.study.store import StudyRun, load_runs
from cpikan.study.verdicts import FAILED, interval_text, paired_ratio

MATCH, NO_MATCH, NO_VALUE = "matches within spread", "does not match", "no published value"
FACTOR = 2.0
TABLE = "reproductions"  # tables/<TABLE>.csv|md
RULE = ("Verdict: with a published spread, our seeds' [min, max] must overlap the published mean ± std; "
        f"without one, the published value must lie in our [min, max] or within a factor {FACTOR:g} of our "
        "geometric mean. \"vs baseline\": the paired geometric-mean ratio arm / baseline over seeds, with a "
        "95 % t interval.")


def verdict(published: Published, ours: Sequence[float]) -> str:
    """The match rule of the module docstring for one arm: `ours` are the arm's relative L2
    errors, one per seed, all from ok runs (an empty or non-finite list is ``failed``)."""
    values = np.asarray(ours, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)) or not np.all(values > 0):
        return FAILED
    if published.value is None:
        return NO_VALUE
    low, high, v = float(values.min()), float(values.max()), published.value
    if published.spread is not None:
        return MATCH if v - published.spread <= high and low <= v + published.spread else NO_MATCH
    geometric = math.exp(float(np.log(values).mean()))
    return MATCH if low <= v <= high or 1 / FACTOR <= geometric / v <= FACTOR else NO_MATCH


def compare(runs: Sequence[StudyRun], entry: Reproduction) -> pd.DataFrame:
    """One row per arm of `entry` that has runs (registry order): the published number and ours.

    Columns: reproduction, problem, arm, method, published, published_spread, published_runs,
    source, seeds (ok runs), failed, rel_l2_mean, rel_l2_std, rel_l2_geomean, rel_l2_min,
    rel_l2_max, wall_time_s (mean per run), members (the most seeds a run trained with at once: its
    wall time is theirs together), time_per_epoch_ms, epochs, verdict, then against the
    baseline on paired seeds: ratio, ratio_low, ratio_high, paired_verdict; run_files.
    """
    mine = [r for r in runs if r.ablation == entry.name]
    base = {r.seed: r.result for r in mine if r.variant == entry.variants[0].name}
    rows = []
    for variant in entry.variants:
        arm = [r for r in mine if r.variant == variant.name]
        if not arm:
            continue
        ok = [r.result for r in arm if r.result.status == "ok"]
        errors = np.array([r.metrics["rel_l2"] for r in ok], dtype=float)
        number = entry.published[variant.name]
        failed = len(arm) - len(ok)
        row = {"reproduction": entry.name, "problem": arm[0].problem, "arm": variant.name, "method": number.method,
               "published": number.value, "published_spread": number.spread, "published_runs": number.runs,
               "source": number.source, "seeds": len(ok), "failed": failed,
               "rel_l2_mean": errors.mean() if len(ok) else math.nan,
               "rel_l2_std": errors.std(ddof=1) if len(ok) > 1 else math.nan,
               "rel_l2_geomean": math.exp(np.log(errors).mean()) if len(ok) and np.all(errors > 0) else math.nan,
               "rel_l2_min": errors.min() if len(ok) else math.nan, "rel_l2_max": errors.max() if len(ok) else math.nan,
               "wall_time_s": np.mean([r.metrics["wall_time_s"] for r in ok]) if ok else math.nan,
               "members": max((int(r.metrics.get("members", 1)) for r in ok), default=1),
               "time_per_epoch_ms": np.mean([r.metrics["time_per_epoch_ms"] for r in ok]) if ok else math.nan,
               "epochs": np.mean([r.metrics["epochs_run"] for r in ok]) if ok else math.nan,
               "verdict": FAILED if failed else verdict(number, errors)}
        row |= _against_baseline(arm, base, variant.name == entry.variants[0].name)
        rows.append(row | {"run_files": ";".join(str(r.path) for r in arm)})
    return pd.DataFrame(rows)


def _against_baseline(arm: list[StudyRun], base: dict, is_base: bool) -> dict:
    """The paired ratio arm / baseline of rel_l2 over the seeds both ran (none for the baseline)."""
    if is_base:
        return {"ratio": math.nan, "ratio_low": math.nan, "ratio_high": math.nan, "paired_verdict": ""}
    pairs = [(base[r.seed], r.result) for r in arm if r.seed in base]
    if not pairs or any(b.status != "ok" or v.status != "ok" for b, v in pairs):
        return {"ratio": math.nan, "ratio_low": math.nan, "ratio_high": math.nan, "paired_verdict": FAILED}
    result = paired_ratio([b.metrics["rel_l2"] for b, _ in pairs], [v.metrics["rel_l2"] for _, v in pairs])
    return {"ratio": result.ratio, "ratio_low": result.low, "ratio_high": result.high,
            "paired_verdict": result.verdict}


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A `compare` table (of one or several reproductions) for reading: published vs ours."""
    out = pd.DataFrame({
        "reproduction": table.reproduction, "arm": table.arm, "method": table.method,
        "published rel_l2": [_published(v, s, n) for v, s, n in
                             zip(table.published, table.published_spread, table.published_runs)],
        "source": table.source,
        "ours: mean ± std": [_pm(m, s) for m, s in zip(table.rel_l2_mean, table.rel_l2_std)],
        "geo. mean": [_e(v) for v in table.rel_l2_geomean],
        "seeds": [f"{n}" + (f" (+{f} failed)" if f else "") for n, f in zip(table.seeds, table.failed)],
        "wall time / run": [_wall(v, m) for v, m in zip(table.wall_time_s, table.members)],
        "verdict": table.verdict,
        "vs baseline (paired, 95 %)": ["" if not v else f"{interval_text(r, lo, hi)} {v}" for r, lo, hi, v in
                                       zip(table.ratio, table.ratio_low, table.ratio_high, table.paired_verdict)],
    })
    return out


def _wall(seconds: float, members: int) -> str:
    if not math.isfinite(seconds):
        return "–"
    return f"{seconds:.0f} s" + (f" ({members} seeds together)" if members > 1 else "")


def table(runs: Sequence[StudyRun], entry: Reproduction) -> pd.DataFrame:
    """The readable table of `entry`'s runs (what its notebook shows), indexed by arm."""
    compared = compare(runs, entry)
    if compared.empty:
        return pd.DataFrame()
    return readable(compared).drop(columns="reproduction").set_index("arm")


def summary(runs: Sequence[StudyRun], entry: Reproduction) -> str:
    """Deterministic, rounded lines for the notebook's checked cell: per arm our geometric mean
    (one significant digit), the published value, the verdict, and the paired ratio to the baseline."""
    compared = compare(runs, entry)
    lines = []
    for row in compared.itertuples():
        text = f"{row.arm}: ours {_e(row.rel_l2_geomean, 0)} over {row.seeds} seed{'s' * (row.seeds != 1)}"
        text += {NOT_RETRIEVED: ", published: not retrieved", PROBE: ", a probe"}.get(
            row.source, f", published {_e(row.published, 1)} ({row.source.split(' ')[0]})")
        text += f": {row.verdict}"
        if row.paired_verdict:
            ratio = f"{row.ratio:.1g}" if math.isfinite(row.ratio) else "–"
            text += f"; vs baseline x{ratio} ({row.paired_verdict})"
        lines.append(text)
    return "\n".join(lines) or "no runs"


def write_tables(results_dir: str | os.PathLike, profile: str) -> list[Path]:
    """Write the table of every reproduction with runs under ``<results_dir>/<profile>`` to
    ``tables/reproductions.csv`` (every number and the run files) and ``.md`` (readable, then the
    setting its runs record: seeds, machine, devices, torch; `cpikan.study.budget`)."""
    runs = [r for r in load_runs(results_dir, profile) if r.ablation in names()]
    parts = [compare(runs, get_reproduction(name)) for name in names()]
    table_ = pd.concat([p for p in parts if not p.empty] or [pd.DataFrame()], ignore_index=True)
    folder = Path(results_dir) / profile / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    csv, md = folder / f"{TABLE}.csv", folder / f"{TABLE}.md"
    table_.to_csv(csv, index=False)
    text = readable(table_).to_markdown(index=False, disable_numparse=True) if not table_.empty else "(no runs)"
    setting = "\n".join(f"- {label}: {value}" for label, value in budget(runs, profile).facts())
    md.write_text(f"{text}\n\n{RULE}\n\n{setting}\n")
    return [csv, md]


def _published(value: float | None, spread: float | None, runs: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.2e}" + (f" ± {spread:.1e}" if spread is not None and math.isfinite(spread) else "")
    return text + (f" ({runs:.0f} runs)" if runs is not None and math.isfinite(runs) else "")


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.2e}" + (f" ± {std:.1e}" if math.isfinite(std) else "")


def _e(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}e}" if value is not None and math.isfinite(value) else "–"
