"""Collocation strategies (cpikan.sampling): batching, RAR, RAD, and their runs through cpikan.run.

The samplers hold S members' clouds (S, N, d); most tests here use one member, `one(points)`."""

import pytest
import torch
from scipy import stats

import cpikan
from cpikan.config import ConfigError
from cpikan.problems.base import Box
from cpikan.sampling import (Collocation, ResidualDistribution, ResidualRefinement, make_sampler,
                             refinement_epochs, uniform_box)

UNIT_SQUARE = Box(lo=[0.0, 0.0], hi=[1.0, 1.0])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one(points: torch.Tensor) -> torch.Tensor:
    """A cloud (N, d) as the clouds of one member, (1, N, d)."""
    return points[None]


def needs_autograd(values):
    """A residual r(x) = values(x) at each member's points (S, n, d) -> (S, n) that, like a PDE
    residual, differentiates w.r.t. x."""
    def residual(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).detach().requires_grad_(True)
        u = flat[:, 0] * values(flat.detach())
        return torch.autograd.grad(u.sum(), flat)[0][:, 0].view(x.shape[:2])
    return residual


def in_corner(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] < 0.25) & (x[:, 1] < 0.25)


# 100 + x0 in the corner [0, 1/4]^2 (1/16 of the box), 0.01 x0 elsewhere
corner_residual = needs_autograd(lambda x: torch.where(in_corner(x), 100 + x[:, 0], 0.01 * x[:, 0]))


def rar(points: torch.Tensor, **options) -> ResidualRefinement:
    """RAR refining once, after epoch 0 (2 epochs, 1 round)."""
    settings = {"epochs": 2, "rounds": 1, "candidates": 4000, "ratio": 0.2, "percentile": 75.0} | options
    return ResidualRefinement(one(points), UNIT_SQUARE, [gen(1)], **settings)


def rad(points: torch.Tensor, box: Box, **options) -> ResidualDistribution:
    """RAD redistributing once, after epoch 0 (2 epochs, 1 round)."""
    settings = {"epochs": 2, "rounds": 1, "candidates": 20_000, "k": 1.0, "c": 1.0} | options
    return ResidualDistribution(one(points), box, [gen(3)], **settings)


@pytest.mark.parametrize("epochs, rounds, due", [
    (20, 3, {4, 9, 14}), (40_000, 3, {9_999, 19_999, 29_999}), (4, 2, {0, 1}), (2, 3, {0}), (1, 1, set()),
])
def test_refinements_split_the_adam_phase_into_equal_spans(epochs, rounds, due):
    assert refinement_epochs(epochs, rounds) == due


@pytest.mark.parametrize("epochs, rounds, start, due", [
    (50_000, 40, 10_000, set(range(9_999, 49_000, 1_000))), (20, 2, 10, {9, 14}), (10, 3, 9, {8}),
])
def test_a_start_delays_the_first_refinement_and_spreads_the_rest_evenly(epochs, rounds, start, due):
    assert refinement_epochs(epochs, rounds, start) == due


def test_a_start_at_or_after_the_last_epoch_is_refused():
    problem = cpikan.problems.get("poisson1d")
    cfg = cpikan.RunConfig(problem="poisson1d").override({"train.epochs": 100, "sampling.adaptive": "rad",
                                                          "sampling.adaptive_params": {"start": 100}})
    with pytest.raises(ConfigError, match=r"adaptive_params\.start=100 is not valid: .* 100 Adam epochs"):
        make_sampler(cfg, problem, one(uniform_box(problem.box, 64, gen())), [gen()])


# ---------------------------------------------------------------- RAR

def test_rar_adds_a_share_of_the_initial_points_where_the_residual_is_largest():
    start = uniform_box(UNIT_SQUARE, 1000, gen()).float()
    sampler = rar(start)
    assert sampler.refine(1, corner_residual) is None  # not a refinement epoch
    [info] = sampler.refine(0, corner_residual)
    # m = 0.2 * 1000 = 200 points, the largest |r| of 4000 candidates: the corner holds ~250 of them.
    assert info["n_added"] == 200 and info["n_points"] == 1200
    assert torch.equal(sampler.points[0, :1000], start)
    assert in_corner(sampler.points[0, 1000:]).all()
    assert info["max"] >= 100 > info["p90"] >= info["median"]


