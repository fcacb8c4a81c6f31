"""Plotly figures of study runs: history curves over seeds, error against training time, metric
bars, cost against points, the collocation cloud, coefficient scales, a reproduction against its
paper (each takes a list of `cpikan.study.store.StudyRun`), and the forest plot of a verdicts table.

Colours follow the variant's first appearance, so a variant keeps its colour across panels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cpikan.config import RunConfig, resolve
from cpikan.losses import weight_matrices
from cpikan.models import initial_network
from cpikan.runs import build_problem
from cpikan.study import timeline
from cpikan.study.published import compare
from cpikan.study.registry import BASELINE, variant_label
from cpikan.study.reproductions import Reproduction
from cpikan.study.store import StudyRun
from cpikan.study.verdicts import ACCURACY, LABELS

MAX_POINTS = 1000  # per curve; longer histories are thinned evenly
PALETTE = qualitative.Plotly + qualitative.Dark24


def _label(run: StudyRun, single: bool) -> str:
    return variant_label(run.ablation, run.variant, single)


def _colors(labels: Sequence[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(dict.fromkeys(labels))}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _panels(runs: Sequence[StudyRun], facet: str) -> tuple[list[str], bool]:
    panels = list(dict.fromkeys(getattr(r, facet) for r in runs))
    return panels, len({r.ablation for r in runs}) == 1


def curves(runs: Sequence[StudyRun], keys: str | Sequence[str] = "loss", log_y: bool = True,
           facet: str = "problem", title: str | None = None) -> go.Figure:
    """History `keys` against epoch: per variant the median over seeds and a min–max band.

    One panel per value of `facet` ("problem" or "ablation"); several keys get one line each
    (dash per key). Keys a run did not log are skipped.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    panels, single = _panels(runs, facet)
    colors = _colors(_label(r, single) for r in runs)
    fig = make_subplots(rows=1, cols=max(len(panels), 1), subplot_titles=panels)
    shown = set()
    for col, panel in enumerate(panels, start=1):
        groups: dict[tuple[str, str], list[pd.Series]] = {}
        for r in runs:
            if getattr(r, facet) != panel or r.result.status != "ok":
                continue
            for key in keys:
                values = r.result.history.get(key)
                if values:
                    series = pd.Series(values, index=r.result.history["epoch"], dtype=float)
                    groups.setdefault((_label(r, single), key), []).append(series)
        for (label, key), series in groups.items():
            seeds = pd.concat(series, axis=1).sort_index()
            step = max(1, math.ceil(len(seeds) / MAX_POINTS))
            seeds = seeds.iloc[::step]
            name = label if len(keys) == 1 else f"{label} {key}"
            dash = ("solid", "dash", "dot", "dashdot")[keys.index(key) % 4]
            x = list(seeds.index)
            if seeds.shape[1] > 1:
                fig.add_trace(go.Scatter(x=x + x[::-1], y=list(seeds.max(axis=1)) + list(seeds.min(axis=1))[::-1],
                                         fill="toself", fillcolor=_rgba(colors[label], 0.15), line_width=0,
                                         hoverinfo="skip", showlegend=False, legendgroup=name), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=seeds.median(axis=1), name=name, legendgroup=name,
                                     showlegend=name not in shown, line=dict(color=colors[label], dash=dash)),
                          row=1, col=col)
            shown.add(name)
    fig.update_xaxes(title_text="epoch")
    if log_y:
        fig.update_yaxes(type="log")
    fig.update_layout(title=title or ", ".join(keys), height=420)
    return fig


def _value(run: StudyRun, metric: str) -> float:
    value = run.result.metrics.get(metric)
    if value is None:
        logged = [v for v in run.result.history.get(metric, []) if v is not None]
        value = logged[-1] if logged else math.nan
    return float(value) if isinstance(value, (int, float)) else math.nan


