"""Loss balancing (cpikan.losses): LRA as its authors' code runs it, GradNorm on log-weights."""

import math

import pytest
import torch

import cpikan
from cpikan.config import ConfigError, params
from cpikan.losses import BALANCERS, FixedWeights, GradNorm, LearningRateAnnealing, weight_matrices

TERMS = ("pde", "bc", "ic", "data")


# A toy network's weights: one member, columns 0-3 W1 (2 x 2), 4-5 a bias b, 6-7 W2 (1 x 2); the
# balancers see W1 and W2 as its weight matrices, as `weight_matrices` gives them for a network.
MATRICES = [slice(0, 4), slice(6, 8)]


def make_balancer(name: str, weights: dict[str, float], options: dict, like: torch.Tensor | None = None,
                  matrices: list[slice] = MATRICES) -> FixedWeights:
    """The balancer a run builds for ``loss.balancing=name`` with these weights and parameters:
    `options` over the config's defaults; `like`: the network weights (members, dtype)."""
    cfg = cpikan.RunConfig().override({"loss.balancing": name, "loss.weights": weights,
                                       "loss.balancing_params": options})
    like = torch.zeros(1, 8, dtype=torch.float64) if like is None else like
    return BALANCERS[name](cfg.loss.weights, like, matrices, **params(cfg, "loss.balancing_params"))


def floats(weights: dict[str, torch.Tensor], member: int = 0) -> dict[str, float]:
    return {t: float(w[member]) for t, w in weights.items()}


def lra_toy() -> tuple[dict[str, torch.Tensor], list[torch.nn.Parameter]]:
    """Four terms at W1 = ones(2, 2), W2 = ones(1, 2), bias b = ones(2), unknown phi = 1.

    Gradients on the weight matrices (W1 | W2), hand-computed:
    L_pde  = sum W1^2 + 3 sum W2^2 + 10 sum b^2 + 100 phi^2  -> (2 2 2 2 | 6 6): max 6
    L_bc   = W1[0,0]^2 / 2                                  -> (1 0 0 0 | 0 0): layer means 1/4, 0
    L_ic   = sum W2                                         -> (0 0 0 0 | 1 1): layer means 0, 1
    L_data = sum W1 + sum W2 + 5 phi                        -> (1 1 1 1 | 1 1): layer means 1, 1
    The bias (20) and phi (200) have larger gradients but are no weight matrices. Each term is (1,):
    one member.
    """
    flat = torch.nn.Parameter(torch.ones(1, 8, dtype=torch.float64))
    phi = torch.nn.Parameter(torch.ones(1, 1, dtype=torch.float64))
    w1, b, w2 = flat[:, 0:4], flat[:, 4:6], flat[:, 6:8]
    terms = {"pde": w1.square().sum(1) + 3 * w2.square().sum(1) + 10 * b.square().sum(1) + 100 * phi[:, 0].square(),
             "bc": w1[:, 0].square() / 2, "ic": w2.sum(1), "data": w1.sum(1) + w2.sum(1) + 5 * phi[:, 0]}
    return terms, [flat, phi]


# per-layer mean |grad L_t| averaged over the two matrices, and max |grad L_pde|
LAYER_MEAN = {"bc": (1 / 4 + 0) / 2, "ic": (0 + 1) / 2, "data": (1 + 1) / 2}
PDE_MAX = 6.0


def test_weight_matrices_are_the_chebyshev_coefficients_and_linear_weights():
    kan = cpikan.models.build_network("scaled_cpikan", [0.0], [1.0], [4], degree=3, norm="layernorm")
    # coefficients (4, 4, 1) = 16 columns, the layer norm's gain and shift (4 each), coefficients (1, 4, 4)
    assert weight_matrices(kan) == [slice(0, 16), slice(24, 40)]
    mlp = cpikan.models.build_network("pinn", [0.0], [1.0], [4], degree=3)
    assert weight_matrices(mlp) == [slice(0, 4), slice(8, 12)]  # W1 (4 x 1), b1, W2 (1 x 4), b2
    with pytest.raises(ValueError, match="weight matrix"):
        weight_matrices(cpikan.models.Network([], 1))


