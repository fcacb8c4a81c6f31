"""Point sets (interior collocation, boundary faces, initial slice, periodic pairs) and the
collocation strategies: mini-batches or spatial patches (``sampling.batches``) and
residual-based adaptive sampling (``sampling.adaptive``: RAR, RAD).

Every random draw comes from the run's seeded `torch.Generator` in float64 on the CPU and is
then moved to the run's device and dtype, so a seed gives the same points on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

import torch

from cpikan.config import ConfigError, RunConfig, params
from cpikan.problems.base import Box, Condition, Dirichlet, Initial, Periodic, Problem


def uniform_box(box: Box, n: int, gen: torch.Generator) -> torch.Tensor:
    """n points uniform in the box; shape (n, d), float64."""
    lo, hi = torch.tensor(box.lo, dtype=torch.float64), torch.tensor(box.hi, dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, box.dim, generator=gen, dtype=torch.float64)


def dirichlet_axes(problem: Problem, condition: Dirichlet) -> tuple[int, ...]:
    if condition.axes is not None:
        return tuple(condition.axes)
    return tuple(a for a in range(problem.dim) if a != problem.time_axis)


def face_points(box: Box, axes: tuple[int, ...], n: int, gen: torch.Generator) -> torch.Tensor:
    """n points spread evenly over the 2 len(axes) faces x_a = lo_a, x_a = hi_a; shape (n, d)."""
    faces = [(a, side) for a in axes for side in (0, 1)]
    counts = [n // len(faces) + (i < n % len(faces)) for i in range(len(faces))]
    chunks = []
    for (axis, side), count in zip(faces, counts):
        x = uniform_box(box, count, gen)
        x[:, axis] = box.hi[axis] if side else box.lo[axis]
        chunks.append(x)
    return torch.cat(chunks)


@dataclass
class ConditionPoints:
    """Points of one condition. `pair` holds the periodic partner points (same shape as `x`)."""

    condition: Condition
    x: torch.Tensor
    pair: torch.Tensor | None = None

    def to(self, device: torch.device, dtype: torch.dtype) -> "ConditionPoints":
        pair = None if self.pair is None else self.pair.to(device, dtype)
        return ConditionPoints(self.condition, self.x.to(device, dtype), pair)


def condition_points(problem: Problem, condition: Condition, n: int, gen: torch.Generator) -> ConditionPoints:
    """Sample n points for `condition` (at least one)."""
    n = max(n, 1)
    box = problem.box
    if isinstance(condition, Dirichlet):
        return ConditionPoints(condition, face_points(box, dirichlet_axes(problem, condition), n, gen))
    if isinstance(condition, Initial):
        x = uniform_box(box, n, gen)
        x[:, condition.axis] = box.lo[condition.axis]
        return ConditionPoints(condition, x)
    if isinstance(condition, Periodic):
        lo = uniform_box(box, n, gen)
        lo[:, condition.axis] = box.lo[condition.axis]
        hi = lo.clone()
        hi[:, condition.axis] = box.hi[condition.axis]
        return ConditionPoints(condition, lo, hi)
    raise TypeError(f"unknown condition type {type(condition).__name__}")


@dataclass
class PointSets:
    """Everything a loss evaluation needs besides the network: interior and condition points."""

    pde: torch.Tensor
    conditions: list[ConditionPoints]
    data_x: torch.Tensor | None = None
    data_u: torch.Tensor | None = None

    def to(self, dtype: torch.dtype) -> "PointSets":
        """Same points in another dtype (e.g. float64 for L-BFGS)."""
        device = self.pde.device
        cast = (lambda t: None if t is None else t.to(device, dtype))
        return PointSets(cast(self.pde), [c.to(device, dtype) for c in self.conditions],
                         cast(self.data_x), cast(self.data_u))


def sample_points(problem: Problem, n_pde: int, n_bc: int, n_ic: int, gen: torch.Generator,
                  device: torch.device, dtype: torch.dtype) -> PointSets:
    """Fixed collocation set of the plain recipe, plus condition points and observations."""
    pde = uniform_box(problem.box, n_pde, gen).to(device, dtype)
    counts = {"bc": n_bc, "ic": n_ic}
    conditions = [condition_points(problem, c, counts[c.term], gen).to(device, dtype) for c in problem.conditions]
    data_x = data_u = None
    if problem.observations is not None:
        data_x = torch.as_tensor(problem.observations.x).to(device, dtype)
        data_u = torch.as_tensor(problem.observations.u).to(device, dtype)
    return PointSets(pde, conditions, data_x, data_u)


def minibatches(points: torch.Tensor, count: int, axis: int, gen: torch.Generator) -> list[torch.Tensor]:
    """``mode = "minibatch"``: indices of a random permutation of the points cut into `count`
    near-equal parts."""
    return list(torch.tensor_split(torch.randperm(points.shape[0], generator=gen).to(points.device), count))


def patches(points: torch.Tensor, count: int, axis: int, gen: torch.Generator) -> list[torch.Tensor]:
    """``mode = "patches"``: indices of `count` slabs along `axis`, cut at the points' quantiles
    so each holds an equal share of the points (never an empty batch), in a random order."""
    slabs = torch.tensor_split(points[:, axis].argsort(), count)
    return [slabs[i] for i in torch.randperm(count, generator=gen)]


# sampling.batches.mode -> how a cloud (N, d) is cut: the index tensors of the batches
BATCHINGS = {"minibatch": minibatches, "patches": patches}


class Collocation:
    """Interior collocation: the current cloud `points` (N, d), cut into `count` batches per epoch.

    Contract with the trainer: `batches(epoch)` lists this epoch's mini-batches (every point of
    the cloud exactly once); `refine(epoch, residual)` may change the cloud after the epoch and
    returns what it did, or None. This base class never refines; with count=1 and no resample it
    is the plain recipe: the same full set at every step.

    Args:
        points: initial interior points (N, d) on the run's device and dtype.
        box: the domain, for fresh uniform points.
        gen: seeded CPU generator (float64 draws) behind every random choice.
        count: batches per epoch, 1 <= count <= N.
        mode: how the cloud is cut, a key of `BATCHINGS`: "minibatch" or "patches".
        resample: replace the cloud by a fresh draw (`redraw`) at the start of every epoch after the first.
    """

    def __init__(self, points: torch.Tensor, box: Box, gen: torch.Generator, count: int = 1,
                 mode: str = "minibatch", resample: bool = False) -> None:
        self.points, self.box, self.gen = points, box, gen
        self.count, self.split, self.resample = count, BATCHINGS[mode], resample
        self.n_base = points.shape[0]
        self.axis = max(range(box.dim), key=lambda a: box.hi[a] - box.lo[a])

    def uniform(self, n: int) -> torch.Tensor:
        """n fresh uniform points in the box, on the cloud's device and dtype; shape (n, d)."""
        return uniform_box(self.box, n, self.gen).to(self.points.device, self.points.dtype)

    def redraw(self) -> torch.Tensor:
        """The cloud `resample` draws: as many uniform points as the initial set."""
        return self.uniform(self.n_base)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        if self.resample and epoch > 0:
            self.points = self.redraw()
        if self.count == 1:
            return [self.points]
        return [self.points[i] for i in self.split(self.points, self.count, self.axis, self.gen)]

    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> dict | None:
        return None


