"""Plotly figures of the explorer: live loss curves, prediction vs exact solution, metrics table."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cpikan.metrics import RUN_METRICS, predict
from cpikan.problems.base import Problem
from cpikan.runs import RunResult

# one colour per loss series, so a previous run's dashed curve matches this run's solid one
COLORS = {"loss": "black", "loss_pde": "#1f77b4", "loss_bc": "#2ca02c", "loss_ic": "#d62728", "loss_data": "#9467bd"}
PLOT = {"height": 340, "margin": {"l": 55, "r": 20, "t": 40, "b": 45}}


def loss_traces(history: dict[str, list], prefix: str = "", dash: str | None = None) -> list[dict]:
    """One line per loss series of a history: the weighted total ``loss`` and each ``loss_<term>``."""
    epochs = history.get("epoch", [])
    return [{"name": prefix + key, "x": list(epochs), "y": [math.nan if v is None else v for v in values],
             "line": {"dash": dash, "color": COLORS.get(key)}, "mode": "lines"}
            for key, values in history.items() if key == "loss" or key.startswith("loss_")]


def sync_traces(fig: go.FigureWidget, traces: list[dict]) -> None:
    """Make `fig` show exactly `traces` (matched by name): drop others, update, add missing."""
    wanted = {t["name"] for t in traces}
    if any(t.name not in wanted for t in fig.data):
        fig.data = [t for t in fig.data if t.name in wanted]
    present = {t.name: t for t in fig.data}
    with fig.batch_update():
        for spec in traces:
            if spec["name"] in present:
                present[spec["name"]].update(x=spec["x"], y=spec["y"])
            else:
                fig.add_scatter(**spec)


def _grid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For 2-D points on a tensor grid: (axis-0 values, axis-1 values, order that sorts the points
    into a (n0, n1) array); None for scattered points."""
    a, b = np.unique(x[:, 0]), np.unique(x[:, 1])
    if len(a) * len(b) != len(x):
        return None
    return a, b, np.lexsort((x[:, 1], x[:, 0]))


def field_figure(problem: Problem, model: Any, previous: RunResult | None = None) -> go.FigureWidget:
    """Prediction vs exact/reference solution and the error on the problem's evaluation set.

    1-D: solution lines (and the previous run's prediction, dashed) and the signed error.
    2-D: heatmaps of prediction, exact and |error| over (coords[0], coords[1]); time-dependent
    problems have t on the horizontal axis. Otherwise: an empty figure whose title says so.
    """
    x, u = problem.evaluation_set()
    pred = predict(model, x)
    truth = "exact" if problem.exact is not None else "reference"
    names = list(problem.coords)
    if problem.dim == 1:
        order = np.argsort(x[:, 0])
        xs = x[order, 0]
        fig = make_subplots(rows=1, cols=2, subplot_titles=("solution", f"prediction - {truth}"))
        fig.add_scatter(x=xs, y=u[order], name=truth, line={"color": "black"}, row=1, col=1)
        fig.add_scatter(x=xs, y=pred[order], name="prediction", line={"dash": "dot"}, row=1, col=1)
        if previous is not None and previous.problem is not None and previous.problem.name == problem.name:
            fig.add_scatter(x=xs, y=predict(previous.model, x)[order], name="previous prediction",
                            line={"dash": "dash", "color": "gray"}, row=1, col=1)
        fig.add_scatter(x=xs, y=(pred - u)[order], name="error", row=1, col=2)
        fig.update_xaxes(title_text=names[0])
    elif problem.dim == 2 and (grid := _grid(x)) is not None:
        a, b, order = grid
        shape = (len(a), len(b))
        fig = make_subplots(rows=1, cols=3, subplot_titles=("prediction", truth, "|error|"),
                            horizontal_spacing=0.1)
        for col, (values, axis) in enumerate([(pred, "coloraxis"), (u, "coloraxis"),
                                              (np.abs(pred - u), "coloraxis2")], start=1):
            fig.add_heatmap(x=a, y=b, z=values[order].reshape(shape).T, coloraxis=axis, row=1, col=col)
        fig.update_layout(coloraxis={"colorscale": "RdBu_r", "colorbar": {"x": 0.62, "len": 0.9}},
                          coloraxis2={"colorscale": "Viridis", "colorbar": {"x": 1.0, "len": 0.9}})
        fig.update_xaxes(title_text=names[0])
        fig.update_yaxes(title_text=names[1], col=1)
    else:
        fig = go.Figure(layout={"title": f"no field plot for this {problem.dim}-D problem "
                                         "(1-D and gridded 2-D only)"})
    fig.update_layout(width=640 if problem.dim == 1 else 760, showlegend=problem.dim == 1, **PLOT)
    return go.FigureWidget(fig)


def metrics_table(current: dict, previous: dict | None = None) -> str:
    """HTML table of the metrics every run records (`RUN_METRICS`), with the previous run's column when given."""
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))

    head = "<tr><th></th><th>this run</th>" + ("<th>previous run</th>" if previous else "") + "</tr>"
    rows = "".join(f"<tr><td>{key}</td><td>{cell(current.get(key))}</td>"
                   + (f"<td>{cell(previous.get(key))}</td>" if previous else "") + "</tr>"
                   for key in RUN_METRICS)
    return f"<table class='cpikan-metrics-table'>{head}{rows}</table>"
