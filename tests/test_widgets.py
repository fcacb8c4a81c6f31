"""The explorer without a browser: schema -> controls, reading the form, callbacks, messages, save."""

import html
import re
import shlex
import time

import ipywidgets as w
import pytest

from cpikan import cli
from cpikan.config import RunConfig, all_keys, schema
from cpikan.explorer import form as config_form
from cpikan.explorer.form import ConfigForm, ParamsControl, css_class
from cpikan.runs import RunResult
from cpikan.explorer import panel as widgets
from cpikan.explorer.panel import Explorer, command_line, variant_name


def _cli_config(command: str) -> RunConfig:
    """The config `cpikan run` builds from a printed command line."""
    argv = shlex.split(command)
    assert argv[:2] == ["cpikan", "run"]
    args = cli.parser().parse_args(argv[1:])
    return RunConfig(problem=args.problem, profile=args.profile, seed=args.seed, device=args.device).override(*args.set)


def _explorer(tmp_path, **changes) -> Explorer:
    cfg = RunConfig(problem="poisson1d", profile="smoke", device="cpu").override(changes)
    return Explorer(cfg, root=tmp_path)


def _set(explorer: Explorer, key: str, value) -> None:
    explorer.form.controls[key].input.value = value


def _train(explorer: Explorer) -> None:
    assert explorer.train(), explorer.message.value
    explorer.wait(60)
    assert not explorer.running


# ---------------------------------------------------------------- schema -> widgets

def test_every_schema_key_has_a_control():
    form = ConfigForm()
    assert list(form.controls) == all_keys()
    for row in schema():
        control = form.controls[row["key"]]
        if row["params"]:
            assert isinstance(control, ParamsControl)
        elif row["choices"] or row["key"] == "problem":
            assert isinstance(control.input, w.Dropdown)
        elif isinstance(row["default"], bool):
            assert isinstance(control.input, w.Checkbox)
        else:
            assert isinstance(control.input, w.Text)
        assert css_class(row["key"]) in _classes(control.widget)


def _classes(widget: w.Widget) -> set[str]:
    """CSS classes of a widget and everything inside it."""
    return set(widget._dom_classes).union(*(_classes(c) for c in getattr(widget, "children", ())))


def test_choice_fields_offer_their_choices():
    form = ConfigForm()
    assert form.controls["train.amp"].input.options == ("none", "bf16", "fp16")
    assert "helmholtz2d" in form.controls["problem"].input.options


def test_a_new_schema_field_gets_a_control_without_widget_code(monkeypatch):
    extra = {"key": "train.new_toggle", "type": "str", "default": "off", "choices": ("off", "on"),
             "help": "a toggle added later", "from_problem": False, "params": None, "params_for": None}
    monkeypatch.setattr(config_form, "schema", lambda: [*schema(), extra])
    real_get = config_form.get_value
    monkeypatch.setattr(config_form, "get_value", lambda cfg, key: "off" if key == extra["key"] else
                        real_get(cfg, key))
    form = ConfigForm()
    assert form.controls["train.new_toggle"].input.options == ("off", "on")


def test_form_round_trips_a_config():
    cfg = RunConfig(problem="helmholtz2d", profile="quick", seed=3).override(
        "model.hidden=16,16", "train.grad_clip=0.5", "train.early_stopping.patience=7",
        "train.scheduler=multistep", "train.scheduler_params.milestones=[0.3, 0.6]", "loss.weights={\"bc\": 10}")
    assert ConfigForm(cfg).config() == cfg
    assert ConfigForm().config() == RunConfig()


def test_selector_rebuilds_the_parameter_subform():
    form = ConfigForm()
    params = form.controls["train.scheduler_params"]
    assert params.inputs == {}
    form.controls["train.scheduler"].input.value = "exponential"
    assert set(params.inputs) == {"gamma", "warmup"}
    params.inputs["gamma"][0].value = 0.99
    assert form.config().train.scheduler_params == {"gamma": 0.99}


def test_a_number_parameter_whose_default_is_none_gets_a_text_box():
    form = ConfigForm()
    form.controls["sampling.adaptive"].input.value = "rad"
    start = form.controls["sampling.adaptive_params"].inputs["start"][0]
    assert isinstance(start, w.Text) and start.value == "none"
    assert form.config().sampling.adaptive_params == {}
    start.value = "10000"
    assert form.config().sampling.adaptive_params == {"start": 10000}


def test_struct_toggle_checkbox_turns_it_on_and_off():
    form = ConfigForm()
    stopping = form.controls["train.early_stopping"]
    assert form.config().train.early_stopping is None and not stopping.box.children
    stopping.enabled.value = True
    stopping.inputs["patience"][0].value = 20
    assert form.config().train.early_stopping == {"patience": 20}
    stopping.enabled.value = False
    assert form.config().train.early_stopping is None


# ---------------------------------------------------------------- messages, not tracebacks

def test_invalid_value_is_a_message(tmp_path):
    explorer = _explorer(tmp_path)
    _set(explorer, "train.lr", "fast")
    assert not explorer.train()
    assert "invalid configuration" in explorer.message.value and "train.lr" in explorer.message.value
    assert explorer.thread is None


