"""Forward propagation of a jet: values, tangents and second-order channels through a `Network`.

For S members, n features and N points per member, a jet is three feature-major tensors::

    value      h                                    (S, n, N)
    tangents   G_t = dh/dx_(a_t)                    (S, n, T, N), one per carried axis a_t
    channels   L_c = sum_(a,b,w) w d2h/dx_a dx_b    (S, n, C, N), one per second-order channel

Tangents may be broadcast constants (size 1 on the member and point axes: the scaled unit vectors
the coordinates start with) and channels None (zero) until an op makes them otherwise. Every op is
linear in the derivatives (its Jacobian J) except for a bilinear correction of the channels:
``L' = J L + sum_(a,b,w) w B(G_a, G_b)``, B the op's second derivative (math:
``../shared/derivatives.md``; mixed terms a != b generalize its per-axis weights). Rules exist for
`DomainScaling`, `Squash` (tanh, optionally after LayerNorm), `ChebyKANLayer` and `Linear`.

The three groups stay separate tensors, so no rule slices or concatenates a tensor of all rows
(under autograd, every slice of a large tensor costs a zero-filled gradient of its full size), and
the rows within a group are one tensor axis, so each rule is a few large operations whatever the
number of rows. A Chebyshev layer materializes only the basis values T_k(s) and folds the basis
derivatives into its coefficients (T'_k = sum_l D1[k, l] T_l, see `fold_matrix`): the derivative
rows meet T_0..T_(K-1) only, and the second-order correction T_0..T_(K-2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

import numpy as np
import torch
from torch import nn

from cpikan.models import (ChebyKANLayer, DomainScaling, Linear, Network, Squash, Weights, chebyshev_basis,
                           chebyshev_derivative)

Key = tuple  # ("value",) | ("first", i) | ("pure", i) | ("lap",) | ("mixed", i, j) with i < j
Term = tuple[int, int, float]  # (tangent a, tangent b, weight w): the term w d2h/dx_a dx_b of a channel
Keep = tuple[int, ...] | None  # rows an op outputs: all (None), or these (the last op)
Index = slice | list[int]


@dataclass(frozen=True)
class Layout:
    """Row layout of one propagation: carried axes, second-order channels, and rows per quantity.

    `keep` lists the carried rows the last op outputs: the values, every channel, and the
    tangents some quantity reads (the others are dropped there). `rows[key]` lists the output
    rows whose sum is that quantity (a Laplacian may be the sum of pure channels; over no axes,
    the empty tuple).
    """

    axes: tuple[int, ...]
    channels: tuple[tuple[Term, ...], ...]
    keep: tuple[int, ...]
    rows: Mapping[Key, tuple[int, ...]]
    # every term of every channel, in order: its tangents a and b (indices into the tangent rows)
    pair_a: Index = field(init=False, compare=False)
    pair_b: Index = field(init=False, compare=False)
    # channel c = sum_t mix[c, t] (term t's product); None when channel c is term c with weight 1;
    # "sum" when there is one channel, the sum of every term
    mix: tuple[tuple[float, ...], ...] | str | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        terms = [t for channel in self.channels for t in channel]
        object.__setattr__(self, "pair_a", _index([a for a, _, _ in terms]))
        object.__setattr__(self, "pair_b", _index([b for _, b, _ in terms]))
        mix = np.zeros((len(self.channels), len(terms)))
        column = 0
        for c, channel in enumerate(self.channels):
            for _, _, w in channel:
                mix[c, column], column = w, column + 1
        identity = mix.shape[0] == mix.shape[1] and np.array_equal(mix, np.eye(len(terms)))
        total = mix.shape[0] == 1 and np.all(mix == 1.0)
        object.__setattr__(self, "mix", None if identity else "sum" if total else tuple(map(tuple, mix)))


def _index(positions: list[int]) -> Index:
    """A slice when `positions` are consecutive (a view, no copy), else the list."""
    if positions and positions == list(range(positions[0], positions[0] + len(positions))):
        return slice(positions[0], positions[0] + len(positions))
    return positions


class Jet(NamedTuple):
    """Values (S, n, N), tangents (S or 1, n, T, N or 1) and channels (S, n, C, N) or None (zero)."""

    value: torch.Tensor
    tangents: torch.Tensor | None
    channels: torch.Tensor | None


def propagate(net: Network, x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The rows `layout.keep` at the network output for points x (S N, d); shape (S, len(keep), N)."""
    s = net.members
    if x.dim() != 2 or x.shape[1] != net.in_dim or x.shape[0] % s:
        raise ValueError(f"network expects points of shape (N, {net.in_dim}), got {tuple(x.shape)}")
    ops, weights = list(net.ops), net.weights()
    scaling = ops[0] if ops and isinstance(ops[0], DomainScaling) else None
    jet = _initial(x.view(s, -1, net.in_dim), layout, scaling)
    start = 1 if scaling is not None else 0
    for i in range(start, len(ops)):
        jet = _rule(ops[i])(ops[i], jet, weights[i], layout, layout.keep if i == len(ops) - 1 else None)
    n = jet.value.shape[-1]
    parts = [jet.value]
    if jet.tangents is not None and jet.tangents.shape[2]:
        parts.append(jet.tangents[:, 0].expand(s, -1, n))
    if jet.channels is not None:
        parts.append(jet.channels[:, 0])
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def _initial(x: torch.Tensor, layout: Layout, scaling: DomainScaling | None) -> Jet:
    """The jet of the coordinates x (S, N, d), after `scaling` if any: values a x + b, tangent t
    the unit vector of axis a_t times a (G = diag(a)), a broadcast constant; no channels."""
    d = x.shape[2]
    value = x.transpose(1, 2)  # (S, d, N)
    scale = torch.ones(d, dtype=x.dtype, device=x.device)
    if scaling is not None:
        scale = scaling.scale.to(x.dtype)
        value = scaling(value)
    if not layout.axes:
        return Jet(value, None, None)
    tangents = (torch.eye(d, dtype=x.dtype, device=x.device)[:, list(layout.axes)] * scale[:, None])[None, :, :, None]
    return Jet(value, tangents, None)


