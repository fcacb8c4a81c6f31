"""Override text (cpikan.overrides): parsing, coercion, and `format_value` read back by `--set`."""

import shlex

import pytest

from cpikan import cli, study
from cpikan.config import RunConfig, all_keys, get_value
from cpikan.overrides import coerce, format_value, parse_literal, set_arguments, split


def cli_config(arguments: str) -> RunConfig:
    """The config ``cpikan run --problem poisson1d --profile smoke <arguments>`` builds."""
    args = cli.parser().parse_args(["run", "--problem", "poisson1d", "--profile", "smoke", *shlex.split(arguments)])
    return RunConfig(problem=args.problem, profile=args.profile).override(*args.set)


@pytest.mark.parametrize("hint, value", [
    (float | None, None), (dict | None, None), (bool, True), (bool, False), (int, 0), (int, 1000),
    (int | None, 7), (float, 1e-3), (float, 0.1), (float, 2.0), (float, 1e-300), (float | None, 1234.5678),
    (str, "scaled_cpikan"), (str, "none"), (str, "cuda:1"), (str, "a b,c"),
    (tuple[int, ...] | None, (8, 8)), (tuple[int, ...] | None, (16,)),
    (dict, {}), (dict, {"gamma": 0.99, "warmup": 3}), (dict | None, {"count": 4, "mode": "patches"}),
    (dict, {"milestones": [0.5, 0.75], "resample": True, "noise": None}),
])
def test_format_then_coerce_gives_the_same_value(hint, value):
    assert coerce(hint, format_value(value)) == value
    assert type(coerce(hint, format_value(value))) is type(value)


def test_every_default_and_a_changed_value_of_every_key_round_trip_through_the_cli():
    changed = RunConfig(problem="helmholtz2d", profile="quick", seed=3, device="cpu", threads=2).override(
        "model.hidden=[16, 16]", "model.degree=4", "train.epochs=200", "train.lr=0.01", "train.grad_clip=0.5",
        "train.amp=bf16", "train.early_stopping={'patience': 7}", "train.scheduler=multistep",
        "train.scheduler_params.milestones=[0.3, 0.6]", "train.lbfgs_float64=true",
        "loss.weights={'pde': 0.01, 'bc': 10}", "loss.balancing=lra", "sampling.adaptive=rar",
        "sampling.batches={'count': 4, 'mode': 'patches'}", "problem_params={'domain_scale': 2.0}")
    for cfg in (RunConfig(), changed):
        values = {key: get_value(cfg, key) for key in all_keys()}
        assert RunConfig().override(*[f"{k}={format_value(v)}" for k, v in values.items()]) == cfg
        assert cli_config(set_arguments(values)) == cfg


@pytest.mark.parametrize("name", study.names())
def test_every_ablation_variant_as_set_arguments_is_accepted_by_the_cli(name):
    ablation = study.get(name)
    for variant in ablation.variants[1:]:
        assert cli_config(set_arguments(variant.overrides)) == RunConfig().override(dict(variant.overrides))


def test_set_arguments_quote_for_the_shell():
    text = set_arguments({"train.grad_clip": 1.0, "sampling.batches": {"count": 4, "mode": "patches"}})
    assert text == """--set train.grad_clip=1.0 --set 'sampling.batches={"count": 4, "mode": "patches"}'"""
    assert set_arguments({}) == ""


def test_parsing_text():
    assert split(" train.lr = 0.01 ") == ("train.lr", "0.01")
    with pytest.raises(ValueError, match="'train.lr' is not 'key=value'"):
        split("train.lr")
    assert parse_literal("[8, 8]") == [8, 8] and parse_literal("{'a': 1}") == {"a": 1}
    assert parse_literal("abc") == "abc" and parse_literal("1e-3") == 1e-3
    assert coerce(tuple[int, ...], "8, 8") == (8, 8) and coerce(tuple[int, ...], 4) == (4,)
    assert coerce(int, "1e3") == 1000 and coerce(bool, "on") is True and coerce(float | None, "off") is None


@pytest.mark.parametrize("hint, text, reason", [
    (int, "2.5", "not an integer"), (float, "fast", "not a number"), (bool, "maybe", "not a boolean"),
    (dict, "[1, 2]", "not a mapping"), (str, 3, "not a string"),
])
def test_coercion_states_why_it_failed(hint, text, reason):
    with pytest.raises((ValueError, TypeError), match=reason):
        coerce(hint, text)
