"""run(): metrics and history, JSON round trip, seeds, a user's own PDE, the CLI."""

import json
import math

import pytest
import torch

import cpikan
from cpikan.cli import main
from cpikan.derivatives import AutogradDerivatives
from cpikan.metrics import RUN_METRICS
from cpikan.models import build_network
from cpikan.runs import run_path

SMOKE = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu")


def test_run_returns_every_metric_and_a_strict_json_file(tmp_path):
    result = cpikan.run(SMOKE, progress=False)
    for key in (*RUN_METRICS, "versions"):
        assert key in result.metrics
    assert result.metrics["epochs_run"] == 30 and result.metrics["stop_reason"] == "max_epochs"
    assert result.config["model"]["hidden"] == (8, 8) and result.config["sampling"]["n_pde"] == 64
    path = result.save(run_path(tmp_path, "smoke", "grad_clip", "poisson1d", "baseline", 0))
    assert path == tmp_path / "smoke/runs/grad_clip/poisson1d/baseline/seed0.json"
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    loaded = cpikan.RunResult.load(path)
    assert loaded.metrics["rel_l2"] == result.metrics["rel_l2"]
    assert cpikan.RunConfig.from_dict(loaded.config) == cpikan.RunConfig.from_dict(result.config)
    assert not list(tmp_path.rglob("*.tmp"))


def test_same_seed_same_run_other_seed_other_run():
    a, b = (cpikan.run(SMOKE, progress=False) for _ in range(2))
    c = cpikan.run(SMOKE.override("seed=1"), progress=False)
    assert a.history["loss"] == b.history["loss"]
    assert a.history["loss"][0] != c.history["loss"][0]


def test_inverse_problem_reports_the_recovered_parameter():
    cfg = cpikan.RunConfig(problem="reaction_diffusion1d_inverse", profile="smoke", device="cpu")
    result = cpikan.run(cfg, progress=False)
    assert result.metrics["D"] != 0.5
    assert result.metrics["D_rel_err"] == pytest.approx(abs(result.metrics["D"] - 1.0))


def exact(x):
    return torch.sin(x[:, 0]) * torch.cos(0.5 * x[:, 1])


def source(x):
    # -lap u + u^3 with lap u = -(1 + 0.25) u
    u = exact(x)
    return 1.25 * u + u**3


def test_derivatives_come_out_in_physical_units_on_an_asymmetric_box():
    lo, hi = [2.0, -3.0], [5.0, 1.0]
    net = build_network("scaled_cpikan", lo, hi, (6, 6), 4).double()
    x = torch.tensor([[2.5, -2.0], [4.0, 0.5]], dtype=torch.float64)
    d = AutogradDerivatives(net, x, {}, (0, 1))
    h = 1e-5
    for axis in (0, 1):
        step = torch.zeros(2, dtype=torch.float64)
        step[axis] = h
        plus, minus, mid = net(x + step), net(x - step), net(x)
        torch.testing.assert_close(d.u_x[axis], (plus - minus) / (2 * h), rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(d.u_xx[axis], (plus - 2 * mid + minus) / h**2, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_users_own_pde_trains_on_an_asymmetric_box():
    problem = cpikan.Problem(
        box=cpikan.Box(lo=[2.0, -3.0], hi=[5.0, 1.0]),
        residual=lambda d, x: -d.lap + d.u**3 - source(x),
        conditions=[cpikan.Dirichlet(exact)],
        exact=exact,
        name="my_pde",
    )
    cfg = cpikan.RunConfig(device="cpu").override("train.epochs=1000", "sampling.n_pde=256", "sampling.n_bc=128",
                                                  "model.hidden=8,8", "train.lr=0.01",
                                                  "model.init=small_random")
    result = cpikan.run(cfg, problem=problem, progress=False)
    loss = result.history["loss"]
    assert result.config["problem"] == "my_pde"
    assert loss[-1] < 1e-2 * loss[0]
    assert result.metrics["rel_l2"] < 0.1  # measured 0.027


def test_residual_with_the_wrong_shape_fails_with_a_clear_message():
    problem = cpikan.Problem(box=cpikan.Box([0.0], [1.0]), residual=lambda d, x: d.u[:, None] - x,
                             conditions=[cpikan.Dirichlet(lambda x: x[:, 0])], exact=lambda x: x[:, 0],
                             sizes={"smoke": {"train.epochs": 2, "sampling.n_pde": 8, "model.hidden": (4,)}})
    with pytest.raises(ValueError, match=r"returned shape \(8, 1\); expected \(8,\)"):
        cpikan.run(SMOKE, problem=problem, progress=False)


def test_cli_run_prints_metrics_and_saves(tmp_path, capsys):
    code = main(["run", "--problem", "poisson1d", "--profile", "smoke", "--device", "cpu", "--quiet",
                 "--set", "train.grad_clip=1.0", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rel_l2" in out and "time_per_epoch_ms" in out
    saved = cpikan.RunResult.load(tmp_path / "poisson1d_seed0.json")
    assert saved.config["train"]["grad_clip"] == 1.0


@pytest.mark.parametrize("argv, words", [
    (["run", "--problem", "poisson9d"], ["unknown problem 'poisson9d'", "poisson1d"]),
    (["run", "--problem", "poisson1d", "--set", "train.amp=fp8"], ["fp8", "'bf16'"]),
    (["run", "--problem", "poisson1d", "--set", "model.degree=0"], ["model.degree=0", "positive"]),
])
def test_cli_bad_input_fails_before_training(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_cli_lists_problems_and_keys(capsys):
    main(["problems"])
    main(["keys"])
    out = capsys.readouterr().out
    assert "allen_cahn1d" in out and "train.grad_clip" in out and "'bf16'" not in out and "bf16" in out


def test_a_hard_constraint_is_what_the_run_trains_and_measures():
    cfg = cpikan.RunConfig(problem="forced_diffusion1d", profile="smoke", device="cpu", threads=1,
                           derivatives="autograd")
    result = cpikan.run(cfg, progress=False)
    assert result.config["loss"]["weights"] == {"pde": 1.0} and "loss_bc" not in result.history
    t0 = torch.tensor([[0.0, -0.5], [0.0, 0.25]])
    with torch.no_grad():
        assert torch.equal(result.model(t0), torch.sin(math.pi * t0[:, 1]))


def test_the_taylor_engine_refuses_a_hard_constraint():
    cfg = cpikan.RunConfig(problem="forced_diffusion1d", profile="smoke", device="cpu", derivatives="taylor")
    with pytest.raises(cpikan.ConfigError, match="derivatives='taylor' cannot differentiate problem "
                                                 "'forced_diffusion1d'.*use derivatives=autograd"):
        cpikan.run(cfg, progress=False)