def test_rar_adds_only_points_above_the_percentile():
    # ratio 1 asks for 1000 points; only the 400 candidates above the 90th percentile qualify.
    sampler = rar(uniform_box(UNIT_SQUARE, 1000, gen()), ratio=1.0, percentile=90.0)
    assert sampler.refine(0, corner_residual)[0]["n_added"] == 400


def test_rar_refines_once_per_round():
    sampler = rar(uniform_box(UNIT_SQUARE, 100, gen()), epochs=20, rounds=3, candidates=2000)
    counts = [info[0]["n_points"] for epoch in range(20) if (info := sampler.refine(epoch, corner_residual))]
    assert counts == [120, 140, 160] and sampler.points.shape == (1, 160, 2)


def test_rar_with_resample_redraws_the_uniform_part_and_keeps_the_refined_points():
    start = uniform_box(UNIT_SQUARE, 100, gen())
    sampler = rar(start, resample=True)
    added = sampler.refine(0, corner_residual)[0]["n_added"]
    (cloud,) = sampler.batches(1)
    assert cloud.shape == (1, 100 + added, 2)
    assert not torch.equal(cloud[0, :100], start)
    assert torch.equal(cloud[:, 100:], sampler.added)


def test_rar_refines_each_member_from_its_own_residual_and_generator():
    # Member 0's residual peaks in the corner, member 1's is flat but for x0 > 0.9: each adds its own points.
    both = ResidualRefinement(uniform_box(UNIT_SQUARE, 100, gen()).expand(2, -1, -1).clone(), UNIT_SQUARE,
                              [gen(1), gen(2)], epochs=2, rounds=1, candidates=2000, ratio=0.2, percentile=75.0)

    def residual(x):
        corner, edge = corner_residual(x[:1]), needs_autograd(lambda p: (p[:, 0] > 0.9).to(p.dtype) * 100)(x[1:])
        return torch.cat([corner, edge])

    both.refine(0, residual)
    assert in_corner(both.points[0, 100:]).all() and (both.points[1, 100:, 0] > 0.9).all()


# ---------------------------------------------------------------- RAD

LINE = Box(lo=[0.0], hi=[1.0])


@pytest.mark.parametrize("k, c, cdf", [
    (1.0, 0.0, lambda x: x**2),  # p ∝ x / mean(x) = 2x
    (2.0, 1.0, lambda x: (x**3 + x) / 2),  # p ∝ x^2 / mean(x^2) + 1 = 3x^2 + 1
])
def test_rad_samples_follow_the_target_density(k, c, cdf):
    sampler = rad(uniform_box(LINE, 2000, gen()), LINE, candidates=100_000, k=k, c=c)
    [info] = sampler.refine(0, needs_autograd(lambda x: x[:, 0]))
    assert info["n_points"] == 2000 and sampler.points.shape == (1, 2000, 1)
    x = sampler.points[0, :, 0].numpy()
    assert stats.kstest(x, cdf).pvalue > 0.01
    assert stats.kstest(x, "uniform").pvalue < 1e-6


def test_rad_draws_distinct_points_from_the_candidates():
    sampler = rad(uniform_box(LINE, 1000, gen()), LINE, candidates=1200, k=1.0, c=0.0)
    sampler.refine(0, needs_autograd(lambda x: x[:, 0]))
    assert sampler.points[0, :, 0].unique().numel() == 1000


@pytest.mark.parametrize("values", [
    lambda x: torch.zeros(x.shape[0], dtype=x.dtype),  # 0 / mean 0: not finite
    lambda x: (x[:, 0] > 0.9).to(x.dtype),  # only ~100 of 1000 candidates have p > 0, 500 needed
])
def test_rad_keeps_the_cloud_when_the_density_cannot_give_the_points(values):
    start = uniform_box(LINE, 500, gen())
    sampler = rad(start, LINE, candidates=1000, k=1.0, c=0.0)
    sampler.refine(0, needs_autograd(values))
    assert torch.equal(sampler.points[0], start)


