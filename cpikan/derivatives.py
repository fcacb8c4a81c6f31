"""Derivative engines behind one accessor that residuals read.

A residual is written as ``lambda d, x: d.u_x[0] - nu * d.u_xx[1]``, where ``d`` offers
- ``d.u``: values, shape (N,)
- ``d.u_x[i]``: du/dx_i, shape (N,)
- ``d.u_xx[i]``: d2u/dx_i^2, shape (N,)
- ``d.lap``: sum of u_xx over the problem's Laplacian axes, shape (N,)
- ``d.mixed(i, j)``: d2u/dx_i dx_j
- ``d.params``: the problem's constants and trainable unknowns (name -> tensor)
Derivatives are with respect to the physical coordinates x (N, d).

Engines (``derivatives`` config key): ``"autograd"`` computes lazily by nested
``torch.autograd.grad(create_graph=True)``; ``"taylor"`` propagates values, gradients and
the needed second derivatives forward through the network (see `cpikan.taylor`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

ENGINES = ("autograd", "taylor")


class _Indexed:
    """``obj[i]`` calls ``fn(i)``; lets residuals write ``d.u_x[0]``."""

    def __init__(self, fn: Callable[[int], torch.Tensor], dim: int) -> None:
        self._fn, self._dim = fn, dim

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -self._dim <= i < self._dim:
            raise IndexError(f"axis {i} out of range for {self._dim} input coordinates")
        return self._fn(i % self._dim)


class Derivatives:
    """Accessor base: subclasses implement `_value`, `_first`, `_second`, `_laplacian`, `mixed`."""

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

    def _value(self) -> torch.Tensor:
        raise NotImplementedError

    def _first(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _second(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def mixed(self, i: int, j: int) -> torch.Tensor:
        raise NotImplementedError


class AutogradDerivatives(Derivatives):
    """Nested reverse mode: grad once (create_graph), then once more per requested second derivative."""

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 params: Mapping[str, torch.Tensor], lap_axes: Sequence[int]) -> None:
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        super().__init__(x, params, lap_axes)
        self._u = net(x)
        self._grad: torch.Tensor | None = None
        self._second_cache: dict[tuple[int, int], torch.Tensor] = {}

    def _value(self) -> torch.Tensor:
        return self._u

    def _gradient(self) -> torch.Tensor:
        if self._grad is None:
            (self._grad,) = torch.autograd.grad(self._u.sum(), self.x, create_graph=True)
        return self._grad

    def _first(self, i: int) -> torch.Tensor:
        return self._gradient()[:, i]

    def mixed(self, i: int, j: int) -> torch.Tensor:
        key = (min(i, j), max(i, j))
        if key not in self._second_cache:
            (row,) = torch.autograd.grad(self._first(key[0]).sum(), self.x, create_graph=True)
            for k in range(self.dim):
                self._second_cache.setdefault((key[0], k) if key[0] <= k else (k, key[0]), row[:, k])
        return self._second_cache[key]

    def _second(self, i: int) -> torch.Tensor:
        return self.mixed(i, i)


def derivatives(engine: str, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                params: Mapping[str, torch.Tensor], lap_axes: Sequence[int]) -> Derivatives:
    """The accessor of `engine` for network `net` at points x (N, d)."""
    if engine == "autograd":
        return AutogradDerivatives(net, x, params, lap_axes)
    if engine == "taylor":
        from cpikan.taylor import TaylorDerivatives
        return TaylorDerivatives(net, x, params, lap_axes)
    raise ValueError(f"derivatives={engine!r} is not valid; choose one of {', '.join(ENGINES)}")
