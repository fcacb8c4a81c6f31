"""The explorer: pick a problem and toggles, train, watch the loss curves and the error field.

    from cpikan.explorer import Explorer
    Explorer(RunConfig(problem="helmholtz2d", profile="smoke"), root="reports")   # last line of a cell

The controls come from `cpikan.explorer.form.ConfigForm` (one per schema key), the figures from
`cpikan.explorer.figures`. Train runs `cpikan.run` in a background thread, so the notebook stays
responsive and Stop can end the run (stop_reason ``"stopped"``); the loss figure updates live
from the run's ``on_epoch`` rows. An invalid combination (a `ConfigError`), a toggle that is not implemented yet and a failed run are
shown as a message in the panel, never as a traceback.
"""

from __future__ import annotations

import html
import re
import shlex
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from cpikan.config import ConfigError, RunConfig, diff, resolve
from cpikan.explorer.form import ConfigForm
from cpikan.explorer.figures import PLOT, field_figure, loss_traces, metrics_table, sync_traces
from cpikan.overrides import format_value, set_arguments
from cpikan.problems.base import Problem
from cpikan.runs import RunResult, build_problem, run, run_path

ABLATION = "explore"
LIVE_INTERVAL_S = 0.3  # at most ~3 loss-figure updates per second while training


# ---------------------------------------------------------------- commands and names

def command_line(cfg: RunConfig) -> str:
    """The ``cpikan run`` command that reproduces `cfg`: a ``--set`` for each key that differs
    from ``RunConfig(problem=..., profile=...)``."""
    base = RunConfig(problem=cfg.problem, profile=cfg.profile)
    command = f"cpikan run --problem {shlex.quote(cfg.problem)} --profile {cfg.profile}"
    sets = set_arguments({key: new for key, (_, new) in diff(base, cfg).items()})
    return f"{command} {sets}" if sets else command


def variant_name(cfg: RunConfig) -> str:
    """A path-safe variant name from the changed keys: ``baseline`` when nothing changed, else e.g.
    ``grad_clip=1.0,amp=bf16,scheduler_params.gamma=0.99``. Seed (it names the file), device and
    threads are not part of it."""
    changed = {k: v for k, (_, v) in diff(RunConfig(problem=cfg.problem, profile=cfg.profile), cfg).items()
               if k not in ("seed", "device", "threads")}
    parts = []
    for key, value in changed.items():
        leaf = key.rsplit(".", 1)[-1]
        items = value.items() if isinstance(value, dict) and value else [(None, value)]
        parts += [f"{leaf}{'.' + sub if sub else ''}={_short(v)}" for sub, v in items]
    return _slug(",".join(parts)) if parts else "baseline"