def _rule(op: nn.Module) -> Callable[[nn.Module, Jet, Weights, Layout, Keep], Jet]:
    for kind, rule in _RULES.items():
        if isinstance(op, kind):
            return rule
    raise TypeError(f"derivatives='taylor' has no rule for {type(op).__name__}; supported ops: "
                    f"{', '.join(k.__name__ for k in _RULES)}")


def _products(a: torch.Tensor, b: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Per channel c, sum_(a,b,w) w a_a b_b over its terms, for tangent tensors a and b
    (S, n, T, N); shape (S, n, C, N)."""
    prod = a[:, :, layout.pair_a] * b[:, :, layout.pair_b]
    if layout.mix is None:
        return prod
    if layout.mix == "sum":
        return prod.sum(dim=2, keepdim=True)
    return torch.matmul(torch.tensor(layout.mix, dtype=prod.dtype, device=prod.device), prod)


def _kept_tangents(jet: Jet, layout: Layout, keep: Keep) -> torch.Tensor | None:
    """The tangents the op must output: all of them, or at the last op those `keep` lists."""
    if jet.tangents is None or keep is None:
        return jet.tangents
    kept = [r - 1 for r in keep if 1 <= r <= len(layout.axes)]
    return jet.tangents[:, :, _index(kept)] if kept else None


def _squash(op: Squash, jet: Jet, w: Weights, layout: Layout, keep: Keep) -> Jet:
    """Optional LayerNorm, then tanh: G' = t' G, L' = t' L + t'' q with q_c = sum w G_a G_b,
    t' = 1 - t^2 and t'' = -2 t t'."""
    if op.layernorm:
        jet = _layernorm(jet, w, layout, op.EPS)
    t = torch.tanh(jet.value)
    if jet.tangents is None:
        return Jet(t, None, None)
    d1 = 1 - t * t
    slope = d1[:, :, None]
    tangents = slope * jet.tangents
    if not layout.channels:
        return Jet(t, tangents, None)
    curvature = (-2 * t * d1)[:, :, None]
    q = _products(jet.tangents, jet.tangents, layout)
    channels = curvature * q if jet.channels is None else torch.addcmul(slope * jet.channels, curvature, q)
    return Jet(t, tangents, channels)


def _layernorm(jet: Jet, w: Weights, layout: Layout, eps: float) -> Jet:
    """y = gamma (h - mean h) / sigma + beta, sigma = sqrt(mean(c^2) + eps), differentiated twice.

    J z = gamma (z_c / sigma - c sigma_z / sigma^2), z_c = z - mean z, sigma_z = mean(c z_c) / sigma;
    B(a, b) = -gamma ((a_c sigma_b + b_c sigma_a) / sigma^2 + c (mean(a_c b_c) - 3 sigma_a sigma_b) / sigma^3).
    """
    def mean(v: torch.Tensor) -> torch.Tensor:
        return v.mean(1, keepdim=True)

    gain, shift = w["norm_weight"][:, :, None], w["norm_bias"][:, :, None]
    c = jet.value - mean(jet.value)
    sigma = torch.sqrt(mean(c * c) + eps)
    value = gain * c / sigma + shift
    if jet.tangents is None:
        return Jet(value, None, None)
    gain, c, sigma = gain[:, :, None], c[:, :, None], sigma[:, :, None]

    def jacobian(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dz = z - mean(z)
        ds = mean(c * dz) / sigma
        return dz, ds, gain * (dz / sigma - c * ds / sigma**2)

    g, gs, tangents = jacobian(jet.tangents)
    if not layout.channels:
        return Jet(value, tangents, None)
    bilinear = -gain * ((_products(g, gs, layout) + _products(gs, g, layout)) / sigma**2
                        + c * (mean(_products(g, g, layout)) - 3 * _products(gs, gs, layout)) / sigma**3)
    channels = bilinear if jet.channels is None else jacobian(jet.channels)[2] + bilinear
    return Jet(value, tangents, channels)


def _fold_numpy(degree: int) -> np.ndarray:
    if degree not in _FOLDS:
        d1 = chebyshev_derivative(degree)
        _FOLDS[degree] = np.concatenate([d1.T[:degree], (d1 @ d1).T[:degree - 1]])
    return _FOLDS[degree]


_FOLDS: dict[int, np.ndarray] = {}


def fold_matrix(degree: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[D1^T; D2^T] without their zero rows, shape (2K - 1, K + 1): T'_k = sum_(l<K) D1[k, l] T_l and
    T''_k = sum_(l<K-1) D2[k, l] T_l (D2 = D1 D1, D1: `cpikan.models.chebyshev_derivative`). With
    C'[l] = sum_k D1[k, l] C[k], a series with coefficients C has derivative sum_l C'[l] T_l: the
    layer's coefficients fold the derivatives in. One tensor per degree, dtype and device."""
    key = (degree, dtype, device)
    if key not in _FOLD_TENSORS:
        _FOLD_TENSORS[key] = torch.as_tensor(_fold_numpy(degree), dtype=dtype, device=device)
    return _FOLD_TENSORS[key]


_FOLD_TENSORS: dict[tuple, torch.Tensor] = {}


def _contract(x: torch.Tensor, y: torch.Tensor, dim: int) -> torch.Tensor:
    """sum over axis `dim` of x * y, one slice at a time (no temporary of the product's full size)."""
    xs, ys = x.unbind(dim), y.expand_as(x).unbind(dim) if y.shape[dim] == 1 else y.unbind(dim)
    out = xs[0] * ys[0]
    for a, b in zip(xs[1:], ys[1:]):
        out.addcmul_(a, b)
    return out


class ChebyshevJet(torch.autograd.Function):
    """A Chebyshev layer's jet, forward and backward written out (first order only).

    ``apply(coeffs, value, tangents, channels, q)``: coeffs C (S, n_out, K+1, n), values s (S, n, N),
    tangents G (S, n, T, N) or None, channels L (S, n, C, N) and their products of tangents q
    (S, n, C, N), both None without channels. Returns (y, G', L') (None where the input is None):
        y = C . T(s),   G' = C' . (T(s) G),   L' = C' . (T(s) L) + C'' . (T(s) q),
    with T(s) the basis T_0..T_K (only T_0..T_(K-1) for C', T_0..T_(K-2) for C'') and C' = D1^T C,
    C'' = D2^T C the coefficients with the basis derivatives folded in (`fold_matrix`): three
    batched matrix products, and no basis derivative materialized but T' in the backward. The
    backward sums its products slice by slice, without temporaries of their full size.
    """

    @staticmethod
    def forward(ctx, coeffs: torch.Tensor, value: torch.Tensor, tangents: torch.Tensor | None,
                channels: torch.Tensor | None, q: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        s, n_out, k1, n = coeffs.shape
        k, points = k1 - 1, value.shape[-1]
        n_t = 0 if tangents is None else tangents.shape[2]
        n_c = 0 if channels is None else channels.shape[2]
        basis = chebyshev_basis(value, k, dim=1)  # (S, K+1, n, N)
        fold = torch.matmul(fold_matrix(k, coeffs.dtype, coeffs.device), coeffs)  # (S, n_out, 2K-1, n)
        y = torch.bmm(coeffs.flatten(2), basis.flatten(1, 2))
        x = value.new_empty(s, k, n, n_t + n_c, points)
        for part, at in ((tangents, 0), (channels, n_t)):
            if part is not None:
                torch.mul(basis[:, :k, :, None], part[:, None], out=x[:, :, :, at:at + part.shape[2]])
        rows = torch.bmm(fold[:, :, :k].flatten(2), x.view(s, k * n, -1)).view(s, n_out, -1, points)
        xq = None
        if q is not None and k > 1:
            xq = basis[:, :k - 1, :, None] * q[:, None]  # (S, K-1, n, C, N)
            rows[:, :, n_t:] += torch.bmm(fold[:, :, k:].flatten(2), xq.view(s, (k - 1) * n, -1)).view(
                s, n_out, -1, points)
        ctx.save_for_backward(coeffs, fold, basis, tangents, channels, q, x, xq)
        return y, rows[:, :, :n_t] if n_t else None, rows[:, :, n_t:] if n_c else None

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_y: torch.Tensor, g_tangents: torch.Tensor | None,
                 g_channels: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        coeffs, fold, basis, tangents, channels, q, x, xq = ctx.saved_tensors
        s, n_out, k1, n = coeffs.shape
        k, points = k1 - 1, basis.shape[-1]
        parts = [(p, g) for p, g in ((tangents, g_tangents), (channels, g_channels)) if p is not None]
        grads = [torch.zeros(s, n_out, p.shape[2], points, dtype=g_y.dtype, device=g_y.device) if g is None else g
                 for p, g in parts]
        g_rows = torch.cat(grads, dim=2).reshape(s, n_out, -1)
        g_coeffs = torch.bmm(g_y, basis.flatten(1, 2).transpose(1, 2)).view(s, n_out, k1, n)
        g_fold = torch.zeros_like(fold)
        g_fold[:, :, :k] = torch.bmm(g_rows, x.view(s, k * n, -1).transpose(1, 2)).view(s, n_out, k, n)
        g_basis = torch.bmm(coeffs.flatten(2).transpose(1, 2), g_y).view(s, k1, n, points)
        g_x = torch.bmm(fold[:, :, :k].flatten(2).transpose(1, 2), g_rows).view(s, k, n, -1, points)
        every = torch.cat([p for p, _ in parts], dim=2)
        g_basis[:, :k] += _contract(g_x, every[:, None], 3)
        g_every = _contract(g_x, basis[:, :k, :, None], 1)
        n_t = 0 if tangents is None else tangents.shape[2]
        g_in_tangents = g_every[:, :, :n_t] if tangents is not None else None
        g_in_channels = g_every[:, :, n_t:] if channels is not None else None
        g_q = None
        if xq is not None:
            g_ch = grads[-1].reshape(s, n_out, -1)
            g_fold[:, :, k:] = torch.bmm(g_ch, xq.view(s, (k - 1) * n, -1).transpose(1, 2)).view(s, n_out, k - 1, n)
            g_xq = torch.bmm(fold[:, :, k:].flatten(2).transpose(1, 2), g_ch).view(s, k - 1, n, -1, points)
            g_basis[:, :k - 1] += _contract(g_xq, q[:, None], 3)
            g_q = _contract(g_xq, basis[:, :k - 1, :, None], 1)
        elif q is not None:
            g_q = torch.zeros_like(q)
        folding = fold_matrix(k, coeffs.dtype, coeffs.device)
        g_coeffs += torch.matmul(folding.T, g_fold)
        d1 = folding[:k, 1:].T  # D1[k, l] for k = 1..K, l < K (D1[k, K] = 0)
        slopes = torch.matmul(d1, basis.view(s, k1, -1)[:, :k]).view(s, k, n, points)
        g_value = _contract(g_basis[:, 1:], slopes, 1)  # sum_k dT_k T'_k (T'_0 = 0; T'_k = sum_l D1[k, l] T_l)
        return g_coeffs, g_value, g_in_tangents, g_in_channels, g_q


def _cheby(op: ChebyKANLayer, jet: Jet, w: Weights, layout: Layout, keep: Keep) -> Jet:
    """y = sum_(i,k) C T_k(s), G' = sum C T'_k(s) G, L' = sum C (T'_k(s) L + T''_k(s) q) (`ChebyshevJet`);
    `keep` (the last op) drops tangents no quantity reads. Under autocast the layer runs in its
    lower precision, as autocast runs matrix products."""
    if jet.tangents is None:
        return Jet(op(jet.value, w), None, None)
    shape = (jet.value.shape[0], -1, -1, jet.value.shape[-1])
    kept = _kept_tangents(jet, layout, keep)
    q = _products(jet.tangents, jet.tangents, layout).expand(shape) if layout.channels else None
    inputs = [w["coeffs"], jet.value, None if kept is None else kept.expand(shape), jet.channels, q]
    device = jet.value.device.type
    if torch.is_autocast_enabled(device):
        low = torch.get_autocast_dtype(device)
        inputs = [None if t is None else t.to(low) for t in inputs]
    with torch.autocast(device, enabled=False):
        return Jet(*ChebyshevJet.apply(*inputs))


def _linear(op: Linear, jet: Jet, w: Weights, layout: Layout, keep: Keep) -> Jet:
    """y = W h + b: the values and every derivative row map by W, only the values get the bias."""
    weight = w["weight"]
    value = torch.baddbmm(w["bias"][:, :, None], weight, jet.value)

    def mapped(rows: torch.Tensor | None) -> torch.Tensor | None:
        if rows is None:
            return None
        rows = rows.expand(weight.shape[0], -1, -1, -1)
        return torch.bmm(weight, rows.flatten(2)).view(weight.shape[0], weight.shape[1], rows.shape[2], -1)

    return Jet(value, mapped(_kept_tangents(jet, layout, keep)), mapped(jet.channels))


_RULES = {Squash: _squash, ChebyKANLayer: _cheby, Linear: _linear}
