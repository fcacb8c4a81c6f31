"""Trainer and the stage-1 toggles: clipping, AMP, early stopping, NaN guard, L-BFGS phase."""

import math
import time

import pytest
import torch

import cpikan
from cpikan.config import ConfigError
from cpikan.stability import ClipNorm, grad_norm

SMOKE = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu").override("train.log_every=1")


def short(*overrides, epochs=15):
    return cpikan.run(SMOKE.override(f"train.epochs={epochs}", *overrides), progress=False)


@pytest.mark.parametrize("overrides", [
    (), ("train.grad_clip=1.0",), ("train.amp=bf16",),
    ("train.early_stopping={'patience': 5}", "train.monitor_every=1"),
    ("train.early_stopping={}", "train.monitor=loss"),
])
def test_each_stage1_toggle_runs_and_records_history(overrides):
    result = short(*overrides)
    assert result.status == "ok" and result.metrics["epochs_run"] >= 1
    hist = result.history
    assert len(hist["loss"]) == result.metrics["epochs_run"]
    for key in ("loss_pde", "loss_bc", "grad_norm", "lr", "time_s", "amp_skipped", "pde_weight"):
        assert key in hist
    assert all(math.isfinite(v) for v in hist["grad_norm"])
    assert result.metrics["peak_mem_mb"] > 0 and result.metrics["time_per_epoch_ms"] > 0


def test_clip_bounds_each_member_s_gradient_norm_and_reports_its_pre_clip_norm():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(2, 5)), torch.nn.Parameter(torch.randn(2, 3, 2))]
    for p in params:
        p.grad = torch.randn_like(p) * 100
    params[0].grad[1] /= 1000  # member 1's gradient is below the max norm: left as it is
    before = grad_norm(params)
    kept = [p.grad[1].clone() for p in params]
    reported = ClipNorm(0.5).clip(params)
    torch.testing.assert_close(reported, before)
    assert float(grad_norm(params)[0]) == pytest.approx(0.5, rel=1e-5)
    assert all(torch.equal(p.grad[1], k) for p, k in zip(params, kept)) or float(before[1]) > 0.5
    single = [torch.nn.Parameter(p.detach()[:1].clone()) for p in params]
    for p, q in zip(single, params):
        p.grad = q.grad[:1].clone()
    assert float(grad_norm(single)[0]) == pytest.approx(float(grad_norm(params)[0]))


def test_clipping_acts_in_training_and_logs_pre_clip_norms():
    result = short("train.grad_clip=1e-3")
    assert max(result.history["grad_norm"]) > 1e-3
    off = short()
    assert off.history["loss"][0] == result.history["loss"][0]
    assert off.history["loss"][-1] != result.history["loss"][-1]


def test_early_stopping_stops_on_a_plateau_and_restores_the_best_weights():
    result = short("train.lr=1e-9", "train.early_stopping={'patience': 4, 'min_delta': 1e-3}", "train.monitor=loss",
                   "train.monitor_every=1", epochs=200)
    m = result.metrics
    assert m["stop_reason"] == "early_stopping"
    assert m["epochs_run"] == m["best_epoch"] + 4 + 1 < 20
    monitored = [v for v in result.history["monitor"] if v is not None]
    best = min(monitored)
    from cpikan.losses import PhysicsLoss, ProblemParameters, total
    from cpikan.sampling import sample_points
    cfg = cpikan.RunConfig.from_dict(result.config)
    gens = [torch.Generator().manual_seed(cfg.seed)]
    points = sample_points(result.problem, cfg.sampling.n_pde, cfg.sampling.n_bc, cfg.sampling.n_ic, gens,
                           torch.device("cpu"), torch.float32)
    loss = PhysicsLoss(result.problem, result.model, "autograd", ProblemParameters({}, {}))
    final = float(total(loss.terms(points), cfg.loss.weights).detach()[0])
    assert final == pytest.approx(best, rel=1e-6)


