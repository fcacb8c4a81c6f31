"""Seed-batched runs (`cpikan.run_seeds`): S members train as one batched model, and each member's run
is the run of its seed alone; every toggle acts on each member by itself."""

import math

import numpy as np
import pytest
import torch

import cpikan
from cpikan.lbfgs import MemberLBFGS

SEEDS = [0, 1, 2, 3]
BASE = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu", dtype="float64").override(
    "train.epochs=200", "train.log_every=1")


def assert_members_equal_separate_runs(cfg, problem=None, seeds=SEEDS, tol=1e-6):
    """Each member of one batched run against the run of its seed alone: stop, epochs, loss curve and
    rel_l2 within `tol` (relative)."""
    batched = cpikan.run_seeds(cfg, seeds, problem=problem, progress=False)
    for seed, member in zip(seeds, batched):
        alone = cpikan.run(cfg.override({"seed": seed}), problem=problem, progress=False)
        for key in ("stop_reason", "epochs_run", "lbfgs_iterations", "best_epoch"):
            assert member.metrics[key] == alone.metrics[key], (seed, key)
        assert member.history["epoch"] == alone.history["epoch"]
        np.testing.assert_allclose(member.history["loss"], alone.history["loss"], rtol=tol)
        assert member.metrics["rel_l2"] == pytest.approx(alone.metrics["rel_l2"], rel=tol)
        assert member.metrics["members"] == len(seeds) and alone.metrics["members"] == 1
        assert member.config["seed"] == seed
    return batched


def test_four_members_are_four_separate_runs():
    assert_members_equal_separate_runs(BASE)


TOGGLES = {
    "grad_clip": ("train.grad_clip=0.5",),
    "early_stopping": ("train.early_stopping={'patience': 20, 'min_delta': 1e-2}", "train.monitor_every=5",
                       "train.lr=3e-2"),
    "lra": ("loss.balancing=lra", "loss.balancing_params.every=3"),
    "gradnorm": ("loss.balancing=gradnorm",),
    "rar": ("sampling.adaptive=rar", "sampling.adaptive_params={'candidates': 500, 'rounds': 3}"),
    "rad": ("sampling.adaptive=rad", "sampling.adaptive_params={'candidates': 500, 'rounds': 3}"),
    "minibatch": ("sampling.batches={'count': 4}",),
    "patches": ("sampling.batches={'count': 3, 'mode': 'patches'}",),
    "resample": ("sampling.batches={'count': 1, 'resample': True}",),
    "exponential": ("train.scheduler=exponential",),
    "cosine": ("train.scheduler=cosine", "train.scheduler_params.warmup=20"),
    "multistep": ("train.scheduler=multistep",),
    "plateau": ("train.scheduler=plateau", "train.scheduler_params={'patience': 10}", "train.monitor_every=2",
                "train.lr=3e-2"),
    "lbfgs": ("train.lbfgs_iterations=40",),
}


@pytest.mark.slow
@pytest.mark.parametrize("toggle", TOGGLES)
def test_each_toggle_acts_on_each_member_alone(toggle):
    problem = "reaction_diffusion1d_inverse" if toggle in ("lra", "gradnorm") else "poisson1d"
    assert_members_equal_separate_runs(BASE.override({"problem": problem}, *TOGGLES[toggle]))


def test_a_stopped_member_keeps_its_best_weights_while_the_others_train_on():
    cfg = BASE.override(*TOGGLES["early_stopping"])
    runs = assert_members_equal_separate_runs(cfg)
    stopped = [r for r in runs if r.metrics["stop_reason"] == "early_stopping"]
    going = [r for r in runs if r.metrics["stop_reason"] == "max_epochs"]
    assert stopped and going  # the seeds differ: some stop, the others run the 200 epochs
    for r in stopped:
        # the restored weights are those of the best epoch: the monitored loss there is the run's best
        monitor = [m for m in r.history["monitor"] if m is not None]
        assert r.metrics["epochs_run"] == r.metrics["best_epoch"] + 21 and min(monitor) == pytest.approx(
            r.history["monitor"][r.history["epoch"].index(r.metrics["best_epoch"])])
        weights = r.model.flat
        best = cpikan.run(cfg.override({"seed": r.config["seed"], "train.epochs": r.metrics["best_epoch"] + 1,
                                        "train.early_stopping": None}), progress=False).model.flat
        torch.testing.assert_close(weights, best, rtol=1e-12, atol=1e-14)


