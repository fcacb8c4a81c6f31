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
from typing import Any, Callable, Sequence

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
    """Points of one condition for S members: `x` (S, n, d); `pair` the periodic partner points
    (same shape); `target` the condition's values at `x` (S, n), for Dirichlet and initial data."""

    condition: Condition
    x: torch.Tensor
    pair: torch.Tensor | None = None
    target: torch.Tensor | None = None

    def to(self, device: torch.device, dtype: torch.dtype) -> "ConditionPoints":
        return ConditionPoints(self.condition, *(_to(t, device, dtype) for t in (self.x, self.pair, self.target)))


def _to(t: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(device, dtype)


def condition_points(problem: Problem, condition: Condition, n: int, gens: Sequence[torch.Generator]) -> ConditionPoints:
    """n points (at least one) for `condition`, for each member from its own generator; float64 on the CPU."""
    n = max(n, 1)
    box = problem.box
    if isinstance(condition, Dirichlet):
        x = _each(gens, lambda g: face_points(box, dirichlet_axes(problem, condition), n, g))
        return ConditionPoints(condition, x, target=_values(condition, x))
    if isinstance(condition, Initial):
        x = _each(gens, lambda g: uniform_box(box, n, g))
        x[..., condition.axis] = box.lo[condition.axis]
        return ConditionPoints(condition, x, target=_values(condition, x))
    if isinstance(condition, Periodic):
        lo = _each(gens, lambda g: uniform_box(box, n, g))
        lo[..., condition.axis] = box.lo[condition.axis]
        hi = lo.clone()
        hi[..., condition.axis] = box.hi[condition.axis]
        return ConditionPoints(condition, lo, hi)
    raise TypeError(f"unknown condition type {type(condition).__name__}")


def _each(gens: Sequence[torch.Generator], draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
    """`draw` once per member, each from its own generator, stacked: (S, ...)."""
    return torch.stack([draw(g) for g in gens])


def _values(condition: Dirichlet | Initial, x: torch.Tensor) -> torch.Tensor:
    """The condition's value function at points x (S, n, d): (S, n)."""
    return condition.value(x.reshape(-1, x.shape[-1])).reshape(x.shape[:2])


@dataclass
class PointSets:
    """Everything a loss evaluation needs besides the network, for S members: interior points
    `pde` (S, N, d), condition points, and observations `data_x` (S, N_d, d), `data_u` (S, N_d)."""

    pde: torch.Tensor
    conditions: list[ConditionPoints]
    data_x: torch.Tensor | None = None
    data_u: torch.Tensor | None = None

    def to(self, dtype: torch.dtype) -> "PointSets":
        """Same points in another dtype (e.g. float64 for L-BFGS)."""
        device = self.pde.device
        return PointSets(_to(self.pde, device, dtype), [c.to(device, dtype) for c in self.conditions],
                         _to(self.data_x, device, dtype), _to(self.data_u, device, dtype))

    def groups(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every condition's and observation's points per member, by what their terms read: the
        periodic pairs (each condition's x, then its pair), whose terms read derivatives, and the
        others (Dirichlet and initial points, then the observations), whose terms read values only;
        shapes (S, n_p, d) and (S, n_v, d), either possibly of 0 points. `cpikan.losses.PhysicsLoss`
        reads them in this order."""
        paired = [p for c in self.conditions if c.pair is not None for p in (c.x, c.pair)]
        valued = [c.x for c in self.conditions if c.pair is None] + ([self.data_x] if self.data_x is not None else [])
        empty = self.pde[:, :0]
        return (torch.cat(paired, dim=1) if paired else empty), (torch.cat(valued, dim=1) if valued else empty)


def sample_points(problem: Problem, n_pde: int, n_bc: int, n_ic: int, gens: Sequence[torch.Generator],
                  device: torch.device, dtype: torch.dtype) -> PointSets:
    """Fixed collocation set of the plain recipe, plus condition points and observations, for one
    member per generator: each member draws its interior, then its condition points in order, from
    its own generator (the same points as a run of its seed alone)."""
    per_member = [(uniform_box(problem.box, n_pde, g), g) for g in gens]
    pde = torch.stack([x for x, _ in per_member]).to(device, dtype)
    counts = {"bc": n_bc, "ic": n_ic}
    conditions = [condition_points(problem, c, counts[c.term], gens).to(device, dtype) for c in problem.conditions]
    data_x = data_u = None
    if problem.observations is not None:
        members = len(gens)
        data_x = torch.as_tensor(problem.observations.x).to(device, dtype).expand(members, -1, -1).contiguous()
        data_u = torch.as_tensor(problem.observations.u).to(device, dtype).expand(members, -1).contiguous()
    return PointSets(pde, conditions, data_x, data_u)


def minibatches(points: torch.Tensor, count: int, axis: int, gens: Sequence[torch.Generator]) -> list[torch.Tensor]:
    """``mode = "minibatch"``: per member, a random permutation of its points cut into `count`
    near-equal parts; the index tensors (S, B_i) of the batches."""
    order = _each(gens, lambda g: torch.randperm(points.shape[1], generator=g)).to(points.device)
    return list(torch.tensor_split(order, count, dim=1))


def patches(points: torch.Tensor, count: int, axis: int, gens: Sequence[torch.Generator]) -> list[torch.Tensor]:
    """``mode = "patches"``: per member, `count` slabs along `axis` cut at the points' quantiles,
    visited in a random order; the index tensors (S, B_i) of the batches.

    Batch i holds B_i points for every member (the sizes of cutting N into `count` near-equal
    parts): member m's slabs are sized by where its order visits them, so its batch i is the slab
    it visits i-th, and with N divisible by `count` every slab holds N / count points.
    """
    n = points.shape[1]
    sizes = [len(part) for part in torch.tensor_split(torch.arange(n), count)]
    by_coordinate = points[..., axis].argsort(dim=1)  # (S, N)
    starts = []
    for g in gens:
        visit = torch.randperm(count, generator=g).tolist()  # visit[i]: the slab visited i-th
        size_of = {slab: sizes[i] for i, slab in enumerate(visit)}
        offsets = [0]
        for slab in range(count):
            offsets.append(offsets[-1] + size_of[slab])
        starts.append([offsets[slab] for slab in visit])
    first = torch.tensor(starts, device=points.device)  # (S, count)
    return [by_coordinate.gather(1, first[:, i:i + 1] + torch.arange(size, device=points.device))
            for i, size in enumerate(sizes)]


# sampling.batches.mode -> how each member's cloud (S, N, d) is cut: the index tensors (S, B_i) of the batches
BATCHINGS = {"minibatch": minibatches, "patches": patches}


def gather_points(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """points[m, index[m]] for each member m: (S, N, d), (S, B) -> (S, B, d)."""
    return points.gather(1, index[..., None].expand(-1, -1, points.shape[2]))


class Collocation:
    """Interior collocation of S members: the current clouds `points` (S, N, d), cut into `count`
    batches per epoch.

    Contract with the trainer: `batches(epoch)` lists this epoch's mini-batches (S, B_i, d) (every
    point of each member's cloud exactly once); `refine(epoch, residual)` may change the clouds
    after the epoch and returns what it did per member, or None. This base class never refines;
    with count=1 and no resample it is the plain recipe: the same full set at every step.

    Args:
        points: initial interior points (S, N, d) on the run's device and dtype.
        box: the domain, for fresh uniform points.
        gens: per member a seeded CPU generator (float64 draws) behind every random choice.
        count: batches per epoch, 1 <= count <= N.
        mode: how the cloud is cut, a key of `BATCHINGS`: "minibatch" or "patches".
        resample: replace the cloud by a fresh draw (`redraw`) at the start of every epoch after the first.
        resample_conditions: and the condition points too (`conditions`), drawn by `draw_conditions`.
        draw_conditions: fresh condition points of every member, as the run first drew them
            (`condition_points`), from the members' generators.
    """

    def __init__(self, points: torch.Tensor, box: Box, gens: Sequence[torch.Generator], count: int = 1,
                 mode: str = "minibatch", resample: bool = False, resample_conditions: bool = False,
                 draw_conditions: Callable[[], list[ConditionPoints]] | None = None) -> None:
        self.points, self.box, self.gens = points, box, list(gens)
        self.count, self.split, self.resample = count, BATCHINGS[mode], resample
        self.draw_conditions = draw_conditions if resample_conditions else None
        self.n_base = points.shape[1]
        self.axis = max(range(box.dim), key=lambda a: box.hi[a] - box.lo[a])

    def uniform(self, n: int) -> torch.Tensor:
        """n fresh uniform points in the box per member, on the cloud's device and dtype; shape (S, n, d)."""
        return _each(self.gens, lambda g: uniform_box(self.box, n, g)).to(self.points.device, self.points.dtype)

    def redraw(self) -> torch.Tensor:
        """The clouds `resample` draws: as many uniform points as the initial set."""
        return self.uniform(self.n_base)

    def conditions(self, epoch: int) -> list[ConditionPoints] | None:
        """Fresh condition points for `epoch`, drawn before its interior points (with
        ``resample_conditions``, every epoch after the first), or None: keep them."""
        return self.draw_conditions() if self.draw_conditions is not None and epoch > 0 else None

    def batches(self, epoch: int) -> list[torch.Tensor]:
        if self.resample and epoch > 0:
            self.points = self.redraw()
        if self.count == 1:
            return [self.points]
        return [gather_points(self.points, i) for i in self.split(self.points, self.count, self.axis, self.gens)]

    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> list[dict] | None:
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
        points, box, gens: as in `Collocation`; batching arguments as there.
        epochs: Adam epochs of the run (places the refinements).
        rounds: number of refinements.
        candidates: fresh uniform points scored per round.
        ratio: points added per round, as a fraction of N_0.
        percentile: only candidates with |r| above this percentile of their |r| are added.
        start: epochs before the first refinement; None: as many as between two refinements.
    """

    def __init__(self, points: torch.Tensor, box: Box, gens: Sequence[torch.Generator], *, epochs: int, rounds: int,
                 candidates: int, ratio: float, percentile: float, start: int | None = None,
                 **batching: Any) -> None:
        super().__init__(points, box, gens, **batching)
        self.due = refinement_epochs(epochs, rounds, start)
        self.candidates, self.ratio, self.percentile = candidates, ratio, percentile
        self.added = points[:, :0]

    def redraw(self) -> torch.Tensor:
        return torch.cat([self.uniform(self.n_base), self.added], dim=1)

    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> list[dict] | None:
        if epoch not in self.due:
            return None
        x = self.uniform(self.candidates)
        r = _score(residual, x)  # (S, candidates)
        above = torch.quantile(r.double(), self.percentile / 100, dim=1, keepdim=True)
        eligible = int((r.double() > above).sum(1).min())
        n_add = min(round(self.ratio * self.n_base), eligible)
        new = gather_points(x, r.argsort(dim=1, descending=True)[:, :n_add])
        self.added = torch.cat([self.added, new], dim=1)
        self.points = torch.cat([self.points, new], dim=1)
        return [{"n_points": self.points.shape[1], "n_added": n_add, **spread} for spread in _spread(r)]


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
        points, box, gens: as in `Collocation`; batching arguments as there.
        epochs: Adam epochs of the run (places the refinements).
        rounds: number of redistributions.
        candidates: fresh uniform points scored per round; at least N_0.
        k: exponent >= 0 of |r|.
        c: constant >= 0 added to the normalised density.
        start: epochs before the first redistribution; None: as many as between two of them.
    """

    def __init__(self, points: torch.Tensor, box: Box, gens: Sequence[torch.Generator], *, epochs: int, rounds: int,
                 candidates: int, k: float, c: float, start: int | None = None, **batching: Any) -> None:
        super().__init__(points, box, gens, **batching)
        self.due = refinement_epochs(epochs, rounds, start)
        self.candidates, self.k, self.c = candidates, k, c
        self.pool: list[torch.Tensor | None] = [None] * len(self.gens)  # per member its candidates (n, d)
        self.prob: list[torch.Tensor | None] = [None] * len(self.gens)  # and their probabilities (n,), CPU

    def redraw(self) -> torch.Tensor:
        """Per member: N_0 points drawn from its latest candidates and p, or uniform ones before its first."""
        return torch.stack([self._draw(m) for m in range(len(self.gens))])

    def _draw(self, m: int) -> torch.Tensor:
        if self.pool[m] is None:
            return uniform_box(self.box, self.n_base, self.gens[m]).to(self.points.device, self.points.dtype)
        picks = torch.multinomial(self.prob[m], self.n_base, replacement=False, generator=self.gens[m])
        return self.pool[m][picks.to(self.points.device)]

    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> list[dict] | None:
        if epoch not in self.due:
            return None
        x = self.uniform(self.candidates)
        r = _score(residual, x)
        rk = r.double().cpu() ** self.k
        prob = rk / rk.mean(dim=1, keepdim=True) + self.c
        changed = torch.isfinite(prob).all(dim=1) & ((prob > 0).sum(dim=1) >= self.n_base)
        clouds = list(self.points.unbind(0))
        for m in torch.nonzero(changed).flatten().tolist():
            self.pool[m], self.prob[m] = x[m], prob[m]
            clouds[m] = self._draw(m)
        self.points = torch.stack(clouds)
        return [{"n_points": self.points.shape[1], **spread} for spread in _spread(r)]


def _score(residual: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """|r| at the points x (S, n, d) of each member, chunk by chunk so that one chunk's graph lives at
    a time; shape (S, n)."""
    return torch.cat([residual(part).abs() for part in x.split(chunk, dim=1)], dim=1)


def _spread(r: torch.Tensor) -> list[dict[str, float]]:
    """Per member, the median, 90th percentile and max of |r| over its candidates (r: (S, n))."""
    q = torch.quantile(r.double(), torch.tensor([0.5, 0.9], dtype=torch.float64, device=r.device), dim=1)
    rows = torch.stack([q[0], q[1], r.double().amax(dim=1)], dim=1).tolist()
    return [{"median": a, "p90": b, "max": c} for a, b, c in rows]


# sampling.adaptive -> its class, built as cls(points, box, gens, **batching params[, epochs=Adam epochs, **adaptive params])
SAMPLERS = {"none": Collocation, "rar": ResidualRefinement, "rad": ResidualDistribution}


def make_sampler(cfg: RunConfig, problem: Problem, points: torch.Tensor,
                 gens: Sequence[torch.Generator]) -> Collocation:
    """The collocation strategy for ``sampling.adaptive`` (+ ``sampling.adaptive_params``) and
    ``sampling.batches``, starting from the interior `points` (S, N, d); member m's generator
    ``gens[m]`` drives its later draws. `cfg` is resolved: ``train.epochs`` places the refinements."""
    batching = params(cfg, "sampling.batches")
    if batching.get("resample_conditions"):
        counts = {"bc": cfg.sampling.n_bc, "ic": cfg.sampling.n_ic}
        batching["draw_conditions"] = lambda: [condition_points(problem, c, counts[c.term], gens).to(
            points.device, points.dtype) for c in problem.conditions]
    n = points.shape[1]
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
    return SAMPLERS[cfg.sampling.adaptive](points, problem.box, gens, **batching, **options)
