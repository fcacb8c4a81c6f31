"""Every registered problem's exact (or reference) solution zeroes its own residual and conditions."""

import numpy as np
import pytest
import torch

from cpikan import problems
from cpikan.derivatives import AutogradDerivatives
from cpikan.models import Constrained, build_network
from cpikan.problems.base import Box, Dirichlet, Initial, Periodic
from cpikan.config import ConfigError
from cpikan.sampling import condition_points, uniform_box
from cpikan.spectral import allen_cahn_reference, solve_allen_cahn

# float64 autograd on closed forms: residuals are O(1e-13) against terms of size up to ~200.
RESIDUAL_TOL = 1e-9
# Problems with a closed-form solution (`exact`); the others measure errors against a computed `reference`.
EXACT = [n for n in problems.names() if problems.get(n).exact is not None]
REFERENCE_TESTED = ["allen_cahn1d"]  # computed references, each checked by the tests of its own below


def test_every_problem_without_a_closed_form_has_its_reference_tested():
    assert [n for n in problems.names() if n not in EXACT] == REFERENCE_TESTED


@pytest.mark.parametrize("name", EXACT)
def test_exact_solution_zeroes_the_residual(name):
    problem = problems.get(name)
    x = uniform_box(problem.box, 500, torch.Generator().manual_seed(0))
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in problem.true_unknowns.items()}
    d = AutogradDerivatives(problem.exact, x, params, problem.lap_axes)
    r = problem.residual(d, d.x)
    assert r.shape == (500,)
    assert r.abs().max() < RESIDUAL_TOL


@pytest.mark.parametrize("name", EXACT)
def test_exact_solution_satisfies_the_conditions(name):
    problem = problems.get(name)
    gen = torch.Generator().manual_seed(1)
    for condition in problem.conditions:
        cp = condition_points(problem, condition, 64, [gen])
        x = cp.x[0]
        assert (problem.exact(x) - condition.value(x)).abs().max() < 1e-12, (name, condition)
        if cp.target is not None:
            torch.testing.assert_close(cp.target[0], condition.value(x), rtol=0, atol=0)


def test_allen_cahn_reference_satisfies_its_conditions():
    problem = problems.get("allen_cahn1d")
    x_eval, u_eval = problem.evaluation_set()
    t, u = np.unique(x_eval[:, 0]), u_eval.reshape(101, -1)
    first = torch.from_numpy(x_eval[: u.shape[1]])
    np.testing.assert_allclose(u[0], problem.conditions[0].value(first).numpy(), atol=1e-12)
    np.testing.assert_array_equal(u[:, 0], u[:, -1])
    assert t[0] == 0 and t[-1] == 1


