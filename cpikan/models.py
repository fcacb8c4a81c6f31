"""Scaled-cPIKAN, cPIKAN and the MLP baselines: a flat sequence of simple ops over S members.

Every network is ``Network(ops)``: a list of `DomainScaling`, `Squash`, `ChebyKANLayer` or
`Linear`, applied in order. A network holds S *members*, S networks of the same shape trained side
by side (one per seed): all their weights live in one parameter ``flat`` of shape (S, P), member m's
in row m, and each op reads its own as views of it (`Network.weights`). Per-member work on the whole
trainable state (an optimizer step, a clip norm, a snapshot, L-BFGS) is then work on rows of one
tensor. Points come as (S N, d), member m's N points in block m, and values go out as (S N,): a
residual written for one network reads the same shapes for S = 1 and for S members. A single
network is the case S = 1. Keeping the ops flat lets a derivative engine walk them one by one.
Inside, hidden values are feature-major, (S, n, N): a layer is then one batched matrix product
(n_out, F) @ (F, N) per member, which stays fast down to the one output of the last layer.

Architectures (``model.arch``), hidden widths h_1..h_L, Chebyshev degree K:
- ``scaled_cpikan``: x -> DomainScaling -> [Squash -> Cheb(n_i, n_{i+1}, K)]*  (the paper's model)
- ``cpikan``: same without DomainScaling (raw coordinates enter the first tanh)
- ``scaled_pinn``: x -> DomainScaling -> [Linear -> tanh]* -> Linear
- ``pinn``: same without DomainScaling
"""

from __future__ import annotations

import copy
import math
from itertools import accumulate
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np
import torch
from numpy.polynomial import chebyshev
from torch import nn

from cpikan.config import ConfigError, RunConfig, pick

if TYPE_CHECKING:
    from cpikan.problems.base import Box

Weights = dict[str, torch.Tensor]  # an op's weights by name, each (S, *shape), views of `Network.flat`


def member_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-member `values` (S,) viewed as (S, 1, ..., 1), to broadcast against `like` (S, ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))


def chebyshev_basis(s: torch.Tensor, degree: int, dim: int = -1) -> torch.Tensor:
    """T_0..T_K at s by the recurrence T_{k+1} = 2 s T_k - T_{k-1}, stacked on a new axis `dim`.

    The recurrence keeps derivatives finite at s = +-1, unlike cos(k acos s). The default
    ``dim=-1`` gives shape (*s.shape, K+1); layers stack on ``dim=1`` (degree before feature),
    which copies in runs of points and is several times faster than interleaving them.
    """
    basis = [torch.ones_like(s), s]
    twice = 2 * s
    for _ in range(2, degree + 1):
        basis.append(twice * basis[-1] - basis[-2])
    return torch.stack(basis[: degree + 1], dim=dim)


def chebyshev_derivative(degree: int) -> np.ndarray:
    """D1, (K + 1, K + 1): T'_k = sum_l D1[k, l] T_l (numpy's chebder, row by row); computed once per K
    (a plain dict, which torch.compile traces without warning, unlike functools' caches)."""
    if degree not in _DERIVATIVES:
        d1 = np.zeros((degree + 1, degree + 1))
        for k in range(1, degree + 1):
            der = chebyshev.chebder(np.eye(degree + 1)[k])
            d1[k, :len(der)] = der
        _DERIVATIVES[degree] = d1
    return _DERIVATIVES[degree]


_DERIVATIVES: dict[int, np.ndarray] = {}


class ChebyKANLayer(nn.Module):
    """y_j = sum_i sum_k C[j, i, k] T_k(s_i), with input s in [-1, 1].

    Args:
        n_in, n_out: feature counts.
        degree: K >= 1; the layer has K + 1 basis functions per input.
    Weights: ``coeffs`` stored as (n_out, K + 1, n_in), the matrix that multiplies the basis laid
    out as (K + 1, n_in, N); C[j, i, k] is ``coeffs[j, k, i]``. Shapes: s (S, n_in, N) -> (S, n_out, N).
    """

    def __init__(self, n_in: int, n_out: int, degree: int) -> None:
        super().__init__()
        if degree < 1:
            raise ConfigError(f"model.degree={degree} must be >= 1")
        self.n_in, self.n_out, self.degree = n_in, n_out, degree

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"coeffs": (self.n_out, self.degree + 1, self.n_in)}

    def forward(self, s: torch.Tensor, w: Weights) -> torch.Tensor:
        basis = chebyshev_basis(s, self.degree, dim=1)  # (S, K+1, n_in, N)
        return torch.bmm(w["coeffs"].flatten(2), basis.flatten(1, 2))  # (S, n_out, (K+1) n_in) @ (S, (K+1) n_in, N)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, degree={self.degree}"