def bars(runs: Sequence[StudyRun], metrics: Sequence[str], log_y: bool = False,
         title: str | None = None) -> go.Figure:
    """One panel per metric: per variant (x) and problem (colour) the median over seeds, min–max whiskers.

    A metric is read from the run's metrics, or else the last value of its history (points_per_s).
    """
    single = len({r.ablation for r in runs}) == 1
    rows = [{"variant": _label(r, single), "problem": r.problem, **{m: _value(r, m) for m in metrics}}
            for r in runs if r.result.status == "ok"]
    df = pd.DataFrame(rows, columns=["variant", "problem", *metrics])
    colors = _colors(df.problem)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics))
    for col, metric in enumerate(metrics, start=1):
        for problem, sub in df.groupby("problem", sort=False):
            stats = sub.groupby("variant", sort=False)[metric].agg(["median", "min", "max"])
            fig.add_trace(go.Bar(x=list(stats.index), y=stats["median"], name=problem, legendgroup=problem,
                                 showlegend=col == 1, marker_color=colors[problem],
                                 error_y=dict(type="data", symmetric=False, array=stats["max"] - stats["median"],
                                              arrayminus=stats["median"] - stats["min"])), row=1, col=col)
    if log_y:
        fig.update_yaxes(type="log")
    fig.update_layout(title=title or ", ".join(metrics), barmode="group", height=420)
    return fig


def cost_vs_points(runs: Sequence[StudyRun], metric: str = "time_per_epoch_ms") -> go.Figure:
    """`metric` against the number of collocation points (log-log), one line per variant."""
    single = len({r.ablation for r in runs}) == 1
    rows = [{"variant": _label(r, single), "n_pde": r.result.config["sampling"]["n_pde"], "problem": r.problem,
             metric: _value(r, metric)} for r in runs if r.result.status == "ok"]
    df = pd.DataFrame(rows, columns=["variant", "n_pde", "problem", metric])
    colors = _colors(df.variant)
    fig = go.Figure()
    for variant, sub in df.groupby("variant", sort=False):
        stats = sub.groupby(["n_pde", "problem"])[metric].median().reset_index().sort_values("n_pde")
        fig.add_trace(go.Scatter(x=stats.n_pde, y=stats[metric], mode="lines+markers", name=variant,
                                 text=stats.problem, line_color=colors[variant]))
    fig.update_xaxes(type="log", title_text="collocation points")
    fig.update_yaxes(type="log", title_text=metric)
    fig.update_layout(title=f"{metric} against collocation points", height=420)
    return fig


def _first_problem(runs: Sequence[StudyRun]) -> list[StudyRun]:
    """One ok run per variant of the first problem: the one with the lowest seed."""
    ok = [r for r in runs if r.result.status == "ok" and r.problem == runs[0].problem]
    first: dict[str, StudyRun] = {}
    for r in sorted(ok, key=lambda r: r.seed):
        first.setdefault(r.variant, r)
    return sorted(first.values(), key=ok.index)


def point_clouds(runs: Sequence[StudyRun]) -> go.Figure:
    """The final collocation points of each ok variant (first problem, first seed).

    Only runs trained in this kernel carry their points; a run reused from its file shows none.
    """
    first = _first_problem(runs)
    fig = make_subplots(rows=1, cols=max(len(first), 1), subplot_titles=[r.variant for r in first])
    for col, r in enumerate(first, start=1):
        points = r.result.collocation
        if points is None:
            axis = "" if col == 1 else col
            fig.add_annotation(text="no points (run reused from its file)", showarrow=False,
                               xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0.5)
            continue
        points = points.numpy()
        if points.shape[1] == 1:
            fig.add_trace(go.Histogram(x=points[:, 0], nbinsx=50, showlegend=False), row=1, col=col)
        else:
            fig.add_trace(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", marker_size=2,
                                       showlegend=False), row=1, col=col)
    fig.update_layout(title=f"collocation points at the end of training: {first[0].problem if first else ''}",
                      height=400)
    return fig


