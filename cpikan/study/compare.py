"""Two studies side by side (``cpikan study compare A B``): the verdicts that differ, and how.

A and B are profile folders, ``<results root>/<profile>``, each holding ``runs/``: e.g. the same
study on other seeds, on another machine or at another commit. Both verdict tables are computed as
the report computes them (`cpikan.study.report.gather`) and matched by (ablation, problem, variant)
and metric (`cpikan.study.verdicts.JUDGED`). A pair is compared where both studies judged it (a word
of `VERDICTS` on both sides: not a metric a study did not record, nor `ONE_PHASE`). A differing
pair is classified:

- ``flip``: better in one study, worse in the other;
- ``borderline``: in one of the two, the printed interval ends within a factor `NEAR` of 1 (its
  bound nearest 1 lies in [1 / NEAR, NEAR]): a verdict a small shift of the data turns over;
- ``other``: anything else, e.g. a failed run, or a clear interval against a wide one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from cpikan.config import ConfigError
from cpikan.study.report import gather
from cpikan.study.verdicts import BETTER, FAILED, JUDGED, LABELS, VERDICTS, WORSE, interval_text

FLIP, BORDERLINE, OTHER = "flip", "borderline", "other"
KINDS = (FLIP, BORDERLINE, OTHER)
NEAR = 1.25  # an interval ending within this factor of 1 is borderline
KEYS = ["ablation", "problem", "variant", "metric"]
SIDES = ("a", "b")


def near_one(low: float, high: float, factor: float = NEAR) -> bool:
    """Whether the bound of [low, high] nearest 1 (in log) lies in [1 / factor, factor]; an open
    bound (0, inf) or NaN is never near."""
    distances = [abs(math.log(v)) for v in (low, high) if 0 < v < math.inf]
    return bool(distances) and min(distances) <= math.log(factor)


def classify(a: pd.Series, b: pd.Series) -> str:
    """`FLIP`, `BORDERLINE` or `OTHER` for two differing judgements, each with low, high, verdict."""
    if {a.verdict, b.verdict} == {BETTER, WORSE}:
        return FLIP
    if FAILED not in (a.verdict, b.verdict) and (near_one(a.low, a.high) or near_one(b.low, b.high)):
        return BORDERLINE
    return OTHER


def _long(table: pd.DataFrame) -> pd.DataFrame:
    """A verdicts table as one row per (ablation, problem, variant, metric): seeds, ratio, low, high, verdict."""
    parts = [table[["ablation", "problem", "variant", "seeds"]].assign(
        metric=metric, **{c: table[f"{metric}_{c}"] for c in ("ratio", "low", "high", "verdict")})
        for metric in JUDGED]
    return pd.concat(parts, ignore_index=True) if len(table) else pd.DataFrame(
        columns=[*KEYS, "seeds", "ratio", "low", "high", "verdict"])


def study_verdicts(folder: str | os.PathLike) -> pd.DataFrame:
    """The verdicts table of the profile folder `folder` (``<results root>/<profile>``), as the report's."""
    folder = Path(folder)
    if not (folder / "runs").is_dir():
        raise ConfigError(f"{folder} holds no runs/ folder: name a profile folder, e.g. reports/quick")
    return gather(folder.parent, folder.name).verdicts


def compare_studies(a: str | os.PathLike, b: str | os.PathLike) -> pd.DataFrame:
    """Both studies' verdicts, matched: one row per (ablation, problem, variant, metric) that either
    study has, in A's order, then B's others.

    Columns: ablation, problem, variant, metric; for each study s in (a, b): seeds_s, ratio_s,
    low_s, high_s (the printed interval), verdict_s (NaN where s has no such row); compared (both
    judged it), agree (compared and the same word), kind (`KINDS` for a compared pair that differs,
    else "").
    """
    left, right = (_long(study_verdicts(folder)) for folder in (a, b))
    table = left.assign(order=range(len(left))).merge(right.assign(order=range(len(right))), on=KEYS, how="outer",
                                                      suffixes=("_a", "_b"))
    table = table.sort_values(["order_a", "order_b"], ignore_index=True).drop(columns=["order_a", "order_b"])
    table["compared"] = table.verdict_a.isin(VERDICTS) & table.verdict_b.isin(VERDICTS)
    table["agree"] = table.compared & (table.verdict_a == table.verdict_b)
    sides = {s: table[[f"{c}_{s}" for c in ("low", "high", "verdict")]].set_axis(["low", "high", "verdict"], axis=1)
             for s in SIDES}
    table["kind"] = [classify(sides["a"].loc[i], sides["b"].loc[i]) if table.compared[i] and not table.agree[i]
                     else "" for i in table.index]
    return table


def format_comparison(table: pd.DataFrame, a: str = "A", b: str = "B") -> str:
    """The differing rows of a `compare_studies` table, each with both intervals and its kind, then
    one line: rows compared, agreeing, differing (by kind), and rows only one study judged."""
    differ = table[table.compared & ~table.agree]
    lines = []
    if len(differ):
        shown = pd.DataFrame({
            "row": [f"{r.ablation}/{r.variant} · {r.problem}" for r in differ.itertuples()],
            "metric": [LABELS.get(m, m) for m in differ.metric],
            **{name: [_judgement(differ.loc[i], s) for i in differ.index] for name, s in zip((a, b), SIDES)},
            "kind": differ.kind})
        lines.append(shown.to_markdown(index=False, tablefmt="simple", disable_numparse=True))
    else:
        lines.append("no verdict differs")
    counts = ", ".join(f"{int((differ.kind == k).sum())} {k}" for k in KINDS)
    alone = int((~table.compared).sum())
    lines.append(f"{int(table.compared.sum())} rows compared (ablation, problem, variant, metric): "
                 f"{int(table.agree.sum())} agree, {len(differ)} differ ({counts})"
                 + (f"; {alone} not judged in both" if alone else ""))
    return "\n".join(lines)


def _judgement(row: pd.Series, side: str) -> str:
    verdict = row[f"verdict_{side}"]
    text = interval_text(row[f"ratio_{side}"], row[f"low_{side}"], row[f"high_{side}"])
    return verdict if text == "–" else f"{text} {verdict}"
