"""The taylor engine equals nested autograd: derivatives, parameter gradients, training curves."""

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev

import cpikan
from cpikan.derivatives import ENGINES, AutogradDerivatives
from cpikan.derivatives.jets import ChebyshevJet, fold_matrix
from cpikan.losses import PhysicsLoss, ProblemParameters
from cpikan.models import Squash, build_network, chebyshev_basis, stack_members
from cpikan.problems import Box, Dirichlet, Problem
from cpikan.derivatives.taylor import Plan, TaylorDerivatives

LO, HI = [2.0, -3.0, 0.5], [5.0, 1.0, 0.7]  # off-centre, unequal widths
LAP_AXES = (0, 2)
ARCHS = ("scaled_cpikan", "cpikan", "scaled_pinn", "pinn")
TORCH_COMPILE_WARNINGS = [  # raised inside torch itself while it compiles
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
    "ignore:.*should not be instantiated:DeprecationWarning",
    "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning",  # dynamo inspecting the weights' views
    "ignore:`torch._prims_common.check` is deprecated:FutureWarning",
]


def random_network(arch, norm, seed=0, members=1):
    torch.manual_seed(seed)
    net = stack_members([build_network(arch, LO, HI, (7, 5), 4, norm) for _ in range(members)]).double()
    with torch.no_grad():
        for op, w in zip(net.ops, net.weights()):
            if isinstance(op, Squash) and op.layernorm:  # not the identity affine map
                w["norm_weight"].normal_(1.0, 0.3)
                w["norm_bias"].normal_(0.0, 0.3)
    return net


def points(n=25, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(LO, dtype=torch.float64), torch.tensor(HI, dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, 3, generator=gen, dtype=torch.float64)


def quantities(d):
    out = {"u": d.u, "lap": d.lap, "mixed01": d.mixed(0, 1), "mixed21": d.mixed(2, 1)}
    for i in range(3):
        out[f"u_x{i}"], out[f"u_xx{i}"] = d.u_x[i], d.u_xx[i]
    return out


def assert_rel_close(got, want, tol, name=""):
    scale = want.detach().abs().max().clamp_min(1e-300)
    err = float((got.detach() - want.detach()).abs().max() / scale)
    assert err < tol, f"{name}: relative difference {err:.2e}"


@pytest.mark.parametrize("norm", ["none", "layernorm"])
@pytest.mark.parametrize("arch", ARCHS)
def test_taylor_equals_autograd_for_every_quantity(arch, norm):
    net, x = random_network(arch, norm), points()
    want = quantities(AutogradDerivatives(net, x, {}, LAP_AXES))
    shared = quantities(TaylorDerivatives(net, x, {}, LAP_AXES))  # one accessor, plan grows
    for name, value in want.items():
        fresh = quantities(TaylorDerivatives(net, x, {}, LAP_AXES))[name]
        assert_rel_close(shared[name], value, 1e-10, name)
        assert_rel_close(fresh, value, 1e-10, name)


def mixed_loss(engine, net, x):
    d = ENGINES[engine](net, x, {}, LAP_AXES)
    return (d.u_x[1] - d.lap + d.mixed(0, 2) * d.u).square().mean()


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_gradients_equal_autograd(arch):
    x = points()
    grads = [torch.autograd.grad(mixed_loss(engine, net, x), net.flat)[0]
             for engine, net in (("autograd", random_network(arch, "none")), ("taylor", random_network(arch, "none")))]
    assert_rel_close(grads[1], grads[0], 1e-10)


def test_taylor_on_members_equals_each_member_alone():
    net, x = random_network("scaled_cpikan", "layernorm", members=3), points(3 * 25)
    together = quantities(TaylorDerivatives(net, x, {}, LAP_AXES))
    for m in range(3):
        alone = quantities(TaylorDerivatives(net.member(m), x[25 * m:25 * (m + 1)], {}, LAP_AXES))
        for name, value in alone.items():
            assert_rel_close(together[name][25 * m:25 * (m + 1)], value, 1e-13, name)


def test_layernorm_parameter_gradients_equal_finite_differences():
    # Not nested autograd here: torch's fused layer_norm gets third derivatives wrong (its double
    # backward is not itself differentiated correctly), so autograd's training gradient is off.
    net, x = random_network("scaled_cpikan", "layernorm"), points(10)
    (grads,) = torch.autograd.grad(mixed_loss("taylor", net, x), net.flat)
    names = [name for _, name, _ in net.layout]
    starts = dict(zip(names, [sum(net.sizes[:j]) for j in range(len(names))]))
    eps = 1e-6
    for name in ("coeffs", "norm_weight", "norm_bias"):
        column = starts[name] + 1
        with torch.no_grad():
            net.flat[0, column] += eps
            up = float(mixed_loss("taylor", net, x))
            net.flat[0, column] -= 2 * eps
            down = float(mixed_loss("taylor", net, x))
            net.flat[0, column] += eps
        assert (up - down) / (2 * eps) == pytest.approx(float(grads[0, column]), rel=1e-6), name


def test_folded_derivatives_match_numpy_including_the_end_points():
    s = torch.tensor([-1.0, -0.7, 0.0, 0.3, 0.99, 1.0], dtype=torch.float64)
    basis = chebyshev_basis(s, 6, dim=0)  # (7, 6)
    fold = fold_matrix(6, torch.float64, torch.device("cpu"))  # rows: D1^T (6), D2^T (5)
    for k in range(7):
        for m, block in ((1, fold[:6]), (2, fold[6:])):
            want = chebyshev.chebval(s.numpy(), chebyshev.chebder(np.eye(7)[k], m))
            got = (block[:, k, None] * basis[:block.shape[0]]).sum(0)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("degree", [1, 2, 5])
def test_chebyshev_jet_backward_passes_gradcheck(degree):
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1).mul(scale).requires_grad_()

    coeffs, value = rand(2, 3, degree + 1, 4), rand(2, 4, 5)
    tangents, channels, q = rand(2, 4, 2, 5, scale=3), rand(2, 4, 1, 5, scale=3), rand(2, 4, 1, 5, scale=3)
    assert torch.autograd.gradcheck(ChebyshevJet.apply, (coeffs, value, tangents, channels, q))
    assert torch.autograd.gradcheck(lambda c, v, g: ChebyshevJet.apply(c, v, g, None, None)[:2],
                                    (coeffs, value, tangents))