def test_rad_with_resample_draws_a_new_cloud_from_the_latest_density_each_epoch():
    sampler = rad(uniform_box(LINE, 500, gen()), LINE, epochs=20, candidates=5000, k=1.0, c=0.0, resample=True)
    assert sampler.refine(8, needs_autograd(lambda x: x[:, 0])) is None
    sampler.refine(9, needs_autograd(lambda x: (x[:, 0] > 0.5).to(x.dtype)))  # all mass on (1/2, 1]
    first, second = sampler.batches(10)[0], sampler.batches(11)[0]
    assert not torch.equal(first, second)
    assert (first > 0.5).all() and (second > 0.5).all() and second.shape == (1, 500, 1)


# ---------------------------------------------------------------- batches

def ids(batch: torch.Tensor) -> list[int]:
    return batch[0, :, 0].long().tolist()


@pytest.mark.parametrize("count", [1, 3, 7])
def test_minibatches_visit_every_point_exactly_once_per_epoch(count):
    points = torch.stack([torch.arange(100.0), torch.rand(100, generator=gen())], dim=1)  # column 0: id
    sampler = Collocation(one(points), Box(lo=[0.0, 0.0], hi=[100.0, 1.0]), [gen()], count=count)
    orders = []
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == count and min(b.shape[1] for b in batches) >= 100 // count
        order = [i for b in batches for i in ids(b)]
        assert sorted(order) == list(range(100))
        orders.append(order)
    assert (orders[0] != orders[1]) == (count > 1)


def test_patches_are_slabs_along_the_longest_axis_visiting_every_point_once():
    box = Box(lo=[0.0, -2.0], hi=[1.0, 2.0])  # axis 1 is the longest
    points = uniform_box(box, 90, gen())
    sampler = Collocation(one(points), box, [gen()], count=4, mode="patches")
    batches = [b[0] for b in sampler.batches(0)]
    assert sorted(sum((b[:, 1].tolist() for b in batches), [])) == sorted(points[:, 1].tolist())
    slabs = sorted(batches, key=lambda b: float(b[:, 1].min()))
    assert all(float(a[:, 1].max()) < float(b[:, 1].min()) for a, b in zip(slabs, slabs[1:]))
    assert [b.shape[0] for b in batches] == [23, 23, 22, 22]  # the i-th batch's size, whatever slab it is


def test_patches_give_every_member_batches_of_the_same_sizes_in_its_own_order():
    box = Box(lo=[0.0], hi=[1.0])
    clouds = torch.stack([uniform_box(box, 90, gen(s)) for s in range(3)])
    batches = Collocation(clouds, box, [gen(10), gen(11), gen(12)], count=4, mode="patches").batches(0)
    assert [b.shape for b in batches] == [(3, 23, 1), (3, 23, 1), (3, 22, 1), (3, 22, 1)]
    for m in range(3):
        alone = Collocation(clouds[m:m + 1], box, [gen(10 + m)], count=4, mode="patches").batches(0)
        assert all(torch.equal(a[0], b[m]) for a, b in zip(alone, batches))


def test_resample_draws_fresh_uniform_points_each_epoch_after_the_first():
    points = uniform_box(UNIT_SQUARE, 64, gen())
    sampler = Collocation(one(points), UNIT_SQUARE, [gen(5)], count=2, resample=True)
    epoch0 = torch.cat(sampler.batches(0), dim=1)[0]
    epoch1 = torch.cat(sampler.batches(1), dim=1)[0]
    assert sorted(epoch0[:, 0].tolist()) == sorted(points[:, 0].tolist())
    assert epoch1.shape == (64, 2) and not set(epoch1[:, 0].tolist()) & set(points[:, 0].tolist())
    assert sorted(epoch1[:, 0].tolist()) == sorted(sampler.points[0, :, 0].tolist())


# ---------------------------------------------------------------- make_sampler and runs

@pytest.mark.parametrize("overrides, bad", [
    ({"sampling.batches": {"count": 65}}, "sampling.batches.count=65"),
    ({"sampling.adaptive": "rar", "sampling.adaptive_params": {"ratio": 1.5}}, "ratio=1.5"),
    ({"sampling.adaptive": "rad", "sampling.adaptive_params": {"k": -1.0}}, "k=-1.0"),
    ({"sampling.adaptive": "rad", "sampling.adaptive_params": {"rounds": 0}}, "rounds=0"),
    ({"sampling.adaptive": "rad", "sampling.adaptive_params": {"candidates": 63}}, "candidates=63"),
])
def test_bad_sampling_settings_raise_config_error_naming_the_value(overrides, bad):
    problem = cpikan.problems.get("poisson1d")
    with pytest.raises(ConfigError, match=bad.replace(".", r"\.")):
        cfg = cpikan.RunConfig(problem="poisson1d").override(overrides)
        make_sampler(cfg, problem, one(uniform_box(problem.box, 64, gen())), [gen()])


