"""Forward propagation of a jet: values, tangents and second-order channels through a `Network`.

The state is a list of R rows, each of shape (N, n) for n features::

    row 0              h                            values
    rows 1 .. T        G_t = dh/dx_(a_t)            one tangent per carried axis a_t
    rows T+1 .. R-1    L_c = sum_(a,b,w) w d2h/dx_a dx_b    one second-order channel each

Every op is linear in the derivative rows (its Jacobian J) except for a bilinear correction of
the channels: ``L' = J L + sum_(a,b,w) w B(G_a, G_b)``, B the op's second derivative
(math: ``../shared/derivatives.md``; mixed terms a != b generalize its per-axis weights).
Rules exist for `DomainScaling`, `Squash` (tanh, optionally after LayerNorm), `ChebyKANLayer`
and `nn.Linear`. Rows stay separate tensors between matmuls, so a compiled step fuses each
layer's elementwise work into the kernel that writes the next matmul's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from cpikan.models import ChebyKANLayer, DomainScaling, Network, Squash

Key = tuple  # ("value",) | ("first", i) | ("pure", i) | ("lap",) | ("mixed", i, j) with i < j
Term = tuple[int, int, float]  # (tangent a, tangent b, weight w): the term w d2h/dx_a dx_b of a channel
Rows = list[torch.Tensor]  # R tensors of shape (N, n)
Keep = tuple[int, ...] | None  # rows an op outputs: all (None), or these (the last op)


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


def propagate(net: Network, x: torch.Tensor, layout: Layout) -> Rows:
    """The rows `layout.keep` at the network output for points x (N, d); each of shape (N,)."""
    if x.dim() != 2 or x.shape[1] != net.in_dim:
        raise ValueError(f"network expects points of shape (N, {net.in_dim}), got {tuple(x.shape)}")
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    rows = [x] + [eye[a].expand_as(x) for a in layout.axes] + [torch.zeros_like(x)] * len(layout.channels)
    for i, op in enumerate(net.ops):
        rows = _rule(op)(op, rows, layout, layout.keep if i == len(net.ops) - 1 else None)
    return [r[:, 0] for r in rows]


def _rule(op: nn.Module) -> Callable[[nn.Module, Rows, Layout, Keep], Rows]:
    for kind, rule in _RULES.items():
        if isinstance(op, kind):
            return rule
    raise TypeError(f"derivatives='taylor' has no rule for {type(op).__name__}; supported ops: "
                    f"{', '.join(k.__name__ for k in _RULES)}")


def _pairs(layout: Layout, product: Callable[[int, int], torch.Tensor]) -> Rows:
    """Per channel, sum_(a,b,w) w product(a, b)."""
    return [sum(w * product(a, b) for a, b, w in terms) for terms in layout.channels]


def _select(rows: Rows, keep: Keep) -> Rows:
    return rows if keep is None else [rows[r] for r in keep]


def _scaling(op: DomainScaling, rows: Rows, layout: Layout, keep: Keep) -> Rows:
    """z = a x + b: every row scales by a, the values also shift by b (G = diag(a), L = 0)."""
    scale, shift = op.scale.to(rows[0].dtype), op.shift.to(rows[0].dtype)
    return _select([rows[0] * scale + shift] + [r * scale for r in rows[1:]], keep)


def _squash(op: Squash, rows: Rows, layout: Layout, keep: Keep) -> Rows:
    """Optional LayerNorm, then tanh: G' = t' G, L' = t' L + t'' q with q_c = sum w G_a G_b."""
    if op.norm is not None:
        rows = _layernorm(op.norm, rows, layout)
    n_t = 1 + len(layout.axes)
    t = torch.tanh(rows[0])
    d1 = 1 - t * t
    q = _pairs(layout, lambda a, b: rows[1 + a] * rows[1 + b])
    out = [t] + [d1 * g for g in rows[1:n_t]] + [d1 * l - 2 * t * d1 * qc for l, qc in zip(rows[n_t:], q)]
    return _select(out, keep)


def _layernorm(op: nn.LayerNorm, rows: Rows, layout: Layout) -> Rows:
    """y = gamma (h - mean h) / sigma + beta, sigma = sqrt(mean(c^2) + eps), differentiated twice.

    J z = gamma (z_c / sigma - c sigma_z / sigma^2), z_c = z - mean z, sigma_z = mean(c z_c) / sigma;
    B(a, b) = -gamma ((a_c sigma_b + b_c sigma_a) / sigma^2 + c (mean(a_c b_c) - 3 sigma_a sigma_b) / sigma^3).
    """
    def mean(v: torch.Tensor) -> torch.Tensor:
        return v.mean(-1, keepdim=True)

    c = rows[0] - mean(rows[0])
    sigma = torch.sqrt(mean(c * c) + op.eps)
    dz = [r - mean(r) for r in rows[1:]]
    ds = [mean(c * v) / sigma for v in dz]
    jac = [v / sigma - c * s / sigma**2 for v, s in zip(dz, ds)]

    def bilinear(a: int, b: int) -> torch.Tensor:
        return -((dz[a] * ds[b] + dz[b] * ds[a]) / sigma**2
                 + c * (mean(dz[a] * dz[b]) - 3 * ds[a] * ds[b]) / sigma**3)

    n_t = len(layout.axes)
    out = [c / sigma] + jac[:n_t] + [j + bc for j, bc in zip(jac[n_t:], _pairs(layout, bilinear))]
    if op.weight is not None:
        out = [r * op.weight for r in out]
    if op.bias is not None:
        out[0] = out[0] + op.bias
    return out


def chebyshev_jet(s: torch.Tensor, degree: int, order: int) -> list[Rows]:
    """T_k^(m)(s) for m = 0..order (outer list) and k = 0..K (inner list), by recurrence.

    T_{k+1}^(m) = 2 m T_k^(m-1) + 2 s T_k^(m) - T_{k-1}^(m), from T_0 = 1, T_1 = s, T'_1 = 1 and
    zero otherwise: exact and finite at s = +-1, unlike formulas dividing by 1 - s^2. Kept as
    lists of tensors shaped like s: compiled kernels then hold them in registers.
    """
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    seqs = [[one, s]] + [[zero, one if m == 1 else zero] for m in range(1, order + 1)]
    for k in range(1, degree):
        for m, seq in enumerate(seqs):
            step = 2 * s * seq[k] - seq[k - 1]
            seq.append(step + 2 * m * seqs[m - 1][k] if m else step)
    return [seq[: degree + 1] for seq in seqs]


def _basis(s: torch.Tensor, d: Rows, q: Rows, degree: int) -> list[Rows]:
    """b[r][k], k = 1..K: T_k(s) for r = 0; T'_k(s) d_r, plus T''_k(s) q_c on the last len(q) rows."""
    t0, t1, t2 = (seq[1:] for seq in chebyshev_jet(s, degree, 2))
    n_t = len(d) - len(q)
    return ([t0] + [[a * d[r] for a in t1] for r in range(n_t)]
            + [[a * d[n_t + c] + b * q[c] for a, b in zip(t1, t2)] for c in range(len(q))])