def test_lra_follows_the_released_code_for_each_term_every_few_steps():
    # w_hat_t = max|grad w_pde L_pde| / mean_l mean|grad w_t L_t|;  w_t <- 0.1 w_hat_t + 0.9 w_t
    start = {"pde": 2.0, "bc": 2.0, "ic": 1.0, "data": 4.0}
    balancer = make_balancer("lra", start, {"keep": 0.9, "every": 2})
    assert isinstance(balancer, LearningRateAnnealing)
    balancer.update(0, *lra_toy())
    # bc: 12 / (2 * 1/8) = 48 -> 6.6;  ic: 12 / (1 * 1/2) = 24 -> 3.3;  data: 12 / (4 * 1) = 3 -> 3.9
    assert floats(balancer.weights) == pytest.approx({"pde": 2.0, "bc": 6.6, "ic": 3.3, "data": 3.9}, rel=1e-12)
    balancer.update(0, *lra_toy())  # step 1: no update
    assert floats(balancer.weights) == pytest.approx({"pde": 2.0, "bc": 6.6, "ic": 3.3, "data": 3.9}, rel=1e-12)
    balancer.update(0, *lra_toy())  # step 2: the denominators now carry the new weights
    for term, old in {"bc": 6.6, "ic": 3.3, "data": 3.9}.items():
        want = 0.1 * 2 * PDE_MAX / (old * LAYER_MEAN[term]) + 0.9 * old
        assert floats(balancer.weights)[term] == pytest.approx(want, rel=1e-12), term
    assert int(balancer.skipped) == 0


def test_lra_weight_settles_at_the_square_root_of_the_gradient_ratio():
    # Fixed point of w <- 0.1 r / w + 0.9 w is sqrt(r), r = max|grad L_pde| / mean|grad L_t|;
    # the preprint's printed rule (unweighted denominator) would settle at r itself: 48 for bc.
    balancer = make_balancer("lra", dict.fromkeys(TERMS, 1.0), {"every": 1})
    for _ in range(300):
        balancer.update(0, *lra_toy())
    for term in ("bc", "ic", "data"):
        assert floats(balancer.weights)[term] == pytest.approx(math.sqrt(PDE_MAX / LAYER_MEAN[term]), rel=1e-9), term


def test_lra_keeps_a_weight_whose_term_has_no_gradient_and_counts_it():
    w = torch.nn.Parameter(torch.ones(1, 4))
    terms = {"pde": w.square().sum(1), "bc": (0 * w).sum(1) + 1, "ic": w.sum(1)}  # grad L_bc = 0: ratio inf
    balancer = make_balancer("lra", {"pde": 1.0, "bc": 2.0, "ic": 1.0}, {"every": 1}, torch.zeros(1, 4), [slice(0, 4)])
    balancer.update(0, terms, [w])
    assert floats(balancer.weights)["bc"] == 2.0
    assert floats(balancer.weights)["ic"] == pytest.approx(0.1 * 2 / 1 + 0.9)
    assert int(balancer.skipped) == 1