def _short(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(map(str, value))
    return format_value(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text).strip("_")[:120] or "variant"


# ---------------------------------------------------------------- the panel

def _tagged(widget: w.Widget, name: str) -> w.Widget:
    widget.add_class(f"cpikan-{name}")
    return widget


class Explorer:
    """Control panel, Train/Stop with progress, live loss curves, field plots, metrics, and Save.

    Args:
        cfg: the config the form starts from; default ``RunConfig()``.
        root: results root; Save writes ``run_path(root, profile, "explore", problem, variant, seed)``.
    Attributes: `form` (ConfigForm), `result` / `previous` (the last two finished RunResults),
    `run_config` (the unresolved config of `result`), `thread` (the training thread, if any).
    """

    def __init__(self, cfg: RunConfig | None = None, root: str | Path = "reports") -> None:
        self.form = ConfigForm(cfg)
        self.result: RunResult | None = None
        self.previous: RunResult | None = None
        self.run_config: RunConfig | None = None
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._draw = threading.Lock()

        self.train_button = _tagged(w.Button(description="Train", icon="play", button_style="success"), "train")
        self.stop_button = _tagged(w.Button(description="Stop", icon="stop", button_style="danger",
                                            disabled=True), "stop")
        self.progress = _tagged(w.IntProgress(value=0, min=0, max=1, description="epochs"), "progress")
        self.compare = _tagged(w.Checkbox(value=False, description="compare with previous run"), "compare")
        self.root = _tagged(w.Text(value=str(root), description="results root"), "root")
        self.variant = _tagged(w.Text(placeholder="auto: from the changed keys", description="variant"), "variant")
        self.save_button = _tagged(w.Button(description="Save run", icon="save", disabled=True), "save")
        self.message = _tagged(w.HTML(), "message")
        self.metrics = _tagged(w.HTML(), "metrics")
        self.command = _tagged(w.HTML(), "command")
        self.loss_figure = go.FigureWidget(layout={"title": "loss", "xaxis_title": "epoch", "yaxis_type": "log",
                                                   "width": 460, **PLOT})
        self.field_box = _tagged(w.Box([go.FigureWidget(layout={"title": "prediction and error", "width": 640,
                                                                 **PLOT})]), "field-plot")

        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        self.save_button.on_click(lambda _: self.save())
        self.compare.observe(lambda _: self.running or self._show_result(), "value")
        self.widget = w.VBox([
            self.form.widget,
            w.HBox([self.train_button, self.stop_button, self.progress, self.compare]),
            self.message,
            w.HBox([_tagged(w.Box([self.loss_figure]), "loss-plot"), self.field_box],
                   layout=w.Layout(flex_flow="row wrap")),
            self.metrics,
            w.HBox([self.root, self.variant, self.save_button]),
            self.command,
        ])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _say(self, text: str, error: bool = False) -> None:
        style = "color:#b00020" if error else "color:#333"
        self.message.value = f"<span style='{style}'>{'⚠ ' if error else ''}{html.escape(text)}</span>"

    # ------------------------------------------------------------ training

    def train(self) -> bool:
        """Start training the form's config in a background thread. Returns False, with the reason
        shown in the panel, when the config is invalid or a run is still going."""
        if self.running:
            self._say("a run is still going: press Stop first", error=True)
            return False
        try:
            cfg = self.form.config()
            problem = build_problem(cfg)
            sized = resolve(cfg, problem)
        except (ValueError, TypeError) as err:  # ConfigError, or a problem factory refusing a parameter
            self._say(f"invalid configuration: {err}", error=True)
            return False
        self._stop.clear()
        self.progress.value, self.progress.max = 0, sized.train.epochs + sized.train.lbfgs_iterations
        self.train_button.disabled, self.stop_button.disabled = True, False
        with self._draw:
            sync_traces(self.loss_figure, self._previous_loss_traces())
        self._say(f"training {cfg.problem} ({cfg.profile}) ...")
        self.thread = threading.Thread(target=self._train, args=(cfg, problem), daemon=True)
        self.thread.start()
        return True

    def stop(self) -> None:
        """Ask the run to stop after the current epoch (stop_reason "stopped")."""
        self._stop.set()
        self._say("stopping ...")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the training thread (if any) has finished."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _train(self, cfg: RunConfig, problem: Problem) -> None:
        history: dict[str, list] = {}
        last_draw = [0.0]

        def on_epoch(row: dict) -> bool:
            for key, value in row.items():
                history.setdefault(key, []).append(value)
            self.progress.value = min(row["epoch"] + 1, self.progress.max)
            if time.monotonic() - last_draw[0] > LIVE_INTERVAL_S:
                last_draw[0] = time.monotonic()
                self._draw_losses(history)
            return self._stop.is_set()

        try:
            result = run(cfg, problem=problem, progress=False, on_epoch=on_epoch)
            self.previous, self.result, self.run_config = self.result, result, cfg
            self._show_result()
        except ConfigError as err:
            self._say(f"invalid configuration: {err}", error=True)
        except Exception as err:  # noqa: BLE001 -- a thread's traceback would land in the log, not the panel
            self._say(f"run failed: {type(err).__name__}: {err}", error=True)
        else:
            m = result.metrics
            self._say(f"done: {m['stop_reason']} after {m['epochs_run']} epochs, rel_l2 = {m['rel_l2']:.3g}")
        finally:
            self.train_button.disabled, self.stop_button.disabled = False, True
            self.save_button.disabled = self.result is None

    # ------------------------------------------------------------ drawing

    def _previous_loss_traces(self) -> list[dict]:
        if self.compare.value and self.result is not None:
            return loss_traces(self.result.history, prefix="previous ", dash="dash")
        return []

    def _draw_losses(self, history: dict[str, list], overlay: list[dict] | None = None) -> None:
        with self._draw:
            overlay = self._previous_loss_traces() if overlay is None else overlay
            sync_traces(self.loss_figure, overlay + loss_traces(history))

    def _show_result(self) -> None:
        """Loss curves, field plot and metrics of the last run, with the previous run when comparing."""
        if self.result is None:
            return
        previous = self.previous if self.compare.value else None
        overlay = loss_traces(previous.history, prefix="previous ", dash="dash") if previous else []
        self._draw_losses(self.result.history, overlay)
        self.field_box.children = [field_figure(self.result.problem, self.result.model, previous)]
        self.metrics.value = metrics_table(self.result.metrics, previous.metrics if previous else None)

    # ------------------------------------------------------------ saving

    def save(self) -> Path | None:
        """Write the last run to the results store and show the equivalent ``cpikan run`` command."""
        if self.result is None or self.run_config is None:
            self._say("nothing to save yet: press Train first", error=True)
            return None
        cfg = self.run_config
        variant = _slug(self.variant.value) if self.variant.value.strip() else variant_name(cfg)
        path = self.result.save(run_path(self.root.value, cfg.profile, ABLATION, cfg.problem, variant, cfg.seed))
        self.command.value = f"<pre>saved {html.escape(str(path))}\n{html.escape(command_line(cfg))}</pre>"
        self._say(f"saved {path}")
        return path
