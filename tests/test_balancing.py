"""Loss balancing (cpikan.losses): LRA and GradNorm follow their published update rules."""

import math

import pytest
import torch

import cpikan
from cpikan.config import ConfigError, params
from cpikan.losses import BALANCERS, FixedWeights, GradNorm, LearningRateAnnealing


def make_balancer(name: str, weights: dict[str, float], options: dict) -> FixedWeights:
    """The balancer a run builds for ``loss.balancing=name`` with these weights and parameters:
    `options` over the config's defaults."""
    cfg = cpikan.RunConfig().override({"loss.balancing": name, "loss.weights": weights,
                                       "loss.balancing_params": options})
    return BALANCERS[name](cfg.loss.weights, **params(cfg, "loss.balancing_params"))


def toy(bc_offset: float = 0.0) -> tuple[dict[str, torch.Tensor], list[torch.nn.Parameter]]:
    """Two terms at theta = (1, 1), phi = 1, with hand-computable gradients:

    L_pde = 2 theta.theta + phi^2   -> grad (4, 4, 2):  max 4, ||.|| = 6, value 5
    L_bc  = theta_0^2 / 2 + offset  -> grad (1, 0, 0):  mean 1/3 (phi unused: counts as 0), ||.|| = 1
    """
    theta = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    phi = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    terms = {"pde": 2 * theta.square().sum() + phi.square().sum(), "bc": theta[0].square() / 2 + bc_offset}
    return terms, [theta, phi]


def test_lra_follows_the_published_rule_every_few_steps():
    balancer = make_balancer("lra", {"pde": 1.0, "bc": 1.0}, {"alpha": 0.9, "every": 2})
    assert isinstance(balancer, LearningRateAnnealing)
    ratio = 4 / (1 / 3)  # max|grad L_pde| / mean|grad L_bc|
    expected = [0.1 * 1.0 + 0.9 * ratio]  # step 0 updates
    expected.append(expected[-1])  # step 1 does not
    expected.append(0.1 * expected[-1] + 0.9 * ratio)  # step 2 updates
    for step, want in enumerate(expected):
        balancer.update(0, *toy())
        assert balancer.weights["bc"] == pytest.approx(want, rel=1e-12), step
        assert balancer.weights["pde"] == 1.0
    assert balancer.skipped == 0


def test_gradnorm_first_step_moves_each_weight_by_lr_against_its_gradient_norm_gap():
    # G = (6, 1), target mean(G) = 3.5 for both (no progress yet): dL_grad/dw = (+6, -1).
    # Adam's first step is lr * sign(grad); the sum stays T = 2.
    balancer = make_balancer("gradnorm", {"pde": 1.0, "bc": 1.0}, {"alpha": 1.5, "lr": 0.025, "every": 1})
    assert isinstance(balancer, GradNorm)
    balancer.update(0, *toy())
    assert balancer.weights["pde"] == pytest.approx(0.975, abs=1e-6)
    assert balancer.weights["bc"] == pytest.approx(1.025, abs=1e-6)
    assert sum(balancer.weights.values()) == pytest.approx(2.0, rel=1e-12)


def test_gradnorm_rescales_initial_weights_to_sum_to_the_number_of_terms():
    balancer = make_balancer("gradnorm", {"pde": 1.0, "bc": 3.0}, {})
    assert balancer.weights == pytest.approx({"pde": 0.5, "bc": 1.5})


@pytest.mark.parametrize("alpha, pde_grows", [(1.5, True), (0.0, False)])
def test_gradnorm_asymmetry_pushes_up_the_slow_term(alpha, pde_grows):
    # Second update: L_bc fell to 1/4 of its first value, L_pde did not move, so r = (1.6, 0.4).
    # With alpha = 1.5 the pde target 3.44 * 1.6^1.5 = 6.96 exceeds G_pde = 5.85: w_pde must grow,
    # although its gradient is the larger one; with alpha = 0 the target is mean(G) and w_pde shrinks.
    balancer = make_balancer("gradnorm", {"pde": 1.0, "bc": 1.0}, {"alpha": alpha})
    balancer.update(0, *toy())
    after_first = balancer.weights["pde"]
    balancer.update(1, *toy(bc_offset=-0.375))
    assert (balancer.weights["pde"] > after_first) == pde_grows
    assert sum(balancer.weights.values()) == pytest.approx(2.0, rel=1e-12)


