"""Physics-informed loss: named mean-squared terms and the strategy that weights them.

    L = sum_t w_t * mean(r_t^2),   t in {pde, bc, ic, data}

- pde:  residual r(d, x) at interior collocation points
- bc:   u - g on Dirichlet faces; u(lo) - u(hi) and u_x(lo) - u_x(hi) for periodic axes
- ic:   u - g on the initial slice
- data: u - u_obs at observation points (inverse problems)
"""

from __future__ import annotations

import copy
import math
from typing import Mapping

import torch

from cpikan.derivatives import ENGINES, Derivatives, Plan, TaylorDerivatives, discover_plan
from cpikan.problems.base import Dirichlet, Initial, Periodic, Problem
from cpikan.sampling import ConditionPoints, PointSets


class PhysicsLoss:
    """Evaluates each loss term of `problem` for network `net` with derivative `engine`.

    `params` holds the problem's constants and trainable unknowns (see `ProblemParameters`).
    With ``engine="taylor"`` the loss learns at construction what the residual reads (one
    evaluation on three points, `cpikan.derivatives.discover_plan`) and what each periodic condition
    reads (u and u_x[axis]), so every evaluation is a single forward pass carrying only that.
    """

    def __init__(self, problem: Problem, net: torch.nn.Module, engine: str, params: "ProblemParameters") -> None:
        self.problem, self.net, self.engine, self.params = problem, net, engine, params
        self._plans: dict | None = None
        if engine == "taylor":
            self._plans = {"pde": discover_plan(problem.residual, net, problem.box.lo, problem.box.hi,
                                                params.as_dict(), problem.lap_axes)}
            for c in problem.conditions:
                if isinstance(c, Periodic):
                    plan = self._plans.setdefault(("periodic", c.axis), Plan(problem.dim, problem.lap_axes))
                    plan.request(("first", c.axis))

    def _derivatives(self, x: torch.Tensor, site: object) -> Derivatives:
        """The accessor at points x; `site` names the cached taylor plan ("pde", ("periodic", axis))."""
        if self._plans is None:
            return ENGINES[self.engine](self.net, x, self.params.as_dict(), self.problem.lap_axes)
        return TaylorDerivatives(self.net, x, self.params.as_dict(), self.problem.lap_axes, self._plans[site])

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """PDE residual at points x (N, d); shape (N,)."""
        d = self._derivatives(x, "pde")
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
            d = self._derivatives(both, ("periodic", c.axis))
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
    """``loss.balancing = "fixed"``: the configured weights w_t, never changed.

    The base of every balancer. The trainer reads `weights` (term -> float) at every step and
    calls `update` once per optimizer step, before backward; `skipped` counts the updates that
    were refused because some new weight would not be finite and positive.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = {t: float(w) for t, w in weights.items()}
        self.skipped = 0

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        """Called once per step before backward, with the graph of each term intact."""
        return None

    def _accept(self, new: Mapping[str, float]) -> bool:
        """Take `new` weights if every one is finite and > 0; otherwise keep the old ones and count a skip."""
        if all(math.isfinite(w) and w > 0 for w in new.values()):
            self.weights.update(new)
            return True
        self.skipped += 1
        return False


class LearningRateAnnealing(FixedWeights):
    """``loss.balancing = "lra"`` (Wang, Teng & Perdikaris 2021, Algorithm 1), for every term t != pde:

        w_t <- (1 - alpha) w_t + alpha * max|grad L_pde| / mean|grad L_t|

    at optimizer steps 0, every, 2 every, ...; w_pde keeps its configured value. Gradients are
    taken over all trained parameters (network and unknowns; an unused one counts as zero).

    Args:
        weights: initial weight per term (the configured ones).
        alpha: moving-average rate in (0, 1] (the paper uses 0.9).
        every: optimizer steps between updates (steps, not epochs: mini-batches count).
    """

    def __init__(self, weights: Mapping[str, float], alpha: float, every: int) -> None:
        super().__init__(weights)
        self.alpha, self.every, self.steps = alpha, every, 0

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        step, self.steps = self.steps, self.steps + 1
        if step % self.every:
            return
        pde_max = _flat_grad(terms["pde"], params).abs().max()
        new = {}
        for term, value in terms.items():
            if term != "pde":
                ratio = float(pde_max / _flat_grad(value, params).abs().mean())
                new[term] = (1 - self.alpha) * self.weights[term] + self.alpha * ratio
        self._accept(new)


class GradNorm(FixedWeights):
    """``loss.balancing = "gradnorm"`` (Chen et al. 2018), in the form common for PINNs:

        G_t = w_t ||grad L_t||_2,   r_t = (L_t / L_t(0)) / mean_s (L_s / L_s(0))
        L_grad = sum_t | G_t - mean_s(G_s) * r_t^alpha |      (the target held constant)

    At optimizer steps 0, every, 2 every, ... the weights take one Adam step of rate `lr` on
    L_grad, then are rescaled so that sum_t w_t = T, the number of terms. L_t(0) is the loss at
    the first update. Gradients are over all trained parameters, as in `LearningRateAnnealing`.
    Warning: a step that would take a weight to <= 0 is refused (weights and Adam state kept,
    `skipped` counts it), so a weight whose target lies below about `lr` stays where it is.

    Args:
        weights: initial weights; rescaled to sum to T at once (their ratios are kept).
        alpha: asymmetry >= 0; the larger, the harder terms that train slowly are pushed up.
        lr: Adam learning rate of the weights.
        every: optimizer steps between updates.
    """

    def __init__(self, weights: Mapping[str, float], alpha: float, lr: float, every: int) -> None:
        super().__init__(weights)
        self.terms = tuple(self.weights)
        scale = len(self.terms) / sum(self.weights.values())
        self.w = torch.tensor([self.weights[t] * scale for t in self.terms], dtype=torch.float64,
                              requires_grad=True)
        self.weights = dict(zip(self.terms, self.w.tolist()))
        self.optimizer = torch.optim.Adam([self.w], lr=lr)
        self.alpha, self.every, self.steps = alpha, every, 0
        self.initial: torch.Tensor | None = None

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        step, self.steps = self.steps, self.steps + 1
        if step % self.every:
            return
        losses = torch.stack([terms[t].detach() for t in self.terms]).double().cpu()
        if self.initial is None:
            self.initial = losses
        norms = torch.stack([_flat_grad(terms[t], params).norm() for t in self.terms]).double().cpu()
        progress = losses / self.initial
        target = (self.w.detach() * norms).mean() * (progress / progress.mean()) ** self.alpha
        saved = self.w.detach().clone(), copy.deepcopy(self.optimizer.state_dict())
        self.optimizer.zero_grad()
        (self.w * norms - target).abs().sum().backward()
        self.optimizer.step()
        with torch.no_grad():
            self.w *= len(self.terms) / self.w.sum()
        if not self._accept(dict(zip(self.terms, self.w.tolist()))):
            with torch.no_grad():
                self.w.copy_(saved[0])
            self.optimizer.load_state_dict(saved[1])


def _flat_grad(term: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """grad of `term` w.r.t. all `params` as one flat vector (zeros for a parameter it does not use)."""
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


# loss.balancing -> its class, built as cls(weights, **params(cfg, "loss.balancing_params"))
BALANCERS: dict[str, type[FixedWeights]] = {"fixed": FixedWeights, "gradnorm": GradNorm, "lra": LearningRateAnnealing}


def total(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum_t w_t L_t over the terms present."""
    return sum(weights[t] * value for t, value in terms.items())
