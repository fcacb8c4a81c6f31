"""Derivative engines behind one accessor that residuals read.

A residual is written as ``lambda d, x: d.u_x[0] - nu * d.u_xx[1]``, where ``d`` offers
- ``d.u``: values, shape (N,)
- ``d.u_x[i]``: du/dx_i, shape (N,)
- ``d.u_xx[i]``: d2u/dx_i^2, shape (N,)
- ``d.lap``: sum of u_xx over the problem's Laplacian axes, shape (N,)
- ``d.mixed(i, j)``: d2u/dx_i dx_j
- ``d.params``: the problem's constants (0-d) and trainable unknowns (one value per point, (N,))
Derivatives are with respect to the physical coordinates x (N, d).

A network of S members (`cpikan.models.Network`) reads the points of all members at once: N is
then S times the points per member, member m's in block m, and an unknown's value at a point is
that member's. Residuals are pointwise, so one written for a single network runs unchanged.
`Derivatives.part` reads the same quantities on a block of each member's points (one pass over
interior and condition points together, the loss then reading each set from it).

Engines (``derivatives`` config key, registry `cpikan.derivatives.ENGINES`): ``"autograd"``
(`cpikan.derivatives.autograd`) computes lazily by nested ``torch.autograd.grad(create_graph=True)``;
``"taylor"`` (`cpikan.derivatives.taylor`) propagates values, gradients and the needed second
derivatives forward through the network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Mapping, Sequence

import torch


class _Indexed:
    """``obj[i]`` calls ``fn(i)``; lets residuals write ``d.u_x[0]``."""

    def __init__(self, fn: Callable[[int], torch.Tensor], dim: int) -> None:
        self._fn, self._dim = fn, dim

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -self._dim <= i < self._dim:
            raise IndexError(f"axis {i} out of range for {self._dim} input coordinates")
        return self._fn(i % self._dim)


class Derivatives(ABC):
    """Accessor base: an engine implements `_value`, `_first`, `_second` and `mixed` (and may
    override `_laplacian`).

    Args:
        x: points (S N, d).
        params: name -> constant (0-d) or member value (S,) (an unknown of an inverse problem).
        lap_axes: axes summed by ``d.lap``.
        members: S.
    """

    def __init__(self, x: torch.Tensor, params: Mapping[str, torch.Tensor], lap_axes: Sequence[int],
                 members: int = 1) -> None:
        self.x = x
        self.members = members
        self.lap_axes = tuple(lap_axes)
        self.dim = x.shape[1]
        self.params = {k: per_point(v, x.shape[0] // members) for k, v in params.items()}
        self.u_x = _Indexed(self._first, self.dim)
        self.u_xx = _Indexed(self._second, self.dim)

    @property
    def u(self) -> torch.Tensor:
        return self._value()

    @property
    def lap(self) -> torch.Tensor:
        return self._laplacian()

    def _laplacian(self) -> torch.Tensor:
        return sum(self._second(i) for i in self.lap_axes)

    @abstractmethod
    def _value(self) -> torch.Tensor:
        """u at the points, shape (S N,)."""

    @abstractmethod
    def _first(self, i: int) -> torch.Tensor:
        """du/dx_i, shape (S N,)."""

    @abstractmethod
    def _second(self, i: int) -> torch.Tensor:
        """d2u/dx_i^2, shape (S N,)."""

    @abstractmethod
    def mixed(self, i: int, j: int) -> torch.Tensor:
        """d2u/dx_i dx_j, shape (S N,)."""

    def part(self, start: int, stop: int, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> "Derivatives":
        """The accessor of points start .. stop - 1 of each member's block; `x` ((S (stop - start), d))
        are those points and `params` the constants and unknowns, as given to this accessor."""
        return _Part(self, start, stop, x, params)


def per_point(value: torch.Tensor, n: int) -> torch.Tensor:
    """A constant (0-d) as it is; a member value (S,) repeated over each member's n points: (S n,)."""
    return value if value.dim() == 0 else value[:, None].expand(-1, n).reshape(-1)


class _Part(Derivatives):
    """Points start .. stop - 1 of each member of `whole`: its quantities, sliced."""

    def __init__(self, whole: Derivatives, start: int, stop: int, x: torch.Tensor,
                 params: Mapping[str, torch.Tensor]) -> None:
        super().__init__(x, params, whole.lap_axes, whole.members)
        self.whole, self.start, self.stop = whole, start, stop

    def _slice(self, q: torch.Tensor) -> torch.Tensor:
        return q.view(self.members, -1)[:, self.start:self.stop].reshape(-1)

    def _value(self) -> torch.Tensor:
        return self._slice(self.whole.u)

    def _first(self, i: int) -> torch.Tensor:
        return self._slice(self.whole.u_x[i])

    def _second(self, i: int) -> torch.Tensor:
        return self._slice(self.whole.u_xx[i])

    def _laplacian(self) -> torch.Tensor:
        return self._slice(self.whole.lap)

    def mixed(self, i: int, j: int) -> torch.Tensor:
        return self._slice(self.whole.mixed(i, j))