def coefficient_scales(runs: Sequence[StudyRun]) -> go.Figure:
    """Standard deviation of each layer's coefficients (weights), per ok variant: at initialization
    (the network rebuilt from the run's config and seed) and, for runs trained in this kernel, after.
    """
    first = _first_problem(runs)
    colors = _colors(r.variant for r in first)
    fig = go.Figure()
    for r in first:
        cfg = RunConfig.from_dict(r.result.config)
        problem = build_problem(cfg)
        net = initial_network(resolve(cfg, problem), problem.box)
        for stage, model, dash in (("init", net, "solid"), ("trained", r.result.model, "dash")):
            if model is None:
                continue
            core = getattr(model, "net", model)  # under a hard constraint, the network inside it
            stds = [float(core.flat.detach()[0, c].float().std()) for c in weight_matrices(core)]
            fig.add_trace(go.Scatter(x=list(range(1, len(stds) + 1)), y=stds, mode="lines+markers",
                                     name=f"{r.variant} ({stage})", line=dict(color=colors[r.variant], dash=dash)))
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_yaxes(type="log", title_text="coefficient std")
    fig.update_layout(title="coefficient scale per layer", height=420)
    return fig


VERDICT_COLORS = {"better": "#2ca02c", "worse": "#d62728", "no detectable difference": "#7f7f7f",
                  "failed": "#000000"}