def nan_for_member(member: int, after: int, members: int) -> cpikan.Problem:
    """poisson1d whose residual turns NaN for one member's points after `after` evaluations (taylor:
    one per step, after the plan's discovery)."""
    base, calls = cpikan.problems.get("poisson1d"), {"n": 0}

    def residual(d, x):
        calls["n"] += 1
        r = base.residual(d, x)
        if calls["n"] > after + 1:
            r = r.view(members, -1).clone()
            r[member] = math.nan
            r = r.view(-1)
        return r

    return cpikan.Problem(box=base.box, residual=residual, conditions=base.conditions, exact=base.exact,
                          weights=base.weights, sizes=base.sizes, name="poisson1d_nan")


def test_the_nan_guard_stops_one_member_and_the_others_go_on():
    cfg = BASE.override("train.epochs=30", "train.monitor_every=1")
    runs = cpikan.run_seeds(cfg, SEEDS, problem=nan_for_member(2, 6, 4), progress=False)
    assert [r.metrics["stop_reason"] for r in runs] == ["max_epochs", "max_epochs", "nonfinite", "max_epochs"]
    assert [r.metrics["epochs_run"] for r in runs] == [30, 30, 6, 30]
    failed = runs[2]
    assert failed.history["epoch"][-1] == 5 and torch.isfinite(failed.model.flat).all()
    # its last weights that gave a finite loss: those after 5 steps (the 7th loss was NaN)
    alone = cpikan.run(cfg.override("seed=2", "train.epochs=5"), progress=False)
    torch.testing.assert_close(failed.model.flat, alone.model.flat, rtol=1e-12, atol=1e-14)
    others = cpikan.run_seeds(cfg, [0, 1, 3], progress=False)
    for r, o in zip([runs[0], runs[1], runs[3]], others):
        np.testing.assert_allclose(r.history["loss"], o.history["loss"], rtol=1e-12)


def test_under_amp_each_member_skips_its_own_nonfinite_steps():
    cfg = BASE.override("dtype=float32", "train.epochs=20", "train.amp=bf16")
    runs = cpikan.run_seeds(cfg, [0, 1], problem=nan_for_member(1, 5, 2), progress=False)
    assert [r.metrics["amp_skipped"] for r in runs] == [0, 15]
    assert [r.metrics["stop_reason"] for r in runs] == ["max_epochs", "max_epochs"]


def exact(x):
    return torch.sin(x[:, 0]) * torch.cos(0.5 * x[:, 1])


def test_a_users_own_problem_trains_batched_unchanged():
    problem = cpikan.Problem(box=cpikan.Box(lo=[2.0, -3.0], hi=[5.0, 1.0]),
                             residual=lambda d, x: -d.lap + d.u**3 - (1.25 * exact(x) + exact(x) ** 3),
                             conditions=[cpikan.Dirichlet(exact)], exact=exact, name="my_pde")
    cfg = cpikan.RunConfig(device="cpu", dtype="float64").override(
        "train.epochs=50", "train.log_every=1", "sampling.n_pde=64", "sampling.n_bc=32", "model.hidden=6,6")
    assert_members_equal_separate_runs(cfg, problem=problem, seeds=[4, 5, 6])


