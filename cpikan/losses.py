"""Physics-informed loss: named mean-squared terms and the strategy that weights them.

    L = sum_t w_t * mean(r_t^2),   t in {pde, bc, ic, data}

- pde:  residual r(d, x) at interior collocation points
- bc:   u - g on Dirichlet faces; u(lo) - u(hi) and u_x(lo) - u_x(hi) for periodic axes
- ic:   u - g on the initial slice
- data: u - u_obs at observation points (inverse problems)
"""

from __future__ import annotations

from typing import Mapping

import torch

from cpikan.derivatives import derivatives
from cpikan.problems.base import Dirichlet, Initial, Periodic, Problem
from cpikan.sampling import ConditionPoints, PointSets


class PhysicsLoss:
    """Evaluates each loss term of `problem` for network `net` with derivative `engine`.

    `params` holds the problem's constants and trainable unknowns (see `ProblemParameters`).
    """

    def __init__(self, problem: Problem, net: torch.nn.Module, engine: str, params: "ProblemParameters") -> None:
        self.problem, self.net, self.engine, self.params = problem, net, engine, params

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """PDE residual at points x (N, d); shape (N,)."""
        d = derivatives(self.engine, self.net, x, self.params.as_dict(), self.problem.lap_axes)
        r = self.problem.residual(d, d.x)
        if r.shape != (x.shape[0],):
            raise ValueError(f"residual of problem {self.problem.name!r} returned shape {tuple(r.shape)}; "
                             f"expected ({x.shape[0]},): return one value per point")
        return r

    def condition_residual(self, cp: ConditionPoints) -> torch.Tensor:
        c = cp.condition
        if isinstance(c, (Dirichlet, Initial)):
            return self.net(cp.x) - c.value(cp.x)
        if isinstance(c, Periodic):
            both = torch.cat([cp.x, cp.pair])
            d = derivatives(self.engine, self.net, both, self.params.as_dict(), self.problem.lap_axes)
            n = cp.x.shape[0]
            u, u_a = d.u, d.u_x[c.axis]
            return torch.cat([u[:n] - u[n:], u_a[:n] - u_a[n:]])
        raise TypeError(f"unknown condition type {type(c).__name__}")

    def terms(self, points: PointSets, pde_x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Mean squared residual per term; `pde_x` replaces the interior points (a mini-batch)."""
        out = {"pde": _mse(self.residual(points.pde if pde_x is None else pde_x))}
        by_term: dict[str, list[torch.Tensor]] = {}
        for cp in points.conditions:
            by_term.setdefault(cp.condition.term, []).append(self.condition_residual(cp))
        for term, parts in by_term.items():
            out[term] = _mse(torch.cat(parts))
        if points.data_x is not None:
            out["data"] = _mse(self.net(points.data_x) - points.data_u)
        return out


class ProblemParameters(torch.nn.Module):
    """Trainable unknowns (parameters) and constants (buffers) of a problem, as 0-d tensors."""

    def __init__(self, unknowns: Mapping[str, float], constants: Mapping[str, float]) -> None:
        super().__init__()
        self.unknowns = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(float(v)))
                                                for k, v in unknowns.items()})
        for name, value in constants.items():
            self.register_buffer(f"const_{name}", torch.tensor(float(value)))
        self._constants = tuple(constants)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {**{k: getattr(self, f"const_{k}") for k in self._constants}, **dict(self.unknowns.items())}


def _mse(r: torch.Tensor) -> torch.Tensor:
    return r.float().square().mean() if r.dtype in (torch.float16, torch.bfloat16) else r.square().mean()


class FixedWeights:
    """``loss.balancing = "fixed"``: the configured weights, never changed."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = dict(weights)
        self.skipped = 0

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        """Called once per step before backward, with the graph of each term intact."""
        return None


def make_balancer(name: str, weights: Mapping[str, float], options: Mapping[str, object]) -> FixedWeights:
    """The loss-balancing strategy for ``loss.balancing``."""
    if name == "fixed":
        return FixedWeights(weights)
    raise NotImplementedError(f"loss.balancing={name!r} is not implemented yet")


def total(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum_t w_t L_t over the terms present."""
    return sum(weights[t] * value for t, value in terms.items())
