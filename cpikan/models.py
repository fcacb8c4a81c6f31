"""Scaled-cPIKAN, cPIKAN and the MLP baselines, as a flat sequence of simple ops.

Every network is ``Network(ops)``: a list of `DomainScaling`, `Squash`, `ChebyKANLayer`
or `nn.Linear`, applied in order to points of shape (N, d), giving (N,) values.
Keeping the ops flat lets a derivative engine walk them one by one.

Architectures (``model.arch``), hidden widths h_1..h_L, Chebyshev degree K:
- ``scaled_cpikan``: x -> DomainScaling -> [Squash -> Cheb(n_i, n_{i+1}, K)]*  (the paper's model)
- ``cpikan``: same without DomainScaling (raw coordinates enter the first tanh)
- ``scaled_pinn``: x -> DomainScaling -> [Linear -> tanh]* -> Linear
- ``pinn``: same without DomainScaling
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import torch
from torch import nn

from cpikan.config import ConfigError, RunConfig, pick

if TYPE_CHECKING:
    from cpikan.problems.base import Box


def chebyshev_basis(s: torch.Tensor, degree: int) -> torch.Tensor:
    """T_0..T_K at s by the recurrence T_{k+1} = 2 s T_k - T_{k-1}; shape (*s.shape, K+1).

    The recurrence keeps derivatives finite at s = +-1, unlike cos(k acos s).
    """
    basis = [torch.ones_like(s), s]
    for _ in range(2, degree + 1):
        basis.append(2 * s * basis[-1] - basis[-2])
    return torch.stack(basis[: degree + 1], dim=-1)


class ChebyKANLayer(nn.Module):
    """y_j = sum_i sum_k C[j, i, k] T_k(s_i), with input s in [-1, 1].

    Args:
        n_in, n_out: feature counts.
        degree: K >= 1; the layer has K + 1 basis functions per input.
    Shapes: s (N, n_in) -> y (N, n_out); coefficients C (n_out, n_in, K + 1).
    """

    def __init__(self, n_in: int, n_out: int, degree: int) -> None:
        super().__init__()
        if degree < 1:
            raise ConfigError(f"model.degree={degree} must be >= 1")
        self.n_in, self.n_out, self.degree = n_in, n_out, degree
        self.coeffs = nn.Parameter(torch.empty(n_out, n_in, degree + 1))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if s.dim() != 2 or s.shape[1] != self.n_in:
            raise ValueError(f"ChebyKANLayer expects input of shape (N, {self.n_in}), got {tuple(s.shape)}")
        basis = chebyshev_basis(s, self.degree)  # (N, n_in, K+1)
        return basis.flatten(1) @ self.coeffs.flatten(1).T  # (N, n_in*(K+1)) @ (n_in*(K+1), n_out)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, degree={self.degree}"


class DomainScaling(nn.Module):
    """Affine map of the box [lo, hi] to [-1, 1] per coordinate: z = a * x + b, a = 2 / (hi - lo)."""

    def __init__(self, lo: Sequence[float], hi: Sequence[float]) -> None:
        super().__init__()
        lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
        self.register_buffer("scale", 2.0 / (hi_t - lo_t))
        self.register_buffer("shift", -(hi_t + lo_t) / (hi_t - lo_t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class Squash(nn.Module):
    """tanh, optionally after LayerNorm: maps a hidden vector back into (-1, 1)."""

    def __init__(self, width: int, layernorm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if layernorm else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(layer_norm(h, self.norm) if self.norm is not None else h)


def layer_norm(h: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """gamma (h - mean h) / sqrt(var h + eps) + beta over the last axis, from plain ops.

    Warning: torch's fused layer_norm kernel gets third derivatives wrong (gradcheck fails on a
    second derivative through it), so nested-autograd training would use wrong gradients.
    """
    centered = h - h.mean(dim=-1, keepdim=True)
    scale = torch.rsqrt(centered.square().mean(dim=-1, keepdim=True) + norm.eps)
    return centered * scale * norm.weight + norm.bias


class Network(nn.Module):
    """Applies `ops` in order to points x (N, d) and returns u (N,)."""

    def __init__(self, ops: Sequence[nn.Module], in_dim: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.in_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"network expects points of shape (N, {self.in_dim}), got {tuple(x.shape)}")
        h = x
        for op in self.ops:
            h = op(h)
        return h[:, 0]


class Constrained(nn.Module):
    """u(x) = output(x, net(x)): a network under a problem's hard constraint (`Problem.output`).

    Shapes: x (N, d) -> (N,). Its parameters are `net`'s; derivatives of u are taken through
    `output` by autograd (the taylor engine walks `Network.ops` and cannot pass through it).
    """

    def __init__(self, net: nn.Module, output: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net, self.output = net, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x, self.net(x))


def kan_layers(widths: Sequence[int], degree: int, layernorm: bool) -> list[nn.Module]:
    """[Squash -> Cheb(n_i, n_{i+1}, K)] per layer; no LayerNorm in front of the first."""
    ops: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        ops += [Squash(n_in, layernorm and i > 0), ChebyKANLayer(n_in, n_out, degree)]
    return ops


def mlp_layers(widths: Sequence[int], degree: int, layernorm: bool) -> list[nn.Module]:
    """Linear -> [Squash -> Linear]*; `degree` is not used."""
    ops: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i > 0:
            ops.append(Squash(n_in, layernorm))
        ops.append(nn.Linear(n_in, n_out))
    return ops


class Arch(NamedTuple):
    """An architecture: whether the coordinates are first mapped to [-1, 1], and its layer stack
    ``layers(widths, degree, layernorm)``."""

    domain_scaling: bool
    layers: Callable[[Sequence[int], int, bool], list[nn.Module]]


# model.arch -> Arch
ARCHS = {"scaled_cpikan": Arch(True, kan_layers), "cpikan": Arch(False, kan_layers),
         "scaled_pinn": Arch(True, mlp_layers), "pinn": Arch(False, mlp_layers)}
NORMS = {"none": False, "layernorm": True}  # model.norm -> whether a Squash applies LayerNorm before tanh


def build_network(arch: str, lo: Sequence[float], hi: Sequence[float], hidden: Sequence[int],
                  degree: int, norm: str = "none", init: str = "xavier") -> Network:
    """The network for ``model.arch`` on the box [lo, hi] with the given hidden widths, drawn by
    ``model.init`` from torch's global random state."""
    spec = pick(ARCHS, "model.arch", arch)
    widths = [len(lo), *hidden, 1]
    scaling = [DomainScaling(lo, hi)] if spec.domain_scaling else []
    net = Network(scaling + spec.layers(widths, degree, pick(NORMS, "model.norm", norm)), len(lo))
    initialize(net, init)
    return net