def test_lra_updates_each_member_from_its_own_gradients():
    # Two members: the second's boundary gradient is twice the first's, so its ratio is half.
    flat = torch.nn.Parameter(torch.tensor([[1.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    terms = {"pde": 3 * flat[:, 0].square(), "bc": flat[:, 1].square() / 2}  # grads: (6, 0), (0, w)
    balancer = make_balancer("lra", {"pde": 1.0, "bc": 1.0}, {"every": 1}, flat.detach(), [slice(0, 2)])
    balancer.update(0, terms, [flat])
    # member 0: max 6 / mean(0, 1) = 12 -> 0.1 * 12 + 0.9;  member 1: 6 / mean(0, 2) = 6 -> 0.1 * 6 + 0.9
    assert balancer.weights["bc"].tolist() == pytest.approx([2.1, 1.5], rel=1e-12)


def gradnorm_toy(constants: dict[str, float]) -> tuple[dict[str, torch.Tensor], list[torch.nn.Parameter]]:
    """L_t = c_t + a_t (0.6 W2[0,0] + 0.8 W2[0,1]) + 7 (sum W1 sum b - 8), at W2 = 0, W1 = b = 1,
    a = (4, 1, 2, 0.5): value c_t and ||grad_{W2} L_t|| = a_t on the output layer W2 (W1 and the
    bias b carry other, larger gradients). One member."""
    flat = torch.nn.Parameter(torch.tensor([[1.0] * 6 + [0.0] * 2], dtype=torch.float64))
    w1, b, w2 = flat[:, 0:4], flat[:, 4:6], flat[:, 6:8]
    direction = 0.6 * w2[:, 0] + 0.8 * w2[:, 1]
    slopes = {"pde": 4.0, "bc": 1.0, "ic": 2.0, "data": 0.5}
    terms = {t: constants[t] + slopes[t] * direction + 7 * (w1.sum(1) * b.sum(1) - 8) for t in TERMS}
    return terms, [flat]


def test_gradnorm_first_step_moves_each_log_weight_by_lr_against_its_gap():
    # G = (4, 1, 2, 0.5), no progress yet: target mean(G) = 1.875 for all. Adam's first step
    # changes s_t by -lr sign(G_t - target) = (-, +, -, +) lr; then sum w = 4.
    balancer = make_balancer("gradnorm", dict.fromkeys(TERMS, 1.0), {"alpha": 1.5, "lr": 0.025, "every": 1})
    assert isinstance(balancer, GradNorm)
    balancer.update(0, *gradnorm_toy(dict.fromkeys(TERMS, 1.0)))
    down, up = 1 - math.tanh(0.025), 1 + math.tanh(0.025)  # 4 e^(-+lr) / (2 e^-lr + 2 e^lr)
    assert floats(balancer.weights) == pytest.approx({"pde": down, "bc": up, "ic": down, "data": up}, abs=1e-7)
    assert sum(floats(balancer.weights).values()) == pytest.approx(4.0, rel=1e-12)


def test_gradnorm_rescales_initial_weights_to_sum_to_the_number_of_terms():
    balancer = make_balancer("gradnorm", {"pde": 1.0, "bc": 3.0, "ic": 2.0, "data": 2.0}, {})
    assert floats(balancer.weights) == pytest.approx({"pde": 0.5, "bc": 1.5, "ic": 1.0, "data": 1.0})


@pytest.mark.parametrize("alpha, pde_grows", [(1.5, True), (0.0, False)])
def test_gradnorm_asymmetry_pushes_up_the_slow_term(alpha, pde_grows):
    # Second update: every loss but L_pde fell to 1/4 of its first value, so r = (2.29, 0.57, 0.57, 0.57).
    # With alpha = 1.5 the pde target 1.86 * 2.29^1.5 = 6.4 exceeds G_pde = 3.9: w_pde must grow,
    # although its gradient is the largest; with alpha = 0 the target is mean(G) and w_pde shrinks.
    balancer = make_balancer("gradnorm", dict.fromkeys(TERMS, 1.0), {"alpha": alpha})
    balancer.update(0, *gradnorm_toy(dict.fromkeys(TERMS, 1.0)))
    after_first = floats(balancer.weights)["pde"]
    balancer.update(1, *gradnorm_toy({"pde": 1.0, "bc": 0.25, "ic": 0.25, "data": 0.25}))
    assert (floats(balancer.weights)["pde"] > after_first) == pde_grows
    assert sum(floats(balancer.weights).values()) == pytest.approx(4.0, rel=1e-12)


def test_gradnorm_weights_span_orders_of_magnitude_when_gradient_norms_do():
    # ||grad L_pde|| = 1000, ||grad L_bc|| = 1, equal progress: balance needs w_bc / w_pde = 1000,
    # which a step of 0.025 on the weights themselves cannot reach from w_pde = 1 without
    # crossing zero (the former rule stalled at w_pde ~ lr, a ratio of ~80).
    w = torch.nn.Parameter(torch.zeros(1, 1, dtype=torch.float64))
    balancer = make_balancer("gradnorm", {"pde": 1.0, "bc": 1.0}, {}, w.detach(), [slice(0, 1)])
    for step in range(600):
        terms = {"pde": 1 + 1000 * w.sum(1), "bc": 1 + w.sum(1)}
        balancer.update(step, terms, [w])
    weights = floats(balancer.weights)
    assert 500 < weights["bc"] / weights["pde"] < 2000
    assert sum(weights.values()) == pytest.approx(2.0, rel=1e-12) and int(balancer.skipped) == 0


@pytest.mark.parametrize("name", ["lra", "gradnorm"])
def test_weights_stay_finite_and_positive_while_training(name):
    # Two badly scaled quadratics trained by plain gradient descent on the weighted sum.
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(1, 4, dtype=torch.float64))
    target = torch.randn(1, 4, dtype=torch.float64)
    balancer = make_balancer(name, {"pde": 1.0, "bc": 1.0}, {"every": 1}, theta.detach(), [slice(0, 4)])
    optimizer = torch.optim.SGD([theta], lr=1e-4)
    for step in range(200):
        terms = {"pde": 1e3 * (theta - target).square().sum(1), "bc": 1e-2 * theta[:, :2].square().sum(1)}
        loss = sum(balancer.weights[t] * v for t, v in terms.items()).sum()
        balancer.update(0, terms, [theta])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert all(math.isfinite(w) and w > 0 for w in floats(balancer.weights).values()), step


def test_fixed_weights_never_change():
    balancer = make_balancer("fixed", {"pde": 1.0, "bc": 5.0}, {})
    assert isinstance(balancer, FixedWeights)
    balancer.update(0, *lra_toy())
    assert floats(balancer.weights) == {"pde": 1.0, "bc": 5.0}


@pytest.mark.parametrize("name, weights, options, bad", [
    ("lra", {"pde": 1.0, "bc": 1.0}, {"keep": 1.0}, "keep=1.0"),
    ("lra", {"pde": 1.0, "bc": 1.0}, {"alpha": 0.9}, "'alpha'"),
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
        {"train.epochs": 6, "train.log_every": 1, "loss.balancing": balancing})
    result = cpikan.run(cfg, progress=False)
    assert result.status == "ok" and result.metrics["epochs_run"] == 6
    assert result.metrics["balancing_skipped"] == 0
    for term in ("pde", "bc"):
        weights = result.history[f"{term}_weight"]
        assert len(weights) == 6 and all(math.isfinite(w) and w > 0 for w in weights)
    configured = result.config["loss"]["weights"]["bc"]
    assert (result.history["bc_weight"][-1] != configured) == (balancing != "fixed")


def test_lra_weight_stays_bounded_on_helmholtz():
    # Wang et al.'s Helmholtz case (a1 = 1, a2 = 4, k = 1), a small tanh MLP and 128 fresh points
    # per step: the preprint's printed rule drove the boundary weight past 2e5 by step 300 and 1e9 by 2,700.
    cfg = cpikan.RunConfig(problem="helmholtz2d", profile="smoke", device="cpu", threads=1).override({
        "model.arch": "scaled_pinn", "model.hidden": (16, 16), "train.epochs": 5000, "train.log_every": 10,
        "sampling.n_pde": 128, "sampling.n_bc": 128, "sampling.batches": {"count": 1, "resample": True},
        "loss.weights": {"pde": 1.0, "bc": 1.0}, "loss.balancing": "lra"})
    result = cpikan.run(cfg, progress=False)
    weights = result.history["bc_weight"]
    assert result.status == "ok" and len(weights) == 501  # every 10th epoch and the last
    assert 1.0 < max(weights) < 1e4
