"""ConfigForm: one ipywidgets control per key of `cpikan.config.schema()`, read back as a RunConfig.

The form is generated from the schema, so a new config field gets a control without widget code:
  - a field with ``choices`` -> dropdown (``problem``: the registered problem names);
  - a bool field -> checkbox;
  - a dict field with parameter tables in `PARAMS` -> a sub-form of the table's parameters:
    for a ``"*"`` table (a struct toggle, ``None`` when off) behind an "on" checkbox, otherwise
    rebuilt for the option its ``params_for`` dropdown selects;
  - anything else -> a text box holding the value as typed after ``--set key=`` (``[8, 8]``,
    ``{"pde": 0.01}``, ``0.001``; `cpikan.overrides.format_value`); an empty box means ``None``.
Reading the form applies every control's value through `RunConfig.override`, so whatever is
invalid raises the `ConfigError` the CLI would raise.

Every control carries the CSS class ``cpikan-<key, dots and underscores as dashes>``, a parameter
widget ``cpikan-<key>-<name>``, a sub-form box ``cpikan-<key>-form`` (browser tests use them).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from cpikan import problems
from cpikan.config import SECTIONS, Param, RunConfig, get_value, schema
from cpikan.overrides import format_value

HEADLINE = ("problem", "model.arch", "profile", "seed")
LABEL = {"description_width": "110px"}


def css_class(key: str) -> str:
    """CSS class of the control of dotted `key`: ``train.amp`` -> ``cpikan-train-amp``."""
    return "cpikan-" + key.replace(".", "-").replace("_", "-")


def _labelled(widget: w.Widget, key: str, help: str) -> w.Widget:
    widget.description = key.rsplit(".", 1)[-1]
    widget.tooltip = f"{key}: {help}"
    widget.style = LABEL
    widget.add_class(css_class(key))
    return widget


class Control:
    """A value control: `widget` to show, `overrides()` to read, `set(value)` to fill in."""

    def __init__(self, row: dict, widget: w.ValueWidget) -> None:
        self.key = row["key"]
        self.input = _labelled(widget, self.key, row["help"])
        self.widget: w.Widget = self.input

    def overrides(self) -> dict[str, Any]:
        return {self.key: self.input.value}

    def set(self, value: Any) -> None:
        self.input.value = value


class TextControl(Control):
    """Free text, coerced by the config like a ``--set`` value; empty means None."""

    def __init__(self, row: dict) -> None:
        hint = "auto (problem/profile)" if row["from_problem"] else "None"
        super().__init__(row, w.Text(placeholder=hint, continuous_update=False))

    def overrides(self) -> dict[str, Any]:
        text = self.input.value.strip()
        return {self.key: text if text else None}

    def set(self, value: Any) -> None:
        self.input.value = "" if value is None else format_value(value)


def _param_widget(key: str, name: str, param: Param) -> w.ValueWidget:
    if param.choices:
        widget = w.Dropdown(options=param.choices, value=param.default)
    elif param.type is bool:
        widget = w.Checkbox(value=param.default, indent=True)
    elif param.type is int and param.default is not None:
        widget = w.IntText(value=param.default)
    elif param.type is float and param.default is not None:
        widget = w.FloatText(value=param.default)
    else:  # also a number whose default None means "decided elsewhere": a number box cannot hold None
        widget = w.Text(value=format_value(param.default), continuous_update=False)
    rule = [f"must be {param.rule.text}"] if param.rule else []
    return _labelled(widget, f"{key}.{name}", ", ".join([param.type.__name__, *rule,
                                                          f"default {format_value(param.default)}"]))


class ParamsControl:
    """Sub-form of a dict field's parameter table; only parameters that differ from the table's
    defaults become overrides (``train.scheduler_params.gamma=0.99``), so the config stays minimal."""

    def __init__(self, row: dict, selector: Control | None) -> None:
        self.key, self.tables, self.selector = row["key"], row["params"], selector
        self.enabled = None
        self.box = w.VBox(layout=w.Layout(margin="0 0 0 30px"))
        self.box.add_class(css_class(self.key) + "-form")
        self.widget: w.Widget = self.box
        self.inputs: dict[str, tuple[w.ValueWidget, Any]] = {}
        if selector is None:
            self.enabled = _labelled(w.Checkbox(value=row["default"] is not None), self.key, row["help"])
            self.enabled.observe(lambda _: self._build(), "value")
            self.widget = w.VBox([self.enabled, self.box])
        else:
            self.box.add_class(css_class(self.key))
            selector.input.observe(lambda _: self._build(), "value")
        self._build()

    def _table(self) -> dict[str, Param]:
        return self.tables["*"] if self.selector is None else self.tables[self.selector.input.value]

    def _build(self) -> None:
        if self.enabled is not None and not self.enabled.value:
            self.inputs = {}
        else:
            self.inputs = {name: (_param_widget(self.key, name, param), param.default)
                           for name, param in self._table().items()}
        self.box.children = [widget for widget, _ in self.inputs.values()]

    def overrides(self) -> dict[str, Any]:
        if self.enabled is not None and not self.enabled.value:
            return {self.key: None}
        out: dict[str, Any] = {self.key: {}}
        for name, (widget, default) in self.inputs.items():
            if widget.value != _shown(widget, default):
                out[f"{self.key}.{name}"] = widget.value
        return out

    def set(self, value: dict | None) -> None:
        if self.enabled is not None:
            self.enabled.value = value is not None
        self._build()
        for name, given in (value or {}).items():
            widget, _ = self.inputs[name]
            widget.value = _shown(widget, given)


def _shown(widget: w.ValueWidget, value: Any) -> Any:
    """A parameter value as its widget holds it: ``--set`` text in a text box (lists), else as is."""
    return format_value(value) if isinstance(widget, w.Text) else value


class ConfigForm:
    """Controls for every key of `schema()`, grouped: a headline row (problem, architecture,
    profile, seed), then one tab per section (``run`` for the top-level keys)."""

    def __init__(self, cfg: RunConfig | None = None) -> None:
        self.controls: dict[str, Control | ParamsControl] = {}
        for row in schema():
            self.controls[row["key"]] = self._control(row)
        groups: dict[str, list[w.Widget]] = {"run": [], **{name: [] for name in SECTIONS}}
        for key, control in self.controls.items():
            if key not in HEADLINE:
                groups[key.split(".")[0] if "." in key else "run"].append(control.widget)
        tab = w.Tab(children=[w.VBox(items) for items in groups.values()], titles=list(groups))
        headline = w.HBox([self.controls[key].widget for key in HEADLINE], layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([headline, tab])
        self.set_config(cfg or RunConfig())

    def _control(self, row: dict) -> Control | ParamsControl:
        if row["key"] == "problem":
            return Control(row, w.Dropdown(options=problems.names()))
        if row["choices"]:
            return Control(row, w.Dropdown(options=row["choices"]))
        if row["params"]:
            selector = self.controls[row["params_for"]] if row["params_for"] else None
            return ParamsControl(row, selector)
        if isinstance(row["default"], bool):
            return Control(row, w.Checkbox(indent=True))
        return TextControl(row)

    def overrides(self) -> dict[str, Any]:
        """Every control's value as ``{dotted key: value}``, in schema order (selectors before
        their parameters)."""
        out: dict[str, Any] = {}
        for control in self.controls.values():
            out.update(control.overrides())
        return out

    def config(self) -> RunConfig:
        """The RunConfig the form shows; raises ConfigError naming a bad value."""
        return RunConfig().override(self.overrides())

    def set_config(self, cfg: RunConfig) -> None:
        """Show `cfg` in the controls (selectors first, so parameter sub-forms match)."""
        for key, control in self.controls.items():
            control.set(get_value(cfg, key))
