"""Physics-informed loss: named mean-squared terms and the strategy that weights them.

    L = sum_t w_t * mean(r_t^2),   t in {pde, bc, ic, data}

- pde:  residual r(d, x) at interior collocation points
- bc:   u - g on Dirichlet faces; u(lo) - u(hi) and u_x(lo) - u_x(hi) for periodic axes
- ic:   u - g on the initial slice
- data: u - u_obs at observation points (inverse problems)
"""

from __future__ import annotations

import contextlib
import math
from typing import Mapping

import torch

from cpikan.config import ConfigError
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
        if engine == "taylor" and problem.output is not None:
            raise ConfigError(f"derivatives='taylor' cannot differentiate problem {problem.name!r}: its output "
                              "transform (Problem.output, a hard constraint) is a Python function of x and the "
                              "network value, which the taylor engine's layer-by-layer propagation cannot pass "
                              "through; use derivatives=autograd")
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

    def residual_value(self, x: torch.Tensor) -> torch.Tensor:
        """The PDE residual at points x, detached: what a monitor reads. The taylor engine
        evaluates it without recording a graph (the same numbers at a fraction of the cost);
        nested autograd needs the graph for its derivatives."""
        with torch.no_grad() if self._plans is not None else contextlib.nullcontext():
            return self.residual(x).detach()

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
    calls `update` once per optimizer step, before backward. `skipped` counts the updates that
    left some weight unchanged because its statistic was not finite (for instance a term with
    no gradient on the weight matrices); runs record it as ``balancing_skipped``.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = {t: float(w) for t, w in weights.items()}
        self.skipped = 0

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        """Called once per step before backward, with the graph of each term intact."""
        return None


class LearningRateAnnealing(FixedWeights):
    """``loss.balancing = "lra"``: learning-rate annealing as the authors' released code runs it.

    At optimizer steps 0, every, 2 every, ..., for each term t other than pde:

        w_hat_t = max_l max|grad_{W_l} (w_pde L_pde)| / mean_l mean|grad_{W_l} (w_t L_t)|
        w_t    <- (1 - keep) w_hat_t + keep w_t

    W_l are the weight matrices (`weight_matrices`); the inner max / mean run over the entries
    of one matrix, the outer ones over the matrices, each matrix counting once whatever its
    size. Every term other than pde has its own weight, measured against the same pde
    statistic; w_pde keeps its configured value (the reference has none, i.e. 1).

    Reference: S. Wang, Y. Teng, P. Perdikaris, "Understanding and mitigating gradient
    pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43 (2021), A3055
    (arXiv:2001.04536), Algorithm 1, eqs. (40)-(41); code: github.com/PredictiveIntelligenceLab/
    GradientPathologiesPINNs, Helmholtz/Helmholtz2D_model_tf.py (one boundary weight) and
    "Klein Gordon/Klein_Gordon_model_tf.py" (separate boundary and initial weights).

    The printed algorithm differs from the code in two places; we follow the code, which
    produced the published tables. Eq. (40) divides by the mean gradient of L_t, the code by
    that of the weighted term w_t L_t; eq. (41) with the recommended alpha = 0.9 keeps 10 % of
    the old weight, the code keeps 90 %. The weighted denominator is what bounds the weight:
    with r_t = max|grad (w_pde L_pde)| / mean|grad L_t| the code's update reads
    w <- (1 - keep) r_t / w + keep w, whose fixed point is w_t = sqrt(r_t), while the printed
    rule settles at r_t itself, which grows without bound as the boundary is fitted and the
    boundary gradient vanishes (on Helmholtz it passed 1e9 within 3,000 steps).
    One more, harmless, difference: the code measures after the optimizer step of an updating
    iteration, on the same batch; we measure on the step's own terms, before its backward.

    Args:
        weights: initial weight per term (the configured ones).
        keep: fraction of the old weight kept at an update, in [0, 1) (the code's 0.9).
        every: optimizer steps between updates (the code's 10; steps, not epochs: mini-batches count).
    """

    def __init__(self, weights: Mapping[str, float], keep: float, every: int) -> None:
        super().__init__(weights)
        self.keep, self.every, self.steps = keep, every, 0

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        step, self.steps = self.steps, self.steps + 1
        if step % self.every:
            return
        matrices = weight_matrices(params)
        top = max(g.abs().max() for g in _grads(self.weights["pde"] * terms["pde"], matrices))
        refused = False
        for term, value in terms.items():
            if term == "pde":
                continue
            mean = torch.stack([g.abs().mean() for g in _grads(self.weights[term] * value, matrices)]).mean()
            new = (1 - self.keep) * float(top / mean) + self.keep * self.weights[term]
            if math.isfinite(new) and new > 0:
                self.weights[term] = new
            else:
                refused = True
        self.skipped += refused


