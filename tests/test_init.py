"""Each initialization scheme gives the scale `cpikan.models.initialize` documents."""

import math

import pytest
import torch
from torch import nn

import cpikan
from cpikan.models import INITS, ChebyKANLayer, build_network, init_std, initialize

K = 5


def layers():
    """A Chebyshev layer (fan_in = 64 * 6, fan_out = 48 * 6) and a linear layer, initialized per test."""
    return ChebyKANLayer(64, 48, K), nn.Linear(200, 150)


def weights(layer):
    return layer.coeffs if isinstance(layer, ChebyKANLayer) else layer.weight


def fans(layer):
    n_basis = layer.degree + 1 if isinstance(layer, ChebyKANLayer) else 1
    w = weights(layer)
    return w[0].numel(), w.shape[0] * n_basis


@pytest.mark.parametrize("scheme", INITS)
def test_each_scheme_draws_its_documented_scale(scheme):
    torch.manual_seed(0)
    for layer in layers():
        initialize(nn.Sequential(layer), scheme)
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
    layer = ChebyKANLayer(n_in, n_out, K)
    initialize(nn.Sequential(layer), "orthogonal")
    c = layer.coeffs.detach().reshape(n_out, -1)
    fan_in = c.shape[1]
    if n_out <= fan_in:
        torch.testing.assert_close(c @ c.T, torch.eye(n_out), atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(c.T @ c, torch.eye(fan_in) * n_out / fan_in, atol=1e-5, rtol=0)
    assert float(c.square().mean()) == pytest.approx(1 / fan_in, rel=1e-5)


def test_kaiming_output_variance_is_the_mean_square_of_the_basis():
    torch.manual_seed(0)
    layer = ChebyKANLayer(64, 64, K)
    initialize(nn.Sequential(layer), "kaiming")
    s = torch.cos(math.pi * torch.rand(4000, 64))  # arcsine-spread: E T_0^2 = 1, E T_k^2 = 1/2
    y = layer(s).detach()
    assert float(y.var()) == pytest.approx((1 + K / 2) / (K + 1), rel=0.1)


def test_linear_biases_start_at_zero_and_build_network_applies_the_scheme():
    torch.manual_seed(0)
    mlp = build_network("pinn", [0.0], [1.0], (16, 16), K, init="kaiming")
    assert all(float(m.bias.detach().abs().max()) == 0 for m in mlp.modules() if isinstance(m, nn.Linear))
    net = build_network("scaled_cpikan", [0.0], [1.0], (64, 64), K, init="small_random")
    middle = [m for m in net.modules() if isinstance(m, ChebyKANLayer)][1]
    assert float(middle.coeffs.detach().std()) == pytest.approx(1 / (64 * (K + 1)), rel=0.05)


def test_unknown_scheme_names_the_valid_ones():
    with pytest.raises(cpikan.ConfigError, match="'xavier', 'kaiming', 'orthogonal', 'small_random'"):
        initialize(nn.Sequential(nn.Linear(2, 2)), "he")
    with pytest.raises(cpikan.ConfigError, match="model.init"):
        cpikan.RunConfig().override("model.init=he")