def refinement_epochs(epochs: int, rounds: int, start: int | None = None) -> frozenset[int]:
    """The 0-based epochs after which an adaptive sampler refines (fewer when they would coincide).

    The first refinement follows `start` epochs on the initial cloud; the `rounds` refinements
    then come at equal spans s = (epochs - start) / rounds, so the final cloud also trains for s
    epochs. `start` None makes the first span as long as the others: the ends of the first
    `rounds` of `rounds` + 1 equal spans of the Adam phase.

    ``refinement_epochs(20, 3)`` -> {4, 9, 14}: the last quarter trains on the final cloud.
    ``refinement_epochs(50_000, 40, start=10_000)`` -> {9_999, 10_999, ..., 48_999}: Wu et al.'s
    schedule (10,000 iterations, then 40 rounds of resampling and 1,000 iterations).
    """
    first = Fraction(epochs, rounds + 1) if start is None else Fraction(start)
    span = (epochs - first) / rounds
    return frozenset(math.floor(first + j * span) - 1 for j in range(rounds)) - {-1}


class ResidualRefinement(Collocation):
    """``sampling.adaptive = "rar"``: greedy residual-based adaptive refinement (RAR-G).

    After each refinement epoch (`rounds` of them after `start`, see `refinement_epochs`), score
    `candidates` fresh uniform points by |r| and add to the cloud the m = round(ratio N_0) with the largest
    |r|, N_0 the initial interior count. Only candidates above the `percentile`-th percentile
    of |r| qualify, so a round adds at most a share 1 - percentile / 100 of the candidates.
    Added points stay for the rest of the run; with `resample`, only the uniform part is redrawn.

    Reference: C. Wu, M. Zhu, Q. Tan, Y. Kartha, L. Lu, "A comprehensive study of non-adaptive
    and residual-based adaptive sampling for physics-informed neural networks", Comput.
    Methods Appl. Mech. Eng. 403 (2023) 115671 (arXiv:2207.10289), RAR-G, the RAR of Lu et al.
    (DeepXDE, SIAM Rev. 2021); code: github.com/lu-group/pinn-sampling, Code/Burgers/
    Burgers_RAR-G.py (100,000 fresh candidates a round, the m largest |r| added). Wu et al. add
    m = N/200 points in each of 100 rounds; the study's plan adds 20 % of N_0 in each of 2-5
    rounds, and takes only points above the 75th percentile ("refine where the residual is
    high"). RAR-D, whose additions are drawn from the RAD density, is not offered.

    Args:
        points, box, gen: as in `Collocation`; batching arguments as there.
        epochs: Adam epochs of the run (places the refinements).
        rounds: number of refinements.
        candidates: fresh uniform points scored per round.
        ratio: points added per round, as a fraction of N_0.
        percentile: only candidates with |r| above this percentile of their |r| are added.
        start: epochs before the first refinement; None: as many as between two refinements.
    """

    def __init__(self, points: torch.Tensor, box: Box, gen: torch.Generator, *, epochs: int, rounds: int,
                 candidates: int, ratio: float, percentile: float, start: int | None = None,
                 **batching: Any) -> None:
        super().__init__(points, box, gen, **batching)
        self.due = refinement_epochs(epochs, rounds, start)
        self.candidates, self.ratio, self.percentile = candidates, ratio, percentile
        self.added = points[:0]

    def redraw(self) -> torch.Tensor:
        return torch.cat([self.uniform(self.n_base), self.added])

    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> dict | None:
        if epoch not in self.due:
            return None
        x = self.uniform(self.candidates)
        r = _score(residual, x)
        eligible = int((r.double() > torch.quantile(r.double(), self.percentile / 100)).sum())
        n_add = min(round(self.ratio * self.n_base), eligible)
        new = x[r.argsort(descending=True)[:n_add]]
        self.added = torch.cat([self.added, new])
        self.points = torch.cat([self.points, new])
        return {"n_points": self.points.shape[0], "n_added": n_add, **_spread(r)}


