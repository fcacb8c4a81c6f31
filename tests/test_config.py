"""RunConfig: defaults, dotted overrides, validation errors, round trips, resolution."""

import pytest

from cpikan import problems
from cpikan.config import (ConfigError, RunConfig, TrainConfig, all_keys, check_profile, diff, params, resolve,
                           schema)


def test_defaults_are_the_plain_recipe():
    cfg = RunConfig()
    assert cfg.train.grad_clip is None and cfg.train.amp == "none" and cfg.train.early_stopping is None
    assert cfg.loss.balancing == "fixed" and cfg.sampling.adaptive == "none" and cfg.sampling.batches is None
    assert cfg.train.scheduler == "none" and cfg.model.init == "xavier"
    assert cfg.derivatives == "taylor"  # not a toggle of the recipe: the same derivatives as autograd, in less time
    assert cfg.model.arch == "scaled_cpikan" and cfg.train.lr == 1e-3 and cfg.dtype == "float32"


def test_override_parses_by_field_type_and_returns_a_new_config():
    base = RunConfig()
    cfg = base.override("train.grad_clip=1.0", "model.hidden=16,16", "train.epochs=1e3",
                        "train.lbfgs_float64=true", "sampling.batches={'count': 2}")
    assert base.train.grad_clip is None
    assert cfg.train.grad_clip == 1.0 and cfg.model.hidden == (16, 16) and cfg.train.epochs == 1000
    assert cfg.train.lbfgs_float64 is True and params(cfg, "sampling.batches")["count"] == 2
    assert cfg.override("train.grad_clip=none").train.grad_clip is None
    assert cfg.override({"train.grad_clip": 2}).train.grad_clip == 2.0


def test_subkey_of_dict_field_and_order_independence():
    cfg = RunConfig().override("train.scheduler=exponential", "train.scheduler_params.gamma=0.99")
    assert params(cfg, "train.scheduler_params") == {"gamma": 0.99, "warmup": 0}
    cfg = RunConfig().override("loss.weights.pde=0.01")
    assert cfg.loss.weights == {"pde": 0.01}


@pytest.mark.parametrize("item, words", [
    ("train.bogus=1", ["train.bogus", "train.grad_clip", "model.init"]),
    ("train.amp=fp32", ["fp32", "'none'", "'bf16'", "'fp16'"]),
    ("train.scheduler=cosine_warm", ["cosine_warm", "'plateau'"]),
    ("train.epochs=0", ["train.epochs=0", "positive"]),
    ("sampling.n_pde=-5", ["sampling.n_pde=-5", "positive"]),
    ("train.epochs=2.5", ["train.epochs", "integer"]),
    ("train.grad_clip=-1", ["train.grad_clip", "positive"]),
    ("model.hidden=0,8", ["model.hidden"]),
    ("loss.weights.foo=1", ["foo", "pde", "bc", "ic", "data"]),
    ("train.early_stopping={'patience': 10, 'wait': 3}", ["wait", "patience", "min_delta"]),
    ("train.monitor=val", ["val", "'heldout'", "'loss'"]),
    ("train.monitor_every=0", ["train.monitor_every=0", "positive"]),
    ("device=tpu", ["tpu", "auto", "cuda"]),
    ("no_equals_sign", ["key=value"]),
])
def test_bad_overrides_name_the_value_and_the_choices(item, words):
    with pytest.raises(ConfigError) as err:
        RunConfig().override(item)
    for word in words:
        assert word in str(err.value)


def test_scheduler_params_validated_against_the_chosen_scheduler():
    with pytest.raises(ConfigError, match="gamma.*valid: eta_min, warmup"):
        RunConfig().override("train.scheduler=cosine", "train.scheduler_params.gamma=0.9")


def test_dict_round_trip_and_diff():
    cfg = RunConfig(problem="helmholtz2d").override("train.grad_clip=0.5", "model.hidden=[8, 8]",
                                                    "train.early_stopping={'patience': 7}")
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert diff(RunConfig(problem="helmholtz2d"), cfg) == {
        "model.hidden": (None, (8, 8)), "train.grad_clip": (None, 0.5),
        "train.early_stopping": (None, {"patience": 7})}