def forest(table: pd.DataFrame, metrics: str | Sequence[str] = ACCURACY, title: str | None = None) -> go.Figure:
    """Forest plot of a verdicts table (`cpikan.study.verdicts.verdicts`): one row per variant x
    problem, grouped by `group` when the table has that column (e.g. the stage), and one panel per
    metric (by default rel_l2 after Adam and at the end of the run): the paired ratio variant /
    baseline with its printed (adjusted) interval on a log axis, a line at 1, coloured by verdict.
    Left of the line is lower (better) than the baseline. A one-seed interval, (0, inf), is drawn as
    a long bar; a failed or unjudged row has no marker, and a metric no row has a ratio for (e.g.
    rel_l2 after Adam where no run had an L-BFGS phase) no panel, unless it is the only one."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    metrics = [m for m in metrics if table[f"{m}_ratio"].notna().any()] or metrics[:1]
    rows = table.iloc[::-1]  # plotly draws the first category at the bottom
    labels = [f"{r.ablation}/{r.variant} · {r.problem}" for r in rows.itertuples()]
    if "group" in rows:
        labels = [f"{g} · {label}" for g, label in zip(rows["group"], labels)]
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.03)
    for col, metric in enumerate(metrics, start=1):
        for verdict, color in VERDICT_COLORS.items():
            picked = (rows[f"{metric}_verdict"] == verdict).to_numpy()
            if not picked.any():
                continue
            sub = rows[picked]
            ratio, low, high = sub[f"{metric}_ratio"], sub[f"{metric}_low"], sub[f"{metric}_high"]
            finite_low = low.where(low > 0, ratio / 1e3)  # one seed: an open interval, drawn long
            finite_high = high.where(high < 1e300, ratio * 1e3)
            fig.add_trace(go.Scatter(
                x=ratio, y=[label for label, p in zip(labels, picked) if p], mode="markers", name=verdict,
                legendgroup=verdict, showlegend=verdict not in {t.name for t in fig.data},
                marker=dict(color=color, size=9),
                error_x=dict(type="data", symmetric=False, array=finite_high - ratio, arrayminus=ratio - finite_low),
                customdata=sub[["seeds", f"{metric}_p"]],
                hovertemplate=f"{LABELS.get(metric, metric)} ratio %{{x:.3g}}<br>seeds %{{customdata[0]}}"
                              "<br>p %{customdata[1]:.2g}<extra></extra>"), row=1, col=col)
        fig.add_vline(x=1.0, line_dash="dash", line_color="#444", row=1, col=col)
        fig.update_xaxes(title_text=f"{LABELS.get(metric, metric)} ratio", row=1, col=col)
    fig.update_xaxes(type="log")
    fig.update_yaxes(categoryorder="array", categoryarray=labels)
    fig.update_layout(title=title or "paired-seed ratios, variant / baseline (geometric mean, adjusted interval)",
                      height=max(300, 26 * len(labels) + 140), legend_title_text="verdict")
    return fig


def error_vs_time(runs: Sequence[StudyRun], points: int = 200, title: str | None = None) -> go.Figure:
    """Relative L2 error (history, evaluation subset; log axis) against training time in seconds
    (evaluation excluded), both phases: per variant the median over seeds and a min–max band.

    One panel per problem. Each seed is interpolated onto a common grid of `points` times (log-
    linear; after a seed stopped it keeps its final error). A dotted line marks the median
    baseline final error, the target of `cpikan.study.timeline.time_to_reach`.
    """
    panels, single = _panels(runs, "problem")
    colors = _colors(_label(r, single) for r in runs)
    fig = make_subplots(rows=1, cols=max(len(panels), 1), subplot_titles=panels)
    for col, problem in enumerate(panels, start=1):
        curves: dict[str, list[pd.Series]] = {}
        for r in runs:
            curve = timeline.error_curve(r)
            if r.problem == problem and not curve.empty:
                curves.setdefault(_label(r, single), []).append(curve)
        for label, seeds in curves.items():
            grid = np.linspace(0.0, max(c.index[-1] for c in seeds), points)
            values = np.vstack([timeline.on_grid(c, grid) for c in seeds])
            keep = ~np.all(np.isnan(values), axis=0)
            x, values = list(grid[keep]), values[:, keep]
            if len(seeds) > 1:
                fig.add_trace(go.Scatter(x=x + x[::-1], y=[*np.nanmax(values, 0), *np.nanmin(values, 0)[::-1]],
                                         fill="toself", fillcolor=_rgba(colors[label], 0.15), line_width=0,
                                         hoverinfo="skip", showlegend=False, legendgroup=label), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=np.nanmedian(values, 0), name=label, legendgroup=label,
                                     showlegend=label not in {t.name for t in fig.data},
                                     line=dict(color=colors[label])), row=1, col=col)
            if label == BASELINE:
                fig.add_hline(y=float(np.median([c.iloc[-1] for c in seeds])), line_dash="dot",
                              line_color=colors[label], row=1, col=col)
    fig.update_xaxes(title_text="training time (s)")
    fig.update_yaxes(type="log", title_text="rel_l2")
    fig.update_layout(title=title or "error against training time", height=420)
    return fig


def against_published(runs: Sequence[StudyRun], entry: Reproduction) -> go.Figure:
    """A reproduction's arms (x) on a log rel_l2 axis: our seeds (dots), their geometric mean
    (bar), the published value (diamond, with its ± spread when the paper gives one)."""
    fig = go.Figure()
    for row in compare(runs, entry).itertuples():
        ours = [r.result.metrics["rel_l2"] for r in runs
                if r.ablation == entry.name and r.variant == row.arm and r.result.status == "ok"]
        label = f"{row.arm}<br>{row.method}"
        fig.add_trace(go.Bar(x=[label], y=[row.rel_l2_geomean], name="ours: geometric mean", marker_color=PALETTE[0],
                             opacity=0.4, legendgroup="mean", showlegend=row.Index == 0))
        fig.add_trace(go.Scatter(x=[label] * len(ours), y=ours, mode="markers", name="ours: one seed",
                                 marker=dict(color=PALETTE[0], size=8), legendgroup="seeds",
                                 showlegend=row.Index == 0))
        if row.published is not None and math.isfinite(row.published):
            spread = row.published_spread if row.published_spread is not None else math.nan
            fig.add_trace(go.Scatter(x=[label], y=[row.published], mode="markers", name=f"published ({row.source})",
                                     marker=dict(color=PALETTE[1], size=13, symbol="diamond"),
                                     error_y=dict(type="data", array=[spread], visible=math.isfinite(spread))))
    fig.update_yaxes(type="log", title_text="relative L2 error")
    fig.update_layout(title=f"{entry.name}: published against ours", height=420, barmode="overlay")
    return fig