def smoke(*overrides) -> cpikan.RunResult:
    cfg = cpikan.RunConfig(problem="helmholtz2d", profile="smoke", device="cpu", threads=1)
    return cpikan.run(cfg.override("train.epochs=4", *overrides), progress=False)


ADAPTIVE = {"rounds": 2, "candidates": 300}  # refinements after epochs 0 and 1 of 4


@pytest.mark.parametrize("overrides, n_refinements", [
    ({}, 0),
    ({"sampling.adaptive": "rar", "sampling.adaptive_params": ADAPTIVE}, 2),
    ({"sampling.adaptive": "rad", "sampling.adaptive_params": ADAPTIVE}, 2),
    ({"sampling.batches": {"count": 4}}, 0),
    ({"sampling.batches": {"count": 3, "mode": "patches", "resample": True}}, 0),
    ({"sampling.adaptive": "rar", "sampling.adaptive_params": ADAPTIVE,
      "sampling.batches": {"count": 2, "mode": "patches", "resample": True}}, 2),
    ({"sampling.adaptive": "rad", "sampling.adaptive_params": ADAPTIVE, "sampling.batches": {"count": 2}}, 2),
])
def test_each_sampling_toggle_runs_on_and_off(overrides, n_refinements):
    result = smoke(overrides)
    assert result.status == "ok" and result.metrics["epochs_run"] == 4
    assert [r["epoch"] for r in result.refinements] == [0, 1][:n_refinements]
    assert result.collocation.shape[0] == (result.refinements[-1]["n_points"] if n_refinements else 128)
    if overrides.get("sampling.adaptive") == "rar":
        assert result.collocation.shape[0] == 128 + 2 * round(0.2 * 128)
    assert all(rate > 0 for rate in result.history["points_per_s"])


def test_adaptive_batched_runs_are_deterministic():
    overrides = {"sampling.adaptive": "rad", "sampling.adaptive_params": ADAPTIVE,
                 "sampling.batches": {"count": 2, "resample": True}}
    first, second = smoke(overrides), smoke(overrides)
    assert first.history["loss"] == second.history["loss"]
    assert torch.equal(first.collocation, second.collocation)


def test_resample_conditions_draws_fresh_condition_points_every_epoch_with_the_same_law():
    problem = cpikan.problems.get("diffusion1d")  # an initial slice and two Dirichlet faces
    cfg = cpikan.config.resolve(cpikan.RunConfig(problem="diffusion1d").override(
        {"sampling.batches": {"count": 1, "resample_conditions": True}}), problem)
    gens = [gen(0)]
    sampler = make_sampler(cfg, problem, one(uniform_box(problem.box, 64, gen(9))), gens)
    assert sampler.conditions(0) is None
    first, second = sampler.conditions(1), sampler.conditions(2)
    for a, b, condition in zip(first, second, problem.conditions):
        assert a.x.shape == b.x.shape and not torch.equal(a.x, b.x)
        torch.testing.assert_close(a.target[0], condition.value(a.x[0]), rtol=0, atol=0)
    initial, faces = first[0].x[0], first[1].x[0]
    assert (initial[:, 0] == 0).all() and set(faces[:, 1].tolist()) == {-6.0, 6.0}
    assert make_sampler(cfg.override({"sampling.batches": {"count": 1}}), problem, one(uniform_box(
        problem.box, 64, gen(9))), gens).conditions(1) is None


def test_a_run_with_fresh_condition_points_trains_on_them():
    fixed = smoke({"sampling.batches": {"count": 1, "resample": True}}, "train.log_every=1")
    fresh = smoke({"sampling.batches": {"count": 1, "resample": True, "resample_conditions": True}},
                  "train.log_every=1")
    assert fixed.history["loss_bc"][0] == fresh.history["loss_bc"][0]  # the first epoch trains on the same points
    assert fixed.history["loss_bc"][1:] != fresh.history["loss_bc"][1:]