def test_schema_lists_every_key_with_help():
    rows = schema()
    assert [r["key"] for r in rows] == all_keys()
    assert all(r["help"] for r in rows)
    assert {r["key"] for r in rows if r["choices"]} >= {"train.amp", "loss.balancing", "model.init", "derivatives"}


def test_resolve_fills_sizes_from_problem_profile_and_keeps_explicit_values():
    problem = problems.get("diffusion1d")
    cfg = resolve(RunConfig(problem="diffusion1d", profile="full").override("train.epochs=7"), problem)
    assert cfg.train.epochs == 7
    assert cfg.sampling.n_pde == 2000 and cfg.model.hidden == (8, 8)
    assert cfg.loss.weights == {"pde": 0.01, "bc": 1.0, "ic": 1.0}
    cfg = resolve(RunConfig(problem="diffusion1d").override("loss.weights.pde=1"), problem)
    assert cfg.loss.weights == {"pde": 1.0, "bc": 1.0, "ic": 1.0}


def test_unknown_problem_and_problem_parameter():
    with pytest.raises(ConfigError, match="unknown problem 'poisson2d'; valid: poisson1d"):
        problems.get("poisson2d")
    with pytest.raises(ConfigError, match="has no parameter 'noiz'; valid: noise"):
        problems.get("reaction_diffusion1d_inverse", noiz=0.1)


def test_override_order_does_not_matter_for_cross_field_rules():
    nested = RunConfig(derivatives="autograd")
    a = nested.override("train.compile=true", "derivatives=taylor")
    b = nested.override("derivatives=taylor", "train.compile=true")
    assert a == b
    c = RunConfig().override("train.scheduler_params.gamma=0.99", "train.scheduler=exponential")
    assert params(c, "train.scheduler_params")["gamma"] == 0.99
    with pytest.raises(ConfigError, match="compile"):
        nested.override("train.compile=true")


def test_subkeys_only_reach_into_dict_fields():
    cfg = RunConfig().override("problem_params.noise=0.05", "train.early_stopping.patience=9",
                               "sampling.batches.count=2")
    assert cfg.problem_params == {"noise": 0.05} and cfg.train.early_stopping == {"patience": 9}
    with pytest.raises(ConfigError, match="'train.epochs' is not a dict field"):
        RunConfig().override("train.epochs.max=3")


def test_a_config_built_directly_follows_the_same_rules_as_an_override():
    with pytest.raises(ConfigError, match="train.amp='fp32' is not valid; choose one of 'none', 'bf16', 'fp16'"):
        RunConfig(train=TrainConfig(amp="fp32"))
    with pytest.raises(ConfigError, match="train.lr=0 is not valid: must be positive"):
        RunConfig(train=TrainConfig(lr=0))
    with pytest.raises(ConfigError, match="train.lr='fast' is not valid: must be positive"):
        RunConfig(train=TrainConfig(lr="fast"))


def test_parameter_rules_name_the_option_they_apply_to():
    with pytest.raises(ConfigError, match=r"train.scheduler_params.factor=1.5 is not valid for "
                                          r"train.scheduler='plateau': must be in \(0, 1\)"):
        RunConfig().override("train.scheduler=plateau", "train.scheduler_params.factor=1.5")
    with pytest.raises(ConfigError, match="sampling.batches.mode='slabs' is not valid; choose one of 'minibatch'"):
        RunConfig().override("sampling.batches.mode=slabs")
    with pytest.raises(ConfigError, match="sampling.batches.count=2.5 is not valid: expected int"):
        RunConfig().override("sampling.batches.count=2.5")


def test_check_profile_names_the_value_and_lists_the_profiles():
    assert check_profile("quick") == "quick"
    with pytest.raises(ConfigError, match="notebook parameter profile='huge' is not valid; choose one of "
                                          "'smoke', 'quick', 'full'"):
        check_profile("huge", "notebook parameter profile")