def test_an_inverse_problem_recovers_each_member_s_own_parameter():
    cfg = BASE.override({"problem": "reaction_diffusion1d_inverse"}, "train.epochs=100")
    runs = assert_members_equal_separate_runs(cfg, seeds=[0, 1])
    assert runs[0].metrics["D"] != runs[1].metrics["D"]


class Reads:
    """Counts reads of tensor values into Python: item, float, int, bool, tolist."""

    NAMES = ("item", "__float__", "__int__", "__bool__", "tolist")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            real = getattr(torch.Tensor, name)

            def counted(tensor, *args, real=real):
                self.count += 1
                return real(tensor, *args)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("toggles", [(), ("train.grad_clip=1.0", "train.early_stopping={'patience': 30}",
                                          "train.scheduler=plateau", "loss.balancing=lra")])
def test_the_adam_loop_reads_the_device_only_every_log_every_steps(monkeypatch, toggles):
    # 100 Adam steps, rows read back at epochs 0 and 50 and after the last; the outcome's stop
    # reasons, epochs and best epochs in one read, and the final scoring of the phase's weights.
    cfg = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu").override(
        "train.epochs=100", "train.log_every=50", "train.eval_every=10", "train.monitor_every=10", *toggles)
    reads = Reads(monkeypatch)
    trainer = {}
    real_adam = cpikan.train.Trainer._adam

    def counted_adam(self):
        before = reads.count
        real_adam(self)
        trainer["reads"] = reads.count - before

    monkeypatch.setattr(cpikan.train.Trainer, "_adam", counted_adam)
    result = cpikan.run_seeds(cfg, [0, 1], progress=False)
    assert trainer["reads"] == 5, trainer
    assert result[0].metrics["epochs_run"] == 100 and len(result[0].history["epoch"]) == 11  # 0, 10, ..., 90, 99