class Linear(nn.Module):
    """y = W h + b. Weights: ``weight`` W (n_out, n_in) and ``bias`` (n_out,). Shapes: (S, n_in, N) -> (S, n_out, N)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.n_out, self.n_in), "bias": (self.n_out,)}

    def forward(self, h: torch.Tensor, w: Weights) -> torch.Tensor:
        return torch.baddbmm(w["bias"][:, :, None], w["weight"], h)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}"


class DomainScaling(nn.Module):
    """Affine map of the box [lo, hi] to [-g, g] per coordinate: z = a * x + b, a = 2 g / (hi - lo).

    g = 1 (the default) is the domain scaling of the paper (the box to [-1, 1]); g = sqrt 3 is the
    standardization z = (x - mean) / std by the moments of the uniform law on the box
    (mean (lo + hi) / 2, std (hi - lo) / sqrt 12), as Wang et al.'s code standardizes its inputs by
    the moments of 100,000 uniform samples (`STANDARDIZE`).
    """

    def __init__(self, lo: Sequence[float], hi: Sequence[float], gain: float = 1.0) -> None:
        super().__init__()
        lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
        self.register_buffer("scale", 2.0 * gain / (hi_t - lo_t))
        self.register_buffer("shift", -gain * (hi_t + lo_t) / (hi_t - lo_t))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def forward(self, x: torch.Tensor, w: Weights | None = None) -> torch.Tensor:
        """x (S, d, N) -> (S, d, N)."""
        return torch.addcmul(self.shift.to(x.dtype)[:, None], x, self.scale.to(x.dtype)[:, None])


class Squash(nn.Module):
    """tanh, optionally after a layer norm (weights ``norm_weight`` and ``norm_bias``, (width,)):
    maps a hidden vector back into (-1, 1)."""

    EPS = 1e-5

    def __init__(self, width: int, layernorm: bool) -> None:
        super().__init__()
        self.width, self.layernorm = width, layernorm

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"norm_weight": (self.width,), "norm_bias": (self.width,)} if self.layernorm else {}

    def forward(self, h: torch.Tensor, w: Weights) -> torch.Tensor:
        return torch.tanh(layer_norm(h, w["norm_weight"], w["norm_bias"], self.EPS) if self.layernorm else h)

    def extra_repr(self) -> str:
        return f"width={self.width}, layernorm={self.layernorm}"


def layer_norm(h: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    """gamma (h - mean h) / sqrt(var h + eps) + beta over the features, from plain ops; h (S, n, ...),
    gamma and beta (S, n).

    Warning: torch's fused layer_norm kernel gets third derivatives wrong (gradcheck fails on a
    second derivative through it), so nested-autograd training would use wrong gradients.
    """
    centered = h - h.mean(dim=1, keepdim=True)
    scale = torch.rsqrt(centered.square().mean(dim=1, keepdim=True) + eps)
    extra = (None,) * (h.dim() - 2)
    return centered * scale * gain[(..., *extra)] + shift[(..., *extra)]


class Network(nn.Module):
    """Applies `ops` in order to the points of S members and returns their values.

    Args:
        ops: the op sequence (see the module docstring).
        in_dim: coordinates per point, d.
        members: S, the networks held side by side (their weights start uninitialized: see
            `initialize`, or build members with `initial_members`).
    Shapes: x (S N, d) -> (S N,), member m's N points in rows m N .. (m + 1) N - 1.
    """

    def __init__(self, ops: Sequence[nn.Module], in_dim: int, members: int = 1) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.in_dim = in_dim
        self.layout = [(i, name, shape) for i, op in enumerate(self.ops) for name, shape in op.shapes().items()]
        self.sizes = [math.prod(shape) for _, _, shape in self.layout]
        self.flat = nn.Parameter(torch.empty(members, sum(self.sizes)))

    @property
    def members(self) -> int:
        return self.flat.shape[0]

    def weights(self) -> list[Weights]:
        """Per op its weights, each (S, *shape), as views of `flat` (one split for all)."""
        out: list[Weights] = [{} for _ in self.ops]
        chunks = self.flat.split(self.sizes, dim=1) if self.sizes else ()
        for (i, name, shape), chunk in zip(self.layout, chunks):
            out[i][name] = chunk.view(-1, *shape)
        return out

    def columns(self, *names: str) -> list[slice]:
        """The columns of `flat` holding each weight called one of `names` (e.g. "coeffs", "weight"), in op order."""
        starts = [0, *accumulate(self.sizes)]
        return [slice(starts[j], starts[j + 1]) for j, (_, name, _) in enumerate(self.layout) if name in names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.members
        if x.dim() != 2 or x.shape[1] != self.in_dim or x.shape[0] % s:
            raise ValueError(f"network expects points of shape (N, {self.in_dim})"
                             + (f" with N a multiple of its {s} members" if s > 1 else "") + f", got {tuple(x.shape)}")
        h = x.view(s, -1, self.in_dim).transpose(1, 2)  # (S, d, N): feature-major
        for op, w in zip(self.ops, self.weights()):
            h = op(h, w)
        return h.reshape(-1)

    def member(self, m: int) -> "Network":
        """Member m alone, as a network of one member (a copy: training one does not move the other)."""
        return self._with_weights(self.flat.detach()[m:m + 1])

    def _with_weights(self, flat: torch.Tensor) -> "Network":
        """A network of the same ops (copied, buffers included) whose weights are a copy of `flat` (S', P)."""
        out = Network(copy.deepcopy(list(self.ops)), self.in_dim, flat.shape[0])
        out.flat = nn.Parameter(flat.detach().clone())
        return out


def stack_members(nets: Sequence[Network]) -> Network:
    """One network whose members are those of `nets` (same architecture), in order."""
    return nets[0]._with_weights(torch.cat([n.flat.detach() for n in nets]))


class Constrained(nn.Module):
    """u(x) = output(x, net(x)): a network under a problem's hard constraint (`Problem.output`).

    Shapes: x (S N, d) -> (S N,). Its parameters are `net`'s; derivatives of u are taken through
    `output` by autograd (the taylor engine walks `Network.ops` and cannot pass through it).
    """

    def __init__(self, net: Network, output: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net, self.output = net, output

    @property
    def members(self) -> int:
        return self.net.members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x, self.net(x))

    def member(self, m: int) -> "Constrained":
        return Constrained(self.net.member(m), self.output)


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
        ops.append(Linear(n_in, n_out))
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


STANDARDIZE = math.sqrt(3.0)  # DomainScaling's gain for standardized inputs: the uniform law's std is (hi - lo) / sqrt 12


def build_network(arch: str, lo: Sequence[float], hi: Sequence[float], hidden: Sequence[int],
                  degree: int, norm: str = "none", init: str = "xavier", standardize: bool = False) -> Network:
    """The network (one member) for ``model.arch`` on the box [lo, hi] with the given hidden widths,
    drawn by ``model.init`` from torch's global random state. With `standardize` the inputs are
    standardized (``model.standardize``) instead of scaled or raw: every architecture then starts
    with the same map, so ``pinn`` is ``scaled_pinn`` and ``cpikan`` is ``scaled_cpikan``."""
    spec = pick(ARCHS, "model.arch", arch)
    widths = [len(lo), *hidden, 1]
    scaling = [DomainScaling(lo, hi, STANDARDIZE if standardize else 1.0)] if spec.domain_scaling or standardize else []
    net = Network(scaling + spec.layers(widths, degree, pick(NORMS, "model.norm", norm)), len(lo))
    initialize(net, init)
    return net


def initial_network(cfg: RunConfig, box: Box) -> Network:
    """The untrained network of a resolved config on `box`: `build_network` drawn right after
    ``torch.manual_seed(cfg.seed)``, in a fork of torch's random state (left as it was)."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_network(m.arch, box.lo, box.hi, m.hidden, m.degree, m.norm, m.init, m.standardize)


def initial_members(cfg: RunConfig, box: Box, seeds: Sequence[int]) -> Network:
    """One network of ``len(seeds)`` members: member m is `initial_network` of `cfg` with seed ``seeds[m]``."""
    return stack_members([initial_network(cfg.override({"seed": seed}), box) for seed in seeds])


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


def initialize(net: Network, scheme: str) -> None:
    """Draw each member's Chebyshev coefficients and linear weights by `scheme`, member after
    member and op after op; linear biases start at zero, layer-norm gains at one and shifts at zero.

    A Chebyshev layer y_j = sum_(i,k) C[j,i,k] T_k(s_i) is linear in C, with fan_in = n_in (K+1)
    basis values per output and fan_out = n_out (K+1); a linear layer is the case K + 1 = 1. The
    entries are drawn in the order of C[j, i, k] (of W[j, i]) whatever the storage order.
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
    with torch.no_grad():
        for member in range(net.members):
            for op, w in zip(net.ops, net.weights()):
                if isinstance(op, ChebyKANLayer):
                    _draw(init, w["coeffs"][member].transpose(1, 2), op.degree + 1)
                elif isinstance(op, Linear):
                    _draw(init, w["weight"][member], 1)
                    w["bias"][member].zero_()
                elif isinstance(op, Squash) and op.layernorm:
                    w["norm_weight"][member].fill_(1.0)
                    w["norm_bias"][member].zero_()


def _draw(init: Init, target: torch.Tensor, n_basis: int) -> None:
    """Fill `target` (n_out, n_in[, K + 1], any strides) with draws of `init` made in its index order."""
    drawn = torch.empty(target.shape)
    fan_out, fan_in = target.shape[0] * n_basis, target[0].numel()
    if init.orthogonal:
        gain = math.sqrt(max(1.0, target.shape[0] / fan_in))
        nn.init.orthogonal_(drawn.view(target.shape[0], -1), gain=gain)
    else:
        nn.init.normal_(drawn, 0.0, init.scale(fan_in, fan_out))
    target.copy_(drawn)


def init_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """Scale of the entries each scheme draws (see `initialize`); for ``orthogonal`` the root mean square."""
    return pick(INITS, "model.init", scheme).scale(fan_in, fan_out)
