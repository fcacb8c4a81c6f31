"""The ``"autograd"`` derivative engine: nested reverse mode, computed lazily as a residual reads."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from cpikan.derivatives.base import Derivatives


class AutogradDerivatives(Derivatives):
    """Nested reverse mode: grad once (create_graph), then once more per requested second derivative.

    `net` is any callable of points (N, d) -> (N,); one with an attribute ``members`` (a
    `cpikan.models.Network`) holds that many members.
    """

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 params: Mapping[str, torch.Tensor], lap_axes: Sequence[int]) -> None:
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        super().__init__(x, params, lap_axes, getattr(net, "members", 1))
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
