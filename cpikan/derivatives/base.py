"""Derivative engines behind one accessor that residuals read.

A residual is written as ``lambda d, x: d.u_x[0] - nu * d.u_xx[1]``, where ``d`` offers
- ``d.u``: values, shape (N,)
- ``d.u_x[i]``: du/dx_i, shape (N,)
- ``d.u_xx[i]``: d2u/dx_i^2, shape (N,)
- ``d.lap``: sum of u_xx over the problem's Laplacian axes, shape (N,)
- ``d.mixed(i, j)``: d2u/dx_i dx_j
- ``d.params``: the problem's constants and trainable unknowns (name -> tensor)
Derivatives are with respect to the physical coordinates x (N, d).

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
    override `_laplacian`)."""

    def __init__(self, x: torch.Tensor, params: Mapping[str, torch.Tensor], lap_axes: Sequence[int]) -> None:
        self.x = x
        self.params = dict(params)
        self.lap_axes = tuple(lap_axes)
        self.dim = x.shape[1]
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
        """u at the points, shape (N,)."""

    @abstractmethod
    def _first(self, i: int) -> torch.Tensor:
        """du/dx_i, shape (N,)."""

    @abstractmethod
    def _second(self, i: int) -> torch.Tensor:
        """d2u/dx_i^2, shape (N,)."""

    @abstractmethod
    def mixed(self, i: int, j: int) -> torch.Tensor:
        """d2u/dx_i dx_j, shape (N,)."""