def layout_of(dim, lap_axes, *keys):
    plan = Plan(dim, lap_axes)
    for key in keys:
        plan.request(key)
    return plan.layout()


def test_plan_carries_only_what_is_read():
    diffusion = layout_of(2, (1,), ("first", 0), ("pure", 1))
    assert diffusion.axes == (0, 1) and len(diffusion.channels) == 1
    laplacian = layout_of(3, (0, 1, 2), ("value",), ("lap",))
    assert laplacian.axes == (0, 1, 2) and len(laplacian.channels) == 1
    assert laplacian.keep == (0, 4)  # tangents nobody reads are not output
    with_pure = layout_of(2, (0, 1), ("lap",), ("pure", 0), ("pure", 1))
    assert len(with_pure.channels) == 2 and len(with_pure.rows[("lap",)]) == 2  # lap = u_xx + u_yy
    assert len(layout_of(2, (0, 1), ("mixed", 0, 1)).channels) == 1
    assert layout_of(3, (), ("lap",)).rows[("lap",)] == ()


def test_taylor_rejects_a_plain_callable():
    with pytest.raises(TypeError, match="autograd"):
        TaylorDerivatives(lambda x: x[:, 0], points(), {}, LAP_AXES)


def test_physics_loss_discovers_the_plan_once(monkeypatch):
    box = Box([0.0, -1.0], [1.0, 2.0])
    problem = Problem(box=box, residual=lambda d, x: d.u_x[0] - 0.1 * d.u_xx[1] + d.u, time_axis=0,
                      conditions=[Dirichlet(lambda x: x[:, 1])], exact=lambda x: x[:, 1])
    net = build_network("scaled_cpikan", box.lo, box.hi, (6,), 3)
    loss = PhysicsLoss(problem, net, "taylor", ProblemParameters({}, {}))
    import cpikan.derivatives.taylor
    calls = []
    real = cpikan.derivatives.taylor.propagate
    monkeypatch.setattr(cpikan.derivatives.taylor, "propagate", lambda *a: calls.append(a[2]) or real(*a))
    r = loss.residual(torch.rand(1, 16, 2) * torch.tensor([1.0, 3.0]) - torch.tensor([0.0, 1.0]))
    assert r.shape == (1, 16) and len(calls) == 1
    assert calls[0].axes == (0, 1) and len(calls[0].channels) == 1


def smoke(problem, *overrides):
    cfg = cpikan.RunConfig(problem=problem, profile="smoke", device="cpu").override("train.epochs=8", *overrides)
    return cpikan.run(cfg, progress=False)


@pytest.mark.parametrize("problem", ["diffusion1d", "allen_cahn1d", "poisson3d"])
def test_training_with_taylor_reproduces_the_autograd_loss_curve(problem):
    want = smoke(problem, "derivatives=autograd").history["loss"]
    got = smoke(problem, "derivatives=taylor").history["loss"]
    np.testing.assert_allclose(got, want, rtol=2e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings(*TORCH_COMPILE_WARNINGS)
def test_compiled_training_step_reproduces_the_eager_loss_curve():
    tiny = ("derivatives=taylor", "model.hidden=(4,)", "train.epochs=4")
    want = smoke("diffusion1d", *tiny).history["loss"]
    got = smoke("diffusion1d", *tiny, "train.compile=true").history["loss"]
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_compile_with_nested_autograd_is_refused_with_the_fix():
    with pytest.raises(cpikan.ConfigError, match="derivatives=taylor"):
        cpikan.RunConfig().override("derivatives=autograd", "train.compile=true")
    assert cpikan.RunConfig().override("derivatives=taylor", "train.compile=true").train.compile