def test_lra_refuses_an_infinite_weight_and_counts_it():
    theta = torch.nn.Parameter(torch.ones(2))
    terms = {"pde": theta.square().sum(), "bc": (0 * theta).sum() + 1}  # grad L_bc = 0: ratio inf
    balancer = make_balancer("lra", {"pde": 1.0, "bc": 2.0}, {"every": 1})
    balancer.update(0, terms, [theta])
    assert balancer.weights == {"pde": 1.0, "bc": 2.0}
    assert balancer.skipped == 1


def test_gradnorm_refuses_a_negative_weight_and_keeps_its_state():
    balancer = make_balancer("gradnorm", {"pde": 1.0, "bc": 1.0}, {"lr": 10.0})  # w_pde -> 1 - 10
    balancer.update(0, *toy())
    assert balancer.weights == {"pde": 1.0, "bc": 1.0}
    assert balancer.skipped == 1
    assert balancer.w.tolist() == [1.0, 1.0]
    assert balancer.optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("name", ["lra", "gradnorm"])
def test_weights_stay_finite_and_positive_while_training(name):
    # Two badly scaled quadratics trained by plain gradient descent on the weighted sum.
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    target = torch.randn(4, dtype=torch.float64)
    balancer = make_balancer(name, {"pde": 1.0, "bc": 1.0}, {"every": 1})
    optimizer = torch.optim.SGD([theta], lr=1e-4)
    for step in range(200):
        terms = {"pde": 1e3 * (theta - target).square().sum(), "bc": 1e-2 * theta[:2].square().sum()}
        loss = sum(balancer.weights[t] * v for t, v in terms.items())
        balancer.update(0, terms, [theta])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert all(math.isfinite(w) and w > 0 for w in balancer.weights.values()), step


def test_fixed_weights_never_change():
    balancer = make_balancer("fixed", {"pde": 1.0, "bc": 5.0}, {})
    assert isinstance(balancer, FixedWeights)
    balancer.update(0, *toy())
    assert balancer.weights == {"pde": 1.0, "bc": 5.0}


@pytest.mark.parametrize("name, weights, options, bad", [
    ("lra", {"pde": 1.0, "bc": 1.0}, {"alpha": 1.5}, "alpha=1.5"),
    ("lra", {"pde": 1.0, "bc": 1.0}, {"every": 0}, "every=0"),
    ("gradnorm", {"pde": 1.0, "bc": 1.0}, {"lr": 0.0}, "lr=0.0"),
    ("gradnorm", {"pde": 1.0, "bc": 1.0}, {"alpha": -1.0}, "alpha=-1.0"),
    ("gradnorm", {"pde": 1.0, "bc": 1.0}, {"gamma": 1.0}, "'gamma'"),
    ("gradnorm", {"pde": 1.0, "bc": 0.0}, {}, "loss.weights.bc=0.0"),
    ("softadapt", {"pde": 1.0}, {}, "'softadapt'"),
])
def test_bad_settings_raise_config_error_naming_the_value(name, weights, options, bad):
    with pytest.raises(ConfigError, match=bad.replace(".", r"\.")):
        cpikan.RunConfig().override({"loss.balancing": name, "loss.weights": weights,
                                     "loss.balancing_params": options})


@pytest.mark.parametrize("balancing", ["fixed", "lra", "gradnorm"])
def test_each_balancing_runs_and_logs_its_weights(balancing):
    cfg = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu", threads=1).override(
        {"train.epochs": 6, "loss.balancing": balancing})
    result = cpikan.run(cfg, progress=False)
    assert result.status == "ok" and result.metrics["epochs_run"] == 6
    for term in ("pde", "bc"):
        weights = result.history[f"{term}_weight"]
        assert len(weights) == 6 and all(math.isfinite(w) and w > 0 for w in weights)
    configured = result.config["loss"]["weights"]["bc"]
    assert (result.history["bc_weight"][-1] != configured) == (balancing != "fixed")