def test_a_nonfinite_loss_stops_the_run_with_last_finite_weights_and_a_run_file(tmp_path):
    result = cpikan.run(SMOKE.override("train.epochs=50", *COUNTED), problem=nan_after(6), progress=False)
    assert result.metrics["stop_reason"] == "nonfinite"
    assert result.metrics["epochs_run"] == 6
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert math.isfinite(result.metrics["rel_l2"])
    saved = cpikan.RunResult.load(result.save(tmp_path / "run.json"))
    assert saved.metrics["stop_reason"] == "nonfinite"


# nested autograd reads the residual once per training step; taylor also reads it once when the loss is built
COUNTED = ("derivatives=autograd",)


def nan_after(calls: int) -> cpikan.Problem:
    """poisson1d whose residual turns NaN after `calls` evaluations (one per training step under `COUNTED`)."""
    count = {"n": 0}
    base = cpikan.problems.get("poisson1d")

    def residual(d, x):
        count["n"] += 1
        r = base.residual(d, x)
        return r * math.nan if count["n"] > calls else r

    return cpikan.Problem(box=base.box, residual=residual, conditions=base.conditions, exact=base.exact,
                          sizes=base.sizes, name="poisson1d_nan")


def test_under_amp_a_nonfinite_step_is_skipped_and_counted_not_the_end_of_the_run():
    result = cpikan.run(SMOKE.override("train.epochs=50", "train.amp=bf16", *COUNTED), problem=nan_after(6),
                        progress=False)
    assert result.metrics["stop_reason"] == "max_epochs" and result.metrics["epochs_run"] == 50
    assert result.metrics["amp_skipped"] == 44
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_fp16_on_cpu_is_refused_with_a_clear_error():
    with pytest.raises(ConfigError, match="fp16.*needs CUDA.*bf16"):
        short("train.amp=fp16")


def test_lbfgs_after_amp_runs_in_full_precision_without_autocast():
    base = cpikan.problems.get("poisson1d")
    seen = []

    def residual(d, x):
        seen.append((torch.is_autocast_enabled("cpu"), d.u.dtype))
        return base.residual(d, x)

    problem = cpikan.Problem(box=base.box, residual=residual, conditions=base.conditions, exact=base.exact,
                             sizes=base.sizes, name="poisson1d_watched")
    cfg = SMOKE.override("train.epochs=5", "train.amp=bf16", "train.lbfgs_iterations=5", "train.lbfgs_float64=true")
    result = cpikan.run(cfg, problem=problem, progress=False)
    n = result.metrics["lbfgs_iterations"]
    assert n >= 1 and result.history["phase"][-1] == "lbfgs"
    assert all(on and dtype == torch.bfloat16 for on, dtype in seen[1:6])  # the Adam steps (after the plan's discovery)
    assert seen[-n:] == [(False, torch.float64)] * n  # every L-BFGS evaluation
    assert all(p.dtype == torch.float64 for p in result.model.parameters())
    kept = cpikan.run(cfg.override("train.lbfgs_float64=false"), progress=False)
    assert all(p.dtype == torch.float32 for p in kept.model.parameters())


def test_lbfgs_lowers_the_loss_after_adam():
    result = short("train.lbfgs_iterations=30", epochs=20)
    phases = result.history["phase"]
    adam_last = result.history["loss"][phases.index("lbfgs") - 1]
    assert min(result.history["loss"][phases.index("lbfgs"):]) < adam_last


def test_on_epoch_returning_true_stops_training():
    result = cpikan.run(SMOKE.override("train.epochs=50"), progress=False, on_epoch=lambda row: row["epoch"] >= 2)
    assert result.metrics["stop_reason"] == "stopped" and result.metrics["epochs_run"] == 3


def test_on_epoch_stop_also_ends_the_lbfgs_phase():
    cfg = SMOKE.override("train.epochs=3", "train.lbfgs_iterations=50")
    result = cpikan.run(cfg, progress=False, on_epoch=lambda row: row["phase"] == "lbfgs")
    assert result.metrics["stop_reason"] == "stopped" and result.metrics["lbfgs_iterations"] == 1


def scored_rows(history):
    return [(e, p) for e, p, v in zip(history["epoch"], history["phase"], history["rel_l2"]) if v is not None]