def _basis_grads(s: torch.Tensor, d: Rows, q: Rows, degree: int, g: list[Rows]) -> list[torch.Tensor]:
    """Gradients (s, *d, *q) of sum_(r,k) <g[r][k], b[r][k]>; evaluates T', T'', T''' once."""
    _, t1, t2, t3 = (seq[1:] for seq in chebyshev_jet(s, degree, 3))
    ks, g_q = range(degree), g[1 + len(d) - len(q):]
    grad_d = [sum(g[1 + r][k] * t1[k] for k in ks) for r in range(len(d))]
    grad_q = [sum(g_q[c][k] * t2[k] for k in ks) for c in range(len(q))]
    grad_s = sum(g[0][k] * t1[k] + sum(d[r] * g[1 + r][k] for r in range(len(d))) * t2[k]
                 + sum(q[c] * g_q[c][k] for c in range(len(q))) * t3[k] for k in ks)
    return [grad_s, *grad_d, *grad_q]


class ChebyshevRows(torch.autograd.Function):
    """Matmul input of a Chebyshev layer, `_basis` stacked: shape (1 + len(d), N, K, n).

    ``apply(degree, n_q, s, *d, *q)``, s and every row of shape (N, n), the q rows being the
    channels' products. Forward and backward are written per row and per k (features innermost),
    so a compiled step does each in one pass over (N, n) instead of differentiating the
    recurrences step by step.
    """

    @staticmethod
    def forward(ctx, degree: int, n_q: int, s: torch.Tensor, *rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(s, *rows)
        ctx.degree, ctx.n_q = degree, n_q
        d, q = _split(rows, n_q)
        return torch.stack([torch.stack(b, dim=-2) for b in _basis(s, d, q, degree)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        s, *rows = ctx.saved_tensors
        d, q = _split(rows, ctx.n_q)
        g = [[grad[r, :, k] for k in range(ctx.degree)] for r in range(1 + len(d))]
        return None, None, *_basis_grads(s, d, q, ctx.degree, g)


def _split(rows: tuple[torch.Tensor, ...], n_q: int) -> tuple[Rows, Rows]:
    return list(rows[:len(rows) - n_q]), list(rows[len(rows) - n_q:])


def _cheby(op: ChebyKANLayer, rows: Rows, layout: Layout, keep: Keep) -> Rows:
    """y = sum_(i,k) C T_k(s): rows [T(s), T'(s) G, T'(s) L + T''(s) q] share C: one matmul for all rows.

    T_0 = 1 only adds the bias sum_i C[:, i, 0] to the values (its derivatives vanish), so the
    matmul contracts over k = 1..K. `keep` (the last op) drops tangent rows no quantity reads.
    """
    d = rows[1:] if keep is None else [rows[r] for r in keep if r > 0]  # channels last
    q = _pairs(layout, lambda a, b: rows[1 + a] * rows[1 + b])
    basis = ChebyshevRows.apply(op.degree, len(q), rows[0], *d, *q)  # (R', N, K, n_in)
    r, n = basis.shape[:2]
    flat = basis.reshape(r * n, -1)  # (R' N, K n_in)
    weight = op.coeffs[:, :, 1:].transpose(1, 2).flatten(1)  # (n_out, K n_in), matching the basis
    if op.n_out == 1:
        # the output layer: a multiply-sum rather than a matrix-vector product, so that its gradient
        # fuses into ChebyshevRows.backward instead of materializing an (R' N, K n_in) outer product
        y = (flat * weight).sum(-1, keepdim=True)
    elif weight.shape[1] < weight.shape[0]:
        # few inputs (the first layer): with W^T contiguous the weight gradient is basis^T @ grad,
        # which MKL computes about 4x faster than grad^T @ basis for this shape
        y = flat @ weight.T.contiguous()
    else:
        y = flat @ weight.T
    out = list(y.view(r, n, op.n_out).unbind(0))
    out[0] = out[0] + op.coeffs[:, :, 0].sum(1)
    return out


def _linear(op: nn.Linear, rows: Rows, layout: Layout, keep: Keep) -> Rows:
    """y = W h + b: every row maps by W, only the values get the bias."""
    kept = _select(rows, keep)
    out = list((torch.stack(kept) @ op.weight.T).unbind(0))
    if op.bias is not None:
        out[0] = out[0] + op.bias
    return out


_RULES = {DomainScaling: _scaling, Squash: _squash, ChebyKANLayer: _cheby, nn.Linear: _linear}
