"""Point sets: interior collocation, boundary faces, initial slice, periodic pairs.

All points are drawn uniformly from a seeded `torch.Generator` in float64 on the CPU, then
moved to the run's device and dtype, so a seed gives the same points on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


class FixedCollocation:
    """The plain recipe: the same full set of interior points at every epoch."""

    def __init__(self, points: torch.Tensor) -> None:
        self.points = points

    def batches(self, epoch: int) -> list[torch.Tensor]:
        return [self.points]

    def refine(self, epoch: int, residual) -> dict | None:
        return None


def make_sampler(cfg, problem: Problem, points: torch.Tensor, gen: torch.Generator) -> FixedCollocation:
    """The collocation strategy for ``sampling.adaptive`` and ``sampling.batches``."""
    if cfg.sampling.adaptive != "none" or cfg.sampling.batches is not None:
        raise NotImplementedError("adaptive and batched collocation are not implemented yet")
    return FixedCollocation(points)