@pytest.mark.slow
def test_allen_cahn_reference_converges_under_refinement():
    fine = solve_allen_cahn(n_x=1024, dt=2e-4)[2]
    space = [np.abs(solve_allen_cahn(n_x=n, dt=2e-4)[2] - fine[:, :: 1024 // n]).max() for n in (128, 256, 512)]
    assert space[0] > space[1] > space[2] and space[2] < 1e-3
    time_ref = solve_allen_cahn(n_x=256, dt=1e-3, n_t=11)[2]
    time = [np.abs(solve_allen_cahn(n_x=256, dt=dt, n_t=11)[2] - time_ref).max() for dt in (0.05, 0.025, 0.0125)]
    assert time[0] / time[1] > 8 and time[1] / time[2] > 8  # fourth order: halving dt divides by ~16


def test_allen_cahn_reference_satisfies_the_pde():
    """u_t (4th-order central differences over dt_s = 1e-3) against eps u_xx + 5u - 5u^3 (spectral)."""
    t, x, u = solve_allen_cahn(n_x=512, dt=1e-4, t_end=0.6, n_t=601)
    h = t[1] - t[0]
    u_t = (u[:-4] - 8 * u[1:-3] + 8 * u[3:-1] - u[4:]) / (12 * h)
    k = np.pi * np.fft.rfftfreq(512, d=1 / 512)
    mid = u[2:-2]
    u_xx = np.fft.irfft(-(k**2) * np.fft.rfft(mid, axis=1), n=512, axis=1)
    r = u_t - (1e-4 * u_xx + 5 * mid - 5 * mid**3)
    assert np.abs(r).max() / np.abs(u_t).max() < 1e-3


def test_allen_cahn_reference_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CPIKAN_CACHE", str(tmp_path))
    first = allen_cahn_reference(n_x=64, dt=1e-3)
    assert len(list(tmp_path.glob("allen_cahn_*.npz"))) == 1
    again = allen_cahn_reference(n_x=64, dt=1e-3)
    np.testing.assert_array_equal(first[2], again[2])
    np.testing.assert_array_equal(first[2][:, 0], first[2][:, -1])


def test_inverse_observations_are_noisy_at_the_requested_level():
    clean = problems.get("reaction_diffusion1d_inverse", noise=0.0).observations
    noisy = problems.get("reaction_diffusion1d_inverse", noise=0.05).observations
    np.testing.assert_array_equal(clean.x, noisy.x)
    ratio = np.std(noisy.u - clean.u) / np.std(clean.u)
    assert 0.04 < ratio < 0.06


def test_box_rejects_inverted_or_empty_axes():
    with pytest.raises(ConfigError, match="axis 1: lo=2.0 must be < hi=1.0"):
        Box(lo=[0.0, 2.0], hi=[1.0, 1.0])
    with pytest.raises(ConfigError, match="equal length"):
        Box(lo=[0.0], hi=[1.0, 2.0])


def test_condition_points_lie_on_their_faces():
    problem = problems.get("diffusion1d")
    gen = torch.Generator().manual_seed(0)
    dirichlet = condition_points(problem, Dirichlet(problem.exact), 10, [gen]).x[0]
    assert set(dirichlet[:, 1].tolist()) == {-6.0, 6.0}
    assert (dirichlet[:, 1] == -6.0).sum() == 5
    initial = condition_points(problem, Initial(problem.exact), 10, [gen]).x[0]
    assert (initial[:, 0] == 0).all()


def test_each_member_draws_its_condition_points_from_its_own_generator():
    problem = problems.get("diffusion1d")
    together = condition_points(problem, Dirichlet(problem.exact), 10, [torch.Generator().manual_seed(s) for s in (3, 4)])
    for m, seed in enumerate((3, 4)):
        alone = condition_points(problem, Dirichlet(problem.exact), 10, [torch.Generator().manual_seed(seed)])
        assert torch.equal(together.x[m], alone.x[0]) and torch.equal(together.target[m], alone.target[0])


def test_a_hard_constraint_carries_the_exact_solution_and_holds_for_any_network():
    """forced_diffusion1d: u = sin(pi x) + (1 - x^2) t n. The n that gives the exact solution zeroes
    the residual through the transform; any network meets the initial and boundary values."""
    problem = problems.get("forced_diffusion1d")
    assert problem.terms == ("pde",)

    def n_exact(x):  # (u - sin(pi x)) / ((1 - x^2) t): finite inside the box
        return (problem.exact(x) - torch.sin(np.pi * x[:, 1])) / ((1 - x[:, 1] ** 2) * x[:, 0])

    x = uniform_box(problem.box, 500, torch.Generator().manual_seed(0))
    d = AutogradDerivatives(Constrained(n_exact, problem.output), x, {}, problem.lap_axes)
    assert problem.residual(d, d.x).abs().max() < RESIDUAL_TOL

    torch.manual_seed(0)
    net = Constrained(build_network("pinn", problem.box.lo, problem.box.hi, (8, 8), 5).double(), problem.output)
    edges = x.clone()
    edges[:250, 0] = 0.0  # t = 0
    edges[250:, 1] = torch.where(torch.arange(250) % 2 == 0, -1.0, 1.0).double()  # x = -1, +1
    with torch.no_grad():
        assert (net(edges) - problem.exact(edges)).abs().max() < 1e-15
        assert net(x).sub(problem.exact(x)).abs().max() > 1e-2  # inside, the untrained network is free