def initial_network(cfg: RunConfig, box: Box) -> Network:
    """The untrained network of a resolved config on `box`: `build_network` drawn right after
    ``torch.manual_seed(cfg.seed)``, in a fork of torch's random state (left as it was)."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_network(m.arch, box.lo, box.hi, m.hidden, m.degree, m.norm, m.init)


class Init(NamedTuple):
    """An initialization scheme: the scale of the entries it draws, ``scale(fan_in, fan_out)``:
    the std of a normal draw, or the root mean square of an `orthogonal` one."""

    scale: Callable[[int, int], float]
    orthogonal: bool = False


# model.init -> Init
INITS = {
    "xavier": Init(lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out))),
    "kaiming": Init(lambda fan_in, fan_out: math.sqrt(1.0 / fan_in)),
    "orthogonal": Init(lambda fan_in, fan_out: math.sqrt(1.0 / fan_in), orthogonal=True),
    "small_random": Init(lambda fan_in, fan_out: 1.0 / fan_in),
}


def initialize(net: nn.Module, scheme: str) -> None:
    """Draw Chebyshev coefficients and linear weights by `scheme`; linear biases start at zero.

    A Chebyshev layer y_j = sum_(i,k) C[j,i,k] T_k(s_i) is linear in C, with fan_in = n_in (K+1)
    basis values per output and fan_out = n_out (K+1); a linear layer is the case K + 1 = 1.
    Scale of the entries of C (std of a normal draw; root mean square for ``orthogonal``):
    - ``xavier``: sqrt(2 / (fan_in + fan_out)). Glorot's compromise between keeping forward and
      backward variances; torch's xavier_normal_ on the coefficient tensor, as in the
      Scaled-cPIKAN paper's code. The default.
    - ``kaiming``: sqrt(1 / fan_in). He's fan-in rule with gain 1: the layer is linear in its
      basis values (ReLU's gain sqrt(2) does not apply), so Var y_j equals the mean square of
      the basis values: 1 for T_0, 1/2 for T_k with arcsine-spread s, about 0.58 for K = 5.
    - ``orthogonal``: C as an (n_out, fan_in) matrix with orthonormal rows (orthogonal columns
      scaled by sqrt(n_out / fan_in) when n_out > fan_in), so the same root mean square
      sqrt(1 / fan_in) as kaiming: an ablation of decorrelated outputs at equal scale.
    - ``small_random``: 1 / fan_in. The ChebyKAN reference code; outputs start about
      sqrt(fan_in) times smaller than with kaiming and grow during training.
    """
    init = pick(INITS, "model.init", scheme)
    for module in net.modules():
        if isinstance(module, ChebyKANLayer):
            weight, n_basis = module.coeffs, module.degree + 1
        elif isinstance(module, nn.Linear):
            weight, n_basis = module.weight, 1
            nn.init.zeros_(module.bias)
        else:
            continue
        fan_out, fan_in = weight.shape[0] * n_basis, weight[0].numel()
        with torch.no_grad():
            if init.orthogonal:
                gain = math.sqrt(max(1.0, weight.shape[0] / fan_in))
                nn.init.orthogonal_(weight.view(weight.shape[0], -1), gain=gain)
            else:
                nn.init.normal_(weight, 0.0, init.scale(fan_in, fan_out))


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """Scale of the entries each scheme draws (see `initialize`); for ``orthogonal`` the root mean square."""
    return pick(INITS, "model.init", scheme).scale(fan_in, fan_out)
