"""Each learning-rate schedule follows its formula; warm-up and plateau behave as documented."""

import math

import pytest
import torch

import cpikan
from cpikan.config import params
from cpikan.schedules import SCHEDULES

LR, EPOCHS = 0.01, 20


def schedule(name, **options):
    cfg = cpikan.RunConfig().override({"train.scheduler": name, "train.scheduler_params": options})
    return SCHEDULES[name](LR, EPOCHS, **params(cfg, "train.scheduler_params"))


def rates(s, epochs=range(EPOCHS)):
    return [s.lr_at(e) for e in epochs]


def test_none_keeps_the_base_rate():
    assert rates(schedule("none")) == [LR] * EPOCHS


def test_exponential_multiplies_by_gamma_each_epoch():
    assert rates(schedule("exponential", gamma=0.9)) == pytest.approx([LR * 0.9**e for e in range(EPOCHS)])


def test_cosine_goes_from_the_base_rate_towards_eta_min():
    got = rates(schedule("cosine", eta_min=1e-4))
    want = [1e-4 + (LR - 1e-4) * (1 + math.cos(math.pi * e / EPOCHS)) / 2 for e in range(EPOCHS)]
    assert got == pytest.approx(want)
    assert got[0] == pytest.approx(LR) and got[EPOCHS // 2] == pytest.approx((LR + 1e-4) / 2)


def test_multistep_decays_at_epochs_and_fractions():
    got = rates(schedule("multistep", milestones=[5, 0.75], gamma=0.1))
    assert got == pytest.approx([LR] * 5 + [LR * 0.1] * 10 + [LR * 0.01] * 5)


def test_warmup_ramps_linearly_then_the_schedule_starts_from_the_base_rate():
    s = schedule("exponential", gamma=0.5, warmup=4)
    assert rates(s, range(7)) == pytest.approx([LR / 4, LR / 2, 3 * LR / 4, LR, LR, LR / 2, LR / 4])
    cosine = schedule("cosine", warmup=4)
    assert cosine.lr_at(4) == pytest.approx(LR) and cosine.lr_at(4 + 8) == pytest.approx(LR / 2)  # E' = 16
    multistep = schedule("multistep", milestones=[0.5], warmup=4)
    assert multistep.lr_at(4 + 7) == pytest.approx(LR) and multistep.lr_at(4 + 8) == pytest.approx(LR * 0.1)


def test_plateau_reduces_after_patience_without_relative_improvement_and_stops_at_min_lr():
    s = schedule("plateau", factor=0.5, patience=3, threshold=0.1, min_lr=LR / 5)
    values = [10.0, 8.0, 7.5, 7.4, 7.3, 7.3, 7.2, 7.2, 7.2, 7.2, 7.2, 7.2, 7.2]  # best 8.0 from epoch 1
    seen = []
    for epoch, value in enumerate(values):
        s.observe(epoch, torch.tensor([value, 1.0 / (epoch + 1)], dtype=torch.float64))  # member 1 keeps improving
        seen.append(s.lr_at(epoch + 1).tolist())
    first, second = [a for a, _ in seen], [b for _, b in seen]
    assert first[:4] == pytest.approx([LR] * 4)  # 7.5, 7.4 are not 10 % below 8.0
    assert first[4] == pytest.approx(LR / 2)  # epoch 4 = best epoch 1 + patience 3
    assert first[7] == pytest.approx(LR / 4) and first[10] == pytest.approx(LR / 5)
    assert first[-1] == pytest.approx(LR / 5)  # then never below min_lr
    assert second == pytest.approx([LR] * len(values))  # each member has its own rate


def test_plateau_ignores_values_during_warmup():
    s = schedule("plateau", patience=1, warmup=5)
    for epoch in range(5):
        s.observe(epoch, torch.ones(1))
    assert s.lr_at(5) == LR and s._best == math.inf


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(cpikan.ConfigError, match="'eta_min', 'warmup'|eta_min, warmup"):
        cpikan.RunConfig().override("train.scheduler=cosine", "train.scheduler_params.gamma=0.9")


@pytest.mark.parametrize("name, options", [("exponential", {"gamma": 0.0}), ("plateau", {"factor": 1.5}),
                                           ("multistep", {"milestones": [0]}), ("cosine", {"warmup": -1})])
def test_bad_values_are_config_errors(name, options):
    with pytest.raises(cpikan.ConfigError, match=list(options)[0]):
        cpikan.RunConfig().override({"train.scheduler": name, "train.scheduler_params": options})


def test_training_logs_the_scheduled_rate_every_epoch():
    cfg = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu").override(
        "train.epochs=6", "train.log_every=1", "train.scheduler=exponential",
        "train.scheduler_params={'gamma': 0.5, 'warmup': 2}")
    history = cpikan.run(cfg, progress=False).history
    assert history["lr"] == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert torch.isfinite(torch.tensor(history["loss"])).all()


def test_plateau_watches_train_monitor_without_early_stopping():
    cfg = cpikan.RunConfig(problem="poisson1d", profile="smoke", device="cpu").override(
        "train.epochs=6", "train.log_every=1", "train.scheduler=plateau", "train.monitor=loss",
        "train.monitor_every=2")
    history = cpikan.run(cfg, progress=False).history
    assert [value is not None for value in history["monitor"]] == [True, False, True, False, True, True]
    assert cpikan.run(cfg.override("train.scheduler=none"), progress=False).history["monitor"] == [None] * 6
