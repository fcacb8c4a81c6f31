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
from cpikan.optim import MemberAdam
from cpikan.problems.base import Dirichlet, Initial, Periodic, Problem
from cpikan.sampling import PointSets


class PhysicsLoss:
    """Evaluates each loss term of `problem` for the S members of network `net` with derivative `engine`.

    `params` holds the problem's constants and trainable unknowns (see `ProblemParameters`).
    Interior and periodic points go through the network in one pass of the derivative engine,
    the points whose terms read values only (Dirichlet, initial, observations) in a plain one (see
    `terms`). With
    ``engine="taylor"`` the loss learns at construction what the residual reads (one evaluation on
    three points, `cpikan.derivatives.discover_plan`) and what each periodic condition reads (u
    and u_x[axis]), so every evaluation is a single forward pass carrying only that.
    """

    def __init__(self, problem: Problem, net: torch.nn.Module, engine: str, params: "ProblemParameters") -> None:
        self.problem, self.net, self.engine, self.params = problem, net, engine, params
        self.members = net.members
        self._plan: Plan | None = None
        if engine == "taylor" and problem.output is not None:
            raise ConfigError(f"derivatives='taylor' cannot differentiate problem {problem.name!r}: its output "
                              "transform (Problem.output, a hard constraint) is a Python function of x and the "
                              "network value, which the taylor engine's layer-by-layer propagation cannot pass "
                              "through; use derivatives=autograd")
        if engine == "taylor":
            self._plan = discover_plan(problem.residual, net, problem.box.lo, problem.box.hi,
                                       params.as_dict(), problem.lap_axes)
            for c in problem.conditions:
                if isinstance(c, Periodic):
                    self._plan.request(("first", c.axis))

    def _derivatives(self, x: torch.Tensor) -> Derivatives:
        """The accessor at points x (S n, d)."""
        if self._plan is None:
            return ENGINES[self.engine](self.net, x, self.params.as_dict(), self.problem.lap_axes)
        return TaylorDerivatives(self.net, x, self.params.as_dict(), self.problem.lap_axes, self._plan)

    def _residual(self, d: Derivatives) -> torch.Tensor:
        r = self.problem.residual(d, d.x)
        if r.shape != (d.x.shape[0],):
            raise ValueError(f"residual of problem {self.problem.name!r} returned shape {tuple(r.shape)}; "
                             f"expected ({d.x.shape[0]},): return one value per point")
        return r

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """PDE residual at each member's points x (S, n, d); shape (S, n)."""
        return self._residual(self._derivatives(x.reshape(-1, x.shape[-1]))).view(x.shape[:2])

    def residual_value(self, x: torch.Tensor) -> torch.Tensor:
        """The PDE residual at points x (S, n, d), detached: what a monitor or a sampler reads. The
        taylor engine evaluates it without recording a graph (the same numbers at a fraction of the
        cost); nested autograd needs the graph for its derivatives."""
        with torch.no_grad() if self._plan is not None else contextlib.nullcontext():
            return self.residual(x).detach()

    def terms(self, points: PointSets, pde_x: torch.Tensor | None = None,
              groups: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Mean squared residual per term and member, each (S,); `pde_x` (S, n, d) replaces the
        interior points (a mini-batch), `groups` is ``points.groups()`` when the caller keeps it.

        One derivative pass carries the interior and the periodic pairs; the points whose terms read
        values only go through a plain forward pass, unless they are at most 1/`MERGE` of the
        interior points: then they ride along in the derivative pass, which costs less than a pass
        of their own.
        """
        pde_x = points.pde if pde_x is None else pde_x
        paired, valued = points.groups() if groups is None else groups
        s, n_pde, dim = pde_x.shape
        merge = valued.shape[1] * MERGE <= n_pde
        jet_x = torch.cat([pde_x, paired, *([valued] if merge else [])], dim=1) if paired.shape[1] or merge else pde_x
        d = self._derivatives(jet_x.reshape(-1, dim))
        interior = d.part(0, n_pde, pde_x.reshape(-1, dim), self.params.as_dict())
        out = {"pde": _mse(self._residual(interior).view(s, n_pde))}
        u_jet = d.u.view(s, -1)
        if merge:
            u_valued = u_jet[:, n_pde + paired.shape[1]:]
        else:
            u_valued = self.net(valued.reshape(-1, dim)).view(s, -1) if valued.shape[1] else valued[..., 0]
        at_paired, at_valued, by_term = n_pde, 0, {}
        for cp in points.conditions:
            n = cp.x.shape[1]
            if cp.pair is None:
                residual = u_valued[:, at_valued:at_valued + n] - cp.target
                at_valued += n
            else:
                u_a = d.u_x[cp.condition.axis].view(s, -1)
                lo, hi = slice(at_paired, at_paired + n), slice(at_paired + n, at_paired + 2 * n)
                residual = torch.cat([u_jet[:, lo] - u_jet[:, hi], u_a[:, lo] - u_a[:, hi]], dim=1)
                at_paired += 2 * n
            by_term.setdefault(cp.condition.term, []).append(residual)
        for term, parts in by_term.items():
            out[term] = _mse(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        if points.data_x is not None:
            out["data"] = _mse(u_valued[:, at_valued:] - points.data_u)
        return out


MERGE = 16  # value-only points ride along in the derivative pass when at most 1/MERGE of the interior ones


class ProblemParameters(torch.nn.Module):
    """Trainable unknowns of S members, one row each in one parameter `flat` (S, U) (column j: the
    j-th unknown), and constants (0-d buffers)."""

    def __init__(self, unknowns: Mapping[str, float], constants: Mapping[str, float], members: int = 1) -> None:
        super().__init__()
        self.names = tuple(unknowns)
        start = torch.tensor([float(v) for v in unknowns.values()], dtype=torch.float32)
        self.flat = torch.nn.Parameter(start.expand(members, -1).clone())
        for name, value in constants.items():
            self.register_buffer(f"const_{name}", torch.tensor(float(value)))
        self._constants = tuple(constants)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Constants (0-d) and unknowns ((S,), one value per member)."""
        return {**{k: getattr(self, f"const_{k}") for k in self._constants},
                **{k: self.flat[:, j] for j, k in enumerate(self.names)}}


def _mse(r: torch.Tensor) -> torch.Tensor:
    """Mean square per member of r (S, n): (S,); in float32 at least (for autocast's half types)."""
    return (r.float() if r.dtype in (torch.float16, torch.bfloat16) else r).square().mean(dim=1)


class FixedWeights:
    """``loss.balancing = "fixed"``: the configured weights w_t, never changed.

    The base of every balancer, for S members. The trainer reads `weights` (term -> (S,), each
    member's weight) at every step and calls `update` once per optimizer step, before backward.
    `skipped` (S,) counts per member the updates that left some weight unchanged because its
    statistic was not finite (for instance a term with no gradient on the weight matrices); runs
    record it as ``balancing_skipped``.

    Args:
        weights: initial weight per term (the configured ones).
        like: the network's weights `cpikan.models.Network.flat` (S, P): members, device, dtype.
        matrices: the columns of `like` holding each weight matrix (`weight_matrices`).
    """

    def __init__(self, weights: Mapping[str, float], like: torch.Tensor, matrices: list[slice]) -> None:
        self.weights = {t: like.new_full(like.shape[:1], float(w)).detach() for t, w in weights.items()}
        self.skipped = torch.zeros(like.shape[0], dtype=torch.long, device=like.device)
        self.matrices = matrices

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        """Called once per step before backward, with the graph of each term (S,) intact;
        ``params[0]`` is the network's `flat`."""
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

    Reference: S. Wang, Y. Teng, P. Perdikaris, "Understanding and mitigating gradient flow
    pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43(5) (2021) A3055,
    Algorithm 2.1, eqs. (2.30)-(2.31); code: github.com/PredictiveIntelligenceLab/
    GradientPathologiesPINNs, Helmholtz/Helmholtz2D_model_tf.py (one boundary weight) and
    "Klein Gordon/Klein_Gordon_model_tf.py" (separate boundary and initial weights).

    The published algorithm and the code agree: eq. (2.30) divides by the mean gradient of the
    weighted term w_t L_t, and the recommended alpha = 0.1 keeps 90 % of the old weight. The
    preprint (arXiv:2001.04536v1, Algorithm 1, eqs. (40)-(41)) printed both otherwise: the
    unweighted L_t, and alpha = 0.9 keeping 10 %. The weighted denominator is what bounds the
    weight: with r_t = max|grad (w_pde L_pde)| / mean|grad L_t| the update reads
    w <- (1 - keep) r_t / w + keep w, whose fixed point is w_t = sqrt(r_t), while the preprint's
    rule settles at r_t itself, which grows without bound as the boundary is fitted and the
    boundary gradient vanishes (on Helmholtz it passed 1e9 within 3,000 steps).
    One more, harmless, difference: the code measures after the optimizer step of an updating
    iteration, on the same batch; we measure on the step's own terms, before its backward.
    Every member updates its own weights from its own gradients.

    Args:
        weights, like, matrices: as for `FixedWeights`.
        keep: fraction of the old weight kept at an update, in [0, 1) (the code's 0.9).
        every: optimizer steps between updates (the code's 10; steps, not epochs: mini-batches count).
    """

    def __init__(self, weights: Mapping[str, float], like: torch.Tensor, matrices: list[slice], keep: float,
                 every: int) -> None:
        super().__init__(weights, like, matrices)
        self.keep, self.every, self.steps = keep, every, 0

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        step, self.steps = self.steps, self.steps + 1
        if step % self.every:
            return
        g = _grad(self.weights["pde"] * terms["pde"], params[0])
        top = torch.stack([g[:, c].abs().amax(dim=1) for c in self.matrices]).amax(dim=0)
        refused = torch.zeros_like(self.skipped, dtype=torch.bool)
        for term, value in terms.items():
            if term == "pde":
                continue
            g = _grad(self.weights[term] * value, params[0])
            mean = torch.stack([g[:, c].abs().mean(dim=1) for c in self.matrices]).mean(dim=0)
            new = (1 - self.keep) * (top / mean) + self.keep * self.weights[term]
            ok = torch.isfinite(new) & (new > 0)
            self.weights[term] = torch.where(ok, new, self.weights[term]).detach()
            refused |= ~ok
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
    W is the weight matrix of the output layer (the last of the weight matrices): Chen et al.
    take the last layer shared by all tasks, to keep the cost of T extra gradients low; in a
    PINN every layer is shared by every term, and the output layer is the last of them.
    Every member has its own log-weights, statistics and Adam state; a member whose statistics are
    not finite skips the update (counted in `skipped`).

    Args:
        weights, like, matrices: as for `FixedWeights`; the weights are rescaled to sum to T at
            once (their ratios are kept).
        alpha: asymmetry >= 0; the larger, the harder terms that train slowly are pushed up.
        lr: Adam learning rate of the log-weights s.
        every: optimizer steps between updates.
    """

    def __init__(self, weights: Mapping[str, float], like: torch.Tensor, matrices: list[slice], alpha: float,
                 lr: float, every: int) -> None:
        super().__init__(weights, like, matrices)
        self.terms = tuple(weights)
        total_weight = sum(weights.values())
        start = [math.log(len(self.terms) * weights[t] / total_weight) for t in self.terms]
        self.log_w = torch.tensor(start, dtype=torch.float64, device=like.device).expand(like.shape[0], -1).clone()
        self.log_w.requires_grad_(True)
        self.optimizer = MemberAdam([self.log_w])
        self.alpha, self.lr, self.every, self.steps = alpha, lr, every, 0
        self.initial: torch.Tensor | None = None
        self._set_weights(like.dtype)

    def _set_weights(self, dtype: torch.dtype) -> None:
        w = self.log_w.detach().exp().to(dtype)
        self.weights = {t: w[:, j] for j, t in enumerate(self.terms)}

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None:
        step, self.steps = self.steps, self.steps + 1
        if step % self.every:
            return
        output_layer = self.matrices[-1]
        norms = torch.stack([_grad(terms[t], params[0])[:, output_layer].norm(dim=1) for t in self.terms], 1).double()
        losses = torch.stack([terms[t].detach() for t in self.terms], 1).double()  # (S, T)
        if self.initial is None:
            self.initial = losses
        progress = losses / self.initial
        with torch.enable_grad():
            gradient_norms = self.log_w.exp() * norms  # G_t
            target = gradient_norms.detach().mean(1, keepdim=True) * (progress / progress.mean(1, keepdim=True)) ** self.alpha
            ok = torch.isfinite(norms).all(1) & torch.isfinite(target).all(1)
            (self.log_w.grad,) = torch.autograd.grad((gradient_norms - target).abs().sum(), self.log_w)
        self.skipped += ~ok
        self.optimizer.step(self.lr, ok)
        with torch.no_grad():
            shift = torch.logsumexp(self.log_w, 1, keepdim=True) - math.log(len(self.terms))
            self.log_w -= torch.where(ok[:, None], shift, 0.0)
        self._set_weights(params[0].dtype)


def weight_matrices(net: torch.nn.Module) -> list[slice]:
    """The columns of the network's `flat` holding its weight matrices, in layer order: what the
    balancers call weight matrices.

    For the MLPs these are the Linear weights; for the Chebyshev-KAN layers the coefficient tensors
    C (out, in, K + 1): such a layer has no other parameter and is linear in C, whose entries
    C[j, i, :] play the part of the weight W[j, i]. Left out, as the LRA code leaves out its
    biases: Linear biases, LayerNorm gains and shifts, and the unknowns of inverse problems.
    """
    core = getattr(net, "net", net)  # under a hard constraint, the network inside it
    matrices = core.columns("coeffs", "weight")
    if not matrices:
        raise ValueError("loss balancing needs a weight matrix (a Chebyshev or linear layer); the network has none")
    return matrices


def _grad(term: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """grad of the members' `term` (S,) w.r.t. the network's weights `flat` (S, P), member by member
    (members share no weights, so the gradient of the sum is each member's own); the graph is kept."""
    (grad,) = torch.autograd.grad(term.sum(), flat, retain_graph=True, allow_unused=True)
    return torch.zeros_like(flat) if grad is None else grad


# loss.balancing -> its class, built as cls(weights, like, matrices, **params(cfg, "loss.balancing_params"))
BALANCERS: dict[str, type[FixedWeights]] = {"fixed": FixedWeights, "gradnorm": GradNorm, "lra": LearningRateAnnealing}


def total(terms: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
    """sum_t w_t L_t over the terms present, per member: (S,) terms and weights give (S,)."""
    return sum(weights[t] * value for t, value in terms.items())