class ResidualDistribution(Collocation):
    """``sampling.adaptive = "rad"``: residual-based adaptive distribution (RAD).

    After each refinement epoch (`rounds` of them after `start`, see `refinement_epochs`), replace the whole
    cloud by N_0 distinct points drawn, without replacement, from `candidates` fresh uniform
    points with probability

        p(x) ∝ |r(x)|^k / mean(|r|^k) + c      (mean over the candidates)

    k sharpens the density, c keeps some points everywhere; k = 0 or c -> inf is uniform
    resampling. A scoring with non-finite p, or fewer than N_0 candidates of positive p, keeps
    the cloud. With `resample`, every epoch draws a new cloud from the latest candidates and p
    (uniform points before the first refinement).

    Reference: Wu et al. 2023 (see `ResidualRefinement`), RAD; code: Code/Burgers/Burgers_RAD.py
    in github.com/lu-group/pinn-sampling (100,000 fresh candidates a round, N points chosen
    without replacement, k = c = 1 as run there).

    Args:
        points, box, gen: as in `Collocation`; batching arguments as there.
        epochs: Adam epochs of the run (places the refinements).
        rounds: number of redistributions.
        candidates: fresh uniform points scored per round; at least N_0.
        k: exponent >= 0 of |r|.
        c: constant >= 0 added to the normalised density.
        start: epochs before the first redistribution; None: as many as between two of them.
    """

    def __init__(self, points: torch.Tensor, box: Box, gen: torch.Generator, *, epochs: int, rounds: int,
                 candidates: int, k: float, c: float, start: int | None = None, **batching: Any) -> None:
        super().__init__(points, box, gen, **batching)
        self.due = refinement_epochs(epochs, rounds, start)
        self.candidates, self.k, self.c = candidates, k, c
        self.pool: torch.Tensor | None = None
        self.prob: torch.Tensor | None = None

    def redraw(self) -> torch.Tensor:
        if self.pool is None:
            return super().redraw()
        picks = torch.multinomial(self.prob, self.n_base, replacement=False, generator=self.gen)
        return self.pool[picks.to(self.pool.device)]

    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> dict | None:
        if epoch not in self.due:
            return None
        x = self.uniform(self.candidates)
        r = _score(residual, x)
        rk = r.double().cpu() ** self.k
        prob = rk / rk.mean() + self.c
        if torch.isfinite(prob).all() and int((prob > 0).sum()) >= self.n_base:
            self.pool, self.prob = x, prob
            self.points = self.redraw()
        return {"n_points": self.points.shape[0], **_spread(r)}


