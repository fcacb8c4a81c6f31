"""The ``"taylor"`` derivative engine: values, gradients and second derivatives propagated forward.

`TaylorDerivatives` is the accessor residuals read (``d.u``, ``d.u_x[i]``, ``d.u_xx[i]``,
``d.lap``, ``d.mixed(i, j)``); one pass of `cpikan.derivatives.jets.propagate` through the network computes
them all (math: ``../shared/derivatives.md``). The training step then needs a single ordinary
backward (no double backward), which is what lets `torch.compile` fuse it.

A `Plan` records what a residual reads and carries only that: one tangent per axis those
quantities touch, one second-order channel per pure or mixed second derivative, and one for
the Laplacian unless it is the sum of pure channels carried anyway.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from cpikan.derivatives.base import Derivatives
from cpikan.derivatives.jets import Key, Layout, Term, propagate
from cpikan.models import Network


class Plan:
    """The quantities a residual reads; grows on request, and derives the minimal `Layout`.

    A `PhysicsLoss` keeps one plan per residual, so only the first evaluation discovers what is
    needed (re-propagating when a new quantity is read) and every later one runs a single pass.
    """

    def __init__(self, dim: int, lap_axes: Sequence[int]) -> None:
        self.dim, self.lap_axes = dim, tuple(lap_axes)
        self.keys: set[Key] = set()
        self._layout: Layout | None = None

    def request(self, key: Key) -> None:
        """Add a quantity (a no-op when it is already planned)."""
        if key not in self.keys:
            self.keys.add(key)
            self._layout = None

    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = self._build()
        return self._layout

    def _build(self) -> Layout:
        first = {k[1] for k in self.keys if k[0] == "first"}
        pure = {k[1] for k in self.keys if k[0] == "pure"}
        mixed = sorted(k[1:] for k in self.keys if k[0] == "mixed")
        lap = ("lap",) in self.keys
        if lap and len(self.lap_axes) == 1:
            pure.add(self.lap_axes[0])
        lap_channel = lap and len(self.lap_axes) > 1 and not set(self.lap_axes) <= pure
        needed = first | pure | {a for pair in mixed for a in pair} | (set(self.lap_axes) if lap_channel else set())
        axes = tuple(sorted(needed))
        t = {a: i for i, a in enumerate(axes)}
        rows: dict[Key, tuple[int, ...]] = {("value",): (0,)}
        rows.update({("first", a): (1 + t[a],) for a in sorted(first)})
        channels: list[tuple[Term, ...]] = []
        for a in sorted(pure):
            rows[("pure", a)] = (1 + len(axes) + len(channels),)
            channels.append(((t[a], t[a], 1.0),))
        for i, j in mixed:
            rows[("mixed", i, j)] = (1 + len(axes) + len(channels),)
            channels.append(((t[i], t[j], 1.0),))
        if lap_channel:
            rows[("lap",)] = (1 + len(axes) + len(channels),)
            channels.append(tuple((t[a], t[a], 1.0) for a in self.lap_axes))
        elif lap:
            rows[("lap",)] = tuple(rows[("pure", a)][0] for a in self.lap_axes)
        keep = tuple(sorted({r for carried in rows.values() for r in carried}))
        position = {r: i for i, r in enumerate(keep)}
        rows = {key: tuple(position[r] for r in carried) for key, carried in rows.items()}
        return Layout(axes, tuple(channels), keep, rows)


class TaylorDerivatives(Derivatives):
    """Accessor of the taylor engine: one forward pass gives every quantity of `plan`.

    Args:
        net: a `cpikan.models.Network` (its ops are walked one by one).
        x: points (S N, d), physical coordinates, member m's in block m; no ``requires_grad`` needed.
        params: the problem's constants and unknowns, exposed as ``d.params`` (see `Derivatives`).
        lap_axes: axes summed by ``d.lap``.
        plan: what to carry; default a fresh plan that grows as quantities are read (each new
            quantity then costs one more pass). Pass a shared plan to pay that only once.
    """

    def __init__(self, net: Network, x: torch.Tensor, params: Mapping[str, torch.Tensor],
                 lap_axes: Sequence[int], plan: Plan | None = None) -> None:
        if not isinstance(net, Network):
            raise TypeError(f"derivatives='taylor' propagates through the ops of a cpikan.models.Network, "
                            f"got {type(net).__name__}; use derivatives='autograd' for other callables")
        super().__init__(x, params, lap_axes, net.members)
        self.net = net
        self.plan = Plan(self.dim, self.lap_axes) if plan is None else plan
        if self.plan.lap_axes != self.lap_axes or self.plan.dim != self.dim:
            raise ValueError(f"plan is for {self.plan.dim} coordinates and lap_axes {self.plan.lap_axes}, "
                             f"got {self.dim} and {self.lap_axes}")
        self._layout: Layout | None = None
        self._out: torch.Tensor | None = None

    def _get(self, key: Key) -> torch.Tensor:
        self.plan.request(key)
        layout = self.plan.layout()
        if layout is not self._layout:
            self._out, self._layout = propagate(self.net, self.x, layout), layout
        rows = layout.rows[key]
        if not rows:  # a Laplacian over no axes
            return torch.zeros_like(self._out[:, 0]).reshape(-1)
        value = self._out[:, rows[0]]
        for r in rows[1:]:
            value = value + self._out[:, r]
        return value.reshape(-1)

    def _value(self) -> torch.Tensor:
        return self._get(("value",))

    def _first(self, i: int) -> torch.Tensor:
        return self._get(("first", i))

    def _second(self, i: int) -> torch.Tensor:
        return self._get(("pure", i))

    def _laplacian(self) -> torch.Tensor:
        return self._get(("lap",))

    def mixed(self, i: int, j: int) -> torch.Tensor:
        for axis in (i, j):
            if not -self.dim <= axis < self.dim:
                raise IndexError(f"axis {axis} out of range for {self.dim} input coordinates")
        i, j = sorted((i % self.dim, j % self.dim))
        return self._second(i) if i == j else self._get(("mixed", i, j))


def discover_plan(residual: Callable, net: Network, lo: Sequence[float], hi: Sequence[float],
                  params: Mapping[str, torch.Tensor], lap_axes: Sequence[int]) -> Plan:
    """Learn what `residual(d, x)` reads by evaluating it once on three fixed points of the box (per member).

    Done before training (and before `torch.compile` traces a step), so the traced pass carries
    exactly the final plan. Uses no random numbers; runs under ``torch.no_grad``.
    """
    p = next(net.parameters())
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
    frac = torch.tensor([0.31, 0.57, 0.83], dtype=torch.float64)[:, None]
    frac = torch.remainder(frac + 0.21 * torch.arange(len(lo), dtype=torch.float64), 1.0)  # (3, d)
    x = (lo_t + (hi_t - lo_t) * frac).to(p.device, p.dtype).repeat(net.members, 1)  # the same 3 per member
    plan = Plan(len(lo), lap_axes)
    with torch.no_grad():
        residual(TaylorDerivatives(net, x, params, lap_axes, plan), x)
    return plan