class GradNorm(FixedWeights):
    """``loss.balancing = "gradnorm"``: GradNorm on log-weights w_t = exp(s_t), sum_t w_t = T.

        G_t = ||grad_W (w_t L_t)||_2 = w_t ||grad_W L_t||_2,    G_bar = mean_t G_t
        r_t = (L_t / L_t(0)) / mean_u (L_u / L_u(0))           (relative inverse training rate)
        L_grad = sum_t | G_t - G_bar r_t^alpha |                (G_bar r_t^alpha held constant)

    At optimizer steps 0, every, 2 every, ...: one Adam step of rate `lr` on s against
    dL_grad/ds, then s <- s - log(sum_t exp(s_t) / T), so that the T weights sum to T.
    L_t(0) is the loss at the first update. T counts every term, pde included.

    Reference: Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: gradient
    normalization for adaptive loss balancing in deep multitask networks", ICML 2018
    (arXiv:1711.02257), Sec. 3.2 (target G_bar r^alpha, L_grad) and Algorithm 1.
    Chen et al. step the weights w_t themselves; a step of fixed size on w_t cannot take a
    weight far below that size without crossing zero, so a weight that must fall by orders of
    magnitude stalls. A step on s = log w changes a weight by a factor (Adam: about exp(+-lr)
    per update), keeps it positive, and reaches any ratio of weights.
    W is the weight matrix of the output layer (the last of `weight_matrices`): Chen et al.
    take the last layer shared by all tasks, to keep the cost of T extra gradients low; in a
    PINN every layer is shared by every term, and the output layer is the last of them.

    Args:
        weights: initial weights; rescaled to sum to T at once (their ratios are kept).
        alpha: asymmetry >= 0; the larger, the harder terms that train slowly are pushed up.
        lr: Adam learning rate of the log-weights s.
        every: optimizer steps between updates.
    """

    def __init__(self, weights: Mapping[str, float], alpha: float, lr: float, every: int) -> None:
        super().__init__(weights)
        self.terms = tuple(self.weights)
        total_weight = sum(self.weights.values())
        self.log_w = torch.tensor([math.log(len(self.terms) * self.weights[t] / total_weight) for t in self.terms],
                                  dtype=torch.float64, requires_grad=True)
        self.weights = dict(zip(self.terms, self.log_w.exp().tolist()))
        self.optimizer = torch.optim.Adam([self.log_w], lr=lr)
        self.alpha, self.every, self.steps = alpha, every, 0
        self.initial: torch.Tensor | None = None

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        step, self.steps = self.steps, self.steps + 1
        if step % self.every:
            return
        output_layer = weight_matrices(params)[-1:]
        norms = torch.stack([_grads(terms[t], output_layer)[0].norm() for t in self.terms]).double().cpu()
        losses = torch.stack([terms[t].detach() for t in self.terms]).double().cpu()
        if self.initial is None:
            self.initial = losses
        progress = losses / self.initial
        gradient_norms = self.log_w.exp() * norms  # G_t
        target = gradient_norms.detach().mean() * (progress / progress.mean()) ** self.alpha
        if not (torch.isfinite(norms).all() and torch.isfinite(target).all()):
            self.skipped += 1
            return
        self.optimizer.zero_grad()
        (gradient_norms - target).abs().sum().backward()
        self.optimizer.step()
        with torch.no_grad():
            self.log_w -= torch.logsumexp(self.log_w, 0) - math.log(len(self.terms))
        self.weights = dict(zip(self.terms, self.log_w.exp().tolist()))


def weight_matrices(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters with two or more axes, in order: what the balancers call weight matrices.

    For the MLPs these are the Linear weights (out, in); for the Chebyshev-KAN layers the
    coefficient tensors C (out, in, K + 1): such a layer has no other parameter and is linear in
    C, whose entries C[j, i, :] play the part of the weight W[j, i]. Left out, as the LRA code
    leaves out its biases: Linear biases and LayerNorm gains and shifts (one axis) and the
    unknowns of inverse problems (zero axes).
    """
    matrices = [p for p in params if p.dim() >= 2]
    if not matrices:
        raise ValueError("loss balancing needs a weight matrix (a parameter with two or more axes); "
                         f"got parameters of shapes {[tuple(p.shape) for p in params]}")
    return matrices


def _grads(term: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """grad of `term` w.r.t. each of `params` (zeros for one it does not use); the graph is kept."""
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


# loss.balancing -> its class, built as cls(weights, **params(cfg, "loss.balancing_params"))
BALANCERS: dict[str, type[FixedWeights]] = {"fixed": FixedWeights, "gradnorm": GradNorm, "lra": LearningRateAnnealing}


def total(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum_t w_t L_t over the terms present."""
    return sum(weights[t] * value for t, value in terms.items())