@pytest.mark.parametrize("params, shown", [('{"bogus": 1}', "bogus"), ("[1, 2]", "problem_params")])
def test_bad_problem_parameters_are_a_message(tmp_path, params, shown):
    explorer = _explorer(tmp_path)
    _set(explorer, "problem_params", params)
    assert not explorer.train()
    assert "invalid configuration" in explorer.message.value and shown in explorer.message.value


def test_fp16_on_cpu_is_a_message(tmp_path):
    explorer = _explorer(tmp_path)
    _set(explorer, "train.amp", "fp16")
    _train(explorer)
    assert "invalid configuration" in explorer.message.value and "fp16" in explorer.message.value
    assert explorer.result is None and explorer.save_button.disabled and not explorer.train_button.disabled


def test_errors_inside_the_run_are_messages(tmp_path, monkeypatch):
    def failing_run(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(widgets, "run", failing_run)
    explorer = _explorer(tmp_path)
    _train(explorer)
    assert "run failed: RuntimeError: boom" in explorer.message.value


# ---------------------------------------------------------------- training

def test_train_fills_loss_figure_field_and_metrics(tmp_path):
    explorer = _explorer(tmp_path)
    _train(explorer)
    epochs = explorer.result.metrics["epochs_run"]
    curves = {t.name: t for t in explorer.loss_figure.data}
    assert {"loss", "loss_pde", "loss_bc"} <= set(curves)
    assert len(curves["loss_pde"].x) == len(explorer.result.history["loss_pde"])  # every train.log_every epochs
    assert epochs == explorer.progress.max == explorer.progress.value
    assert "done" in explorer.message.value and not explorer.save_button.disabled
    field = explorer.field_box.children[0]
    assert [t.name for t in field.data][:2] == ["exact", "prediction"]
    assert "rel_l2" in explorer.metrics.value


def test_compare_overlays_the_previous_run(tmp_path):
    explorer = _explorer(tmp_path)
    _train(explorer)
    explorer.compare.value = True
    _set(explorer, "train.grad_clip", "1.0")
    _train(explorer)
    names = [t.name for t in explorer.loss_figure.data]
    assert "previous loss_pde" in names and "loss_pde" in names
    assert "previous prediction" in [t.name for t in explorer.field_box.children[0].data]
    assert "previous run" in explorer.metrics.value
    explorer.compare.value = False
    assert not any(t.name.startswith("previous") for t in explorer.loss_figure.data)


@pytest.mark.parametrize("problem, title", [("diffusion1d", "t"), ("poisson3d", None)])
def test_field_figure_for_other_dimensions(tmp_path, problem, title):
    explorer = _explorer(tmp_path, problem=problem)
    _set(explorer, "train.epochs", "2")
    _train(explorer)
    field = explorer.field_box.children[0]
    if title:
        assert [t.type for t in field.data] == ["heatmap"] * 3 and field.layout.xaxis.title.text == title
    else:
        assert not field.data and "3-D problem" in field.layout.title.text


def test_curves_update_live_and_stop_ends_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "LIVE_INTERVAL_S", 0.0)
    explorer = _explorer(tmp_path)
    _set(explorer, "train.epochs", "1000000")
    assert explorer.train()
    assert not explorer.train() and "still going" in explorer.message.value
    deadline = time.monotonic() + 30
    while explorer.progress.value < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert explorer.running and len(explorer.loss_figure.data) == 3 and len(explorer.loss_figure.data[0].x) >= 1
    explorer.stop()
    explorer.wait(30)
    assert explorer.result.metrics["stop_reason"] == "stopped"
    assert explorer.result.metrics["epochs_run"] < 1000000


# ---------------------------------------------------------------- save and the command

def test_save_writes_a_run_file_and_a_reproducing_command(tmp_path):
    explorer = _explorer(tmp_path, seed=2)
    assert explorer.save() is None and "Train first" in explorer.message.value
    _set(explorer, "train.scheduler", "exponential")
    explorer.form.controls["train.scheduler_params"].inputs["gamma"][0].value = 0.99
    _train(explorer)
    path = explorer.save()
    variant = "scheduler=exponential,scheduler_params.gamma=0.99"
    assert path == tmp_path / "smoke" / "runs" / "explore" / "poisson1d" / variant / "seed2.json"
    assert RunConfig.from_dict(RunResult.load(path).config) == RunConfig.from_dict(explorer.result.config)
    shown = html.unescape(re.sub(r"<[^>]+>", "", explorer.command.value)).splitlines()
    assert shown[0] == f"saved {path}"
    assert _cli_config(shown[1]) == explorer.run_config == explorer.form.config()


def test_command_line_reproduces_every_kind_of_value():
    cfg = RunConfig(problem="diffusion1d", profile="quick", seed=4, device="cpu").override(
        "model.hidden=16,16", "train.grad_clip=0.5", "train.early_stopping={}", "train.lbfgs_float64=true",
        "train.scheduler=multistep", "train.scheduler_params.milestones=[0.3, 0.6]", "loss.weights={\"bc\": 10}")
    assert _cli_config(command_line(cfg)) == cfg
    assert command_line(RunConfig(problem="poisson1d")) == "cpikan run --problem poisson1d --profile smoke"


def test_variant_name():
    assert variant_name(RunConfig(seed=3, device="cpu")) == "baseline"
    assert variant_name(RunConfig().override("train.amp=bf16", "train.grad_clip=1")) == "grad_clip=1.0,amp=bf16"