def rosenbrock(x):
    return (1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2


def test_member_lbfgs_of_one_member_follows_torch_lbfgs():
    """The same algorithm (strong Wolfe line search, curvature test, stopping rules): on the
    Rosenbrock function both reach the minimum (1, 1), and the first iterations agree to rounding."""
    start = torch.tensor([[-1.2, 1.0]], dtype=torch.float64)
    for iterations in (5, 200):
        x = torch.nn.Parameter(start[0].clone())
        reference = torch.optim.LBFGS([x], lr=1, max_iter=iterations, history_size=50, tolerance_grad=1e-12,
                                      tolerance_change=1e-15, line_search_fn="strong_wolfe")

        def closure():
            reference.zero_grad()
            loss = rosenbrock(x[None])[0]
            loss.backward()
            return loss

        reference.step(closure)

        def evaluate(points, evaluated):
            points = points.detach().requires_grad_(True)
            f = rosenbrock(points)
            (g,) = torch.autograd.grad(f.sum(), points)
            return f.detach(), g

        ours, outcome = MemberLBFGS(iterations, history_size=50).run(start, evaluate, [True])
        tolerance = 1e-10 if iterations == 5 else 1e-6
        torch.testing.assert_close(ours[0], x.detach(), rtol=0, atol=tolerance)
    torch.testing.assert_close(ours[0], torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-6)


def pinn_loss(name):
    """The smoke-size weighted loss of problem `name` for seed 0 as a function of the network's
    flat weights (1, P), float64, and those initial weights."""
    from cpikan.config import resolve
    from cpikan.losses import PhysicsLoss, ProblemParameters, total
    from cpikan.models import initial_members
    from cpikan.runs import build_problem
    from cpikan.sampling import sample_points

    cfg = cpikan.RunConfig(problem=name, profile="smoke", dtype="float64")
    problem = build_problem(cfg)
    cfg = resolve(cfg, problem)
    net = initial_members(cfg, problem.box, [0]).double()
    s, gens = cfg.sampling, [torch.Generator().manual_seed(0)]
    points = sample_points(problem, s.n_pde, s.n_bc, s.n_ic, gens, torch.device("cpu"), torch.float64)
    loss = PhysicsLoss(problem, net, cfg.derivatives, ProblemParameters(problem.unknowns, problem.constants).double())

    def f(flat):
        with torch.no_grad():
            net.flat.copy_(flat)
        return total(loss.terms(points), cfg.loss.weights)

    return f, net.flat.detach().clone(), net.flat


@pytest.mark.parametrize("name", ["poisson1d", "helmholtz2d", "diffusion1d"])
def test_member_lbfgs_of_one_member_follows_torch_lbfgs_on_the_quick_problems(name):
    """On each quick problem's physics-informed loss (smoke sizes, float64, from the initial
    weights), 25 iterations of our L-BFGS and of torch.optim.LBFGS reach the same loss."""
    f, start, flat = pinn_loss(name)
    reference = torch.optim.LBFGS([flat], lr=1, max_iter=25, max_eval=10**6, history_size=50,
                                  tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        reference.zero_grad()
        loss = f(flat.detach())[0]
        loss.backward()
        return loss

    reference.step(closure)
    theirs = float(f(flat.detach())[0].detach())

    def evaluate(points, evaluated):
        flat.grad = None
        loss = f(points)
        loss.sum().backward()
        return loss.detach(), flat.grad.clone()

    ours, outcome = MemberLBFGS(25, max_eval=10**6, history_size=50).run(start, evaluate, [True])
    reached = float(f(ours)[0].detach())
    assert outcome.iterations[0] == 25 and reached < float(f(start)[0].detach()) / 10
    assert reached == pytest.approx(theirs, rel=1e-6)


def test_member_lbfgs_members_stop_on_their_own():
    # Member 1 starts at the minimum (|g| = 0: no iteration), member 0 iterates.
    start = torch.tensor([[-1.2, 1.0], [1.0, 1.0]], dtype=torch.float64)

    def evaluate(points, evaluated):
        points = points.detach().requires_grad_(True)
        f = rosenbrock(points)
        (g,) = torch.autograd.grad(f.sum(), points)
        return f.detach(), g

    x, outcome = MemberLBFGS(100).run(start, evaluate, [True, True])
    assert outcome.reasons[1] == "tolerance_grad" and outcome.iterations[1] == 0 and outcome.evaluations[1] == 1
    assert outcome.iterations[0] > 10 and torch.equal(x[1], start[1])


@pytest.mark.slow
def test_under_amp_each_member_trains_as_it_would_alone():
    # bf16 autocast refuses float64 parameters: float32, 200 Adam steps, each member against its run alone
    assert_members_equal_separate_runs(BASE.override("dtype=float32", "train.amp=bf16"), tol=1e-5)


def test_fp16_keeps_a_loss_scale_per_member_as_a_grad_scaler_would():
    # fp16 needs CUDA; its scale bookkeeping is plain tensor arithmetic, checked here on the CPU
    from cpikan.stability import ScaledAutocast
    scaler = object.__new__(ScaledAutocast)
    scaler.scale = torch.full((3,), ScaledAutocast.INIT)
    scaler.good = torch.zeros(3, dtype=torch.long)
    scaler.update(torch.tensor([True, False, True]))  # member 1 overflowed: its step skipped, its scale halved
    assert scaler.scale.tolist() == [2.0**16, 2.0**15, 2.0**16]
    for _ in range(ScaledAutocast.INTERVAL - 1):
        scaler.update(torch.tensor([True, True, True]))
    # members 0 and 2: 2000 good steps in a row, their scale doubles; member 1 is one short
    assert scaler.scale.tolist() == [2.0**17, 2.0**15, 2.0**17]
    params = [torch.nn.Parameter(torch.ones(3, 2))]
    params[0].grad = torch.ones(3, 2) * scaler.scale[:, None]
    scaler.unscale(params)
    assert torch.equal(params[0].grad, torch.ones(3, 2))
