"""Each initialization scheme gives the scale `cpikan.models.initialize` documents."""

import math

import pytest
import torch

import cpikan
from cpikan.models import INITS, ChebyKANLayer, Linear, Network, build_network, init_std, initialize

K = 5


def alone(layer) -> Network:
    """A network of the one layer (one member), to be initialized."""
    return Network([layer], layer.n_in)


def layers():
    """A Chebyshev layer (fan_in = 64 * 6, fan_out = 48 * 6) and a linear layer, initialized per test."""
    return alone(ChebyKANLayer(64, 48, K)), alone(Linear(200, 150))


def weights(net):
    """The layer's weights as C[j, i, k] (Chebyshev) or W[j, i] (linear)."""
    w = net.weights()[0]
    return w["coeffs"][0].transpose(1, 2) if "coeffs" in w else w["weight"][0]


def fans(net):
    layer = net.ops[0]
    n_basis = layer.degree + 1 if isinstance(layer, ChebyKANLayer) else 1
    w = weights(net)
    return w[0].numel(), w.shape[0] * n_basis


@pytest.mark.parametrize("scheme", INITS)
def test_each_scheme_draws_its_documented_scale(scheme):
    torch.manual_seed(0)
    for layer in layers():
        initialize(layer, scheme)
        w = weights(layer).detach()
        fan_in, fan_out = fans(layer)
        assert float(w.square().mean().sqrt()) == pytest.approx(init_std(scheme, fan_in, fan_out), rel=0.03)
        assert abs(float(w.mean())) < 0.05 * init_std(scheme, fan_in, fan_out)


def test_documented_scales():
    assert init_std("xavier", 384, 288) == pytest.approx(math.sqrt(2 / 672))
    assert init_std("kaiming", 384, 288) == pytest.approx(math.sqrt(1 / 384))
    assert init_std("orthogonal", 384, 288) == init_std("kaiming", 384, 288)
    assert init_std("small_random", 384, 288) == pytest.approx(1 / 384)


@pytest.mark.parametrize("n_in, n_out", [(64, 48), (2, 32)])  # rows orthonormal; more rows than columns
def test_orthogonal_is_orthogonal_at_the_kaiming_scale(n_in, n_out):
    torch.manual_seed(0)
    layer = alone(ChebyKANLayer(n_in, n_out, K))
    initialize(layer, "orthogonal")
    c = weights(layer).detach().reshape(n_out, -1)
    fan_in = c.shape[1]
    if n_out <= fan_in:
        torch.testing.assert_close(c @ c.T, torch.eye(n_out), atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(c.T @ c, torch.eye(fan_in) * n_out / fan_in, atol=1e-5, rtol=0)
    assert float(c.square().mean()) == pytest.approx(1 / fan_in, rel=1e-5)


def test_kaiming_output_variance_is_the_mean_square_of_the_basis():
    torch.manual_seed(0)
    layer = alone(ChebyKANLayer(64, 64, K))
    initialize(layer, "kaiming")
    s = torch.cos(math.pi * torch.rand(1, 64, 4000))  # arcsine-spread: E T_0^2 = 1, E T_k^2 = 1/2
    y = layer.ops[0](s, layer.weights()[0]).detach()
    assert float(y.var()) == pytest.approx((1 + K / 2) / (K + 1), rel=0.1)


def test_linear_biases_start_at_zero_and_build_network_applies_the_scheme():
    torch.manual_seed(0)
    mlp = build_network("pinn", [0.0], [1.0], (16, 16), K, init="kaiming")
    assert all(float(w["bias"].detach().abs().max()) == 0 for w in mlp.weights() if "bias" in w)
    net = build_network("scaled_cpikan", [0.0], [1.0], (64, 64), K, init="small_random")
    middle = [w["coeffs"] for w in net.weights() if "coeffs" in w][1]
    assert float(middle.detach().std()) == pytest.approx(1 / (64 * (K + 1)), rel=0.05)


def test_members_are_drawn_one_after_another_each_as_it_would_be_alone():
    torch.manual_seed(0)
    first, second = (alone(ChebyKANLayer(3, 2, K)) for _ in range(2))
    initialize(first, "xavier")
    initialize(second, "xavier")
    torch.manual_seed(0)
    both = Network([ChebyKANLayer(3, 2, K)], 3, members=2)
    initialize(both, "xavier")
    assert torch.equal(both.flat, torch.cat([first.flat, second.flat]))


def test_unknown_scheme_names_the_valid_ones():
    with pytest.raises(cpikan.ConfigError, match="'xavier', 'kaiming', 'orthogonal', 'small_random'"):
        initialize(alone(Linear(2, 2)), "he")
    with pytest.raises(cpikan.ConfigError, match="model.init"):
        cpikan.RunConfig().override("model.init=he")
