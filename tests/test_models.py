"""Chebyshev basis and layer, domain scaling, network shapes, the initial network of a config."""

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as C

import cpikan
from cpikan.config import resolve
from cpikan.models import (ChebyKANLayer, DomainScaling, Network, Squash, build_network, chebyshev_basis,
                           initial_members, initial_network)


@pytest.mark.parametrize("degree", [1, 2, 5, 12])
def test_basis_equals_numpy_chebvander(degree):
    s = np.concatenate([np.linspace(-1, 1, 201), [-1.0, 1.0]])
    ours = chebyshev_basis(torch.from_numpy(s), degree).numpy()
    np.testing.assert_allclose(ours, C.chebvander(s, degree), rtol=0, atol=1e-12)


def test_layer_is_a_sum_of_chebyshev_series():
    torch.manual_seed(0)
    layer = ChebyKANLayer(3, 2, 4)
    coeffs = torch.randn(1, 2, 5, 3, dtype=torch.float64)  # (S, n_out, K+1, n_in): C[j, i, k] = coeffs[0, j, k, i]
    s = torch.rand(1, 3, 50, dtype=torch.float64) * 2 - 1  # (S, n_in, N)
    y = layer(s, {"coeffs": coeffs})[0].T.numpy()
    c, x = coeffs[0].transpose(1, 2).numpy(), s[0].T.numpy()
    expected = np.stack([sum(C.chebval(x[:, i], c[j, i]) for i in range(3)) for j in range(2)], axis=1)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_domain_scaling_maps_box_to_unit_cube():
    scale = DomainScaling([2.0, -3.0], [5.0, 1.0])
    points = torch.tensor([[2.0, -3.0], [5.0, 1.0], [3.5, -1.0]], dtype=torch.float64)
    out = scale(points.T[None])[0].T  # (S, d, N) in and out
    np.testing.assert_allclose(out.numpy(), [[-1, -1], [1, 1], [0, 0]], atol=1e-15)


@pytest.mark.parametrize("arch", ["scaled_cpikan", "cpikan", "scaled_pinn", "pinn"])
@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_every_architecture_maps_points_to_values(arch, norm):
    net = build_network(arch, [0.0, -1.0], [1.0, 1.0], (6, 5), 3, norm, "xavier")
    assert net(torch.rand(7, 2)).shape == (7,)
    has_scaling = any(isinstance(op, DomainScaling) for op in net.ops)
    assert has_scaling == arch.startswith("scaled")
    assert any(isinstance(op, ChebyKANLayer) for op in net.ops) == arch.endswith("cpikan")


def test_network_rejects_wrong_point_dimension():
    net = build_network("scaled_cpikan", [0.0], [1.0], (4,), 3)
    with pytest.raises(ValueError, match=r"\(N, 1\), got \(3, 2\)"):
        net(torch.zeros(3, 2))
    pair = initial_members(cpikan.config.resolve(cpikan.RunConfig(), cpikan.problems.get("poisson1d")),
                           cpikan.problems.get("poisson1d").box, [0, 1])
    with pytest.raises(ValueError, match="multiple of its 2 members"):
        pair(torch.zeros(3, 1))


def test_members_compute_what_each_computes_alone():
    problem = cpikan.problems.get("helmholtz2d")
    cfg = cpikan.config.resolve(cpikan.RunConfig(problem="helmholtz2d", device="cpu"), problem)
    net = initial_members(cfg, problem.box, [5, 7, 9]).double()
    x = torch.rand(3 * 11, 2, dtype=torch.float64)
    together = net(x).view(3, 11)
    for m, seed in enumerate((5, 7, 9)):
        alone = initial_network(cfg.override({"seed": seed}), problem.box).double()
        torch.testing.assert_close(together[m], alone(x[11 * m:11 * (m + 1)]), rtol=1e-14, atol=1e-14)
        assert torch.equal(net.member(m).flat, alone.flat)


def test_layernorm_squash_matches_torch_and_has_correct_third_derivatives():
    torch.manual_seed(0)
    squash = Squash(5, layernorm=True)
    gain, shift = torch.randn(1, 5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)
    w = {"norm_weight": gain, "norm_bias": shift}
    h = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)  # 4 points, feature-major below
    expected = torch.tanh(torch.nn.functional.layer_norm(h, (5,), gain[0], shift[0]))
    torch.testing.assert_close(squash(h.T[None], w)[0].T, expected)

    def second(x):
        (g,) = torch.autograd.grad(squash(x.T[None], w).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x, create_graph=True)
        return gg

    assert torch.autograd.gradcheck(second, (h,))


def test_initial_network_is_what_a_run_starts_from_and_leaves_torch_random_state_alone():
    problem = cpikan.problems.get("poisson1d")
    cfg = resolve(cpikan.RunConfig(problem="poisson1d", seed=3, device="cpu"), problem)
    state = torch.get_rng_state()
    net = initial_network(cfg, problem.box)
    assert torch.equal(torch.get_rng_state(), state)
    again = initial_network(cfg, problem.box)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters()))
    # one Adam step of rate 1e-30 moves no float32 weight: the run's model is its initial network
    started = cpikan.run(cfg.override("train.epochs=1", "train.lr=1e-30"), progress=False).model
    assert torch.equal(net.flat, started.flat)
    other = initial_network(cfg.override("seed=4"), problem.box)
    assert not torch.equal(next(net.parameters()), next(other.parameters()))


def test_standardized_inputs_are_the_uniform_law_s_z_scores_for_every_architecture():
    lo, hi = [2.0, -3.0], [5.0, 1.0]
    x = torch.tensor([[2.0, -3.0], [5.0, 1.0], [3.5, -1.0]], dtype=torch.float64)
    z = (x - torch.tensor([3.5, -1.0], dtype=torch.float64)) / (torch.tensor([3.0, 4.0], dtype=torch.float64) / 12**0.5)
    for arch in ("scaled_pinn", "pinn", "scaled_cpikan", "cpikan"):
        net = build_network(arch, lo, hi, (4,), 3, standardize=True)
        scaling = net.ops[0]
        assert isinstance(scaling, DomainScaling)
        torch.testing.assert_close(scaling(x.T[None])[0].T, z)
    torch.manual_seed(0)
    raw = build_network("pinn", lo, hi, (4,), 3, standardize=True)
    torch.manual_seed(0)
    scaled = build_network("scaled_pinn", lo, hi, (4,), 3, standardize=True)
    assert torch.equal(raw.flat, scaled.flat) and torch.equal(raw(x.float()), scaled(x.float()))