def _score(residual: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """|r| at the points x (n, d), chunk by chunk so that one chunk's graph lives at a time; shape (n,)."""
    return torch.cat([residual(part).detach().abs() for part in x.split(chunk)])


def _spread(r: torch.Tensor) -> dict[str, float]:
    """median, 90th percentile and max of |r| over the candidates."""
    q = torch.quantile(r.double(), torch.tensor([0.5, 0.9], dtype=torch.float64, device=r.device))
    return {"median": float(q[0]), "p90": float(q[1]), "max": float(r.max())}


# sampling.adaptive -> its class, built as cls(points, box, gen, **batching params[, epochs=Adam epochs, **adaptive params])
SAMPLERS = {"none": Collocation, "rar": ResidualRefinement, "rad": ResidualDistribution}


def make_sampler(cfg: RunConfig, problem: Problem, points: torch.Tensor, gen: torch.Generator) -> Collocation:
    """The collocation strategy for ``sampling.adaptive`` (+ ``sampling.adaptive_params``) and
    ``sampling.batches``, starting from the interior `points` (N, d); `gen` drives every later draw.
    `cfg` is resolved: ``train.epochs`` places the refinements."""
    batching = params(cfg, "sampling.batches")
    n = points.shape[0]
    if batching and not 1 <= batching["count"] <= n:
        raise ConfigError(f"sampling.batches.count={batching['count']} is not valid: choose 1..{n} "
                          f"(at most the {n} interior points, sampling.n_pde)")
    options = params(cfg, "sampling.adaptive_params")
    if cfg.sampling.adaptive == "rad" and options["candidates"] < n:
        raise ConfigError(f"sampling.adaptive_params.candidates={options['candidates']} is not valid for "
                          f"sampling.adaptive='rad': RAD draws the {n} interior points (sampling.n_pde) without "
                          f"replacement from the candidates; choose at least {n}")
    if cfg.sampling.adaptive != "none":
        if options["start"] is not None and options["start"] >= cfg.train.epochs:
            raise ConfigError(f"sampling.adaptive_params.start={options['start']} is not valid: the first refinement "
                              f"must come before the end of the {cfg.train.epochs} Adam epochs (train.epochs)")
        options["epochs"] = cfg.train.epochs
    return SAMPLERS[cfg.sampling.adaptive](points, problem.box, gen, **batching, **options)
