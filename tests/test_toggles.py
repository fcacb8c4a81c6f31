"""The toggle seam: every config choice list is its module's registry, and the trainer gets
each toggle as a strategy object built from the resolved config."""

import pytest
import torch

import cpikan
from cpikan.config import PARAMS, RunConfig, resolve, schema
from cpikan.derivatives import ENGINES
from cpikan.losses import BALANCERS
from cpikan.models import ARCHS, INITS, NORMS, initial_members
from cpikan.runs import build_problem, build_strategies
from cpikan.sampling import BATCHINGS, SAMPLERS, sample_points
from cpikan.schedules import SCHEDULES
from cpikan.stability import PRECISIONS
from cpikan.train import MONITORS

REGISTRIES = {"model.arch": ARCHS, "model.norm": NORMS, "model.init": INITS, "train.amp": PRECISIONS,
              "train.scheduler": SCHEDULES, "train.monitor": MONITORS, "loss.balancing": BALANCERS,
              "sampling.adaptive": SAMPLERS, "derivatives": ENGINES}
CHOICES = {row["key"]: row["choices"] for row in schema() if row["choices"]}


@pytest.mark.parametrize("key", REGISTRIES)
def test_each_toggle_choice_list_is_its_registry(key):
    assert CHOICES[key] == tuple(REGISTRIES[key])


def test_every_choice_field_is_a_toggle_with_a_registry_or_a_plain_setting():
    assert set(CHOICES) - set(REGISTRIES) == {"profile", "dtype"}


def test_each_parameter_table_set_is_keyed_by_its_selector_choices():
    for row in schema():
        if row["params_for"]:
            assert tuple(row["params"]) == CHOICES[row["params_for"]], row["key"]
    assert PARAMS["sampling.batches"]["*"]["mode"].choices == tuple(BATCHINGS)


@pytest.mark.parametrize("overrides", [
    {}, {"train.amp": "bf16", "train.grad_clip": 1.0, "train.early_stopping": {"patience": 5}},
    *({"train.scheduler": name} for name in SCHEDULES), *({"loss.balancing": name} for name in BALANCERS),
    *({"sampling.adaptive": name, "sampling.batches": {"mode": mode}} for name in SAMPLERS for mode in BATCHINGS),
])
def test_build_strategies_gives_each_role_its_choice_with_the_full_parameters(overrides):
    cfg = RunConfig(problem="poisson1d").override(overrides)
    problem = build_problem(cfg)
    cfg = resolve(cfg, problem)
    gens = [torch.Generator().manual_seed(0)]
    points = sample_points(problem, cfg.sampling.n_pde, cfg.sampling.n_bc, cfg.sampling.n_ic, gens,
                           torch.device("cpu"), torch.float32)
    net = initial_members(cfg, problem.box, [0])
    s = build_strategies(cfg, problem, points, gens, net, torch.device("cpu"), torch.float32)
    assert type(s.precision) is PRECISIONS[cfg.train.amp]
    assert type(s.schedule) is SCHEDULES[cfg.train.scheduler]
    assert type(s.balancer) is BALANCERS[cfg.loss.balancing]
    assert type(s.sampler) is SAMPLERS[cfg.sampling.adaptive]
    assert s.stopper.wants_monitor == (cfg.train.early_stopping is not None)
    assert set(s.balancer.weights) == set(cfg.loss.weights)


def test_precision_strategies_state_how_the_trainer_treats_a_nonfinite_step():
    assert {name: cls.skips_nonfinite for name, cls in PRECISIONS.items()} == {"none": False, "bf16": True,
                                                                             "fp16": True}


def test_amp_refusals_come_from_the_precision_strategy():
    with pytest.raises(cpikan.ConfigError, match="fp16.*needs CUDA"):
        PRECISIONS["fp16"](torch.device("cpu"), torch.float32)
    with pytest.raises(cpikan.ConfigError, match="train.amp='bf16'.*float64"):
        PRECISIONS["bf16"](torch.device("cpu"), torch.float64)