def test_rel_l2_is_scored_every_k_epochs_and_iterations_in_both_phases_and_on_each_phase_s_last_row():
    cfg = SMOKE.override("train.epochs=12", "train.eval_every=5", "train.log_every=4", "train.lbfgs_iterations=12")
    result = cpikan.run(cfg, progress=False)
    h, n = result.history, result.metrics["lbfgs_iterations"]
    adam = [e for e, p in zip(h["epoch"], h["phase"]) if p == "adam"]
    assert adam == [0, 4, 5, 8, 10, 11]  # logged every 4th epoch, every scored one, and the last
    lbfgs = [i for i in range(n) if i % 5 == 0 or i == n - 1]
    assert n >= 6 and scored_rows(h) == [(e, "adam") for e in (0, 5, 10, 11)] + [(12 + i, "lbfgs") for i in lbfgs]
    # poisson1d's evaluation set (1,001 points) is smaller than the subset: the last row is the final error
    assert h["rel_l2"][-1] == result.metrics["rel_l2"]


def test_scoring_does_not_change_training():
    cfg = SMOKE.override("train.epochs=12", "train.lbfgs_iterations=10")
    every, rarely = (cpikan.run(cfg.override(f"train.eval_every={k}"), progress=False) for k in (1, 1000))
    assert every.history["loss"] == rarely.history["loss"]
    assert len(scored_rows(every.history)) > len(scored_rows(rarely.history)) == 4  # each phase's first and last


def test_a_slow_scoring_is_timed_apart_and_left_out_of_every_training_time(monkeypatch):
    """Each scoring sleeps `pause`; the training times must not grow by the sleeps (compared with the
    same run scored at full speed, so the check holds on a busy machine too)."""
    pause = 0.25
    cfg = SMOKE.override("train.epochs=4", "train.eval_every=1", "train.lbfgs_iterations=4")
    fast_run = cpikan.run(cfg, progress=False)
    fast = fast_run.metrics
    real = cpikan.runs.relative_l2_members

    def slow(pred, true):
        time.sleep(pause)
        return real(pred, true)

    monkeypatch.setattr(cpikan.runs, "relative_l2_members", slow)
    result = cpikan.run(cfg, progress=False)
    m, times = result.metrics, result.history["time_s"]
    scorings = len(scored_rows(result.history)) + 2  # and each phase's last row once more
    slept = scorings * pause
    assert m["eval_time_s"] >= slept
    training = m["adam_time_s"] + m["lbfgs_time_s"]
    assert training < fast["adam_time_s"] + fast["lbfgs_time_s"] + slept / 2
    gaps = [later - earlier for earlier, later in zip([0.0, *times], times)]
    fast_times = fast_run.history["time_s"]
    fast_gaps = [later - earlier for earlier, later in zip([0.0, *fast_times], fast_times)]
    assert min(gaps) >= 0 and max(gaps) < max(fast_gaps) + 0.9 * pause  # no row holds a scoring's sleep
    assert times[-1] == pytest.approx(training, abs=0.05)
    assert m["time_per_epoch_ms"] < fast["time_per_epoch_ms"] + 1000 * slept / 2 / m["epochs_run"]


def test_the_end_of_adam_error_is_recorded_and_is_the_history_s_last_adam_score():
    cfg = SMOKE.override("problem=helmholtz2d", "train.epochs=12", "train.eval_every=5", "train.lbfgs_iterations=8")
    result = cpikan.run(cfg, progress=False)
    h, m = result.history, result.metrics
    last_adam = max(i for i, phase in enumerate(h["phase"]) if phase == "adam")
    assert h["epoch"][last_adam] == 11 and h["rel_l2"][last_adam] == m["rel_l2_adam"]
    assert h["phase"][-1] == "lbfgs" and m["rel_l2_adam"] != m["rel_l2"]
    # helmholtz2d scores its history on a 1,024-point subset of its 101 x 101 grid: the end-of-run
    # error is on the whole grid, so the last row's score is close to it but not it
    assert h["rel_l2"][-1] == pytest.approx(m["rel_l2"], rel=0.2)
